#!/usr/bin/env python3
"""Training throughput of berthash against the same step in PyTorch, on the same machine, in
the same invocation.

The PyTorch side is our transformers model (python/modeling_bert_hash.py: transformers' BERT
blocks with the hashed token embedding), trained as Hugging Face's Trainer does: AdamW
(torch.optim.AdamW, lr 1e-3, betas (0.9, 0.999), eps 1e-6, weight decay 0.01 except biases and
LayerNorm weights), linear warm-up schedule, clip_grad_norm_(1.0), zero_grad(set_to_none), the
loss read every N steps. Two losses:

  full    BertHashForMaskedLM(labels=...): logits at every position, CrossEntropyLoss with
          ignore_index=-100 (the Trainer's usual MLM step);
  masked  the encoder, then the MLM head on the masked rows only, cross-entropy on those.

The berthash side is `berthash bench --child --phase train [--full-vocab]` (the real Trainer
step, masked rows only unless --full-vocab), run as a subprocess for each repetition.
Repetitions alternate the sides (ours-masked, torch-masked, ours-full, torch-full, ...) so that
load from other processes hits both alike; each side reports tokens/s over its timed steps
after its own warm-up, and the table shows the median over the repetitions.

Usage:
  cargo build --release -p berthash-cli
  .venv-parity/bin/python scripts/bench_vs_pytorch.py --size nano --batch 32 --seq 128 \
      [--steps 6] [--warmup 2] [--reps 3] [--threads 2] [--losses masked,full] [--json]
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

# berthash's presets (crates/berthash-model/src/config.rs): hidden, layers, heads,
# intermediate, projections, max positions.
PRESETS = {
    "femto": (64, 2, 2, 256, 4, 256),
    "pico": (80, 2, 2, 320, 8, 512),
    "nano": (128, 2, 2, 512, 16, 512),
}
VOCAB = 30522
MASK_ID = 103


def load_avg():
    try:
        return os.getloadavg()
    except OSError:
        return (float("nan"),) * 3


def synthetic_batch(torch, gen, batch, seq):
    """Random ids, exactly round(15%) of the positions selected, 80% of them -> [MASK]."""
    n = batch * seq
    labels_all = torch.randint(999, VOCAB, (n,), generator=gen)
    masked = int(round(n * 0.15))
    positions = torch.randperm(n, generator=gen)[:masked].sort().values
    input_ids = labels_all.clone()
    to_mask = positions[torch.rand(masked, generator=gen) < 0.8]
    input_ids[to_mask] = MASK_ID
    labels = torch.full((n,), -100, dtype=torch.long)
    labels[positions] = labels_all[positions]
    return {
        "input_ids": input_ids.view(batch, seq),
        "token_type_ids": torch.zeros(batch, seq, dtype=torch.long),
        "labels": labels.view(batch, seq),
        "positions": positions,
        "masked_labels": labels_all[positions],
    }


class TorchSide:
    def __init__(self, size, batch, seq, threads):
        import torch

        sys.path.insert(0, str(REPO))
        from python.configuration_bert_hash import BertHashConfig
        from python.modeling_bert_hash import BertHashForMaskedLM

        torch.set_num_threads(threads)
        torch.manual_seed(0)
        hidden, layers, heads, inter, proj, max_pos = PRESETS[size]
        config = BertHashConfig(
            projections=proj,
            vocab_size=VOCAB,
            hidden_size=hidden,
            num_hidden_layers=layers,
            num_attention_heads=heads,
            intermediate_size=inter,
            max_position_embeddings=max_pos,
        )
        self.torch = torch
        self.model = BertHashForMaskedLM(config)
        self.model.train()
        self.attn = getattr(config, "_attn_implementation", None)
        no_decay = ("bias", "LayerNorm.weight")
        params = list(self.model.named_parameters())
        groups = [
            {"params": [p for n, p in params if not any(k in n for k in no_decay)], "weight_decay": 0.01},
            {"params": [p for n, p in params if any(k in n for k in no_decay)], "weight_decay": 0.0},
        ]
        self.optimizer = torch.optim.AdamW(groups, lr=1e-3, betas=(0.9, 0.999), eps=1e-6)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / 100)
        )
        gen = torch.Generator().manual_seed(17)
        self.batches = [synthetic_batch(torch, gen, batch, seq) for _ in range(4)]
        self.i = 0
        self.tokens = batch * seq

    def step(self, loss_kind):
        torch = self.torch
        b = self.batches[self.i % len(self.batches)]
        self.i += 1
        if loss_kind == "full":
            loss = self.model(
                input_ids=b["input_ids"], token_type_ids=b["token_type_ids"], labels=b["labels"]
            ).loss
        else:
            hidden = self.model.bert(
                input_ids=b["input_ids"], token_type_ids=b["token_type_ids"]
            ).last_hidden_state
            rows = hidden.reshape(-1, hidden.shape[-1])[b["positions"]]
            logits = self.model.cls(rows)
            loss = torch.nn.functional.cross_entropy(logits, b["masked_labels"])
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def measure(self, loss_kind, steps, warmup, sync_every):
        for _ in range(warmup):
            self.step(loss_kind)
        rates = []
        done = 0
        last = None
        while done < steps:
            n = min(sync_every, steps - done)
            start = time.perf_counter()
            losses = [self.step(loss_kind) for _ in range(n)]
            last = float(self.torch.stack(losses).mean())  # the host read, every n steps
            rates.append(n * self.tokens / (time.perf_counter() - start))
            done += n
        return statistics.median(rates), last


def ours(binary, size, batch, seq, loss_kind, steps, warmup, sync_every):
    cmd = [
        str(binary), "bench", "--child", "--json", "--phase", "train",
        "--size", size, "--batch", str(batch), "--seq", str(seq),
        "--steps", str(steps), "--warmup", str(warmup), "--sync-every", str(sync_every),
    ]
    if loss_kind == "full":
        cmd.append("--full-vocab")
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    line = [l for l in out.splitlines() if l.startswith("{")][-1]
    m = json.loads(line)
    return m["tokens_per_s"], m.get("loss"), m.get("peak_rss_mib")


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="nano", choices=sorted(PRESETS))
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=6, help="timed steps per repetition and side")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--sync-every", type=int, default=2, help="steps between loss reads")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--losses", default="masked,full")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    p.add_argument("--berthash", default=str(target / "release" / "berthash"),
                   help="the release binary (default: $CARGO_TARGET_DIR or target/, release/berthash)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()

    import torch
    import transformers

    kinds = [k for k in args.losses.split(",") if k]
    side = TorchSide(args.size, args.batch, args.seq, args.threads)
    results = {(who, k): [] for who in ("berthash", "pytorch") for k in kinds}
    load_before = load_avg()
    for rep in range(args.reps):
        for k in kinds:
            rate, loss, _ = ours(args.berthash, args.size, args.batch, args.seq, k,
                                 args.steps, args.warmup, args.sync_every)
            results[("berthash", k)].append(rate)
            print(f"rep {rep} berthash {k:6} {rate:9.0f} tokens/s (loss {loss})", file=sys.stderr)
            rate, loss = side.measure(k, args.steps, args.warmup, args.sync_every)
            results[("pytorch", k)].append(rate)
            print(f"rep {rep} pytorch  {k:6} {rate:9.0f} tokens/s (loss {loss:.3f})", file=sys.stderr)
    load_after = load_avg()

    med = {key: statistics.median(v) for key, v in results.items()}
    env = {
        "size": args.size, "batch": args.batch, "seq": args.seq, "steps": args.steps,
        "warmup": args.warmup, "reps": args.reps, "threads": args.threads,
        "torch": torch.__version__, "transformers": transformers.__version__,
        "attn_implementation": side.attn,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in load_after],
    }
    if args.json:
        for (who, k), v in results.items():
            print(json.dumps({**env, "side": who, "loss": k, "tokens_per_s": med[(who, k)], "all": v}))
        return
    print(f"{args.size} {args.batch}x{args.seq}, torch {torch.__version__} ({args.threads} threads, "
          f"attention {side.attn}), transformers {transformers.__version__}, {args.reps} reps x "
          f"{args.steps} steps; load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print(f"{'side':10} {'loss':8} {'tokens/s (median)':>18} {'all reps':>28}")
    for (who, k), v in results.items():
        print(f"{who:10} {k:8} {med[(who, k)]:18.0f} {' '.join(f'{x:.0f}' for x in v):>28}")
    for k in kinds:
        print(f"ratio berthash/pytorch ({k}): {med[('berthash', k)] / med[('pytorch', k)]:.2f}x")
    if "masked" in kinds and "full" in kinds:
        print(f"ratio berthash masked / pytorch full: "
              f"{med[('berthash', 'masked')] / med[('pytorch', 'full')]:.2f}x")


if __name__ == "__main__":
    main()
