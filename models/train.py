"""Train PIM ensemble members: ``python3 -m models.train --config models/configs/smoke.json``.

Images are decoded once into one uint8 tensor on the training device and augmented there (no CPU
data loader). Seeded; one log line per epoch; keeps the checkpoint with the best validation QWK
(of the EMA weights when ``ema_decay`` > 0) and fits a softmax temperature on val for it.
"""
import argparse
import contextlib
import copy
import json
import math
import os
import time
from pathlib import Path
from typing import Callable, Dict, Optional

import numpy as np
import torch

from . import LABELS
from .config import load_config, member_config, resolve
from .data import augment, load_folder, read_pack, to_input
from .losses import pim_loss
from .metrics import fit_temperature, report, softmax
from .pim import build_model

REPO_ROOT = Path(__file__).resolve().parent.parent


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def autocast_ctx(device: torch.device):
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_split(cfg: dict, split: str):
    """uint8 N,1,224,224 images and grades for 'train' or 'val', from a pack or a folder."""
    lim = cfg.get("limit_per_grade" if split == "train" else "val_limit_per_grade")
    pack = resolve(cfg.get(f"{split}_pack"), REPO_ROOT)
    if pack is not None:
        x, y, _ = read_pack(pack, workers=min(16, os.cpu_count() or 1))
        return limit_per_grade(x, y, lim)
    x, y, _ = load_folder(resolve(cfg[f"{split}_dir"], REPO_ROOT), 224, lim)
    return x, y


def limit_per_grade(x: np.ndarray, y: np.ndarray, lim):
    """The first ``lim`` images of every grade (all when ``lim`` is None)."""
    if not lim:
        return x, y
    keep = np.concatenate([np.flatnonzero(y == g)[:lim] for g in np.unique(y)])
    return x[keep], y[keep]


@torch.no_grad()
def predict_logits(model, x_uint8: torch.Tensor, size: int, device: torch.device, batch: int = 256) -> np.ndarray:
    model.eval()
    outs = []
    for i in range(0, x_uint8.shape[0], batch):
        xb = to_input(x_uint8[i:i + batch].to(device, non_blocking=True), size)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        # float32 (no autocast): validation, model selection and temperature see what ONNX computes
        outs.append(model(xb)["logits"].float().cpu())
    return torch.cat(outs).numpy()


def _param_groups(model, wd: float):
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def _make_opt(model, cfg):
    groups = _param_groups(model, cfg["weight_decay"])
    if cfg["optimizer"] == "sgd":
        return torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"], nesterov=cfg["nesterov"])
    if cfg["optimizer"] == "adamw":
        return torch.optim.AdamW(groups, lr=cfg["lr"])
    raise ValueError(f"unknown optimizer {cfg['optimizer']}")


def _lr_factor(step: int, total: int, warmup_frac: float) -> float:
    warm = max(1, int(total * warmup_frac))
    if step < warm:
        return 0.02 + 0.98 * step / warm
    return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))


class _EMA:
    def __init__(self, model, decay: float):
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.steps = decay, 0

    @torch.no_grad()
    def update(self, model):
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        ema_p = list(self.model.parameters())
        src_p = [p.detach() for p in model.parameters()]
        torch._foreach_mul_(ema_p, d)
        torch._foreach_add_(ema_p, src_p, alpha=1 - d)
        for b_ema, b in zip(self.model.buffers(), model.buffers()):
            b_ema.copy_(b)


def _train_step(model, opt, sched, xb, yb, cfg, cw, device, lambda_n=None):
    with autocast_ctx(device):
        out = model(xb)
        ln = cfg["lambda_n"] if lambda_n is None else lambda_n
        loss, terms = pim_loss(out, yb, cfg["num_classes"], cfg["lambda_b"], cfg["lambda_s"], ln,
                               cfg["lambda_c"], cfg["ordinal_sigma"], cfg["label_smoothing"], cw)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if sched is not None:
        sched.step()
    return float(loss), terms


def train_member(cfg: dict, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: np.ndarray,
                 device: torch.device, log: Callable[[str], None], out_path: Optional[Path] = None,
                 hard_deadline: Optional[float] = None) -> Dict[str, object]:
    """Train one member on uint8 tensors already on ``device``; return its best checkpoint dict."""
    name, size, bs = cfg["name"], cfg["input_size"], cfg["batch_size"]
    torch.manual_seed(cfg["seed"])
    np.random.seed(cfg["seed"])
    gen = torch.Generator(device=device)
    gen.manual_seed(cfg["seed"])
    model = build_model(cfg).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    n = train_x.shape[0]
    counts = torch.bincount(train_y, minlength=cfg["num_classes"]).float().clamp_min(1)
    cw = None
    if cfg["class_weight_power"]:
        cw = ((counts / counts.mean()) ** -cfg["class_weight_power"]).tolist()
    sample_w = counts[train_y] ** -cfg["sample_balance_power"] if cfg["sample_balance_power"] else None
    steps_per_epoch = max(1, n // bs)

    def batch_at(idx):
        xb = augment(train_x[idx], size, cfg["augment"], gen)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, train_y[idx]

    epochs = cfg["epochs"]
    if cfg.get("time_budget_s"):
        # Time a few steps on a throwaway copy, then size the run to the budget.
        probe = copy.deepcopy(model)
        popt = _make_opt(probe, dict(cfg, lr=cfg["lr"] * 1e-3))
        probe.train()
        idx = torch.randint(0, n, (bs,), device=device, generator=gen)
        for i in range(13):
            if i == 3:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
            _train_step(probe, popt, None, *batch_at(idx), cfg, cw, device)
        if device.type == "cuda":
            torch.cuda.synchronize()
        t_step = (time.perf_counter() - t0) / 10
        t0 = time.perf_counter()
        predict_logits(probe, val_x[: min(len(val_x), 512)], size, device)
        t_eval = (time.perf_counter() - t0) * len(val_x) / min(len(val_x), 512)
        del probe, popt
        per_epoch = steps_per_epoch * t_step + t_eval / cfg["eval_every"]
        epochs = max(1, min(cfg["epochs"], int(cfg["time_budget_s"] / per_epoch)))
        log(f"[{name}] budget {cfg['time_budget_s']:.0f}s: {t_step * 1000:.1f} ms/step, eval {t_eval:.1f}s "
            f"-> {epochs} epochs of {steps_per_epoch} steps")
    total = epochs * steps_per_epoch
    opt = _make_opt(model, cfg)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: _lr_factor(s, total, cfg["warmup_frac"]))
    ema = _EMA(model, cfg["ema_decay"]) if cfg["ema_decay"] else None
    best = {"qwk": -2.0}
    history = []
    t_start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        t_ep = time.perf_counter()
        if sample_w is not None:
            order = torch.multinomial(sample_w, steps_per_epoch * bs, replacement=True, generator=gen)
        else:
            order = torch.randperm(n, device=device, generator=gen)
        losses, terms_sum = [], {}
        for s in range(steps_per_epoch):
            idx = order[s * bs:(s + 1) * bs]
            step = (epoch - 1) * steps_per_epoch + s
            ramp = cfg["lambda_n_warmup_frac"] * total
            ln = cfg["lambda_n"] * min(1.0, step / ramp) if ramp > 0 else cfg["lambda_n"]
            loss, terms = _train_step(model, opt, sched, *batch_at(idx), cfg, cw, device, ln)
            if ema is not None:
                ema.update(model)
            losses.append(loss)
            for k, v in terms.items():
                terms_sum[k] = terms_sum.get(k, 0.0) + v
        if not all(math.isfinite(v) for v in losses):
            raise FloatingPointError(f"[{name}] non-finite loss in epoch {epoch}")
        line = {"member": name, "epoch": epoch, "of": epochs, "loss": round(float(np.mean(losses)), 4),
                "terms": {k: round(v / steps_per_epoch, 4) for k, v in terms_sum.items()},
                "lr": round(opt.param_groups[0]["lr"], 5), "train_s": round(time.perf_counter() - t_ep, 2)}
        last = epoch == epochs
        late = hard_deadline is not None and time.time() > hard_deadline
        if epoch % cfg["eval_every"] == 0 or last or late:
            net = ema.model if ema is not None else model
            logits = predict_logits(net, val_x, size, device)
            r = report(softmax(logits), val_y, cfg["num_classes"])
            line.update({"val_acc": round(r["accuracy"], 4), "val_qwk": round(r["qwk"], 4),
                         "val_per_grade": [round(v, 3) if v is not None else None for v in r["per_grade_accuracy"]]})
            if r["qwk"] > best["qwk"]:
                best = {"qwk": r["qwk"], "epoch": epoch, "val": r, "logits": logits,
                        "state_dict": {k: v.detach().float().cpu().clone() for k, v in net.state_dict().items()}}
                line["best"] = True
        log(json.dumps(line))
        if late and not last:
            log(f"[{name}] hard deadline reached: stopping after epoch {epoch} of {epochs}")
            break
    temp = fit_temperature(best["logits"], val_y)
    ckpt = {"config": cfg, "state_dict": best["state_dict"], "best_epoch": best["epoch"],
            "epochs_run": epoch, "epochs_planned": epochs, "train_seconds": round(time.perf_counter() - t_start, 1),
            "val": best["val"], "temperature": temp, "val_calibrated": report(softmax(best["logits"], temp), val_y),
            "labels": LABELS}
    log(f"[{name}] best epoch {best['epoch']}: val qwk {best['qwk']:.4f} acc {best['val']['accuracy']:.4f}, "
        f"temperature {temp:.3f}, {ckpt['train_seconds']}s")
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        torch.save(ckpt, out_path)
    return ckpt


def load_checkpoint(path):
    try:  # our own files; torch >= 2.6 defaults to weights_only=True
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:
        ckpt = torch.load(path, map_location="cpu")
    model = build_model(ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), ckpt


def make_logger(path: Optional[Path]):
    fh = open(path, "a", buffering=1) if path else None

    def log(msg: str):
        print(msg, flush=True)
        if fh:
            fh.write(msg + "\n")
    return log


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", default=None, help="output folder (default models/runs/<config name>)")
    ap.add_argument("--member", action="append", help="train only these member names")
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    out = Path(args.out) if args.out else Path(__file__).parent / "runs" / Path(args.config).stem
    out.mkdir(parents=True, exist_ok=True)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    log = make_logger(out / "train_log.txt")
    device = pick_device()
    t0 = time.perf_counter()
    tx, ty = load_split(cfg, "train")
    vx, vy = load_split(cfg, "val")
    log(f"device {device}, torch {torch.__version__}; train {len(ty)} val {len(vy)} images "
        f"(loaded in {time.perf_counter() - t0:.1f}s)")
    tx_t, ty_t = torch.from_numpy(tx).to(device), torch.from_numpy(ty).to(device)
    vx_t = torch.from_numpy(vx).to(device)
    for m in cfg["members"]:
        if args.member and m["name"] not in args.member:
            continue
        mc = member_config(cfg, m)
        train_member(mc, tx_t, ty_t, vx_t, vy, device, log, out / f"{mc['name']}.pt")


if __name__ == "__main__":
    main()
