"""Sentence-embedding parity: `berthash export --sentence-transformers` loaded by
sentence-transformers, whose `encode` must equal `berthash embed` on the same directory.

- Source: a random-weight femto encoder saved by transformers (every parameter redrawn, as in the
  roundtrip module); the export adds the built-in bert-base-uncased tokenizer.
- For mean, cls and max pooling, normalised or not: `export --sentence-transformers --pooling P
  [--normalize]`, then `SentenceTransformer(dir, trust_remote_code=True).encode(texts)` against
  `berthash embed --model dir` with no pooling flags (so berthash reads the directory's own
  sentence-transformers files), max |diff| within 1e-5.
- The texts: SST-2 and MRPC sentences of the repo's fixtures (short and long, so batches pad),
  and one text longer than the 128-token truncation length.
- The exported card's front matter names sentence-transformers and sentence-similarity.
"""

import json

import torch

from .common import REPO_ROOT
from .roundtrip import build_source

NAME = "sentence_embeddings"
TITLE = "export --sentence-transformers: SentenceTransformer.encode vs berthash embed"
TOLERANCE = 1e-5


def texts():
    out = []
    for task, column in (("SST-2", 0), ("MRPC", 3)):
        lines = (REPO_ROOT / f"tests/fixtures/glue/{task}/dev.tsv").read_text(encoding="utf-8-sig").splitlines()[1:]
        out += [line.split("\t")[column] for line in lines[:20] if line]
    out.append(" ".join(["a long text that the embedding model truncates"] * 40))
    return out


def run(ctx, report):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        report.skip("sentence-transformers", "not installed in this venv (scripts/python_env.sh installs it)")
        return
    import sentence_transformers

    from safetensors.torch import load_file

    report.section = f"sentence-transformers {sentence_transformers.__version__}"
    workdir = ctx.scratch(NAME)
    source, _ = build_source(ctx, workdir, ctx.preset_config("femto"), "base", seed=7)
    inputs = texts()
    input_file = workdir / "texts.txt"
    input_file.write_text("\n".join(inputs) + "\n")

    for pooling in ("mean", "cls", "max"):
        for normalize in (False, True):
            label = f"{pooling}{', normalized' if normalize else ''}"
            out = workdir / f"st-{pooling}-{int(normalize)}"
            args = ["export", "--from", source, "--out", out, "--sentence-transformers", "--pooling", pooling]
            if normalize:
                args.append("--normalize")
            ctx.berthash(*args, "--force")
            model = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
            reference = torch.from_numpy(model.encode(inputs, batch_size=16, convert_to_numpy=True))
            embeddings = workdir / f"embed-{pooling}-{int(normalize)}.safetensors"
            ctx.berthash("embed", "--model", out, "--input", input_file, "--output", embeddings)
            ours = load_file(str(embeddings))["embeddings"]
            report.compare(f"{label}: encode vs berthash embed", ours, reference,
                           "SentenceTransformer.encode", tol=TOLERANCE,
                           note=f"{len(inputs)} texts, max_seq_length {model.max_seq_length}")

    card = (workdir / "st-mean-0" / "README.md").read_text()
    front = card.split("---")[1]
    report.add("card front matter", "library_name: sentence-transformers" in front
               and "pipeline_tag: sentence-similarity" in front,
               "library_name, pipeline_tag", "sentence-transformers, sentence-similarity")
    modules = json.loads((workdir / "st-mean-1" / "modules.json").read_text())
    report.add("modules.json (normalized)", [m["type"].rsplit(".", 1)[1] for m in modules]
               == ["Transformer", "Pooling", "Normalize"], [m["type"].rsplit(".", 1)[1] for m in modules],
               "Transformer, Pooling, Normalize")
