"""Model round trips between transformers (our remote code) and berthash (issue 6, parts 1-2).

For each case (femto, pico, nano shapes from `berthash info --preset NAME --json`, plus the
golden `tiny` dirs shipped in tests/fixtures):

1. transformers -> berthash: random-weight BertHashModel (bare: no pooler, as the published
   encoders), BertHashForMaskedLM and BertHashForSequenceClassification (3 labels) are built
   in PyTorch, every parameter redrawn (weights/embeddings N(0, 0.1), biases N(0, 0.1),
   LayerNorm weights 1 + N(0, 0.2)) so nothing is trivially 0/1 and attention is far from
   uniform, then save_pretrained()'d. `berthash forward` on a padded batch with token types
   must reproduce PyTorch's last_hidden_state / pooler_output / logits within 1e-4 abs.
   (tiny: the golden dirs and their inputs.json instead of fresh weights.)
2. berthash -> transformers: `berthash export` of each dir, with its own head and with
   `--head base`; the exported dir must hold the expected config.json fields and files, carry
   every source tensor bit for bit, load through AutoConfig + the Auto class (+ AutoModel for
   the encoder of a head model, + AutoTokenizer) with trust_remote_code=True without missing
   or unexpected keys, and give the outputs of `berthash forward` on the same dir within
   1e-4. Exporting the exported dir again must reproduce every file byte for byte.
"""

import json
import shutil

import torch

from .common import (
    CODE_FILES,
    GOLDEN_TINY,
    PRESETS,
    PYTHON_DIR,
    TOKENIZER_FILES,
    quiet_load,
    sha256,
    stage_code,
)

NAME = "roundtrip"
TITLE = "transformers <-> berthash model round trips (forward outputs, export, re-export)"

AUTO_MAP = {
    "AutoConfig": "configuration_bert_hash.BertHashConfig",
    "AutoModel": "modeling_bert_hash.BertHashModel",
    "AutoModelForMaskedLM": "modeling_bert_hash.BertHashForMaskedLM",
    "AutoModelForSequenceClassification": "modeling_bert_hash.BertHashForSequenceClassification",
}
ARCH = {"base": "BertHashModel", "mlm": "BertHashForMaskedLM", "cls": "BertHashForSequenceClassification"}
# berthash export --head value for each kind, and which exports each source gets.
HEAD_ARG = {"base": "base", "mlm": "mlm", "cls": "classification"}
EXPORTS = {"base": ["base"], "mlm": ["mlm", "base"], "cls": ["cls", "base"]}
LABELS = {0: "negative", 1: "neutral", 2: "positive"}
# Row lengths of the padded batch (max length 64) and where the second segment starts.
ROW_LENGTHS = [64, 51, 23, 7]
CLS_ID, SEP_ID = 101, 102
HELLO_IDS = [101, 7592, 1010, 2088, 999, 102]  # bert-base-uncased: "Hello, world!"


def auto_classes():
    from transformers import AutoModel, AutoModelForMaskedLM, AutoModelForSequenceClassification

    return {"base": AutoModel, "mlm": AutoModelForMaskedLM, "cls": AutoModelForSequenceClassification}


def make_inputs(vocab_size, seed):
    """A padded batch of [CLS] a [SEP] b [SEP] rows with token types 0/1, ids drawn at random."""
    g = torch.Generator().manual_seed(seed)
    max_len = max(ROW_LENGTHS)
    ids, mask, types = [], [], []
    low = min(1000, vocab_size // 2)  # clear of the special ids [PAD] 0 .. [MASK] 103
    for length in ROW_LENGTHS:
        body = torch.randint(low, vocab_size, (length,), generator=g).tolist()
        row = [CLS_ID] + body[1 : length - 1] + [SEP_ID] if length >= 2 else [CLS_ID]
        split = max(1, length // 2)
        if length >= 4:
            row[split] = SEP_ID  # end of segment a; segment b runs to the final [SEP]
        row_types = [0] * (split + 1) + [1] * (length - split - 1) if length >= 4 else [0] * length
        ids.append(row + [0] * (max_len - length))
        mask.append([1] * length + [0] * (max_len - length))
        types.append(row_types + [0] * (max_len - length))
    return {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}


def perturb(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=g)
            if name.endswith("LayerNorm.weight"):
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.1 * noise)


def build_source(ctx, workdir, config_dict, kind, seed):
    """A random-weight model of `kind` made and saved by transformers; returns its dir."""
    from transformers import AutoConfig

    stage = workdir / f"config-{kind}"
    stage.mkdir(parents=True, exist_ok=True)
    cfg = dict(config_dict, architectures=[ARCH[kind]], auto_map=AUTO_MAP)
    if kind == "cls":
        cfg["id2label"] = {str(k): v for k, v in LABELS.items()}
        cfg["label2id"] = {v: k for k, v in LABELS.items()}
    (stage / "config.json").write_text(json.dumps(cfg, indent=2))
    stage_code(stage)
    config = AutoConfig.from_pretrained(stage, trust_remote_code=True)
    torch.manual_seed(seed)
    kwargs = {"add_pooling_layer": False} if kind == "base" else {}
    model = auto_classes()[kind].from_config(config, trust_remote_code=True, **kwargs)
    perturb(model, seed)
    model.eval()
    out = workdir / f"src-{kind}"
    model.save_pretrained(out)
    for f in CODE_FILES:  # save_pretrained copies them for remote code; make sure either way
        if not (out / f).exists():
            shutil.copy(PYTHON_DIR / f, out / f)
    return out, model


def torch_outputs(model, kind, inputs):
    """{output name: tensor} with berthash forward's names."""
    with torch.no_grad():
        encoder = model if kind == "base" else model.bert
        enc = encoder(**inputs)
        out = {"last_hidden_state": enc.last_hidden_state}
        if enc.pooler_output is not None:
            out["pooler_output"] = enc.pooler_output
        if kind != "base":
            out["logits"] = model(**inputs).logits
    return out


def compare_outputs(report, check, ours, reference, reference_name):
    """One row: every output berthash wrote vs the reference's, same names and shapes."""
    problems, diffs = [], {}
    for key in sorted(set(ours) | set(reference)):
        if key not in ours:
            problems.append(f"berthash did not write {key}")
        elif key not in reference:
            problems.append(f"unexpected {key}")
        elif tuple(ours[key].shape) != tuple(reference[key].shape):
            problems.append(f"{key} shape {tuple(ours[key].shape)} != {tuple(reference[key].shape)}")
        else:
            diffs[key] = (ours[key].double() - reference[key].double()).abs().max().item()
    worst = max(diffs.values(), default=float("nan"))
    note = ", ".join(f"{k} {v:.1e}" for k, v in diffs.items())
    passed = not problems and bool(diffs) and worst <= 1e-4
    report.add(check, passed, f"max|diff| {worst:.2e}", reference_name, "1e-04 abs",
               "; ".join(problems + ([note] if note else [])))


def strip_bert(key):
    return key[len("bert."):] if key.startswith("bert.") else key


def check_weights(report, check, exported_dir, source_dir):
    """Every tensor of the export is bit-equal to the source tensor of the same name (modulo the
    `bert.` prefix, and the vocab bias that transformers saves once under `cls.predictions.bias`)."""
    from safetensors.torch import load_file

    src = {strip_bert(k): v for k, v in load_file(str(source_dir / "model.safetensors")).items()}
    if "cls.predictions.bias" in src:
        src.setdefault("cls.predictions.decoder.bias", src["cls.predictions.bias"])
    out = load_file(str(exported_dir / "model.safetensors"))
    bad = []
    for key, value in out.items():
        ref = src.get(strip_bert(key))
        if ref is None:
            bad.append(f"{key} not in source")
        elif ref.dtype != value.dtype or ref.shape != value.shape or not torch.equal(ref, value):
            bad.append(f"{key} differs")
    equal = len(out) - len(bad)
    report.add(check, not bad and bool(out), f"{equal}/{len(out)} tensors equal", "source model.safetensors",
               "bit-exact", "; ".join(bad[:4]) + (f" (+{len(bad) - 4})" if len(bad) > 4 else ""))


def check_export_files(ctx, report, check, exported, kind, source_config):
    config = json.loads((exported / "config.json").read_text())
    problems = []
    if config.get("auto_map") != AUTO_MAP:
        problems.append(f"auto_map {config.get('auto_map')!r}")
    if config.get("architectures") != [ARCH[kind]]:
        problems.append(f"architectures {config.get('architectures')!r}")
    if config.get("model_type") != "bert_hash":
        problems.append(f"model_type {config.get('model_type')!r}")
    for field in ("projections", "hidden_size", "num_hidden_layers", "num_attention_heads",
                  "intermediate_size", "vocab_size", "max_position_embeddings"):
        if config.get(field) != source_config.get(field):
            problems.append(f"{field} {config.get(field)!r} != {source_config.get(field)!r}")
    if kind == "cls":
        # The source's labels (LABELS for the random models, LABEL_0.. for golden tiny) must survive.
        for field in ("id2label", "label2id"):
            if config.get(field) != source_config.get(field):
                problems.append(f"{field} {config.get(field)!r} != source {source_config.get(field)!r}")
        if config.get("num_labels", len(config.get("id2label") or {})) != len(source_config.get("id2label") or {}):
            problems.append(f"num_labels {config.get('num_labels')!r}")
    if kind == "mlm":
        # The vocab bias is written under both names (upstream-spec.md), one tensor.
        from .common import safetensors_keys

        keys = safetensors_keys(exported / "model.safetensors")
        for key in ("cls.predictions.bias", "cls.predictions.decoder.bias"):
            if key not in keys:
                problems.append(f"no {key}")
    for f in CODE_FILES:
        if not (exported / f).exists():
            problems.append(f"no {f}")
        elif (exported / f).read_bytes() != (PYTHON_DIR / f).read_bytes():
            problems.append(f"{f} differs from python/{f}")
    tok_dir = ctx.repo / "data" / "tokenizer" / "bert-base-uncased"
    for f in TOKENIZER_FILES + ["README.md", "model.safetensors"]:
        if not (exported / f).exists():
            problems.append(f"no {f}")
    for f in ("tokenizer.json", "vocab.txt"):
        if (exported / f).exists() and (exported / f).read_bytes() != (tok_dir / f).read_bytes():
            problems.append(f"{f} differs from data/tokenizer/bert-base-uncased/{f}")
    report.add(check, not problems, f"{len(list(exported.iterdir()))} files", "spec (upstream-spec.md)", "exact",
               "; ".join(problems) or "auto_map, architectures, model_type, projections, shapes"
               + (", labels" if kind == "cls" else "") + (", both vocab-bias names" if kind == "mlm" else "")
               + "; code + tokenizer files present")


def load_exported(report, check, exported, kind):
    """Loads an exported dir through AutoConfig + the Auto class; returns the model or None."""
    from transformers import AutoConfig

    from .common import safetensors_keys

    keys = safetensors_keys(exported / "model.safetensors")
    has_pooler = any("pooler." in k for k in keys)
    kwargs = {"add_pooling_layer": False} if kind == "base" and not has_pooler else {}
    cls = auto_classes()[kind]
    try:
        def load():
            config = AutoConfig.from_pretrained(exported, trust_remote_code=True)
            return cls.from_pretrained(exported, config=config, trust_remote_code=True,
                                       output_loading_info=True, **kwargs)

        (model, info), noise = quiet_load(load)
    except Exception as e:  # noqa: BLE001 - any failure is the finding
        report.add(check, False, "load failed", cls.__name__, "", f"{type(e).__name__}: {e}"[:300])
        return None
    model.eval()
    problems = [f"{k}: {info[k]}" for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)]
    impl = getattr(model.config, "_attn_implementation", None)
    note = "; ".join(problems) or f"{type(model).__name__}, attn {impl}, no missing/unexpected keys"
    if noise:
        note += " | logged: " + " | ".join(m.splitlines()[0][:100] for m in noise)
    report.add(check, not problems and not noise, type(model).__name__ if not problems else "keys differ",
               f"{cls.__name__} + AutoConfig", "clean load", note)
    return model


def load_encoder_of_head(report, check, exported):
    """AutoModel on an export with a head: the encoder part (with its pooler when the file has one)."""
    from transformers import AutoModel

    from .common import safetensors_keys

    keys = safetensors_keys(exported / "model.safetensors")
    kwargs = {} if any("pooler." in k for k in keys) else {"add_pooling_layer": False}
    try:
        (model, info), _ = quiet_load(AutoModel.from_pretrained, exported, trust_remote_code=True,
                                      output_loading_info=True, _silent=True, **kwargs)
    except Exception as e:  # noqa: BLE001
        report.add(check, False, "load failed", "AutoModel", "", f"{type(e).__name__}: {e}"[:300])
        return None
    model.eval()
    # The head's weights are unused by the encoder; anything else unused or missing is a fault.
    problems = [f"missing {k}" for k in info.get("missing_keys") or []] + [
        f"unexpected {k}" for k in info.get("unexpected_keys") or []
        if not (k.startswith("cls.") or k.startswith("classifier."))]
    if problems:
        report.add(check, False, "keys differ", "AutoModel", "", "; ".join(problems)[:300])
        return None
    return model


def check_tokenizer(report, check, exported):
    from transformers import AutoTokenizer

    try:
        tok, noise = quiet_load(AutoTokenizer.from_pretrained, exported, trust_remote_code=True)
    except Exception as e:  # noqa: BLE001
        report.add(check, False, "load failed", "AutoTokenizer", "", f"{type(e).__name__}: {e}"[:300])
        return
    ids = tok("Hello, world!")["input_ids"]
    specials = {t: tok.convert_tokens_to_ids(t) for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")}
    want = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103}
    ok = ids == HELLO_IDS and specials == want and len(tok) == 30522
    report.add(check, ok, f"{ids}", f"{HELLO_IDS}", "exact",
               f"{type(tok).__name__}, vocab {len(tok)}, specials {'ok' if specials == want else specials}"
               + (" | logged: " + noise[0][:100] if noise else ""))


def check_reexport(ctx, report, check, exported, head_arg, workdir):
    """export(exported) must reproduce every file of `exported` byte for byte."""
    again = ctx.berthash.export(exported, workdir / (exported.name + "-again"), head=head_arg)
    names = sorted(p.name for p in exported.iterdir())
    names_again = sorted(p.name for p in again.iterdir())
    differ = [n for n in names if n in names_again and (exported / n).read_bytes() != (again / n).read_bytes()]
    problems = differ + [f"only in first: {n}" for n in names if n not in names_again] \
        + [f"only in second: {n}" for n in names_again if n not in names]
    report.add(check, not problems, f"sha256 {sha256(again / 'model.safetensors')[:12]}",
               f"sha256 {sha256(exported / 'model.safetensors')[:12]}", "byte-identical",
               ("differ: " + ", ".join(problems)) if problems else f"all {len(names)} files identical")


def run_case(ctx, report, case, sources, inputs, golden=None):
    """sources: {kind: (dir, torch model or None)}; inputs: the batch as lists; golden: the
    recorded outputs of the golden case (expected.safetensors) or None."""
    workdir = ctx.scratch(NAME, case)
    inputs_json = workdir / "inputs.json"
    inputs_json.write_text(json.dumps(inputs))
    tensors = {k: torch.tensor(v, dtype=torch.long) for k, v in inputs.items()}
    torch.manual_seed(0)

    # Part 1: transformers -> berthash.
    report.section = f"{case} torch->berthash"
    for kind, (src, model) in sources.items():
        if model is None:  # golden dir: load it through our remote code as an exported dir would be
            model = load_exported(report, f"{kind}: load golden dir in transformers", src, kind)
            if model is None:
                continue
        reference = torch_outputs(model, kind, tensors)
        try:
            ours = ctx.berthash.forward(src, inputs_json, workdir / f"fwd-src-{kind}.safetensors")
        except Exception as e:  # noqa: BLE001
            report.add(f"{kind} ({ARCH[kind]}) outputs", False, "berthash forward failed", "", "", str(e)[:300])
            continue
        compare_outputs(report, f"{kind} ({ARCH[kind]}) outputs", ours, reference, f"PyTorch {ARCH[kind]}")
        if golden is not None:
            # expected.safetensors: outputs recorded by the reference implementation. The golden
            # base dir is the classifier's encoder without pooler, so it matches cls.last_hidden_state.
            prefix = "cls" if kind == "base" else kind
            recorded = {k.split(".", 1)[1]: v for k, v in golden.items() if k.startswith(prefix + ".")}
            recorded = {k: v for k, v in recorded.items() if k in reference}
            compare_outputs(report, f"{kind} ({ARCH[kind]}) outputs vs expected.safetensors", ours, recorded,
                            "golden expected.safetensors")

    # Part 2: berthash -> transformers, and re-export.
    report.section = f"{case} berthash->transformers"
    tokenizer_checked = case == "tiny"  # tiny has a 1,000-id vocab: the shipped tokenizer does not fit it
    for kind, (src, _) in sources.items():
        for head in EXPORTS[kind]:
            label = f"{kind}->{head}"
            exported = workdir / f"export-{kind}-{head}"
            try:
                ctx.berthash.export(src, exported, head=HEAD_ARG[head])
            except Exception as e:  # noqa: BLE001
                report.add(f"{label} export", False, "berthash export failed", "", "", str(e)[:300])
                continue
            source_config = json.loads((src / "config.json").read_text())
            check_export_files(ctx, report, f"{label} config.json + files", exported, head, source_config)
            check_weights(report, f"{label} weights vs source", exported, src)
            model = load_exported(report, f"{label} load ({ARCH[head]})", exported, head)
            ours = ctx.berthash.forward(exported, inputs_json, workdir / f"fwd-{kind}-{head}.safetensors")
            if model is not None:
                compare_outputs(report, f"{label} outputs", ours, torch_outputs(model, head, tensors),
                                f"transformers {ARCH[head]}")
            if head != "base":
                encoder = load_encoder_of_head(report, f"{label} AutoModel (encoder)", exported)
                if encoder is not None:
                    ref = torch_outputs(encoder, "base", tensors)
                    compare_outputs(report, f"{label} AutoModel (encoder) outputs",
                                    {k: ours[k] for k in ref if k in ours}, ref, "transformers BertHashModel")
            if not tokenizer_checked:
                check_tokenizer(report, f"{label} AutoTokenizer", exported)
                tokenizer_checked = True
            check_reexport(ctx, report, f"{label} re-export byte-identical", exported, HEAD_ARG[head], workdir)


def run(ctx, report):
    for n, preset in enumerate(PRESETS):
        config = ctx.preset_config(preset)
        workdir = ctx.scratch(NAME, preset)
        sources = {}
        for k, kind in enumerate(["base", "mlm", "cls"]):
            sources[kind] = build_source(ctx, workdir, config, kind, seed=1000 * n + k)
        inputs = make_inputs(config["vocab_size"], seed=n)
        run_case(ctx, report, preset, sources, inputs)

    # The golden tiny case: weights and inputs from tests/fixtures/golden/tiny.
    workdir = ctx.scratch(NAME, "tiny")
    sources = {}
    for kind in ("base", "mlm", "cls"):
        dst = workdir / f"golden-{kind}"
        if not dst.exists():
            shutil.copytree(GOLDEN_TINY / kind, dst)
            stage_code(dst)
        sources[kind] = (dst, None)
    inputs = json.loads((GOLDEN_TINY / "inputs.json").read_text())
    from safetensors.torch import load_file

    golden = load_file(str(GOLDEN_TINY / "expected.safetensors"))
    run_case(ctx, report, "tiny", sources, inputs, golden=golden)
