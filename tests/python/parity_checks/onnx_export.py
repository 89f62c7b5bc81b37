"""ONNX export parity: `berthash export --onnx` run by ONNX Runtime against the transformers
model it was exported from.

- Sources: random-weight femto and pico models of each class (encoder, MLM, classification),
  made and saved by transformers (every parameter redrawn, as in the roundtrip module).
- `onnx.checker.check_model(full_check=True)` (schema and shape inference) on each file.
- ONNX Runtime (CPU, default graph optimisations, which fuse the GELU pattern with its bias and
  the score scaling with its product) on a padded batch of [CLS] a [SEP] b [SEP] rows, and again on one short row, so the
  free batch and sequence axes are exercised: every output against transformers' within 1e-5.
- The model card's ONNX snippet, run as written (PATH replaced): it must give the file's outputs.
- `export --sentence-transformers --pooling P [--normalize] --onnx` of a femto encoder for each
  pooling, normalised or not: the graph's `sentence_embedding` on the texts as
  `SentenceTransformer.tokenize` pads them, against `SentenceTransformer.encode` within 1e-5.
"""

import re

import torch

from .roundtrip import build_source, make_inputs, torch_outputs
from .sentence_embeddings import texts

NAME = "onnx_export"
TITLE = "export --onnx: ONNX Runtime vs transformers"
TOLERANCE = 1e-5
KINDS = {"base": "encoder", "mlm": "masked LM", "cls": "classification"}


def run(ctx, report):
    try:
        import onnxruntime as ort
    except ImportError:
        report.skip("onnxruntime", "not installed in this venv (scripts/python_env.sh installs it)")
        return
    try:
        import onnx
    except ImportError:
        onnx = None
    report.section = f"onnxruntime {ort.__version__}"
    if onnx is None:
        report.skip("onnx.checker", "onnx not installed in this venv")

    for n, preset in enumerate(("femto", "pico")):
        config = ctx.preset_config(preset)
        workdir = ctx.scratch(NAME, preset)
        # The last row of make_inputs' batch holds 7 tokens: alone, it is a batch of one 7 long.
        short = make_inputs(config["vocab_size"], seed=10 + n)
        batches = {
            "padded batch": make_inputs(config["vocab_size"], seed=n),
            "one short row": {k: [v[-1][:7]] for k, v in short.items()},
        }
        for kind, label in KINDS.items():
            source, model = build_source(ctx, workdir, config, kind, seed=21 + n)
            out = workdir / f"export-{kind}"
            ctx.berthash("export", "--from", source, "--out", out, "--onnx", "--force")
            path = out / "onnx" / "model.onnx"
            if onnx is not None:
                try:
                    onnx.checker.check_model(str(path), full_check=True)
                    report.add(f"{preset} {label}: onnx.checker", True, "valid", f"onnx {onnx.__version__}")
                except Exception as e:  # the checker's own exception types vary by version
                    report.add(f"{preset} {label}: onnx.checker", False, str(e)[:200], f"onnx {onnx.__version__}")
            session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
            names = [o.name for o in session.get_outputs()]
            for batch_label, batch in batches.items():
                feeds = {k: torch.tensor(v, dtype=torch.long).numpy() for k, v in batch.items()}
                reference = torch_outputs(model, kind, {k: torch.from_numpy(v) for k, v in feeds.items()})
                ours = dict(zip(names, (torch.from_numpy(a) for a in session.run(None, feeds))))
                check = f"{preset} {label}, {batch_label}"
                report.add(f"{check}: output names", sorted(ours) == sorted(reference),
                           ", ".join(sorted(ours)), ", ".join(sorted(reference)))
                for key in sorted(set(ours) & set(reference)):
                    report.compare(f"{check}: {key}", ours[key], reference[key], "transformers",
                                   tol=TOLERANCE)
            if preset == "femto" and kind == "cls":
                check_card_snippet(report, out, names)
    check_sentence_embeddings(ctx, report, ort)


def check_card_snippet(report, exported, names):
    card = (exported / "README.md").read_text()
    found = re.search(r"## ONNX\n.*?```python\n(.*?)```", card, re.S)
    if not found:
        report.add("model card: ONNX snippet", False, "no ONNX section", "## ONNX with a python block")
        return
    scope = {}
    exec(found.group(1).replace("PATH", str(exported)), scope)
    outputs = scope.get("outputs", {})
    report.add("model card: ONNX snippet runs", sorted(outputs) == sorted(names),
               ", ".join(sorted(outputs)), ", ".join(sorted(names)))


def check_sentence_embeddings(ctx, report, ort):
    try:
        from sentence_transformers import SentenceTransformer
    except ImportError:
        report.skip("sentence_embedding", "sentence-transformers not installed in this venv")
        return
    workdir = ctx.scratch(NAME, "sentence")
    source, _ = build_source(ctx, workdir, ctx.preset_config("femto"), "base", seed=7)
    inputs = texts()
    for pooling in ("mean", "cls", "max"):
        for normalize in (False, True):
            label = f"femto sentence_embedding, {pooling}{', normalized' if normalize else ''}"
            out = workdir / f"st-{pooling}-{int(normalize)}"
            args = ["export", "--from", source, "--out", out, "--sentence-transformers",
                    "--pooling", pooling, "--onnx", "--force"]
            if normalize:
                args.append("--normalize")
            ctx.berthash(*args)
            model = SentenceTransformer(str(out), trust_remote_code=True, device="cpu")
            reference = torch.from_numpy(model.encode(inputs, batch_size=len(inputs), convert_to_numpy=True))
            features = model.tokenize(inputs)
            session = ort.InferenceSession(str(out / "onnx" / "model.onnx"), providers=["CPUExecutionProvider"])
            feeds = {i.name: features[i.name].numpy() for i in session.get_inputs()}
            (ours,) = session.run(["sentence_embedding"], feeds)
            report.compare(label, torch.from_numpy(ours), reference, "SentenceTransformer.encode",
                           tol=TOLERANCE, note=f"{len(inputs)} texts padded to {feeds['input_ids'].shape[1]}")
