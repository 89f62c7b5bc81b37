#!/usr/bin/env python3
"""Checks of scripts/gpu/gpu_report.py, the GPU check's arithmetic and verdicts (standard library
only; no GPU): the FLOP counts against a count written out by hand, MFU, the cuda-vs-cpu line on
runs that pass and on runs that must fail, and the targets in table.md.

Usage: python3 tests/python/test_gpu_report.py
"""

import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
REPORT = REPO / "scripts" / "gpu" / "gpu_report.py"
REFERENCE = REPO / "scripts" / "gpu" / "cpu_reference.json"

sys.path.insert(0, str(REPORT.parent))
import gpu_report  # noqa: E402


def report(*args, stdin=None):
    run = subprocess.run([sys.executable, str(REPORT), *args], input=stdin, capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    return run.stdout


def test_flops():
    # nano at seq 128, term by term (2 FLOPs per multiply-add):
    h, inter, p, v, s, layers = 128, 512, 16, 30522, 128, 2
    projection = 2 * p * h
    per_layer = 4 * (2 * h * h) + 2 * (2 * h * inter) + 2 * (2 * s * h)
    encoder = projection + layers * per_layer
    head = 2 * h * h + 2 * h * v
    assert encoder == 921_600 and head == 7_846_400
    assert gpu_report.flops_per_token("nano", 128, "masked", "train") == 3 * (encoder + 0.15 * head)
    assert gpu_report.flops_per_token("nano", 128, "masked", "train") == 6_295_680
    assert gpu_report.flops_per_token("nano", 128, "full-vocab", "train") == 26_304_000
    assert gpu_report.flops_per_token("nano", 128, "encoder", "infer") == encoder
    assert report("flops", "--size", "nano").strip() == "6295680"
    # Longer sequences cost more attention per token; wider models more of everything.
    assert gpu_report.flops_per_token("nano", 256, "masked", "train") > 6_295_680
    assert gpu_report.flops_per_token("femto", 128, "masked", "train") < gpu_report.flops_per_token(
        "pico", 128, "masked", "train") < 6_295_680


def test_annotate():
    rows = [
        {"size": "nano", "backend": "cuda", "precision": "bf16", "batch": 256, "seq": 128,
         "phase": "train", "variant": "masked", "tokens_per_s": 10_000_000.0},
        {"size": "-", "backend": "cpu", "precision": "f32", "batch": 256, "seq": 128,
         "phase": "data", "variant": "corpus", "tokens_per_s": 5e6},
    ]
    stdin = "some log line\n" + "\n".join(json.dumps(r) for r in rows) + "\n"
    out = [json.loads(l) for l in report("annotate", "--engine", "berthash", "--set", "card=H100",
                                         "--set", "fusion=true", stdin=stdin).splitlines()]
    assert len(out) == 2, out
    train, data = out
    assert train["engine"] == "berthash" and train["card"] == "H100" and train["fusion"] is True
    assert train["flop_per_token"] == 6_295_680
    assert abs(train["mfu"] - 1e7 * 6_295_680 / 790e12) < 1e-5, train["mfu"]
    assert abs(train["tflops"] - 62.957) < 1e-3
    assert "mfu" not in data and data["engine"] == "berthash"


def write_run(path, losses):
    path.mkdir(parents=True)
    with open(path / "metrics.jsonl", "w") as f:
        for step, loss in losses.items():
            f.write(json.dumps({"kind": "train", "step": step, "loss": loss, "lr": 0.0}) + "\n")
        f.write(json.dumps({"kind": "eval", "step": max(losses), "split": "eval", "loss": 1.0}) + "\n")


def check_line(tmp, f32, bf16):
    write_run(tmp / "f32", f32)
    write_run(tmp / "bf16", bf16)
    out = report("check", "--ref", str(REFERENCE), "--f32", str(tmp / "f32"), "--bf16", str(tmp / "bf16"))
    return json.loads(out)


def test_check():
    ref = json.loads(REFERENCE.read_text())
    first20 = ref["losses_first20"]
    assert len(first20) == 20 and ref["loss_step300"] is not None and ref["steps"] == 300
    base = {s: first20[s - 1] for s in range(1, 21)}
    end = ref["loss_step300"]
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        # CUDA f32 equal to the CPU run within rounding, bf16 1% off at the end: passes.
        good = check_line(tmp / "good", {**{s: v * (1 + 2e-4) for s, v in base.items()}, 300: end},
                          {**base, 300: end * 1.01})
        assert good["engine"] == "berthash" and good["check"] == "cuda-vs-cpu"
        assert abs(good["max_rel_diff_first20"] - 2e-4) < 1e-9
        assert good["loss_f32_step300"] == end and good["pass"] is (end < 7.5), good
        # f32 drifts 1% from the CPU run in the first steps: fails.
        drift = check_line(tmp / "drift", {**{s: v * 1.01 for s, v in base.items()}, 300: end},
                           {**base, 300: end})
        assert drift["pass"] is False and drift["max_rel_diff_first20"] > 1e-3
        # bf16 5% above f32 at step 300: fails.
        bf16_off = check_line(tmp / "bf16", {**base, 300: end}, {**base, 300: end * 1.05})
        assert bf16_off["pass"] is False
        # A NaN anywhere: fails.
        nan = check_line(tmp / "nan", {**base, 150: float("nan"), 300: end}, {**base, 300: end})
        assert nan["pass"] is False and nan["nan_free"] is False
        # A missing bf16 run (it timed out): nulls, fails.
        write_run(tmp / "only" / "f32", {**base, 300: end})
        out = json.loads(report("check", "--ref", str(REFERENCE), "--f32", str(tmp / "only" / "f32"),
                                "--bf16", str(tmp / "only" / "missing")))
        assert out["loss_bf16_step300"] is None and out["pass"] is False


def test_table():
    def row(engine, batch, rate, fusion=None):
        r = {"engine": engine, "backend": "cuda", "precision": "bf16", "size": "nano", "batch": batch,
             "seq": 128, "phase": "train", "variant": "masked", "tokens_per_s": rate}
        if fusion is not None:
            r["fusion"] = fusion
        return r

    parts = {"cast": 0.1, "forward": 1.0, "backward": 2.5, "clip": 0.2, "optimizer": 0.7, "total": 4.5}
    rows = [{**row("berthash", 256, 3e6, True), "phases_ms": parts, "ms_per_step": 4.0},
            row("pytorch-eager", 256, 1.5e6),
            row("berthash", 1024, 4e6, True), row("pytorch-eager", 1024, 3e6),
            row("berthash", 256, 2e6, False),
            {**row("berthash", 1024, 3.2e6, True), "autotune": False, "first_step_s": 12.34},
            {"engine": "berthash", "backend": "cpu", "precision": "f32", "size": "-", "batch": 256,
             "seq": 128, "phase": "data", "variant": "corpus", "tokens_per_s": 9e6, "threads": 16,
             "format": "parquet"},
            {"engine": "berthash", "backend": "cpu", "precision": "f32", "size": "-", "batch": 256,
             "seq": 128, "phase": "data", "variant": "corpus", "tokens_per_s": 4e8, "threads": 16,
             "format": "bhtok"},
            {"engine": "berthash", "backend": "cpu", "precision": "-", "size": "-", "batch": 0,
             "seq": 0, "phase": "pretokenize", "variant": "corpus", "tokens_per_s": 3e7, "threads": 16},
            {**row("berthash", 8, 1e5), "backend": "wgpu-noop", "precision": "f32", "ms_per_step": 10.24},
            {**row("berthash", 256, 3.2e6), "backend": "wgpu-noop", "precision": "f32", "ms_per_step": 11.5}]
    with tempfile.TemporaryDirectory() as d:
        results = Path(d) / "results.jsonl"
        results.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
        table = report("table", str(results), "--skipped", "wgpu (time)")
    assert "**2.00x** (target 1.5x: met)" in table, table
    assert "**1.33x** (target 1.5x: missed)" in table, table
    assert "fusion off: 2,000,000 tokens/s (0.67x of fusion on)" in table, table
    assert "loader (parquet, cold tokenizer cache): 9,000,000 tokens/s on 16 threads = 2.25x the fastest " \
        "nano training rate here" in table and "target 2x: met" in table, table
    assert "loader (token shards): 400,000,000 tokens/s on 16 threads = 100.00x" in table, table
    assert "- pretokenize: 30,000,000 tokens/s on 16 threads" in table, table
    assert ("- step parts, berthash cuda bf16 nano 256 x 128, fusion True: cast 0.10, forward 1.00, "
            "backward 2.50, clip 0.20, optimizer 0.70 ms (total 4.50 ms with a sync after each part; "
            "4.00 ms per step without)") in table, table
    assert "autotune off: 3,200,000 tokens/s (0.80x of on)" in table, table
    assert "| autotune off, first step 12.3 s |" in table, table
    assert ("- step time by batch, berthash (fusion on, autotune on), nano bf16 masked: 256 x 128 4.00 ms, "
            "1024 x 128 32.77 ms") in table, table
    assert ("- step time by batch, pytorch-eager, nano bf16 masked: 256 x 128 21.85 ms, 1024 x 128 43.69 ms"
            in table), table
    assert ("- step time by batch, berthash host only (wgpu no-op device), nano f32 masked: 8 x 128 10.24 ms, "
            "256 x 128 11.50 ms") in table, table
    assert "wgpu (time)" in table
    assert table.count("| berthash |") == 9 and table.count("| pytorch-eager |") == 2

    # Without an autotuned row, the target is judged on the row without autotune, said so.
    untuned = [{**row("berthash", 256, 4.5e6, True), "autotune": False}, row("pytorch-eager", 256, 3e6)]
    with tempfile.TemporaryDirectory() as d:
        results = Path(d) / "results.jsonl"
        results.write_text("\n".join(json.dumps(r) for r in untuned) + "\n")
        table = report("table", str(results))
    assert ("- nano bf16 masked 256 x 128: berthash (autotune off) 4,500,000 / PyTorch eager 3,000,000 "
            "tokens/s = **1.50x** (target 1.5x: met)") in table, table


def cubecl_table(rows):
    """A profile summary as CubeCL writes one: padded columns, a kernel name may hold " | "."""
    total = sum(r[2] for r in rows)
    line = "|" + "⎼" * 60 + "| "
    out = ["|" + "⎺" * 60 + "| ", "| Name | Duration | Num Computed | Ratio |", line]
    out += [f"| {name:<40} | {dur:<12} | {n:<3} | {share} % |" for name, dur, n, share in rows]
    out += [line, f"| Total | 1s | {total} | 100 % |", "|" + "⎯" * 60 + "| "]
    return "\n".join(out)


def test_kernels():
    matmul = "MatmulEntry | TensorArgs | DynamicScalar | __Lhs | DynamicSize | CudaRuntime"
    warmup = cubecl_table([("ElemwiseFuse | CudaRuntime", "2.5s", 900, 100)])
    parts = [
        [("CastElement | CudaRuntime", "20µs", 16, 80), ("ElemwiseFuse | CudaRuntime", "5µs", 5, 20)],
        [(matmul, "1.5ms", 10, 75), ("ElemwiseFuse | CudaRuntime", "500µs", 20, 25)],
        [(matmul, "3ms", 20, 90), ("ReduceKernel | TensorArgs | CudaRuntime", "333.3µs", 8, 10)],
        [("ReduceKernel | TensorArgs | CudaRuntime", "100µs", 45, 100)],
        [("ElemwiseFuse | CudaRuntime", "250µs", 45, 100)],
    ]
    # Per-launch lines come before the table of their part; the warm-up's are not the step's.
    trace = "| 75.762µs  | SliceAssignKernel | CudaRuntime"
    backward = [f"| 2.5ms      | {matmul}", "| 333.3µs    | ReduceKernel | TensorArgs | CudaRuntime",
                f"| 0.5ms      | {matmul}"]
    log = "\n".join([trace, warmup] + [cubecl_table(p) for p in parts[:2]] + backward
                     + [cubecl_table(p) for p in parts[2:]]) + "\n"
    tables = gpu_report.profile_tables(log)
    assert len(tables) == 6 and tables[2][0][0] == (matmul, 1.5, 10), tables[2]
    assert tables[0][1] == [("SliceAssignKernel | CudaRuntime", 0.075762)], tables[0]
    assert [round(ms, 4) for _, ms in tables[3][1]] == [2.5, 0.3333, 0.5], tables[3]
    assert gpu_report.short_kernel(matmul) == "MatmulEntry TensorArgs"
    assert gpu_report.short_kernel("KernelBinop | MulOp | CudaRuntime") == "KernelBinop MulOp"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "profile.log"
        path.write_text(log)
        row = {"ms_per_step": 7.5, "phases_ms": {"forward": 2.25, "total": 9.0}}
        md = report("kernels", str(path), "--title", "nano", "--row", json.dumps(row))
    # 21 + 30 + 28 + 45 + 45 kernels; 0.025 + 2 + 3.3333 + 0.1 + 0.25 ms.
    assert "| cast | 21 | 0.025 | - |" in md, md
    assert "| forward | 30 | 2.000 | 2.250 |" in md, md
    assert "| **step** | **169** | **5.708** | 9.000 |" in md, md
    assert "7.500 ms per step" in md, md
    assert "| MatmulEntry TensorArgs | 30 | 4.500 | 78.8% | forward, backward |" in md, md
    # The warm-up's table is not part of the step.
    assert "900" not in md
    slowest = md[md.index("## Slowest launches"):]
    assert "| backward | 1 | MatmulEntry TensorArgs | 2.500 |\n| backward | 3 | MatmulEntry TensorArgs | 0.500 |" in slowest, slowest
    assert "SliceAssign" not in slowest


if __name__ == "__main__":
    for name, fn in list(globals().items()):
        if name.startswith("test_") and callable(fn):
            fn()
            print(f"ok {name}")
