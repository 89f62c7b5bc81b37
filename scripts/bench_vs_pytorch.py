#!/usr/bin/env python3
"""Training throughput of berthash against the same step in PyTorch, on the same machine, in
the same invocation.

The PyTorch side is our transformers model (python/modeling_bert_hash.py: transformers' BERT
blocks with the hashed token embedding), trained as Hugging Face's Trainer does: AdamW
(torch.optim.AdamW, lr 1e-3, betas (0.9, 0.999), eps 1e-6, weight decay 0.01 except biases and
LayerNorm weights), linear warm-up schedule, clip_grad_norm_(1.0), zero_grad(set_to_none), the
loss read every N steps. The batches are packed (no padding), so the encoder gets no attention
mask, as in berthash. Two losses (variants):

  full-vocab  logits at every position, CrossEntropyLoss with ignore_index=-100 (what
              BertForMaskedLM(labels=...) and the Trainer's usual MLM step compute);
  masked      the encoder, then the MLM head on the masked rows only, cross-entropy on those.

The berthash side is `berthash bench --child --phase train [--full-vocab]` (the real Trainer
step, masked rows only unless --full-vocab), run as a subprocess for each repetition, on
--backend (default: the --device) in --precision. Repetitions alternate the sides (ours-masked,
torch-masked, ours-full, torch-full, ...) so that load from other processes hits both alike;
each side reports tokens/s over its timed steps after its own warm-up, and the table shows the
median over the repetitions.

PyTorch choices (each recorded in the JSON rows):
  --device cuda|cpu       where the PyTorch side runs (batches are copied from pinned host
                          memory each step, as berthash copies each step's batch)
  --precision f32|bf16    bf16: torch.autocast(bfloat16) around forward and loss, f32 master
                          weights and optimizer state (berthash's bf16 is the same recipe)
  --attn eager|sdpa       transformers' attention implementation (eager: explicit softmax;
                          sdpa: torch.nn.functional.scaled_dot_product_attention, flash or
                          memory-efficient kernels where they apply)
  --fused-adamw           AdamW(fused=True) if this torch and device accept it, else
                          foreach=True; the row says which ran ("adamw")
  --compile               torch.compile of the step's forward and loss (engine
                          "pytorch-compile"); --compile-backend picks the backend (inductor,
                          or aot_eager for a quick check of the capture without code generation)

Usage:
  cargo build --release -p berthash-cli
  .venv-parity/bin/python scripts/bench_vs_pytorch.py --size nano --batch 32 --seq 128 \\
      [--steps 6] [--warmup 2] [--reps 3] [--threads 2] [--losses masked,full] [--json]
  # on a GPU: PyTorch only, bf16, SDPA, fused AdamW, two batch sizes
  python3 scripts/bench_vs_pytorch.py --device cuda --precision bf16 --attn sdpa --fused-adamw \\
      --sides pytorch --losses masked --batch 256,1024 --json
"""

import argparse
import json
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
# Variant names in the rows (the --losses names are the short forms).
VARIANTS = {"masked": "masked", "full": "full-vocab"}


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


def active_attention(model):
    """The attention implementation the layers actually run: transformers 4.x picks a class per
    layer at construction (BertSelfAttention or BertSdpaSelfAttention); 5.x has one class that
    dispatches on config._attn_implementation at each call."""
    import transformers

    layer = model.bert.encoder.layer[0].attention.self
    if int(transformers.__version__.split(".")[0]) < 5:
        return "sdpa" if "Sdpa" in type(layer).__name__ else "eager"
    config = getattr(layer, "config", model.config)
    return config._attn_implementation or "eager"


class TorchSide:
    def __init__(self, size, batch, seq, threads, device="cpu", precision="f32", attn="eager",
                 fused_adamw=False, compile_backend=None):
        import torch

        sys.path.insert(0, str(REPO))
        from python.configuration_bert_hash import BertHashConfig
        from python.modeling_bert_hash import BertHashForMaskedLM, BertHashPreTrainedModel

        if device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("bench_vs_pytorch: --device cuda, but torch sees no CUDA device")
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
        # The BERT Hash classes do not declare SDPA support (so loading them with
        # trust_remote_code picks eager); the BERT blocks inside are transformers' own and run
        # either. Declare it in this process (every class the model builds checks it), and ask
        # for the implementation before construction (4.x picks the attention class then; 5.x
        # reads the config at each call).
        if attn == "sdpa":
            BertHashPreTrainedModel._supports_sdpa = True
        config._attn_implementation = attn
        model = BertHashForMaskedLM(config)
        model.config._attn_implementation = attn
        self.attn = active_attention(model)
        if self.attn != attn:
            raise SystemExit(f"bench_vs_pytorch: asked for --attn {attn}, the model runs {self.attn}")

        self.torch = torch
        self.device = torch.device(device)
        self.precision = precision
        self.model = model.to(self.device)
        self.model.train()
        no_decay = ("bias", "LayerNorm.weight")
        params = list(self.model.named_parameters())
        groups = [
            {"params": [p for n, p in params if not any(k in n for k in no_decay)], "weight_decay": 0.01},
            {"params": [p for n, p in params if any(k in n for k in no_decay)], "weight_decay": 0.0},
        ]
        adamw = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-6)
        self.optimizer = None
        self.adamw = "default"
        if fused_adamw:
            try:
                self.optimizer = torch.optim.AdamW(groups, fused=True, **adamw)
                self.adamw = "fused"
            except (RuntimeError, ValueError, TypeError) as e:
                print(f"AdamW(fused=True) refused ({e}); using foreach=True", file=sys.stderr)
                self.optimizer = torch.optim.AdamW(groups, foreach=True, **adamw)
                self.adamw = "foreach"
        if self.optimizer is None:
            self.optimizer = torch.optim.AdamW(groups, **adamw)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda step: min(1.0, (step + 1) / 100)
        )
        gen = torch.Generator().manual_seed(17)
        pin = self.device.type == "cuda"
        self.batches = [
            {k: (v.pin_memory() if pin else v) for k, v in synthetic_batch(torch, gen, batch, seq).items()}
            for _ in range(4)
        ]
        self.i = 0
        self.tokens = batch * seq

        # The part of the step torch.compile sees: forward and loss (backward goes through
        # AOTAutograd; the optimizer step stays eager, as the Trainer runs it).
        self.compile_backend = compile_backend
        self.losses = {"masked": self._masked_loss, "full": self._full_loss}
        if compile_backend:
            self.losses = {
                k: torch.compile(f, backend=compile_backend, dynamic=False) for k, f in self.losses.items()
            }

    def _encode(self, input_ids, token_type_ids):
        bert = self.model.bert
        embedded = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        return bert.encoder(embedded, attention_mask=None)[0]

    def _masked_loss(self, input_ids, token_type_ids, positions, masked_labels, labels):
        hidden = self._encode(input_ids, token_type_ids)
        rows = hidden.reshape(-1, hidden.shape[-1])[positions]
        logits = self.model.cls(rows)
        return self.torch.nn.functional.cross_entropy(logits.float(), masked_labels)

    def _full_loss(self, input_ids, token_type_ids, positions, masked_labels, labels):
        hidden = self._encode(input_ids, token_type_ids)
        logits = self.model.cls(hidden)
        return self.torch.nn.functional.cross_entropy(
            logits.float().view(-1, VOCAB), labels.view(-1), ignore_index=-100
        )

    def _autocast(self):
        torch = self.torch
        if self.precision == "bf16":
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return torch.autocast(self.device.type, enabled=False)

    def _batch(self):
        b = self.batches[self.i % len(self.batches)]
        self.i += 1
        return {k: v.to(self.device, non_blocking=True) for k, v in b.items()}

    def sync(self):
        if self.device.type == "cuda":
            self.torch.cuda.synchronize()

    def step(self, loss_kind):
        torch = self.torch
        b = self._batch()
        with self._autocast():
            loss = self.losses[loss_kind](
                b["input_ids"], b["token_type_ids"], b["positions"], b["masked_labels"], b["labels"]
            )
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    def infer(self):
        b = self._batch()
        with self.torch.no_grad(), self._autocast():
            return self._encode(b["input_ids"], b["token_type_ids"]).float().sum()

    def measure(self, loss_kind, steps, warmup, sync_every, phase="train"):
        """Median tokens/s over repetitions of `sync_every` steps, and the last loss read."""
        run = self.infer if phase == "infer" else (lambda: self.step(loss_kind))
        was_training = self.model.training
        self.model.train(phase == "train")
        for _ in range(warmup):
            run()
        self.sync()
        rates = []
        done = 0
        last = None
        while done < steps:
            n = min(sync_every, steps - done)
            start = time.perf_counter()
            values = [run() for _ in range(n)]
            last = float(self.torch.stack(values).mean())  # the host read, every n steps
            rates.append(n * self.tokens / (time.perf_counter() - start))
            done += n
        self.model.train(was_training)
        return statistics.median(rates), last, rates

    def describe(self):
        torch = self.torch
        d = {
            "attn": self.attn,
            "adamw": self.adamw,
            "autocast": "bf16" if self.precision == "bf16" else None,
            "compile": self.compile_backend,
            "attention_mask": "none",
            "torch": torch.__version__,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
        if self.device.type == "cuda":
            d["device_name"] = torch.cuda.get_device_name(self.device)
        return d


def ours(binary, backend, precision, size, batch, seq, loss_kind, steps, warmup, sync_every):
    cmd = [
        str(binary), "bench", "--child", "--json", "--phase", "train",
        "--backend", backend, "--precision", precision,
        "--size", size, "--batch", str(batch), "--seq", str(seq),
        "--steps", str(steps), "--warmup", str(warmup), "--sync-every", str(sync_every),
    ]
    if loss_kind == "full":
        cmd.append("--full-vocab")
    run = subprocess.run(cmd, capture_output=True, text=True)
    if run.returncode != 0:
        raise SystemExit(f"bench_vs_pytorch: {' '.join(cmd)} failed:\n{run.stderr.strip()}")
    line = [l for l in run.stdout.splitlines() if l.startswith("{")][-1]
    return json.loads(line)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="nano", choices=sorted(PRESETS))
    p.add_argument("--batch", default="32", help="rows per batch; a comma list sweeps")
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--steps", type=int, default=6, help="timed steps per repetition and side")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--sync-every", type=int, default=2, help="steps between loss reads")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch.set_num_threads")
    p.add_argument("--losses", default="masked,full", help="masked, full (full vocab) or both")
    p.add_argument("--phase", default="train", choices=["train", "infer"],
                   help="infer: the encoder forward without gradients (PyTorch side only)")
    p.add_argument("--sides", default="berthash,pytorch", help="which sides to run")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="the PyTorch side's device")
    p.add_argument("--backend", choices=["cpu", "wgpu", "cuda"],
                   help="the berthash side's --backend (default: the --device)")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                   help="both sides; PyTorch's bf16 is autocast with f32 master weights")
    p.add_argument("--attn", default="eager", choices=["eager", "sdpa"])
    p.add_argument("--fused-adamw", action="store_true",
                   help="AdamW(fused=True), else foreach=True if fused is refused")
    p.add_argument("--compile", action="store_true", help="torch.compile the forward and loss")
    p.add_argument("--compile-backend", default="inductor",
                   help="torch.compile backend (inductor; aot_eager checks the capture only)")
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    p.add_argument("--berthash", default=str(target / "release" / "berthash"),
                   help="the release binary (default: $CARGO_TARGET_DIR or target/, release/berthash)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per measurement (engine, backend, precision, size, batch, "
                        "seq, phase, variant, tokens_per_s, ...)")
    args = p.parse_args()

    import torch
    import transformers

    kinds = [k for k in args.losses.split(",") if k]
    for k in kinds:
        if k not in VARIANTS:
            p.error(f"--losses: unknown loss {k!r} (masked, full)")
    sides = [s for s in args.sides.split(",") if s]
    for s in sides:
        if s not in ("berthash", "pytorch"):
            p.error(f"--sides: unknown side {s!r} (berthash, pytorch)")
    if args.phase == "infer":
        if "berthash" in sides:
            p.error("--phase infer times the PyTorch side only: pass --sides pytorch "
                    "(berthash: `berthash bench --phase infer`)")
        kinds = ["masked"]  # one forward; the loss kind does not apply
    batches = [int(b) for b in args.batch.split(",") if b]
    backend = args.backend or args.device
    engine = "pytorch-compile" if args.compile else "pytorch-eager"
    common = {"size": args.size, "seq": args.seq, "precision": args.precision, "phase": args.phase}

    rows = []
    load_before = load_avg()
    for batch in batches:
        load_batch = load_avg()
        side = None
        if "pytorch" in sides:
            side = TorchSide(args.size, batch, args.seq, args.threads, device=args.device,
                             precision=args.precision, attn=args.attn, fused_adamw=args.fused_adamw,
                             compile_backend=args.compile_backend if args.compile else None)
        results = {}
        for rep in range(args.reps):
            for k in kinds:
                if "berthash" in sides:
                    m = ours(args.berthash, backend, args.precision, args.size, batch, args.seq, k,
                             args.steps, args.warmup, args.sync_every)
                    results.setdefault(("berthash", k), []).append(m)
                    print(f"rep {rep} berthash {batch}x{args.seq} {k:6} {m['tokens_per_s']:11.0f} "
                          f"tokens/s (loss {m.get('loss')})", file=sys.stderr)
                if side is not None:
                    rate, loss, _ = side.measure(k, args.steps, args.warmup, args.sync_every, args.phase)
                    results.setdefault(("pytorch", k), []).append({"tokens_per_s": rate, "loss": loss})
                    what = f"(loss {loss:.3f})" if args.phase == "train" else "(encoder forward)"
                    print(f"rep {rep} {engine} {batch}x{args.seq} {k:6} {rate:11.0f} tokens/s {what}",
                          file=sys.stderr)
        for (who, k), runs in results.items():
            rates = [r["tokens_per_s"] for r in runs]
            row = {
                "engine": "berthash" if who == "berthash" else engine,
                "backend": backend if who == "berthash" else args.device,
                **common,
                "batch": batch,
                "variant": VARIANTS[k] if args.phase == "train" else "encoder",
                "tokens_per_s": statistics.median(rates),
                "tokens_per_s_reps": [round(r, 1) for r in rates],
                "steps": args.steps,
                "warmup": args.warmup,
                "loss": runs[-1].get("loss") if args.phase == "train" else None,
            }
            if who == "berthash":
                row["peak_rss_mib"] = runs[-1].get("peak_rss_mib")
            else:
                row.update(side.describe())
                row["threads"] = args.threads
                row["transformers"] = transformers.__version__
            if args.json:  # as each batch size finishes, so a time-out keeps the rows done
                row["loadavg_before"] = [round(x, 2) for x in load_batch]
                row["loadavg_after"] = [round(x, 2) for x in load_avg()]
                print(json.dumps(row), flush=True)
            rows.append(row)
        del side
    load_after = load_avg()

    if args.json:
        return
    print(f"{args.size} x{args.seq}, {args.precision}, torch {torch.__version__} on {args.device} "
          f"({args.threads} threads, attention {args.attn}), transformers {transformers.__version__}, "
          f"{args.reps} reps x {args.steps} steps; load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print(f"{'engine':16} {'batch':>6} {'variant':11} {'tokens/s (median)':>18} {'all reps':>30}")
    for r in rows:
        reps = " ".join(f"{x:.0f}" for x in r["tokens_per_s_reps"])
        print(f"{r['engine']:16} {r['batch']:>6} {r['variant']:11} {r['tokens_per_s']:18.0f} {reps:>30}")
    by = {(r["engine"], r["batch"], r["variant"]): r["tokens_per_s"] for r in rows}
    for batch in batches:
        for k in kinds:
            v = VARIANTS[k]
            if ("berthash", batch, v) in by and (engine, batch, v) in by:
                print(f"ratio berthash/{engine} ({batch}x{args.seq}, {v}): "
                      f"{by[('berthash', batch, v)] / by[(engine, batch, v)]:.2f}x")


if __name__ == "__main__":
    main()
