#!/usr/bin/env python3
"""Parity check of python/{configuration,modeling}_bert_hash.py against the golden model dirs.

For every golden size (tiny, pico) it loads base/, mlm/ and cls/ through the Auto classes with
trust_remote_code=True (each dir copied to a temp dir together with our two .py files), runs
inputs.json and compares with expected.safetensors; then save_pretrained()s the loaded model,
compares the saved keys/shapes with the golden model.safetensors, reloads the saved dir and
checks it gives the same outputs. Prints a table and exits non-zero on any failure.

Usage: .venv-parity/bin/python tests/python/check_golden.py [GOLDEN_DIR]
GOLDEN_DIR defaults to $BERTHASH_GOLDEN or <repo>/../shared/golden (i.e. /work/shared/golden).
"""

import json
import logging
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
PYTHON_DIR = REPO_ROOT / "python"
CODE_FILES = ["configuration_bert_hash.py", "modeling_bert_hash.py"]
TOLERANCE = 1e-4

# Remote code is copied into HF_MODULES_CACHE at load time; keep it out of ~/.cache and
# make sure nothing tries the network. Both must be set before transformers is imported.
WORK_DIR = Path(tempfile.mkdtemp(prefix="berthash-golden-"))
os.environ["HF_MODULES_CACHE"] = str(WORK_DIR / "modules")
os.environ["HF_HUB_OFFLINE"] = "1"

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import (  # noqa: E402
    AutoConfig,
    AutoModel,
    AutoModelForMaskedLM,
    AutoModelForSequenceClassification,
)

# Progress bars of weight loading (5.x) would only clutter the table.
transformers.utils.logging.disable_progress_bar()

AUTO_CLASSES = {"base": AutoModel, "mlm": AutoModelForMaskedLM, "cls": AutoModelForSequenceClassification}


class Report:
    def __init__(self):
        self.rows = []

    def add(self, check, passed, diff=None, tol=None, note=""):
        self.rows.append((check, diff, tol, passed, note))

    def compare(self, check, actual, expected, note=""):
        if actual.shape != expected.shape:
            self.add(check, False, note=f"shape {tuple(actual.shape)} != expected {tuple(expected.shape)}")
            return None
        diff = (actual.detach().float() - expected.float()).abs().max().item()
        self.add(check, diff <= TOLERANCE, diff, TOLERANCE, note)
        return diff

    def print(self):
        width = max(len(r[0]) for r in self.rows)
        print(f"{'check':<{width}}  {'max abs diff':>12}  {'tolerance':>9}  result  note")
        print("-" * (width + 45))
        for check, diff, tol, passed, note in self.rows:
            diff_s = f"{diff:.3e}" if diff is not None else "-"
            tol_s = f"{tol:.0e}" if tol is not None else "-"
            print(f"{check:<{width}}  {diff_s:>12}  {tol_s:>9}  {'PASS' if passed else 'FAIL':<6}  {note}")

    def failed(self):
        return [r for r in self.rows if not r[3]]


class LogCapture(logging.Handler):
    """Collects what transformers logs at WARNING and above (missing keys etc.)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def staged_copy(src, name):
    """Copies a golden model dir next to our code, as an exported model dir would be."""
    dst = WORK_DIR / name
    shutil.copytree(src, dst)
    for f in CODE_FILES:
        shutil.copy(PYTHON_DIR / f, dst / f)
    return dst


def load(path, kind, **kwargs):
    """Loads through AutoConfig + the Auto class; returns (model, loading info, log lines, py warnings)."""
    capture = LogCapture()
    logger = logging.getLogger("transformers")
    logger.addHandler(capture)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            config = AutoConfig.from_pretrained(path, trust_remote_code=True)
            model, info = AUTO_CLASSES[kind].from_pretrained(
                path, config=config, trust_remote_code=True, output_loading_info=True, **kwargs
            )
    finally:
        logger.removeHandler(capture)
    model.eval()
    return model, info, capture.messages, [str(w.message) for w in caught]


def run(model, kind, inputs):
    """Forward pass; returns {name: tensor} using the expected.safetensors names (without prefix)."""
    with torch.no_grad():
        if kind == "base":
            out = model(**inputs)
            return {"last_hidden_state": out.last_hidden_state}
        out = model(**inputs, output_hidden_states=True)
        result = {"last_hidden_state": out.hidden_states[-1], "logits": out.logits}
        if kind == "cls":
            result["pooler_output"] = model.bert(**inputs).pooler_output
        return result


def saved_key_shapes(path):
    with safe_open(str(path / "model.safetensors"), "pt") as f:
        return {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}


def check_saved_keys(report, label, model, golden_dir, saved_dir):
    """The saved file must hold the golden keys/shapes; a golden key may be absent only when
    it is a declared tied alias (one tensor, two names) of a key that is present."""
    golden = saved_key_shapes(golden_dir)
    saved = saved_key_shapes(saved_dir)
    tied = dict(getattr(model, "_tied_weights_keys", None) or {})
    problems, notes = [], []
    for key, shape in golden.items():
        if key in saved:
            if saved[key] != shape:
                problems.append(f"{key}: saved {saved[key]} != golden {shape}")
        elif key in tied and saved.get(tied[key]) == shape:
            notes.append(f"{key} not written (tied to {tied[key]})")
        else:
            problems.append(f"missing {key}")
    problems += [f"extra {k}" for k in saved if k not in golden]
    report.add(f"{label} save_pretrained keys/shapes", not problems, note="; ".join(problems or notes) or f"{len(saved)} keys")

    config = json.loads((saved_dir / "config.json").read_text())
    golden_config = json.loads((golden_dir / "config.json").read_text())
    wanted = ["model_type", "projections", "architectures", "auto_map", "hidden_size", "vocab_size"]
    bad = [k for k in wanted if config.get(k) != golden_config.get(k)]
    code = [f for f in CODE_FILES if not (saved_dir / f).exists()]
    note = "; ".join([f"config {k}: {config.get(k)!r} != {golden_config.get(k)!r}" for k in bad]
                     + [f"{f} not saved" for f in code])
    report.add(f"{label} saved config.json + code files", not bad and not code, note=note)


def check_size(report, golden_root, size):
    golden = golden_root / size
    expected = load_file(str(golden / "expected.safetensors"))
    raw_inputs = json.loads((golden / "inputs.json").read_text())
    inputs = {k: torch.tensor(v, dtype=torch.long) for k, v in raw_inputs.items()}
    same_inputs = all(torch.equal(inputs[k], expected[k]) for k in inputs)
    report.add(f"{size} inputs.json == expected inputs", same_inputs)

    for kind in ("base", "mlm", "cls"):
        label = f"{size}/{kind}"
        staged = staged_copy(golden / kind, f"{size}-{kind}")
        # The base checkpoint has no pooler (like the published encoders), so it is loaded
        # without one; the default AutoModel load (with a fresh pooler) is checked below.
        kwargs = {"add_pooling_layer": False} if kind == "base" else {}
        model, info, logs, py_warnings = load(staged, kind, **kwargs)

        impl = model.config._attn_implementation
        report.add(f"{label} attention implementation", impl == "eager", note=str(impl))
        load_problems = [f"{k}: {info[k]}" for k in ("missing_keys", "unexpected_keys", "mismatched_keys") if info.get(k)]
        report.add(f"{label} load: no missing/unexpected keys", not load_problems, note="; ".join(load_problems))
        noise = logs + py_warnings
        report.add(f"{label} load: no warnings", not noise, note=" | ".join(m.splitlines()[0][:120] for m in noise))

        outputs = run(model, kind, inputs)
        if kind == "base":
            # expected.safetensors has no base.* keys: find which model's encoder it reproduces.
            matches = []
            for key in sorted(k for k in expected if k.endswith(".last_hidden_state")):
                diff = (outputs["last_hidden_state"] - expected[key]).abs().max().item()
                matches.append((diff, key))
            best_diff, best_key = min(matches)
            others = ", ".join(f"{k}: {d:.2e}" for d, k in matches if k != best_key)
            report.add(f"{label} last_hidden_state vs {best_key}", best_diff <= TOLERANCE, best_diff, TOLERANCE,
                       note=f"(others: {others})")
        else:
            for name, value in outputs.items():
                report.compare(f"{label} {name}", value, expected[f"{kind}.{name}"])

        saved = WORK_DIR / f"{size}-{kind}-saved"
        model.save_pretrained(saved)
        check_saved_keys(report, label, model, golden / kind, saved)
        reloaded, _, _, _ = load(saved, kind, **kwargs)
        again = run(reloaded, kind, inputs)
        diff = max((again[k] - outputs[k]).abs().max().item() for k in outputs)
        report.add(f"{label} reload of saved dir", diff <= TOLERANCE, diff, TOLERANCE)

        if kind == "base":
            model, info, logs, _ = load(staged, kind)
            missing = sorted(info.get("missing_keys", []))
            ok = missing == ["pooler.dense.bias", "pooler.dense.weight"] and not info.get("unexpected_keys")
            # transformers logs the fresh pooler; seeing it here also shows the log capture works.
            logged = any("pooler.dense.weight" in m for m in logs)
            report.add(f"{label} default AutoModel load (adds pooler)", ok and logged,
                       note=f"missing: {missing}, logged: {logged}")
        if kind == "mlm":
            shared = reloaded.cls.predictions.decoder.bias is reloaded.cls.predictions.bias
            report.add(f"{label} vocab bias shared after reload", shared)
            check_mlm_loss(report, label, model, inputs)
        if kind == "cls":
            check_cls_loss(report, label, model, inputs)


def check_mlm_loss(report, label, model, inputs):
    """Loss is the mean cross-entropy over positions whose label is not -100."""
    labels = torch.full_like(inputs["input_ids"], -100)
    labels[:, 1:4] = inputs["input_ids"][:, 1:4]
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    picked = labels != -100
    manual = torch.nn.functional.cross_entropy(out.logits[picked], labels[picked])
    report.compare(f"{label} loss (ignore_index -100)", out.loss, manual)


def check_cls_loss(report, label, model, inputs):
    """single-label CE for integer labels, BCE-with-logits for float (multi-label) targets."""
    config = model.config
    n = config.num_labels
    labels = torch.arange(inputs["input_ids"].shape[0]) % n
    with torch.no_grad():
        out = model(**inputs, labels=labels)
    report.compare(f"{label} loss single_label", out.loss, torch.nn.functional.cross_entropy(out.logits, labels))
    config.problem_type = None
    targets = torch.nn.functional.one_hot(labels, n).float()
    with torch.no_grad():
        out = model(**inputs, labels=targets)
    manual = torch.nn.functional.binary_cross_entropy_with_logits(out.logits, targets)
    report.compare(f"{label} loss multi_label", out.loss, manual, note=f"problem_type={config.problem_type}")
    config.problem_type = None


def main():
    default_golden = os.environ.get("BERTHASH_GOLDEN", str(REPO_ROOT.parent / "shared" / "golden"))
    golden_root = Path(sys.argv[1] if len(sys.argv) > 1 else default_golden)
    sizes = sorted(p.name for p in golden_root.iterdir() if (p / "expected.safetensors").exists())
    if not sizes:
        print(f"no golden dirs with expected.safetensors under {golden_root}")
        return 2
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, golden {golden_root}: {sizes}")
    torch.manual_seed(0)
    report = Report()
    try:
        for size in sizes:
            check_size(report, golden_root, size)
    finally:
        shutil.rmtree(WORK_DIR, ignore_errors=True)
    report.print()
    failed = report.failed()
    print(f"{len(report.rows) - len(failed)} passed, {len(failed)} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
