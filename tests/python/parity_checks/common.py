"""Shared pieces of the parity checks: the report table, the berthash runner, model helpers."""

import hashlib
import json
import logging
import re
import shutil
import subprocess
import time
import warnings
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[3]
PYTHON_DIR = REPO_ROOT / "python"
CODE_FILES = ["configuration_bert_hash.py", "modeling_bert_hash.py"]
TOKENIZER_FILES = ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
GOLDEN_TINY = REPO_ROOT / "tests" / "fixtures" / "golden" / "tiny"
PRESETS = ["femto", "pico", "nano"]
TOLERANCE = 1e-4

# SKIP: not checked (the note says why); INFO: an observation, not a check.
PASS, FAIL, SKIP, INFO = "PASS", "FAIL", "SKIP", "INFO"


class Report:
    """Rows of (section, check, ours, reference, tolerance, result, note)."""

    def __init__(self):
        self.rows = []
        self.section = ""

    def add(self, check, passed, ours="", reference="", tolerance="", note=""):
        result = SKIP if passed is None else (PASS if passed else FAIL)
        self.rows.append((self.section, check, str(ours), str(reference), str(tolerance), result, note))
        return passed

    def skip(self, check, note):
        return self.add(check, None, note=note)

    def info(self, check, note):
        self.rows.append((self.section, check, "", "", "", INFO, note))

    def compare(self, check, ours, reference, reference_name, tol=TOLERANCE, note=""):
        """Max abs difference of two tensors (any float dtype) within `tol`."""
        if tuple(ours.shape) != tuple(reference.shape):
            return self.add(check, False, f"shape {tuple(ours.shape)}", f"shape {tuple(reference.shape)}",
                            f"{tol:.0e} abs", note)
        diff = (ours.detach().double() - reference.detach().double()).abs().max().item() if ours.numel() else 0.0
        scale = reference.detach().double().abs().max().item() if reference.numel() else 0.0
        extra = f"max |ref| {scale:.3g}, shape {list(reference.shape)}"
        return self.add(check, diff <= tol, f"max|diff| {diff:.2e}", reference_name, f"{tol:.0e} abs",
                        f"{extra}; {note}" if note else extra)

    def failed(self):
        return [r for r in self.rows if r[5] == FAIL]

    def counts(self):
        return {k: sum(1 for r in self.rows if r[5] == k) for k in (PASS, FAIL, SKIP, INFO)}

    def _cells(self):
        header = ("check", "ours", "reference", "tolerance", "result", "note")
        rows = [(f"{s}: {c}" if s else c, o, ref, t, res, n) for s, c, o, ref, t, res, n in self.rows]
        return header, rows

    def text(self):
        header, rows = self._cells()
        # The note column is left unpadded (last); cap the others so the table stays readable.
        widths = [min(max(len(r[i]) for r in rows + [header]), cap)
                  for i, cap in enumerate((70, 24, 44, 10, 6))]
        lines = []
        for n, row in enumerate([header] + rows):
            cells = [row[i].ljust(widths[i]) for i in range(5)]
            lines.append("  ".join(cells + [row[5]]).rstrip())
            if n == 0:
                lines.append("-" * (sum(widths) + 2 * 5 + 4))
        return "\n".join(lines)

    def section_summary_markdown(self):
        """Counts per section, and the largest max|diff| among its tensor comparisons."""
        out = ["| section | pass | fail | skip | largest max\\|diff\\| |", "|---|---|---|---|---|"]
        sections = []
        for row in self.rows:
            if row[0] not in sections:
                sections.append(row[0])
        for sec in sections:
            rows = [r for r in self.rows if r[0] == sec]
            diffs = [float(r[2].split()[-1]) for r in rows if r[2].startswith("max|diff|")
                     and r[2].split()[-1] != "nan"]
            n = {k: sum(1 for r in rows if r[5] == k) for k in (PASS, FAIL, SKIP)}
            out.append(f"| {sec or '-'} | {n[PASS]} | {n[FAIL]} | {n[SKIP]} | "
                       f"{f'{max(diffs):.2e}' if diffs else '-'} |")
        return "\n".join(out)

    def markdown(self):
        header, rows = self._cells()

        def esc(s):
            return s.replace("|", "\\|").replace("\n", " ")

        out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        for row in rows:
            cells = [esc(c) for c in row]
            cells[4] = f"**{cells[4]}**" if cells[4] == FAIL else cells[4]
            out.append("| " + " | ".join(cells) + " |")
        return "\n".join(out)


BENCHMARKS = REPO_ROOT / "docs" / "benchmarks.md"


def write_benchmarks_section(heading, body):
    """Replaces the section of docs/benchmarks.md under `heading` (up to the next `## `) with
    `body`, or appends it."""
    text = BENCHMARKS.read_text() if BENCHMARKS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: body + "\n", text)
    else:
        text = text.rstrip("\n") + "\n\n" + body
    BENCHMARKS.write_text(text)


class BerthashError(RuntimeError):
    pass


class Berthash:
    """Runs the berthash binary; keeps a count and the total time of the calls."""

    def __init__(self, binary):
        self.binary = str(binary)
        self.calls = 0
        self.seconds = 0.0

    def __call__(self, *args, check=True):
        start = time.perf_counter()
        proc = subprocess.run([self.binary, *map(str, args)], capture_output=True, text=True)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        if check and proc.returncode != 0:
            raise BerthashError(f"berthash {' '.join(map(str, args))} exited {proc.returncode}: "
                                f"{(proc.stderr or proc.stdout).strip()[-600:]}")
        return proc

    def help_text(self):
        return self("--help").stdout

    def version(self):
        return self("--version").stdout.strip()

    def preset_config(self, name):
        return json.loads(self("info", "--preset", name, "--json").stdout)["config"]

    def forward(self, model_dir, inputs_json, output):
        from safetensors.torch import load_file

        self("forward", "--model", model_dir, "--inputs", inputs_json, "--output", output)
        return load_file(str(output))

    def export(self, src, out, head=None, force=False):
        args = ["export", "--from", src, "--out", out]
        if head:
            args += ["--head", head]
        if force:
            args.append("--force")
        self(*args)
        return Path(out)


class Context:
    def __init__(self, berthash, workdir):
        self.repo = REPO_ROOT
        self.berthash = berthash
        self.workdir = Path(workdir)
        self._presets = {}

    def preset_config(self, name):
        if name not in self._presets:
            self._presets[name] = self.berthash.preset_config(name)
        return dict(self._presets[name])

    def scratch(self, *parts):
        path = self.workdir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


class LogCapture(logging.Handler):
    """Collects what transformers logs at WARNING and above (missing keys etc.)."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def quiet_load(fn, *args, _silent=False, **kwargs):
    """Calls fn; returns (result, transformers log lines + Python warnings). With _silent, what
    transformers logs below ERROR is neither printed nor returned (for loads whose warnings are
    expected, e.g. the encoder of a head model, whose head weights are unused)."""
    import transformers

    capture = LogCapture()
    logger = logging.getLogger("transformers")
    logger.addHandler(capture)
    verbosity = transformers.utils.logging.get_verbosity()
    if _silent:
        transformers.utils.logging.set_verbosity_error()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            result = fn(*args, **kwargs)
    finally:
        logger.removeHandler(capture)
        transformers.utils.logging.set_verbosity(verbosity)
    return result, capture.messages + [str(w.message) for w in caught]


def sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def stage_code(dst):
    """Puts our remote code next to a model dir, as an exported dir has it."""
    for f in CODE_FILES:
        shutil.copy(PYTHON_DIR / f, Path(dst) / f)


def safetensors_keys(path):
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        return set(f.keys())
