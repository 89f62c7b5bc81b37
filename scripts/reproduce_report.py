#!/usr/bin/env python3
"""The card reproduction's report: reads what scripts/reproduce_card.sh left in OUT (one folder
per size) and writes OUT/reproduction.json and OUT/reproduction.md.

Per size: the pre-training run (recipe, steps, tokens seen, passes over the corpus, wall time,
final loss), the runs that were stopped and continued, and per task and seed the dev metrics at
the last epoch (what run_glue reports) and at the best evaluation, their mean and standard error
over seeds, the card's numbers, the majority-class baseline and whether the target holds.
Standard library only.

    python3 scripts/reproduce_report.py OUT
"""

import json
import math
import os
import platform
import subprocess
import sys
from pathlib import Path

# The published cards' dev results (run_glue: batch 32, lr 1e-4, 4 epochs, length 128).
CARD = {
    "femto": {"sst2": {"eval_accuracy": 0.7821}, "mrpc": {"eval_f1": 0.8122, "eval_accuracy": 0.6838}},
    "pico": {"sst2": {"eval_accuracy": 0.7878}, "mrpc": {"eval_f1": 0.8205, "eval_accuracy": 0.7083}},
    "nano": {"sst2": {"eval_accuracy": 0.8131}, "mrpc": {"eval_f1": 0.8172, "eval_accuracy": 0.7083}},
}
GLUE_FOLDER = {"sst2": "SST-2", "mrpc": "MRPC"}
# SST-2 counts as reproduced within this many accuracy points of the card.
SST2_TOLERANCE = 0.01


def read_json(path):
    with open(path) as f:
        return json.load(f)


def evals(run_dir):
    """The run's dev evaluations, in order, from metrics.jsonl."""
    out = []
    with open(run_dir / "metrics.jsonl") as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                if record.get("kind") == "eval":
                    out.append(record)
    return out


def metrics_only(record):
    return {k: v for k, v in record.items() if k.startswith("eval_")}


def mean_sem(values):
    n = len(values)
    if n == 0:
        return None, None
    mean = sum(values) / n
    if n == 1:
        return mean, None
    var = sum((v - mean) ** 2 for v in values) / (n - 1)
    return mean, math.sqrt(var / n)


def majority_class(glue_dir, task):
    """Accuracy and F1 (of label 1) of always predicting the dev set's most frequent label."""
    path = Path(glue_dir) / GLUE_FOLDER[task] / "dev.tsv"
    if not path.is_file():
        return None
    label_col = {"sst2": 1, "mrpc": 0}[task]
    labels = []
    with open(path, encoding="utf-8-sig") as f:
        next(f)
        for line in f:
            cells = line.rstrip("\n").split("\t")
            if len(cells) > label_col:
                labels.append(cells[label_col])
    top = max(set(labels), key=labels.count)
    acc = labels.count(top) / len(labels)
    positives = labels.count("1")
    f1 = 2 * positives / (positives + len(labels)) if top == "1" else 0.0
    return {"label": top, "eval_accuracy": acc, "eval_f1": f1}


def seed_runs(sweep_dir):
    runs = []
    for run_dir in sorted(sweep_dir.glob("seed*"), key=lambda p: int(p.name[4:])):
        summary_path = run_dir / "summary.json"
        if not summary_path.is_file():
            continue
        summary = read_json(summary_path)
        records = evals(run_dir)
        best_step = (summary.get("best_eval") or {}).get("step")
        best = next((r for r in records if r["step"] == best_step), records[-1] if records else {})
        runs.append({
            "seed": int(run_dir.name[4:]),
            "last_epoch": summary["final_eval"],
            "best": {"step": best.get("step"), **metrics_only(best)},
            "steps": summary["steps"],
            "wall_time_s": summary["wall_time_s"],
            "run_dir": str(run_dir),
        })
    return runs


def task_result(size, task, runs, glue_dir):
    card = CARD.get(size, {}).get(task, {})
    keys = sorted({k for r in runs for k in r["last_epoch"] if k != "eval_loss"})
    mean_last, sem_last, mean_best = {}, {}, {}
    for key in keys:
        mean_last[key], sem_last[key] = mean_sem([r["last_epoch"][key] for r in runs if key in r["last_epoch"]])
        mean_best[key], _ = mean_sem([r["best"][key] for r in runs if key in r["best"]])
    majority = majority_class(glue_dir, task)
    if len(runs) < 3:
        reproduced = None  # the targets are means over at least three seeds
    elif task == "sst2":
        reproduced = mean_last["eval_accuracy"] >= card["eval_accuracy"] - SST2_TOLERANCE
    else:
        reproduced = (
            majority is not None
            and mean_last["eval_accuracy"] > majority["eval_accuracy"]
            and mean_last["eval_f1"] >= card["eval_f1"]
        )
    return {
        "card": card,
        "majority_class": majority,
        "seeds": runs,
        "mean_last_epoch": mean_last,
        "stderr_last_epoch": sem_last,
        "mean_best": mean_best,
        "target": (
            f"mean last-epoch accuracy within {SST2_TOLERANCE * 100:g} point of the card"
            if task == "sst2"
            else "mean last-epoch accuracy above the majority class and F1 at or above the card"
        ),
        "reproduced": reproduced,
        "three_seeds_or_more": len(runs) >= 3,
    }


def pretraining(run_dir):
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        return None
    summary = read_json(summary_path)
    config = read_json(run_dir / "train_config.json")
    # Completed passes over the corpus: the data stream's epoch counter in the last checkpoint.
    state = read_json(Path(summary["checkpoint"]) / "state.json") if summary.get("checkpoint") else {}
    epoch = state.get("stream_position", {}).get("epoch")
    return {
        "steps": summary["steps"],
        "tokens_seen": summary["tokens_seen"],
        "passes_over_corpus_completed": epoch,
        "wall_time_s": summary["wall_time_s"],
        "tokens_per_s": summary["tokens_per_s"],
        "final_loss": summary["final_loss"],
        "final_eval": summary.get("final_eval"),
        "recipe": {
            "lr": config["optimizer"]["lr"],
            "batch_size": config["train"]["batch_size"],
            "max_length": config["data"]["max_length"],
            "warmup_steps": config["schedule"]["warmup_steps"],
            "weight_decay": config["optimizer"]["weight_decay"],
            "max_steps": config["train"]["max_steps"],
            "data": config["data"].get("files") or config["data"].get("paths"),
        },
    }


def curve(size_dir, pre, tasks):
    """SST-2 (last epoch and best, mean over the seeds run) against pre-training tokens: the
    checkpoints fine-tuned under curve/, and the final model."""
    points = []
    tokens_per_step = None
    if pre:
        tokens_per_step = pre["recipe"]["batch_size"] * pre["recipe"]["max_length"]

    def point(step, runs):
        return {
            "pretraining_step": step,
            "pretraining_tokens": step * tokens_per_step if tokens_per_step else None,
            "seeds": [r["seed"] for r in runs],
            "sst2_last_epoch_accuracy": mean_sem([r["last_epoch"]["eval_accuracy"] for r in runs])[0],
            "sst2_best_accuracy": mean_sem([r["best"]["eval_accuracy"] for r in runs])[0],
        }

    for step_dir in sorted((size_dir / "curve").glob("step-*"), key=lambda p: int(p.name[5:])):
        runs = seed_runs(step_dir)
        if runs:
            points.append(point(int(step_dir.name[5:]), runs))
    if pre and "sst2" in tasks:
        points.append(point(pre["steps"], tasks["sst2"]["seeds"]))
    return points


def continued(size_dir):
    path = size_dir / "continued.tsv"
    if not path.is_file():
        return []
    rows = [line.rstrip("\n").split("\t") for line in open(path) if line.strip()]
    return [{"run": r[0], "at": r[1], "from_checkpoint": r[2]} for r in rows]


def machine():
    cpu = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(l.split(":", 1) for l in lscpu.splitlines() if ":" in l)
        cpu = fields.get("Model name", cpu).strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return {"cpu": cpu, "logical_cpus": os.cpu_count()}


def pct(v):
    return "–" if v is None else f"{100 * v:.2f}"


def markdown(report):
    lines = [
        f"Machine: {report['machine']['cpu']}, {report['machine']['logical_cpus']} logical CPUs.",
        "",
        "| size | task | metric | card | majority class | last epoch, mean ± s.e. (seeds) | best, mean | reproduced |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for size, entry in report["sizes"].items():
        for task, result in entry["tasks"].items():
            n = len(result["seeds"])
            for metric in ["eval_accuracy", "eval_f1"] if task == "mrpc" else ["eval_accuracy"]:
                sem = result["stderr_last_epoch"].get(metric)
                last = result["mean_last_epoch"].get(metric)
                lines.append(
                    f"| {size} | {task} | {metric[5:]} | {pct(result['card'].get(metric))} | "
                    f"{pct((result['majority_class'] or {}).get(metric))} | {pct(last)}"
                    f"{'' if sem is None else ' ± ' + pct(sem)} ({n}) | {pct(result['mean_best'].get(metric))} | "
                    f"{'needs 3 seeds' if result['reproduced'] is None else ('yes' if result['reproduced'] else 'no')} |"
                )
    for size, entry in report["sizes"].items():
        pre = entry["pretraining"]
        if pre:
            lines += [
                "",
                f"{size} pre-training: {pre['steps']} steps, {pre['tokens_seen']:,} tokens "
                f"({pre['passes_over_corpus_completed']} complete passes over the corpus), final loss {pre['final_loss']:.3f}, "
                f"{pre['wall_time_s'] / 60:.0f} min at {pre['tokens_per_s']:,.0f} tokens/s.",
            ]
        if entry["continued"]:
            lines.append(f"{size}: stopped and continued: " + "; ".join(
                f"{c['run']} from {c['from_checkpoint']} ({c['at']})" for c in entry["continued"]))
        if entry["curve"]:
            lines += ["", f"{size}: SST-2 accuracy against pre-training tokens (mean over the seeds run)", "",
                      "| step | tokens | seeds | last epoch | best |", "|---|---|---|---|---|"]
            for p in entry["curve"]:
                seeds = ", ".join(map(str, p["seeds"]))
                lines.append(f"| {p['pretraining_step']} | {p['pretraining_tokens']:,} | {seeds} | "
                             f"{pct(p['sst2_last_epoch_accuracy'])} | {pct(p['sst2_best_accuracy'])} |")
    return "\n".join(lines) + "\n"


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    out = Path(sys.argv[1])
    glue_dir = os.environ.get("GLUE_DIR", "glue_data")
    sizes = {}
    for size_dir in sorted(p for p in out.iterdir() if p.is_dir() and (p / "pretrain").is_dir()):
        pre = pretraining(size_dir / "pretrain")
        tasks = {}
        for task in ["sst2", "mrpc"]:
            runs = seed_runs(size_dir / task)
            if runs:
                tasks[task] = task_result(size_dir.name, task, runs, glue_dir)
        sizes[size_dir.name] = {
            "pretraining": pre,
            "continued": continued(size_dir),
            "tasks": tasks,
            "curve": curve(size_dir, pre, tasks),
        }
    report = {"machine": machine(), "sizes": sizes}
    (out / "reproduction.json").write_text(json.dumps(report, indent=2) + "\n")
    md = markdown(report)
    (out / "reproduction.md").write_text(md)
    print(md, end="")
    print(f"report: {out / 'reproduction.json'}")


if __name__ == "__main__":
    main()
