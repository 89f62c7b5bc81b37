"""Sentence-embedding training parity (--long only): `berthash train-embeddings` against
sentence-transformers' own training (`SentenceTransformerTrainer` with `CoSENTLoss(scale=20)`),
from the same exported checkpoint, on the same pairs, with the same loss, pooling (mean), batch
size, learning rate, schedule (linear, no warm-up, weight decay 0, clip 1.0), epochs and seeds.

- Checkpoint: the glue module's pre-trained femto (--pretrained RUN, or 120 MLM steps on the
  built-in sample), dropout 0.1, exported with `--sentence-transformers` (both sides start from
  this one directory).
- Data: STS-B's training file from the shared GLUE data, every tenth pair held out as the dev set
  (written to a scratch folder both sides read), scores 0..5 mapped onto [0, 1].
- Metric: Spearman correlation of cosine similarity with the gold scores on the dev pairs after
  training (sentence-transformers' `EmbeddingSimilarityEvaluator`, spearman_cosine; berthash's
  `eval_spearman_cosine` at the last step). PASS when the means over the seeds differ by at most
  1.5 points; the standard error of the difference is shown. Without --long: one SKIP row.
- The table goes to the "Sentence-embedding training parity" section of docs/benchmarks.md.
"""

import datetime
import json
import os
import statistics
import time

import torch

from .common import write_benchmarks_section
from . import glue

NAME = "embedding_training"
TITLE = "train-embeddings vs sentence-transformers' trainer: STS-B dev Spearman (--long)"
TOLERANCE = 1.5  # points of Spearman correlation x 100
SEEDS = 3
EPOCHS = 1
BATCH = 16
LR = 1e-3  # configs/embeddings/stsb.toml's
SCALE = 20.0
HEADING = "## Sentence-embedding training parity"


def pairs(path):
    rows = []
    with open(path, encoding="utf-8-sig") as f:
        header = next(f).rstrip("\n").split("\t")
        a, b, s = header.index("sentence1"), header.index("sentence2"), header.index("score")
        for line in f:
            cells = line.rstrip("\n").split("\t")
            if len(cells) == len(header):
                rows.append((cells[a], cells[b], float(cells[s])))
    return rows


def write_split(rows, folder):
    folder.mkdir(parents=True, exist_ok=True)
    train = [r for i, r in enumerate(rows) if i % 10 != 9]
    dev = [r for i, r in enumerate(rows) if i % 10 == 9]
    for name, part in (("train.tsv", train), ("dev.tsv", dev)):
        with open(folder / name, "w", encoding="utf-8") as f:
            f.write("sentence1\tsentence2\tscore\n")
            f.writelines(f"{a}\t{b}\t{s}\n" for a, b, s in part)
    return train, dev


def recipe(folder):
    path = folder / "recipe.toml"
    path.write_text(
        f'pooling = "mean"\nmax_seq_length = 128\nepochs = {EPOCHS}.0\n\n[data]\ntrain = "train.tsv"\n'
        'dev = "dev.tsv"\ntext_a = "sentence1"\ntext_b = "sentence2"\nscore = "score"\n'
        f'score_range = [0.0, 5.0]\n\n[loss]\nkind = "cosent"\nscale = {SCALE}\n\n'
        f"[optimizer]\nlr = {LR}\nweight_decay = 0.0\neps = 1e-8\nmax_grad_norm = 1.0\n\n"
        f"[train]\nbatch_size = {BATCH}\n")
    return path


def sentence_transformers_run(export, train, dev, seed, out):
    from datasets import Dataset
    from sentence_transformers import (SentenceTransformer, SentenceTransformerTrainer,
                                       SentenceTransformerTrainingArguments, losses)
    from sentence_transformers.evaluation import EmbeddingSimilarityEvaluator

    model = SentenceTransformer(str(export), trust_remote_code=True, device="cpu")
    data = Dataset.from_dict({"sentence1": [r[0] for r in train], "sentence2": [r[1] for r in train],
                              "score": [r[2] / 5.0 for r in train]})
    args = SentenceTransformerTrainingArguments(
        output_dir=str(out), num_train_epochs=EPOCHS, per_device_train_batch_size=BATCH, learning_rate=LR,
        warmup_ratio=0.0, lr_scheduler_type="linear", weight_decay=0.0, max_grad_norm=1.0, adam_epsilon=1e-8,
        seed=seed, data_seed=seed, save_strategy="no", eval_strategy="no", report_to="none", logging_steps=100,
        use_cpu=True, disable_tqdm=True)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=data,
                                         loss=losses.CoSENTLoss(model, scale=SCALE))
    trainer.train()
    evaluator = EmbeddingSimilarityEvaluator([r[0] for r in dev], [r[1] for r in dev], [r[2] / 5.0 for r in dev])
    scores = evaluator(model)
    return 100 * next(v for k, v in scores.items() if k.endswith("spearman_cosine"))


def mean_se(values):
    mean = statistics.mean(values)
    se = statistics.stdev(values) / len(values) ** 0.5 if len(values) > 1 else float("nan")
    return mean, se


def run(ctx, report):
    if not getattr(ctx, "long", False):
        report.skip("STS-B Spearman, berthash vs sentence-transformers", "runs with --long")
        return
    try:
        import datasets  # noqa: F401
        import sentence_transformers
    except ImportError as e:
        report.skip("STS-B Spearman", f"{e.name} is not installed (scripts/python_env.sh installs it)")
        return
    source = glue.shared_glue() / "STS-B" / "train.tsv"
    if not source.is_file():
        report.skip("STS-B Spearman", f"no {source} (set BERTHASH_SHARED)")
        return
    torch.set_num_threads(os.cpu_count())
    work = ctx.scratch(NAME)
    checkpoint, note = glue.pretrained_checkpoint(ctx, work)
    export = work / "st-export"
    ctx.berthash("export", "--from", checkpoint, "--out", export, "--sentence-transformers", "--force")
    data = work / "data"
    train, dev = write_split(pairs(source), data)
    config = recipe(work)
    seeds = list(range(42, 42 + (getattr(ctx, "seeds", None) or SEEDS)))
    ours, theirs, times = [], [], [0.0, 0.0]
    for seed in seeds:
        out = work / f"ours-{seed}"
        t0 = time.perf_counter()
        ctx.berthash("train-embeddings", "--config", config, "--model", export, "--data-dir", data,
                     "--out", out, "--seed", seed, "--overwrite")
        times[0] += time.perf_counter() - t0
        final = [json.loads(l) for l in open(out / "metrics.jsonl") if '"eval"' in l][-1]
        ours.append(100 * final["eval_spearman_cosine"])
        t0 = time.perf_counter()
        theirs.append(sentence_transformers_run(export, train, dev, seed, work / f"theirs-{seed}"))
        times[1] += time.perf_counter() - t0
    (m1, s1), (m2, s2) = mean_se(ours), mean_se(theirs)
    diff, se = m1 - m2, (s1 ** 2 + s2 ** 2) ** 0.5
    report.section = f"sentence-transformers {sentence_transformers.__version__}"
    report.add(f"STS-B dev Spearman, {len(seeds)} seeds a side", abs(diff) <= TOLERANCE,
               f"{m1:.2f} ± {s1:.2f}", f"sentence-transformers {m2:.2f} ± {s2:.2f}", f"{TOLERANCE} points",
               f"difference {diff:+.2f} ± {se:.2f}; {len(train)} train / {len(dev)} dev pairs; {note}")
    write_benchmarks(seeds, ours, theirs, diff, se, len(train), len(dev), note, times)


def write_benchmarks(seeds, ours, theirs, diff, se, n_train, n_dev, note, times):
    import sentence_transformers
    import transformers

    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    per = lambda xs: " / ".join(f"{x:.2f}" for x in xs)  # noqa: E731
    (m1, s1), (m2, s2) = mean_se(ours), mean_se(theirs)
    body = "\n".join([
        HEADING, "",
        "Generated by `tests/python/parity.py --long` (module `embedding_training`, see its docstring); each run "
        "replaces this section. Same exported checkpoint, STS-B pairs (every tenth training pair held out as dev), "
        f"CoSENTLoss (scale {SCALE:g}), mean pooling, batch {BATCH}, lr {LR:g}, {EPOCHS} epoch, linear decay "
        "without warm-up, weight decay 0, clip 1.0, dropout 0.1. CPU on both sides.", "",
        f"- date: {now}; torch {torch.__version__}, transformers {transformers.__version__}, "
        f"sentence-transformers {sentence_transformers.__version__}",
        f"- checkpoint: {note}", "",
        "| pairs (train / dev) | seeds | berthash Spearman x 100, mean ± s.e. (per seed) | sentence-transformers "
        "(per seed) | difference ± s.e. | time, all seeds (berthash / sentence-transformers) |",
        "|---|---|---|---|---|---|",
        f"| {n_train} / {n_dev} | {seeds[0]}-{seeds[-1]} | {m1:.2f} ± {s1:.2f} ({per(ours)}) | {m2:.2f} ± {s2:.2f} "
        f"({per(theirs)}) | {diff:+.2f} ± {se:.2f} | {times[0]:.0f} s / {times[1]:.0f} s |", ""])
    write_benchmarks_section(HEADING, body)
