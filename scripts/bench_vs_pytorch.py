#!/usr/bin/env python3
"""Throughput of berthash against the same work in PyTorch (training and inference) and in
ONNX Runtime (inference), on the same machine, in the same invocation.

Engines (the rows' "engine"):
  berthash        `berthash bench --child --json --phase train|infer` (the real Trainer step, or
                  the encoder forward as predict/embed run it), a subprocess per repetition, on
                  --backend (default: the --device) in --precision, with RAYON_NUM_THREADS set
                  to --threads
  pytorch-eager   our transformers model (python/modeling_bert_hash.py: transformers' BERT
                  blocks with the hashed token embedding) in eager PyTorch; "pytorch-compile"
                  with --compile
  onnxruntime     --phase infer only, CPU, f32: that same model's encoder (model.bert, the same
                  weights) exported with torch.onnx.export(dynamo=False), i.e. the TorchScript
                  exporter, opset 17, dynamic batch and sequence axes, inputs input_ids,
                  token_type_ids, attention_mask (int64 [batch, seq]), output last_hidden_state;
                  run by an InferenceSession on CPUExecutionProvider with SessionOptions'
                  defaults (graph optimizations ORT_ENABLE_ALL, sequential execution) but
                  intra_op_num_threads = --threads and inter_op_num_threads = 1. This is the
                  common deployment path of a BERT encoder, untuned; the standard run uses 2
                  intra-op threads and 1 inter-op thread, the threads the other engines get.
                  At set-up its output on one batch must equal PyTorch's last_hidden_state
                  within 1e-4 (max abs), else the script stops: a wrong export is not timed.
                  --onnx-exporter berthash times `berthash export --head base --onnx` of the
                  same weights instead (engine "onnxruntime-ours"; the same inputs, output and
                  check); --onnx-exporter torch,berthash times both, alternating.

Training (--phase train, the default). PyTorch trains as Hugging Face's Trainer does: AdamW
(torch.optim.AdamW, lr 1e-3, betas (0.9, 0.999), eps 1e-6, weight decay 0.01 except biases and
LayerNorm weights), linear warm-up schedule, clip_grad_norm_(1.0), zero_grad(set_to_none), the
loss read every N steps. The batches are packed (no padding), so the encoder gets no attention
mask, as in berthash. Two losses (variants):

  full-vocab  logits at every position, CrossEntropyLoss with ignore_index=-100 (what
              BertForMaskedLM(labels=...) and the Trainer's usual MLM step compute);
  masked      the encoder, then the MLM head on the masked rows only, cross-entropy on those.

berthash's step computes the loss on the masked rows only unless --full-vocab.

Inference (--phase infer): the encoder forward (last_hidden_state, no gradients, dropout off)
over the same random ids, token types 0 and an all-ones attention mask on every side (what
berthash's predict/embed path sees for unpadded rows); variant "encoder".

Repetitions alternate the sides (berthash, pytorch, onnxruntime for each loss kind, then again)
so that load from other processes hits all alike; each side reports tokens/s (batch * seq *
steps / seconds) over its timed steps after its own warm-up, timed in groups of --sync-every
steps with one host read per group, and the table shows the median over the repetitions.
Every row carries a "cpu" object (lscpu's model name, sockets, cores per socket, threads per
core, logical CPUs, avx512f among the flags).

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
  # inference, three engines on CPU
  .venv-parity/bin/python scripts/bench_vs_pytorch.py --phase infer --size nano --batch 32 \\
      --seq 128 --sides berthash,pytorch,onnxruntime --threads 2 [--json]
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
import tempfile
import time
import warnings
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


def timed(run, read, steps, warmup, sync_every, tokens):
    """Tokens/s of each repetition of `sync_every` calls of `run` after `warmup` untimed ones;
    `read` takes each repetition's results to the host inside its timing. Returns the rates and
    the last read."""
    if warmup:
        read([run() for _ in range(warmup)])
    rates, last, done = [], None, 0
    while done < steps:
        n = min(sync_every, steps - done)
        start = time.perf_counter()
        last = read([run() for _ in range(n)])
        rates.append(n * tokens / (time.perf_counter() - start))
        done += n
    return rates, last


def cpu_info():
    """The CPU, from lscpu (falling back to /proc/cpuinfo): model name, sockets, cores per socket,
    threads per core, logical CPUs, and whether avx512f is among the flags."""
    fields = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True,
                             env={**os.environ, "LC_ALL": "C"}).stdout
        for line in out.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields.setdefault(key.strip(), value.strip())
    except (OSError, subprocess.CalledProcessError):
        pass

    def number(key):
        try:
            return int(fields[key])
        except (KeyError, ValueError):
            return None

    if "Model name" in fields and "Flags" in fields:
        return {
            "model_name": fields["Model name"],
            "sockets": number("Socket(s)"),
            "cores_per_socket": number("Core(s) per socket"),
            "threads_per_core": number("Thread(s) per core"),
            "logical_cpus": number("CPU(s)"),
            "avx512f": "avx512f" in fields["Flags"].split(),
            "source": "lscpu",
        }
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model_name": None, "logical_cpus": os.cpu_count(), "source": "os.cpu_count"}
    procs = [dict((k.strip(), v.strip()) for k, _, v in (l.partition(":") for l in block.splitlines()))
             for block in text.strip().split("\n\n")]
    first = procs[0]
    sockets = len({p.get("physical id") for p in procs}) or None
    cores = int(first["cpu cores"]) if first.get("cpu cores", "").isdigit() else None
    siblings = int(first["siblings"]) if first.get("siblings", "").isdigit() else None
    return {
        "model_name": first.get("model name"),
        "sockets": sockets,
        "cores_per_socket": cores,
        "threads_per_core": siblings // cores if cores and siblings else None,
        "logical_cpus": len(procs),
        "avx512f": "avx512f" in first.get("flags", "").split(),
        "source": "/proc/cpuinfo",
    }


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
        from python.modeling_bert_hash import (
            BertHashForMaskedLM,
            BertHashPreTrainedModel,
            extended_attention_mask,
        )

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
        # Inference attends with an explicit all-ones mask (the input ORT and berthash's
        # predict/embed path get); training keeps no mask, as berthash's packed batches.
        self.ones_mask = torch.ones(batch, seq, dtype=torch.long, device=self.device)
        self.extended_attention_mask = extended_attention_mask

        # The part of the step torch.compile sees: forward and loss (backward goes through
        # AOTAutograd; the optimizer step stays eager, as the Trainer runs it).
        self.compile_backend = compile_backend
        self.losses = {"masked": self._masked_loss, "full": self._full_loss}
        if compile_backend:
            self.losses = {
                k: torch.compile(f, backend=compile_backend, dynamic=False) for k, f in self.losses.items()
            }

    def _encode(self, input_ids, token_type_ids, attention_mask=None):
        """last_hidden_state; a [batch, seq] 0/1 mask becomes the additive one BertHashModel
        builds (None: no mask)."""
        bert = self.model.bert
        embedded = bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
        if attention_mask is not None:
            attention_mask = self.extended_attention_mask(attention_mask, embedded.dtype)
        return bert.encoder(embedded, attention_mask=attention_mask)[0]

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
            return self._encode(b["input_ids"], b["token_type_ids"], self.ones_mask).float().sum()

    def measure(self, loss_kind, steps, warmup, sync_every, phase="train"):
        """Median tokens/s over repetitions of `sync_every` steps, and the last loss read."""
        run = self.infer if phase == "infer" else (lambda: self.step(loss_kind))
        was_training = self.model.training
        self.model.train(phase == "train")
        # The host read of each repetition's values (which also waits for a GPU).
        read = lambda values: float(self.torch.stack(values).mean())  # noqa: E731
        rates, last = timed(run, read, steps, warmup, sync_every, self.tokens)
        self.model.train(was_training)
        return statistics.median(rates), last, rates

    def describe(self, phase="train"):
        torch = self.torch
        d = {
            "attn": self.attn,
            "adamw": self.adamw,
            "autocast": "bf16" if self.precision == "bf16" else None,
            "compile": self.compile_backend,
            "attention_mask": "ones" if phase == "infer" else "none",
            "torch": torch.__version__,
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
        }
        if self.device.type == "cuda":
            d["device_name"] = torch.cuda.get_device_name(self.device)
        return d


# The engine name of ONNX Runtime's rows, by what wrote the graph it runs.
ORT_ENGINES = {"torch": "onnxruntime", "berthash": "onnxruntime-ours"}


class OrtSide:
    """The TorchSide model's encoder (model.bert) exported with the TorchScript exporter and run
    by ONNX Runtime on CPU, on the TorchSide's input ids."""

    OPSET = 17
    TOLERANCE = 1e-4  # max abs difference to PyTorch's last_hidden_state

    def __init__(self, torch_side, threads, exporter="torch", binary=None):
        import numpy as np
        import onnxruntime as ort

        torch = torch_side.torch
        bert = torch_side.model.bert

        class Encoder(torch.nn.Module):
            def __init__(self, bert):
                super().__init__()
                self.bert = bert

            def forward(self, input_ids, token_type_ids, attention_mask):
                return self.bert(input_ids=input_ids, token_type_ids=token_type_ids,
                                 attention_mask=attention_mask, return_dict=True).last_hidden_state

        def feeds(b):
            ids = b["input_ids"].cpu()
            return {
                "input_ids": ids.numpy().astype(np.int64),
                "token_type_ids": b["token_type_ids"].cpu().numpy().astype(np.int64),
                "attention_mask": np.ones(ids.shape, dtype=np.int64),
            }

        self.feeds = [feeds(b) for b in torch_side.batches]
        first = {k: torch.from_numpy(v) for k, v in self.feeds[0].items()}
        names = ["input_ids", "token_type_ids", "attention_mask"]
        encoder = Encoder(bert)
        was_training = torch_side.model.training
        torch_side.model.eval()
        encoder.eval()  # export restores the wrapper's mode recursively: keep it eval
        try:
            with tempfile.TemporaryDirectory() as tmp:
                if exporter == "berthash":
                    path = self.berthash_export(torch_side.model, binary, tmp)
                else:
                    path = self.torch_export(torch, encoder, first, names, tmp)
                options = ort.SessionOptions()  # default graph optimizations (ORT_ENABLE_ALL)
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
            with torch.no_grad():
                want = torch_side._encode(first["input_ids"].to(torch_side.device),
                                          first["token_type_ids"].to(torch_side.device),
                                          first["attention_mask"].to(torch_side.device)).float().cpu().numpy()
        finally:
            torch_side.model.train(was_training)
        got = self.session.run(["last_hidden_state"], self.feeds[0])[0]
        self.max_abs_diff = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        if not self.max_abs_diff <= self.TOLERANCE:
            raise SystemExit(
                f"bench_vs_pytorch: the ONNX export disagrees with PyTorch: output {got.shape} vs "
                f"{want.shape}, max abs difference {self.max_abs_diff:.3g} > {self.TOLERANCE}"
            )
        self.exporter = ("berthash export --head base --onnx" if exporter == "berthash"
                         else "torch.onnx.export(dynamo=False)")
        self.attn = torch_side.attn  # the attention implementation that was traced
        self.ort = ort
        self.options = options
        self.threads = threads
        self.tokens = torch_side.tokens
        self.i = 0

    def torch_export(self, torch, encoder, first, names, tmp):
        path = os.path.join(tmp, "encoder.onnx")
        with warnings.catch_warnings():
            # The TorchScript exporter's deprecation notice and tracer warnings; the output
            # check in __init__ is what vouches for the graph.
            warnings.simplefilter("ignore")
            torch.onnx.export(
                encoder, tuple(first[n] for n in names), path, dynamo=False,
                input_names=names, output_names=["last_hidden_state"],
                dynamic_axes={n: {0: "batch", 1: "seq"} for n in names + ["last_hidden_state"]},
                opset_version=self.OPSET,
            )
        return path

    @staticmethod
    def berthash_export(model, binary, tmp):
        """The model saved by transformers, exported by `berthash export --head base --onnx`."""
        source, out = os.path.join(tmp, "source"), os.path.join(tmp, "export")
        model.save_pretrained(source)
        cmd = [str(binary), "export", "--from", source, "--out", out, "--head", "base", "--onnx"]
        run = subprocess.run(cmd, capture_output=True, text=True)
        if run.returncode != 0:
            raise SystemExit(f"bench_vs_pytorch: {' '.join(cmd)} failed:\n{run.stderr.strip()}")
        return os.path.join(out, "onnx", "model.onnx")

    def run(self):
        feeds = self.feeds[self.i % len(self.feeds)]
        self.i += 1
        return self.session.run(["last_hidden_state"], feeds)[0]

    def measure(self, steps, warmup, sync_every):
        """Median tokens/s over repetitions of `sync_every` runs (each run returns to the host)."""
        rates, _ = timed(self.run, lambda values: None, steps, warmup, sync_every, self.tokens)
        return statistics.median(rates), rates

    def describe(self):
        return {
            "onnxruntime": self.ort.__version__,
            "opset": self.OPSET,
            "exporter": self.exporter,
            "execution_provider": "CPUExecutionProvider",
            "attn": self.attn,
            "threads": self.threads,
            "inter_op_threads": self.options.inter_op_num_threads,
            "graph_optimization_level": self.options.graph_optimization_level.name,
            "attention_mask": "ones",
            "max_abs_diff_vs_pytorch": self.max_abs_diff,
        }


def ours(binary, phase, backend, precision, size, batch, seq, loss_kind, steps, warmup, sync_every,
         threads):
    cmd = [
        str(binary), "bench", "--child", "--json", "--phase", phase,
        "--backend", backend, "--precision", precision,
        "--size", size, "--batch", str(batch), "--seq", str(seq),
        "--steps", str(steps), "--warmup", str(warmup), "--sync-every", str(sync_every),
    ]
    if phase == "train" and loss_kind == "full":
        cmd.append("--full-vocab")
    # The CPU backend's kernels run on rayon's global pool, which reads RAYON_NUM_THREADS.
    env = {**os.environ, "RAYON_NUM_THREADS": str(threads)}
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
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
    p.add_argument("--threads", type=int, default=os.cpu_count(),
                   help="threads of every side: torch.set_num_threads, berthash's RAYON_NUM_THREADS, "
                        "ONNX Runtime's intra_op_num_threads")
    p.add_argument("--losses", default="masked,full", help="masked, full (full vocab) or both")
    p.add_argument("--phase", default="train", choices=["train", "infer"],
                   help="infer: the encoder forward without gradients")
    p.add_argument("--sides", default="berthash,pytorch",
                   help="which sides to run: berthash, pytorch, onnxruntime (--phase infer only)")
    p.add_argument("--onnx-exporter", default="torch",
                   help="what writes the graphs ONNX Runtime runs: torch (torch.onnx.export), "
                        "berthash (`berthash export --onnx`, the same weights) or both, torch,berthash")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"], help="the PyTorch side's device")
    p.add_argument("--backend", choices=["cpu", "wgpu", "cuda"],
                   help="the berthash side's --backend (default: the --device)")
    p.add_argument("--precision", default="f32", choices=["f32", "bf16"],
                   help="berthash and PyTorch; PyTorch's bf16 is autocast with f32 master weights "
                        "(onnxruntime: f32 only)")
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
        if s not in ("berthash", "pytorch", "onnxruntime"):
            p.error(f"--sides: unknown side {s!r} (berthash, pytorch, onnxruntime)")
    exporters = [e for e in args.onnx_exporter.split(",") if e]
    for e in exporters:
        if e not in ORT_ENGINES:
            p.error(f"--onnx-exporter: unknown exporter {e!r} (torch, berthash)")
    if "onnxruntime" in sides:
        if args.phase != "infer":
            p.error("--sides onnxruntime needs --phase infer (it runs the exported encoder forward)")
        if args.device != "cpu" or args.precision != "f32":
            p.error("--sides onnxruntime runs on CPU in f32: pass --device cpu --precision f32")
    if args.phase == "infer":
        kinds = ["masked"]  # one forward; the loss kind does not apply
    batches = [int(b) for b in args.batch.split(",") if b]
    backend = args.backend or args.device
    engine = "pytorch-compile" if args.compile else "pytorch-eager"
    engines = {"berthash": "berthash", "pytorch": engine, **{e: e for e in ORT_ENGINES.values()}}
    common = {"size": args.size, "seq": args.seq, "precision": args.precision, "phase": args.phase}
    cpu = cpu_info()

    rows = []
    load_before = load_avg()
    for batch in batches:
        load_batch = load_avg()
        torch_side, ort_sides = None, {}
        if "pytorch" in sides or "onnxruntime" in sides:  # ORT exports the PyTorch model
            torch_side = TorchSide(args.size, batch, args.seq, args.threads, device=args.device,
                                   precision=args.precision, attn=args.attn,
                                   fused_adamw=args.fused_adamw,
                                   compile_backend=args.compile_backend if args.compile else None)
        for exporter in exporters if "onnxruntime" in sides else []:
            name = ORT_ENGINES[exporter]
            ort_sides[name] = OrtSide(torch_side, args.threads, exporter, args.berthash)
            print(f"{name} {batch}x{args.seq}: export checked, max abs difference "
                  f"to PyTorch {ort_sides[name].max_abs_diff:.2e}", file=sys.stderr)
        results = {}
        for rep in range(args.reps):
            for k in kinds:
                if "berthash" in sides:
                    m = ours(args.berthash, args.phase, backend, args.precision, args.size, batch,
                             args.seq, k, args.steps, args.warmup, args.sync_every, args.threads)
                    results.setdefault(("berthash", k), []).append(m)
                    what = f"(loss {m.get('loss')})" if args.phase == "train" else "(encoder forward)"
                    print(f"rep {rep} berthash {batch}x{args.seq} {k:6} {m['tokens_per_s']:11.0f} "
                          f"tokens/s {what}", file=sys.stderr)
                if "pytorch" in sides:
                    rate, loss, _ = torch_side.measure(k, args.steps, args.warmup, args.sync_every,
                                                       args.phase)
                    results.setdefault(("pytorch", k), []).append({"tokens_per_s": rate, "loss": loss})
                    what = f"(loss {loss:.3f})" if args.phase == "train" else "(encoder forward)"
                    print(f"rep {rep} {engine} {batch}x{args.seq} {k:6} {rate:11.0f} tokens/s {what}",
                          file=sys.stderr)
                for name, ort_side in ort_sides.items():
                    rate, _ = ort_side.measure(args.steps, args.warmup, args.sync_every)
                    results.setdefault((name, k), []).append({"tokens_per_s": rate})
                    print(f"rep {rep} {name} {batch}x{args.seq} {k:6} {rate:11.0f} "
                          f"tokens/s (encoder forward)", file=sys.stderr)
        for (who, k), runs in results.items():
            rates = [r["tokens_per_s"] for r in runs]
            row = {
                "engine": engines[who],
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
                row["threads"] = runs[-1].get("threads", args.threads)
            elif who == "pytorch":
                row.update(torch_side.describe(args.phase))
                row["threads"] = args.threads
                row["transformers"] = transformers.__version__
            else:
                row.update(ort_sides[who].describe())
                row["torch"] = torch.__version__
                row["transformers"] = transformers.__version__
            row["cpu"] = cpu
            if args.json:  # as each batch size finishes, so a time-out keeps the rows done
                row["loadavg_before"] = [round(x, 2) for x in load_batch]
                row["loadavg_after"] = [round(x, 2) for x in load_avg()]
                print(json.dumps(row), flush=True)
            rows.append(row)
        del torch_side, ort_sides
    load_after = load_avg()

    if args.json:
        return
    ort_version = ""
    if "onnxruntime" in sides:
        import onnxruntime

        ort_version = f", onnxruntime {onnxruntime.__version__} (opset {OrtSide.OPSET})"
    print(f"{args.size} x{args.seq}, {args.phase}, {args.precision}, torch {torch.__version__} on "
          f"{args.device} ({args.threads} threads, attention {args.attn}), transformers "
          f"{transformers.__version__}{ort_version}, {args.reps} reps x {args.steps} steps; "
          f"load average {load_before[0]:.2f} -> {load_after[0]:.2f}")
    print(f"cpu: {cpu.get('model_name')}, {cpu.get('sockets')} socket(s) x "
          f"{cpu.get('cores_per_socket')} cores x {cpu.get('threads_per_core')} threads, "
          f"{cpu.get('logical_cpus')} logical CPUs, avx512f {'yes' if cpu.get('avx512f') else 'no'}")
    print(f"{'engine':16} {'batch':>6} {'variant':11} {'tokens/s (median)':>18} {'all reps':>30}")
    for r in rows:
        reps = " ".join(f"{x:.0f}" for x in r["tokens_per_s_reps"])
        print(f"{r['engine']:16} {r['batch']:>6} {r['variant']:11} {r['tokens_per_s']:18.0f} {reps:>30}")
    by = {(r["engine"], r["batch"], r["variant"]): r["tokens_per_s"] for r in rows}
    for batch in batches:
        for k in kinds:
            v = VARIANTS[k] if args.phase == "train" else "encoder"
            for other in (engine, *ORT_ENGINES.values()):
                if ("berthash", batch, v) in by and (other, batch, v) in by:
                    print(f"ratio berthash/{other} ({batch}x{args.seq}, {v}): "
                          f"{by[('berthash', batch, v)] / by[(other, batch, v)]:.2f}x")


if __name__ == "__main__":
    main()
