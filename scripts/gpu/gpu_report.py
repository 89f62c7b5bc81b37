#!/usr/bin/env python3
"""Helpers of scripts/gpu_check.sh (standard library only): FLOP counts and MFU, the rows of
results.jsonl, the CUDA-vs-CPU loss check, table.md, and kernels.md (a step's kernels from
CubeCL's profiler).

  gpu_report.py flops --size nano --seq 128 --variant masked --phase train
  gpu_report.py annotate --engine berthash --set card="NVIDIA H100" < bench.jsonl >> results.jsonl
  gpu_report.py reference RUN_DIR --out scripts/gpu/cpu_reference.json --arg ... (once, on a CPU)
  gpu_report.py check --ref cpu_reference.json --f32 RUN_DIR --bf16 RUN_DIR
  gpu_report.py table results.jsonl --env env.json > table.md
  gpu_report.py kernels cubecl-profile.log --title "..." --row '{...}' > kernels.md

FLOPs per token (matrix products only, 2 FLOPs per multiply-add; layer norms, softmax, GELU,
embedding gathers and the optimizer are left out). With hidden H, layers L, intermediate I,
projections P (the hashed table's width), vocabulary V, sequence S:

  encoder   E = 2PH + L (8H^2 + 4HI + 4SH)     projection of the token table; Q, K, V, output
                                               (4 x 2H^2); the two FFN layers (2 x 2HI); scores
                                               QK^T and the weighted sum AV (2 x 2SH)
  MLM head  M = 2H^2 + 2HV                     transform dense and decoder, per row with logits
  train     3 (E + f M)                        backward = 2 x forward; f = 0.15 (masked: logits
                                               at the masked rows only) or 1 (full-vocab)
  infer     E                                  the encoder forward (`berthash bench --phase infer`)

nano (H 128, L 2, I 512, P 16, V 30522) at S = 128: E = 921,600; M = 7,846,400; a masked
training step costs 3 (921,600 + 0.15 x 7,846,400) = 6,295,680 FLOPs per token (6.3 MFLOP), a
full-vocab one 26,304,000. MFU = tokens/s x FLOPs per token / the card's bf16 matrix rate
(--peak-tflops, 790 by default: the rate measured on these H100/H200 machines).
"""

import argparse
import json
import math
import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench_vs_pytorch import PRESETS, VOCAB  # noqa: E402  (no torch import at module level)

MASKED_FRACTION = 0.15
PEAK_TFLOPS = 790.0


def flops_per_token(size, seq, variant, phase):
    hidden, layers, _heads, inter, proj, _max_pos = PRESETS[size]
    h, s = hidden, seq
    encoder = 2 * proj * h + layers * (8 * h * h + 4 * h * inter + 4 * s * h)
    head = 2 * h * h + 2 * h * VOCAB
    if phase == "infer":
        return float(encoder)
    if phase != "train":
        return None
    fraction = 1.0 if variant == "full-vocab" else MASKED_FRACTION
    return 3.0 * (encoder + fraction * head)


def parse_sets(pairs):
    """k=v pairs; v as JSON when it parses (numbers, true/false), else a string."""
    out = {}
    for pair in pairs or []:
        key, _, value = pair.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def annotate(args):
    extra = parse_sets(args.set)
    for line in sys.stdin:
        line = line.strip()
        if not line.startswith("{"):
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            print(f"annotate: not JSON: {line[:200]}", file=sys.stderr)
            continue
        if args.engine:
            row.setdefault("engine", args.engine)
        for key, value in extra.items():
            row.setdefault(key, value)
        row.setdefault("variant", "masked")
        if row.get("phase") in ("train", "infer") and row.get("size") in PRESETS:
            fpt = flops_per_token(row["size"], int(row["seq"]), row["variant"], row["phase"])
            row["flop_per_token"] = fpt
            rate = row.get("tokens_per_s")
            if isinstance(rate, (int, float)) and math.isfinite(rate):
                row["tflops"] = round(rate * fpt / 1e12, 3)
                row["mfu"] = round(rate * fpt / (args.peak_tflops * 1e12), 5)
                row["peak_tflops"] = args.peak_tflops
        print(json.dumps(row), flush=True)


def step_losses(run_dir):
    """{step: loss} of a run's metrics.jsonl (step records only)."""
    losses = {}
    with open(Path(run_dir) / "metrics.jsonl") as f:
        for line in f:
            rec = json.loads(line)
            if rec.get("kind") == "train" and "loss" in rec:  # not the "eval" records
                losses[int(rec["step"])] = float(rec["loss"])
    return losses


def reference(args):
    losses = step_losses(args.run_dir)
    steps = sorted(losses)
    if steps[:20] != list(range(1, 21)):
        raise SystemExit("reference: the run must log every step (--log-every 1) from step 1")
    summary = json.loads((Path(args.run_dir) / "summary.json").read_text())
    ref = {
        "what": "berthash pretrain on the CPU backend: the per-step losses CUDA must reproduce",
        "command": args.command,
        "args": args.arg,
        "config": args.config,
        "steps": summary["steps"],
        "precision": summary["precision"],
        "tokens_per_s_cpu": round(summary["tokens_per_s"], 1),
        "machine": args.machine,
        "losses_first20": [losses[s] for s in range(1, 21)],
        "loss_step300": losses.get(300),
        "losses_every10": {str(s): losses[s] for s in steps if s % 10 == 0},
    }
    Path(args.out).write_text(json.dumps(ref, indent=1) + "\n")
    print(f"reference: {args.out}: step 1 {ref['losses_first20'][0]:.4f}, step 20 "
          f"{ref['losses_first20'][19]:.4f}, step 300 {ref['loss_step300']}")


def check(args):
    """The cuda-vs-cpu line: what must hold, measured (missing runs give nulls and pass false)."""
    ref = json.loads(Path(args.ref).read_text())
    line = {"engine": "berthash", "check": "cuda-vs-cpu", "size": "nano"}
    runs = {}
    for name, run_dir in (("f32", args.f32), ("bf16", args.bf16)):
        try:
            runs[name] = step_losses(run_dir)
        except (OSError, ValueError) as e:
            print(f"check: {name} run {run_dir}: {e}", file=sys.stderr)
            runs[name] = {}
    f32, bf16 = runs["f32"], runs["bf16"]
    cpu20 = ref["losses_first20"]
    diffs = [abs(f32[s] - cpu20[s - 1]) / abs(cpu20[s - 1]) for s in range(1, 21) if s in f32]
    line["max_rel_diff_first20"] = max(diffs) if len(diffs) == 20 else None
    line["loss_f32_step300"] = f32.get(300)
    line["loss_bf16_step300"] = bf16.get(300)
    line["loss_cpu_step300"] = ref.get("loss_step300")
    line["rel_diff_bf16_vs_f32_step300"] = (
        abs(bf16[300] - f32[300]) / abs(f32[300]) if 300 in f32 and 300 in bf16 else None
    )
    line["rel_diff_f32_vs_cpu_step300"] = (
        abs(f32[300] - ref["loss_step300"]) / abs(ref["loss_step300"])
        if 300 in f32 and ref.get("loss_step300") else None
    )
    line["nan_free"] = bool(f32) and bool(bf16) and all(
        math.isfinite(v) for v in list(f32.values()) + list(bf16.values())
    )
    line["batch"] = int(ref["args"]["batch-size"]) if "batch-size" in ref["args"] else None
    line["seq"] = 128
    limits = {"f32_first20_rel": 1e-3, "step300_below": 7.5, "bf16_vs_f32_rel": 0.02}
    line["limits"] = limits
    ok = (
        line["nan_free"]
        and line["max_rel_diff_first20"] is not None
        and line["max_rel_diff_first20"] <= limits["f32_first20_rel"]
        and line["loss_f32_step300"] is not None and line["loss_f32_step300"] < limits["step300_below"]
        and line["loss_bf16_step300"] is not None and line["loss_bf16_step300"] < limits["step300_below"]
        and line["rel_diff_bf16_vs_f32_step300"] is not None
        and line["rel_diff_bf16_vs_f32_step300"] <= limits["bf16_vs_f32_rel"]
    )
    line["pass"] = bool(ok)
    line.update(parse_sets(args.set))
    print(json.dumps(line), flush=True)


DURATION = re.compile(r"^([0-9.]+)(ns|µs|us|ms|s)$")
TO_MS = {"ns": 1e-6, "µs": 1e-3, "us": 1e-3, "ms": 1.0, "s": 1e3}


def profile_tables(text):
    """CubeCL's profile summaries in a log (one per device sync, oldest first), each a pair: the
    table's rows (kernel, milliseconds, launches), and the launches logged since the previous
    table, in order (kernel, milliseconds). A kernel's name may hold " | ": a table's columns are
    split from the right."""
    tables, rows, launches = [], None, []
    for line in text.splitlines():
        if line.startswith("| Name "):
            rows = []
            continue
        if rows is None:
            # One launch: "| 12.3µs     | Kernel | Args".
            cells = line.split(" | ", 1)
            m = DURATION.match(cells[0].removeprefix("| ").strip()) if len(cells) == 2 else None
            if m and line.startswith("| "):
                launches.append((cells[1].strip(), float(m[1]) * TO_MS[m[2]]))
            continue
        if not line.startswith("| "):
            continue
        cells = [c.strip() for c in line.strip().strip("|").rsplit(" | ", 3)]
        if len(cells) != 4:
            continue
        name, duration, count, _ratio = cells
        if name == "Total":
            tables.append((rows, launches))
            rows, launches = None, []
            continue
        m = DURATION.match(duration)
        if m and count.isdigit():
            rows.append((name, float(m[1]) * TO_MS[m[2]], int(count)))
    return tables


def short_kernel(name):
    """A kernel's name without its runtime and generic arguments: `KernelBinop MulOp`."""
    parts = [p for p in name.split(" | ")
             if not (p.startswith("__") or p.startswith("Dynamic") or p.endswith("Runtime"))]
    return " ".join(parts[:2]) or name


def kernels(args):
    """kernels.md: the kernels of the last profiled training step, by part and by kernel."""
    parts = args.parts.split(",")
    tables = profile_tables(Path(args.log).read_text(errors="replace"))
    if len(tables) < len(parts):
        raise SystemExit(f"kernels: {len(tables)} profile tables in {args.log}, {len(parts)} parts expected")
    step = {part: rows for part, (rows, _) in zip(parts, tables[-len(parts):])}
    launches = [(part, i, name, ms) for part, (_, ls) in zip(parts, tables[-len(parts):])
                for i, (name, ms) in enumerate(ls, 1)]
    row = json.loads(args.row) if args.row else {}
    wall = row.get("phases_ms") or {}
    out = [f"# Kernels of one training step: {args.title}", "",
           "CubeCL's profiler times each kernel alone (a sync around each launch): GPU time without "
           "overlap. The parts end as `bench --breakdown` ends them; the wall-clock column is that "
           "breakdown from an unprofiled run of the same configuration, where there is one.", "",
           "| part | kernels | GPU ms | wall ms (breakdown) |", "|---|---|---|---|"]
    total_n, total_ms = 0, 0.0
    for part, rows in step.items():
        n, ms = sum(r[2] for r in rows), sum(r[1] for r in rows)
        total_n, total_ms = total_n + n, total_ms + ms
        w = wall.get(part)
        out.append(f"| {part} | {n} | {ms:.3f} | {'-' if w is None else format(w, '.3f')} |")
    w = wall.get("total")
    out.append(f"| **step** | **{total_n}** | **{total_ms:.3f}** | {'-' if w is None else format(w, '.3f')} |")
    if row.get("ms_per_step") is not None:
        out += ["", f"Unprofiled, without syncs between the parts: {row['ms_per_step']:.3f} ms per step."]
    by_kernel = {}
    for part, rows in step.items():
        for name, ms, n in rows:
            k = by_kernel.setdefault(short_kernel(name), [0.0, 0, set()])
            k[0] += ms
            k[1] += n
            k[2].add(part)
    out += ["", "## By kernel", "", "| kernel | launches | GPU ms | share | parts |", "|---|---|---|---|---|"]
    for name, (ms, n, where) in sorted(by_kernel.items(), key=lambda kv: -kv[1][0])[:args.top]:
        share = 100 * ms / total_ms if total_ms else 0.0
        out.append(f"| {name} | {n} | {ms:.3f} | {share:.1f}% | {', '.join(p for p in parts if p in where)} |")
    if launches:
        out += ["", "## Slowest launches", "",
                "Launch `n` of a part is its n-th kernel, in the order the step ran them.", "",
                "| part | n | kernel | GPU ms |", "|---|---|---|---|"]
        for part, i, name, ms in sorted(launches, key=lambda l: -l[3])[:args.top]:
            out.append(f"| {part} | {i} | {short_kernel(name)} | {ms:.3f} |")
    print("\n".join(out))
    print(f"kernels: {total_n} kernels, {total_ms:.3f} GPU ms in the step", file=sys.stderr)


def fmt_rate(v):
    return "-" if v is None else f"{v:,.0f}"


def table(args):
    rows, checks = [], []
    for line in Path(args.results).read_text().splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        (checks if "check" in r else rows).append(r)
    env = json.loads(Path(args.env).read_text()) if args.env and Path(args.env).exists() else {}
    out = ["# GPU check", ""]
    for key in ("card", "driver", "memory", "cpus", "cuda_path", "torch", "date", "commit", "features",
                "binary"):
        if env.get(key) not in (None, ""):
            out.append(f"- {key}: {env[key]}")
    out += ["", "| engine | backend | fusion | prec | size | phase | variant | batch x seq | tokens/s | "
            "ms/step | MFU | details |", "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        details = []
        if r.get("engine") == "berthash" and r.get("autotune") is False:
            details.append("autotune off")
        for key in ("attn", "adamw", "autocast", "compile", "format", "threads", "loss"):
            if r.get(key) is not None:
                v = r[key]
                details.append(f"{key} {v:.3f}" if isinstance(v, float) else f"{key} {v}")
        if r.get("first_step_s") is not None:
            details.append(f"first step {r['first_step_s']:.1f} s")
        mfu = r.get("mfu")
        out.append(
            f"| {r.get('engine')} | {r.get('backend')} | {r.get('fusion', '-')} | {r.get('precision')} | "
            f"{r.get('size')} | {r.get('phase')} | {r.get('variant')} | {r.get('batch')} x {r.get('seq')} | "
            f"{fmt_rate(r.get('tokens_per_s'))} | "
            f"{'-' if r.get('ms_per_step') is None else format(r['ms_per_step'], '.2f')} | "
            f"{'-' if mfu is None else format(100 * mfu, '.2f') + '%'} | {', '.join(details)} |"
        )

    # The target: berthash (fusion on) at least 1.5x PyTorch eager, nano bf16 masked training.
    def rate(engine, batch, fusion=None, autotune=True):
        for r in rows:
            if (r.get("engine") == engine and r.get("size") == "nano" and r.get("precision") == "bf16"
                    and r.get("phase") == "train" and r.get("variant") == "masked"
                    and r.get("batch") == batch and r.get("backend") == "cuda"
                    and (fusion is None or r.get("fusion") == fusion)
                    and (engine != "berthash" or r.get("autotune", True) == autotune)):
                return r.get("tokens_per_s")
        return None

    # The target is judged on the build users make (fusion and autotune on), else on the build
    # without autotune, said so.
    out += ["", "## Targets", ""]
    for batch in (256, 1024):
        tuned, untuned = rate("berthash", batch, True), rate("berthash", batch, True, autotune=False)
        ours, theirs = tuned or untuned, rate("pytorch-eager", batch)
        which = "berthash" if tuned else "berthash (autotune off)"
        if ours and theirs:
            ratio = ours / theirs
            out.append(f"- nano bf16 masked {batch} x 128: {which} {fmt_rate(ours)} / PyTorch eager "
                       f"{fmt_rate(theirs)} tokens/s = **{ratio:.2f}x** (target 1.5x: "
                       f"{'met' if ratio >= 1.5 else 'missed'})")
        else:
            out.append(f"- nano bf16 masked {batch} x 128: not measured (berthash {fmt_rate(ours)}, "
                       f"PyTorch eager {fmt_rate(theirs)})")
        if tuned and untuned:
            out.append(f"  - autotune off: {fmt_rate(untuned)} tokens/s ({untuned / tuned:.2f}x of on)")
        off = rate("berthash", batch, False)
        if tuned and off:
            out.append(f"  - fusion off: {fmt_rate(off)} tokens/s ({off / tuned:.2f}x of fusion on)")
    # The step's time by batch: what the smallest batch still costs is the part of the step that
    # a larger batch does not amortize (kernel launches, host work).
    by_batch = {}
    for r in rows:
        if (r.get("backend") == "cuda" and r.get("size") == "nano" and r.get("precision") == "bf16"
                and r.get("phase") == "train" and r.get("variant") == "masked"
                and r.get("tokens_per_s")):
            who = r.get("engine")
            if who == "berthash":
                on = {True: "on", False: "off"}
                who += (f" (fusion {on.get(r.get('fusion'), '?')}, "
                        f"autotune {on[r.get('autotune', True) is not False]})")
            ms = r.get("ms_per_step") or 1e3 * r["batch"] * r["seq"] / r["tokens_per_s"]
            by_batch.setdefault(f"{who}, nano bf16 masked", {})[r.get("batch")] = ms
    # The host's own work (wgpu's no-op device runs no kernel): the floor under every step time.
    for r in rows:
        if (r.get("backend") == "wgpu-noop" and r.get("size") == "nano" and r.get("phase") == "train"
                and r.get("variant") == "masked" and r.get("ms_per_step")):
            who = f"berthash host only (wgpu no-op device), nano {r.get('precision')} masked"
            by_batch.setdefault(who, {})[r.get("batch")] = r["ms_per_step"]
    for who, steps in by_batch.items():
        if len(steps) > 1:
            named = ", ".join(f"{b} x 128 {steps[b]:.2f} ms" for b in sorted(steps))
            out.append(f"- step time by batch, {who}: {named}")
    for c in checks:
        out.append(f"- CUDA vs CPU (nano, 300 steps, batch {c.get('batch')}): f32 first 20 losses max "
                   f"relative difference {c.get('max_rel_diff_first20')}, step-300 loss f32 "
                   f"{c.get('loss_f32_step300')}, bf16 {c.get('loss_bf16_step300')}, CPU "
                   f"{c.get('loss_cpu_step300')}: **{'pass' if c.get('pass') else 'FAIL'}**")
    data = {r.get("format", "parquet"): r for r in rows if r.get("phase") == "data"}
    pretok = [r for r in rows if r.get("phase") == "pretokenize"]
    train = [r["tokens_per_s"] for r in rows if r.get("phase") == "train" and r.get("engine") == "berthash"
             and r.get("backend") == "cuda" and r.get("size") == "nano" and r.get("tokens_per_s")]
    for fmt, d in data.items():
        what = {"parquet": "parquet, cold tokenizer cache", "bhtok": "token shards"}.get(fmt, fmt)
        line = f"- loader ({what}): {fmt_rate(d['tokens_per_s'])} tokens/s on {d.get('threads')} threads"
        if train:
            best = max(train)
            line += (f" = {d['tokens_per_s'] / best:.2f}x the fastest nano training rate here "
                     f"({fmt_rate(best)}; target 2x: {'met' if d['tokens_per_s'] >= 2 * best else 'missed'})")
        out.append(line)
    for r in rows:
        parts = r.get("phases_ms")
        if r.get("engine") == "berthash" and parts:
            named = ", ".join(f"{k} {parts[k]:.2f}" for k in ("cast", "forward", "backward", "clip", "optimizer")
                              if k in parts)
            out.append(f"- step parts, berthash {r.get('backend')} {r.get('precision')} {r.get('size')} "
                       f"{r.get('batch')} x {r.get('seq')}, fusion {r.get('fusion')}"
                       f"{'' if r.get('autotune', True) else ', autotune off'}: {named} ms "
                       f"(total {parts.get('total', float('nan')):.2f} ms with a sync after each part; "
                       f"{r.get('ms_per_step', float('nan')):.2f} ms per step without)")
    for p in pretok:
        out.append(f"- pretokenize: {fmt_rate(p['tokens_per_s'])} tokens/s on {p.get('threads')} threads")
    if args.skipped:
        out += ["", "Not run (time box or missing piece): " + ", ".join(dict.fromkeys(args.skipped))]
    print("\n".join(out))


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)

    f = sub.add_parser("flops", help="FLOPs per token of one configuration")
    f.add_argument("--size", default="nano", choices=sorted(PRESETS))
    f.add_argument("--seq", type=int, default=128)
    f.add_argument("--variant", default="masked", choices=["masked", "full-vocab"])
    f.add_argument("--phase", default="train", choices=["train", "infer"])

    a = sub.add_parser("annotate", help="JSON lines in, rows with engine, FLOPs and MFU out")
    a.add_argument("--engine")
    a.add_argument("--set", action="append", help="key=value added to each row (if absent)")
    a.add_argument("--peak-tflops", type=float, default=PEAK_TFLOPS)

    r = sub.add_parser("reference", help="the CPU reference JSON from a CPU run directory")
    r.add_argument("run_dir")
    r.add_argument("--out", required=True)
    r.add_argument("--command", required=True, help="the command that made the run")
    r.add_argument("--arg", type=lambda s: tuple(s.split("=", 1)), action="append", default=[],
                   help="flag=value given to pretrain (replayed on the GPU)")
    r.add_argument("--config", help="the --config file, relative to the repository")
    r.add_argument("--machine", default="")

    c = sub.add_parser("check", help="the cuda-vs-cpu line")
    c.add_argument("--ref", required=True)
    c.add_argument("--f32", required=True)
    c.add_argument("--bf16", required=True)
    c.add_argument("--set", action="append")

    t = sub.add_parser("table", help="table.md from results.jsonl")
    t.add_argument("results")
    t.add_argument("--env")
    t.add_argument("--skipped", nargs="*", default=[])

    k = sub.add_parser("kernels", help="kernels.md from a log of CubeCL's profiler (bench --breakdown)")
    k.add_argument("log")
    k.add_argument("--title", default="")
    k.add_argument("--parts", default="cast,forward,backward,clip,optimizer",
                   help="the step's parts, one profile table each, the last tables of the log")
    k.add_argument("--row", help="the unprofiled bench row (JSON) of the same configuration")
    k.add_argument("--top", type=int, default=20)

    args = p.parse_args()
    if args.cmd == "flops":
        print(int(flops_per_token(args.size, args.seq, args.variant, args.phase)))
    elif args.cmd == "annotate":
        annotate(args)
    elif args.cmd == "reference":
        args.arg = dict(args.arg)
        reference(args)
    elif args.cmd == "check":
        check(args)
    elif args.cmd == "table":
        table(args)
    elif args.cmd == "kernels":
        kernels(args)


if __name__ == "__main__":
    main()
