"""Training parity (issue 6, part 3): berthash runs replayed step by step in PyTorch.

berthash trains with `--dump-batches FILE`, which writes every micro-batch it trains on (ids,
token types, attention mask, masked positions + labels / class labels) and the model before the
first update (`FILE.init/`, a Hugging Face dir). The replay loads that dir with our remote code
(`BertHashForMaskedLM` / `BertHashForSequenceClassification`) and trains it on the same batches
with the reference recipe in PyTorch:

- `torch.optim.AdamW` with two groups: no weight decay for names containing "bias" or
  "LayerNorm.weight", the run's weight decay for the rest; betas, eps and lr from the run's config;
- transformers' `get_linear_schedule_with_warmup` (warmup and total steps from the run);
- `torch.nn.utils.clip_grad_norm_` (global norm, the run's max_grad_norm) after backward;
- the model's own loss: MLM through `labels` (-100 everywhere but the masked positions, so the
  loss is the mean cross-entropy over the masked tokens only), classification through `labels`;
- dropout off on both sides (hidden and attention dropout 0 in the run's model config), f32, CPU.

Compared: the per-step training loss (berthash's metrics.jsonl at log_every 1) within 1e-3
relative on every step, the learning rate of every step, the pre-clipping gradient norm, and the
final weights (max abs difference, reported). Two runs: masked-LM pre-training (femto, packed rows
of 64 tokens, batch 8, 120 steps, 10 warmup steps) and SST-2 fine-tuning from that run's model
(the 200-row fixture, batch 8, rows padded to 64, 120 steps), where the `[PAD]` row of the token
table must stay as it was (PyTorch's `padding_idx` gives it no gradient).
"""

import json
import time
from pathlib import Path

import torch

from .common import quiet_load, stage_code

NAME = "training"
TITLE = "training parity: berthash runs replayed in PyTorch (per-step loss, lr, grad norm, final weights)"

LOSS_RTOL = 1e-3
LR_RTOL = 1e-9
NORM_RTOL = 1e-3
# Final weights after 120 AdamW steps: f32 rounding differences between two implementations
# grow along the trajectory; the max abs difference is reported and must stay well below the
# size of one update.
WEIGHT_ATOL = {"mlm": 2e-3, "classification": 1e-3}

PRETRAIN_STEPS = 120
PRETRAIN_WARMUP = 10
FINETUNE_STEPS = 120
BATCH = 8
SEQ = 64
TOKEN_TABLE = "embeddings.word_embeddings.embeddings.weight"


def no_dropout_toml(path, extra=""):
    path.write_text(
        "[model]\nhidden_dropout_prob = 0.0\nattention_probs_dropout_prob = 0.0\n"
        f"[data]\nmax_length = {SEQ}\n" + extra
    )
    return path


def read_train_records(run_dir):
    records = {}
    for line in (Path(run_dir) / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if rec.get("kind") == "train":
            records[rec["step"]] = rec
    return records


def load_dump(path):
    """(metadata, {step: [micro-batch dict, ...]}) of a --dump-batches file."""
    from safetensors import safe_open

    steps = {}
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
        for key in f.keys():
            step, micro, field = key.split(".", 2)
            s, m = int(step[4:]), int(micro[5:])
            steps.setdefault(s, {}).setdefault(m, {})[field] = f.get_tensor(key)
    ordered = {s: [steps[s][m] for m in sorted(steps[s])] for s in sorted(steps)}
    meta["config"] = json.loads(meta["config"])
    return meta, ordered


def load_model(init_dir, kind):
    from transformers import AutoModelForMaskedLM, AutoModelForSequenceClassification

    stage_code(init_dir)
    cls = AutoModelForMaskedLM if kind == "mlm" else AutoModelForSequenceClassification
    model, messages = quiet_load(cls.from_pretrained, init_dir, trust_remote_code=True,
                                 attn_implementation="eager", _silent=True)
    return model.float()


def mlm_labels(batch):
    ids = batch["input_ids"]
    labels = torch.full(ids.shape, -100, dtype=torch.long)
    labels.view(-1)[batch["masked_positions"].long()] = batch["masked_labels"].long()
    return labels


def step_loss(model, batch, kind):
    inputs = {"input_ids": batch["input_ids"].long(), "token_type_ids": batch["token_type_ids"].long()}
    if "attention_mask" in batch:
        inputs["attention_mask"] = batch["attention_mask"].long()
    labels = mlm_labels(batch) if kind == "mlm" else batch["labels"]
    return model(**inputs, labels=labels).loss


def param_groups(model, weight_decay):
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # shared tensors (the MLM bias) listed once
        (no_decay if ("bias" in name or "LayerNorm.weight" in name) else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def replay(model, meta, steps, kind):
    """Trains `model` on the dumped batches; returns per-step losses, lrs and grad norms."""
    from transformers import get_linear_schedule_with_warmup

    cfg = meta["config"]
    opt_cfg, sched_cfg = cfg["optimizer"], cfg["schedule"]
    total = sched_cfg.get("total_steps") or cfg["train"]["max_steps"]
    if sched_cfg.get("kind", "linear") != "linear":
        raise ValueError(f"replay implements the linear schedule only, run has {sched_cfg['kind']}")
    opt = torch.optim.AdamW(param_groups(model, opt_cfg["weight_decay"]), lr=opt_cfg["lr"],
                            betas=tuple(opt_cfg["betas"]), eps=opt_cfg["eps"])
    sched = get_linear_schedule_with_warmup(opt, sched_cfg["warmup_steps"], total)
    params = [p for p in model.parameters()]
    model.train()
    losses, lrs, norms = [], [], []
    for s in sorted(steps):
        micro = steps[s]
        lrs.append(sched.get_last_lr()[0])
        opt.zero_grad(set_to_none=False)
        step_losses = []
        for batch in micro:
            loss = step_loss(model, batch, kind)
            (loss / len(micro)).backward()
            step_losses.append(loss.item())
        losses.append(sum(step_losses) / len(step_losses))
        max_norm = opt_cfg.get("max_grad_norm")
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm if max_norm else float("inf"))
        norms.append(norm.item())
        opt.step()
        sched.step()
    return losses, lrs, norms


def rel_diffs(ours, ref):
    return [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(ours, ref)]


def compare_run(report, label, run_dir, dump_path, kind, weights_file):
    from safetensors.torch import load_file

    meta, steps = load_dump(dump_path)
    records = read_train_records(run_dir)
    init_dir = Path(meta["init_dir"])
    model = load_model(init_dir, kind)
    initial = {k: v.detach().clone() for k, v in model.state_dict().items()}
    t0 = time.perf_counter()
    losses, lrs, norms = replay(model, meta, steps, kind)
    replay_s = time.perf_counter() - t0
    n = len(losses)
    ours = [records[s]["loss"] for s in sorted(steps)]
    our_lrs = [records[s]["lr"] for s in sorted(steps)]
    our_norms = [records[s]["grad_norm"] for s in sorted(steps)]
    micro = meta.get("grad_accum", "1")
    first = steps[min(steps)][0]
    shape = "x".join(str(d) for d in first["input_ids"].shape)
    padded = sum(int((b["attention_mask"] == 0).sum()) for m in steps.values() for b in m if "attention_mask" in b)

    # Step 1: same weights, same batch: the loss definitions must agree (MLM: mean CE over the
    # masked positions only).
    d1 = abs(ours[0] - losses[0])
    note1 = f"berthash {ours[0]:.6f}, PyTorch {losses[0]:.6f}"
    if kind == "mlm":
        masked = int(first["masked_positions"].numel())
        labelled = int((mlm_labels(first) != -100).sum())
        note1 += f"; {labelled} labels != -100 for {masked} masked positions of {first['input_ids'].numel()} tokens"
        ok_labels = labelled == masked
    else:
        ok_labels = True
    report.add(f"{label}: step-1 loss (same weights, same batch)", d1 <= 1e-5 * max(1.0, abs(losses[0])) and ok_labels,
               f"|diff| {d1:.2e}", "PyTorch model(labels=...).loss", "1e-05 rel", note1)

    rd = rel_diffs(ours, losses)
    worst = max(range(n), key=lambda i: rd[i])
    report.add(f"{label}: per-step training loss ({n} steps)", max(rd) <= LOSS_RTOL,
               f"max rel diff {max(rd):.2e}", "PyTorch replay (AdamW, linear schedule, clip)", f"{LOSS_RTOL:.0e} rel",
               f"worst at step {worst + 1} ({ours[worst]:.5f} vs {losses[worst]:.5f}); last step {ours[-1]:.5f} vs "
               f"{losses[-1]:.5f}; batches {micro} x [{shape}], {padded} padding tokens in all; replay {replay_s:.1f} s")
    lr_d = rel_diffs(our_lrs, lrs)
    report.add(f"{label}: learning rate per step", max(lr_d) <= LR_RTOL or max(abs(a - b) for a, b in zip(our_lrs, lrs)) < 1e-15,
               f"max rel diff {max(lr_d):.1e}", "get_linear_schedule_with_warmup", f"{LR_RTOL:.0e} rel",
               f"warmup {meta['config']['schedule']['warmup_steps']}, lr {meta['config']['optimizer']['lr']}, "
               f"first {our_lrs[0]:.3g}, last {our_lrs[-1]:.3g}")
    nd = rel_diffs(our_norms, norms)
    report.add(f"{label}: gradient norm before clipping", max(nd) <= NORM_RTOL,
               f"max rel diff {max(nd):.2e}", "clip_grad_norm_ total norm", f"{NORM_RTOL:.0e} rel",
               f"max_grad_norm {meta['config']['optimizer'].get('max_grad_norm')}; "
               f"{sum(1 for v in norms if v > 1.0)}/{n} steps clipped")

    final = load_file(str(weights_file))
    ref = model.state_dict()
    common = sorted(set(final) & set(ref))
    missing = sorted(set(ref) - set(final))
    worst_key, worst_diff, worst_move = None, 0.0, 0.0
    for key in common:
        d = (final[key].double() - ref[key].double()).abs().max().item()
        if d >= worst_diff:
            worst_key, worst_diff = key, d
            worst_move = (ref[key].double() - initial[key].double()).abs().max().item()
    report.add(f"{label}: final weights ({len(common)} tensors)", worst_diff <= WEIGHT_ATOL[kind] and not missing,
               f"max|diff| {worst_diff:.2e}", "PyTorch replay's state_dict", f"{WEIGHT_ATOL[kind]:.0e} abs",
               f"worst {worst_key} (moved {worst_move:.2e} from init)"
               + (f"; missing in berthash's file: {missing}" if missing else ""))

    pad = int(json.loads((init_dir / "config.json").read_text()).get("pad_token_id", 0))
    table = next(k for k in common if k.endswith(TOKEN_TABLE))
    ours_pad = (final[table][pad].double() - initial[table][pad].double()).abs().max().item()
    ref_pad = (ref[table][pad].double() - initial[table][pad].double()).abs().max().item()
    decay = meta["config"]["optimizer"]["weight_decay"]
    if decay == 0:
        report.add(f"{label}: [PAD] row of the token table after training", ours_pad == 0.0 and ref_pad == 0.0,
                   f"moved {ours_pad:.1e}", f"PyTorch (padding_idx) moved {ref_pad:.1e}", "0",
                   f"{padded} padding tokens seen; nn.Embedding(padding_idx) gives row {pad} no gradient")
    return {"steps": n, "max_rel_loss": max(rd), "weights": worst_diff, "replay_s": replay_s}


def run(ctx, report):
    # One thread: on 2 shared cores, torch's intra-op threads oversubscribe (10x slower).
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run(ctx, report)
    finally:
        torch.set_num_threads(threads)


def _run(ctx, report):
    bh = ctx.berthash
    work = ctx.scratch("training")
    if "--dump-batches" not in bh("pretrain", "--help").stdout:
        report.skip("pretrain replay", "berthash pretrain has no --dump-batches")
        return

    # 1. Masked-LM pre-training (packed rows: no padding), femto.
    pre_run, pre_dump = work / "pretrain", work / "pretrain-batches.safetensors"
    t0 = time.perf_counter()
    bh("pretrain", "--size", "femto", "--config", no_dropout_toml(work / "pretrain.toml"),
       "--max-steps", PRETRAIN_STEPS, "--warmup-steps", PRETRAIN_WARMUP, "--batch-size", BATCH,
       "--log-every", 1, "--eval-every", 0, "--save-every", 0, "--out", pre_run, "--dump-batches", pre_dump)
    pre_s = time.perf_counter() - t0
    ctx.training_pretrain_run = pre_run  # reused by the glue module as its pre-trained checkpoint
    res = compare_run(report, "mlm (femto pretrain)", pre_run, pre_dump, "mlm", pre_run / "model" / "model.safetensors")
    report.info("mlm (femto pretrain): timing", f"berthash pretrain {pre_s:.1f} s (incl. startup), "
                f"PyTorch replay {res['replay_s']:.1f} s")

    # 2. SST-2 fine-tuning from that model: padded batches.
    if "--dump-batches" not in bh("finetune", "--help", check=False).stdout:
        report.skip("cls (SST-2 fixture finetune) replay", "berthash finetune has no --dump-batches")
        return
    data = ctx.repo / "tests" / "fixtures" / "glue" / "SST-2"
    recipe = work / "sst2.toml"
    recipe.write_text(f'task = "sst2"\nmax_seq_length = {SEQ}\npadding = "fixed"\neval_each_epoch = false\n'
                      "[train]\nlog_every = 1\nsave_every = 0\neval_every = 0\n")
    ft_run, ft_dump = work / "finetune", work / "finetune-batches.safetensors"
    t0 = time.perf_counter()
    bh("finetune", "--config", recipe, "--model", pre_run / "model", "--data-dir", data, "--out", ft_run,
       "--batch-size", BATCH, "--max-steps", FINETUNE_STEPS, "--dump-batches", ft_dump)
    ft_s = time.perf_counter() - t0
    res = compare_run(report, "cls (SST-2 fixture finetune)", ft_run, ft_dump, "classification",
                      ft_run / "model" / "model.safetensors")
    report.info("cls (SST-2 fixture finetune): timing", f"berthash finetune {ft_s:.1f} s (incl. evaluation), "
                f"PyTorch replay {res['replay_s']:.1f} s")
