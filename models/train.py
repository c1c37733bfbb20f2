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
import signal
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np
import torch

from . import LABELS
from .config import apply_overrides, load_config, member_config, resolve
from .data import augment, load_folder, read_pack, to_input
from .losses import pim_loss
from .metrics import fit_temperature, report, softmax
from .pim import build_model
from .selection import read_selection, split_by_names

REPO_ROOT = Path(__file__).resolve().parent.parent


def pick_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


_BF16_CACHE: Dict[str, object] = {}


def bf16_support() -> Tuple[bool, str]:
    """Whether bf16 autocast training pays on this CPU: the CPU must say so in /proc/cpuinfo
    (``amx_bf16`` or ``avx512_bf16``; without them oneDNN emulates bf16, slower than float32) and
    a one-batch probe (forward + backward of a small conv net under autocast) must give finite
    gradients. ``KNEEGRADE_BF16=0|1`` overrides the detection."""
    if "r" in _BF16_CACHE:
        return _BF16_CACHE["r"]
    env = os.environ.get("KNEEGRADE_BF16")
    if env in ("0", "1"):
        r = (env == "1", f"KNEEGRADE_BF16={env}")
    else:
        try:
            flags = set(Path("/proc/cpuinfo").read_text().split())
        except OSError:
            flags = set()
        found = sorted(flags & {"amx_bf16", "avx512_bf16"})
        if not found:
            r = (False, "CPU lists neither amx_bf16 nor avx512_bf16")
        else:
            try:
                net = torch.nn.Sequential(torch.nn.Conv2d(1, 8, 3), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
                                          torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 5))
                x = torch.rand(4, 1, 16, 16).contiguous(memory_format=torch.channels_last)
                with torch.autocast(device_type="cpu", dtype=torch.bfloat16):
                    loss = net(x).float().logsumexp(1).mean()
                loss.backward()
                ok = all(torch.isfinite(q.grad).all() for q in net.parameters())
                r = (bool(ok), f"{'+'.join(found)}, probe {'ok' if ok else 'gave non-finite gradients'}")
            except Exception as e:  # noqa: BLE001 - an old torch without CPU autocast: float32
                r = (False, f"{'+'.join(found)}, probe failed: {e}")
    _BF16_CACHE["r"] = r
    return r


def use_bf16(device: torch.device, cfg: Optional[dict] = None) -> bool:
    """bf16 autocast for training steps: always on CUDA; on a CPU per ``cfg['bf16']`` ("auto":
    when :func:`bf16_support` says yes)."""
    if device.type == "cuda":
        return True
    want = (cfg or {}).get("bf16", "auto")
    if want == "auto":
        return bf16_support()[0]
    return bool(want)


def autocast_ctx(device: torch.device, bf16: bool = True):
    if device.type == "cuda":
        return torch.autocast(device_type="cuda", dtype=torch.bfloat16)
    if bf16:
        return torch.autocast(device_type="cpu", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def load_split(cfg: dict, split: str):
    """uint8 N,1,224,224 images and grades for 'train' or 'val', from a pack or a folder."""
    x, y, _ = _load_named(cfg, split)
    return x, y


def _load_named(cfg: dict, split: str):
    lim = cfg.get("limit_per_grade" if split == "train" else "val_limit_per_grade")
    pack = resolve(cfg.get(f"{split}_pack"), REPO_ROOT)
    if pack is not None:
        x, y, names = read_pack(pack, workers=min(16, os.cpu_count() or 1))
        keep = _limit_index(y, lim)
        return x[keep], y[keep], [names[i] for i in keep]
    return load_folder(resolve(cfg[f"{split}_dir"], REPO_ROOT), 224, lim)


def load_train_selection(cfg: dict):
    """(train_x, train_y), (sel_x, sel_y) or None: with ``selection_list`` in the config, the listed
    train images are held apart from training as the set that epochs and temperatures are chosen on."""
    x, y, names = _load_named(cfg, "train")
    if not cfg.get("selection_list"):
        return (x, y), None
    sel = read_selection(resolve(cfg["selection_list"], REPO_ROOT))
    if cfg.get("limit_per_grade"):
        sel &= set(names)  # smoke runs: the selection images among the first N per grade
        if not sel:
            raise ValueError("no image of the selection list among the limited train images")
    return split_by_names(x, y, names, sel)


def _limit_index(y: np.ndarray, lim):
    if not lim:
        return np.arange(len(y))
    return np.concatenate([np.flatnonzero(y == g)[:lim] for g in np.unique(y)])


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


def _train_step(model, opt, xb, yb, cfg, cw, device, lambda_n=None, bf16=False):
    with autocast_ctx(device, bf16):
        out = model(xb)
        ln = cfg["lambda_n"] if lambda_n is None else lambda_n
        loss, terms = pim_loss(out, yb, cfg["num_classes"], cfg["lambda_b"], cfg["lambda_s"], ln,
                               cfg["lambda_c"], cfg["ordinal_sigma"], cfg["label_smoothing"], cw)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if cfg.get("grad_clip"):
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg["grad_clip"])
    opt.step()
    return float(loss), terms


class Interrupted(Exception):
    """Training stopped on request (SIGTERM/SIGINT) after writing a resumable checkpoint."""


_STOP = {"signal": None}


def request_stop(signum=None, _frame=None):
    """Signal handler: the running member finishes its current step, checkpoints and stops."""
    _STOP["signal"] = signum or signal.SIGTERM


def install_stop_handlers():
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, request_stop)


def _save_atomic(obj, path: Path):
    tmp = Path(str(path) + ".tmp")
    torch.save(obj, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _torch_load(path):
    try:  # our own files; torch >= 2.6 defaults to weights_only=True
        return torch.load(path, map_location="cpu", weights_only=False)
    except TypeError:
        return torch.load(path, map_location="cpu")


def state_path(out_path: Path) -> Path:
    """Where a member's resumable training state lives, next to its final checkpoint."""
    return Path(out_path).with_suffix(".state.pt")


class _Run:
    """One member's training as it goes: what its steps share. ``cfg`` is the saved one after a
    resume; ``name``, ``size``, the batch size, the precision, the class weights and everything
    built at set-up come from the config the member was started with."""

    def __init__(self, cfg: dict, train_x: torch.Tensor, train_y: torch.Tensor, device: torch.device,
                 out_path: Optional[Path]):
        # The order of these steps is the order the RNG streams are used in: keep it.
        self.cfg, self.train_x, self.train_y, self.device = cfg, train_x, train_y, device
        self.name, self.size, self.bs = cfg["name"], cfg["input_size"], cfg["batch_size"]
        self.bf16 = use_bf16(device, cfg)
        self.chl = device.type == "cuda" or self.bf16 or bool(cfg.get("channels_last"))
        torch.manual_seed(cfg["seed"])
        np.random.seed(cfg["seed"])
        self.gen = torch.Generator(device=device)
        self.gen.manual_seed(cfg["seed"])
        self.model = build_model(cfg).to(device)
        if self.chl:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.n = train_x.shape[0]
        counts = torch.bincount(train_y, minlength=cfg["num_classes"]).float().clamp_min(1)
        self.cw = None
        if cfg["class_weight_power"]:
            self.cw = ((counts / counts.mean()) ** -cfg["class_weight_power"]).tolist()
        self.sample_w = counts[train_y] ** -cfg["sample_balance_power"] if cfg["sample_balance_power"] else None
        self.steps_per_epoch = max(1, self.n // self.bs)
        self.budget = cfg.get("time_budget_s")
        self.opt = _make_opt(self.model, cfg)
        self.base_lrs = [g["lr"] for g in self.opt.param_groups]
        self.ema = _EMA(self.model, cfg["ema_decay"]) if cfg["ema_decay"] else None
        self.st_path = state_path(out_path) if out_path is not None else None
        self.plan = {"epochs": cfg["epochs"], "epoch_s": None}
        self.best: Dict[str, object] = {"qwk": -2.0}
        self.history: list = []
        self.elapsed, self.epoch_done, self.pending = 0.0, 0, None

    def batch_at(self, idx):
        xb = augment(self.train_x[idx], self.size, self.cfg["augment"], self.gen)
        if self.chl:
            xb = xb.contiguous(memory_format=torch.channels_last)
        return xb, self.train_y[idx]

    def lr_at(self, step):
        return _lr_factor(step, self.plan["epochs"] * self.steps_per_epoch, self.cfg["warmup_frac"])

    def eval_net(self):
        return self.ema.model if self.ema is not None else self.model

    def save_state(self, epoch_done: int, in_epoch: Optional[dict]):
        if self.st_path is None:
            return
        self.st_path.parent.mkdir(parents=True, exist_ok=True)
        ema, device = self.ema, self.device
        _save_atomic({"version": 1, "config": self.cfg, "model": self.model.state_dict(),
                      "opt": self.opt.state_dict(),
                      "ema": ema.model.state_dict() if ema is not None else None,
                      "ema_steps": ema.steps if ema is not None else 0,
                      "rng": {"torch": torch.get_rng_state(), "gen": self.gen.get_state(),
                              "numpy": np.random.get_state(),
                              "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None},
                      "plan": self.plan, "best": self.best, "history": self.history, "elapsed_s": self.elapsed,
                      "epoch": epoch_done, "in_epoch": in_epoch, "time_budget_s": self.budget}, self.st_path)


def _resume(run: _Run, log) -> None:
    """Continue from the saved state: weights, optimizer, EMA, RNG streams, plan and progress."""
    state = _torch_load(run.st_path)
    cfg, name = run.cfg, run.name
    # The budget may be changed on resume (models.cpu_run --time-budget-s); anything else that
    # shapes training is taken from the saved state, so a resumed run is the run it was.
    free = {"time_budget_s", "budget_weight"}
    changed = sorted(k for k in set(cfg) | set(state["config"])
                     if k not in free and cfg.get(k) != state["config"].get(k))
    if changed:
        log(f"[{name}] resuming with a changed config ({changed}): continuing with the saved one")
    run.cfg = dict(state["config"], time_budget_s=run.budget, budget_weight=cfg.get("budget_weight"))
    run.model.load_state_dict(state["model"])
    # A state carried between machines (models.campaign) holds no optimizer momentum and may
    # hold no EMA: momentum rebuilds within a few steps, the EMA restarts from the weights.
    if state.get("opt") is not None:
        run.opt.load_state_dict(state["opt"])
    if run.ema is not None:
        run.ema.model.load_state_dict(state["ema"] if state.get("ema") is not None else state["model"])
        run.ema.steps = state["ema_steps"]
    torch.set_rng_state(state["rng"]["torch"])
    run.gen.set_state(state["rng"]["gen"])
    np.random.set_state(state["rng"]["numpy"])
    if run.device.type == "cuda" and state["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(state["rng"]["cuda"])
    run.plan, run.best, run.history, run.elapsed = state["plan"], state["best"], state["history"], state["elapsed_s"]
    run.epoch_done, run.pending = state["epoch"], state.get("in_epoch")
    run.budget = run.budget or state.get("time_budget_s")
    part = f" + {run.pending['s']} steps" if run.pending else ""
    log(f"[{name}] resumed from {run.st_path.name}: epoch {run.epoch_done}{part} of {run.plan['epochs']}, "
        f"{run.elapsed:.0f}s spent")


def _plan_budget(run: _Run, val_x: torch.Tensor, log) -> None:
    """Time a few steps on a throwaway copy to plan the first epochs; re-planned every epoch."""
    cfg, bs, device = run.cfg, run.bs, run.device
    probe = copy.deepcopy(run.model)
    popt = _make_opt(probe, dict(cfg, lr=cfg["lr"] * 1e-3))
    probe.train()
    idx = torch.randint(0, run.n, (bs,), device=device, generator=run.gen)
    for i in range(13):
        if i == 3:
            t0 = time.perf_counter()
        _train_step(probe, popt, *run.batch_at(idx), cfg, run.cw, device, bf16=run.bf16)
    t_step = (time.perf_counter() - t0) / 10
    t0 = time.perf_counter()
    predict_logits(probe, val_x[: min(len(val_x), 256)], run.size, device)
    t_eval = (time.perf_counter() - t0) * len(val_x) / min(len(val_x), 256)
    del probe, popt
    per_epoch = run.steps_per_epoch * t_step + t_eval / cfg["eval_every"]
    run.plan["epochs"] = max(1, min(cfg["epochs"], int(run.budget / per_epoch)))
    log(f"[{run.name}] budget {run.budget:.0f}s: {t_step * 1000 / bs:.1f} ms/image per step, eval {t_eval:.1f}s "
        f"-> {run.plan['epochs']} epochs of {run.steps_per_epoch} steps (re-planned every epoch)")


def _train_epoch(run: _Run, epoch: int, t_ep: float, log):
    """The training steps of one epoch (the rest of a half-done one after a resume); on a stop
    request, a resumable state is written and :class:`Interrupted` raised. Returns the first step
    run, the losses and the summed loss terms."""
    cfg, bs, spe = run.cfg, run.bs, run.steps_per_epoch
    if run.pending is not None:
        p = run.pending
        order, s0, losses, terms_sum = p["order"].to(run.device), p["s"], p["losses"], p["terms"]
        run.pending = None
    else:
        if run.sample_w is not None:
            order = torch.multinomial(run.sample_w, spe * bs, replacement=True, generator=run.gen)
        else:
            order = torch.randperm(run.n, device=run.device, generator=run.gen)
        s0, losses, terms_sum = 0, [], {}
    for s in range(s0, spe):
        if _STOP["signal"] is not None:
            run.elapsed += time.perf_counter() - t_ep
            run.save_state(epoch - 1, {"order": order.cpu(), "s": s, "losses": losses, "terms": terms_sum})
            log(f"[{run.name}] stop requested (signal {int(_STOP['signal'])}): checkpoint at epoch {epoch - 1} "
                f"+ {s} steps written to {run.st_path}; continue with --resume")
            raise Interrupted(run.name)
        idx = order[s * bs:(s + 1) * bs]
        step = (epoch - 1) * spe + s
        for g, lr0 in zip(run.opt.param_groups, run.base_lrs):
            g["lr"] = lr0 * run.lr_at(step)
        ramp = cfg["lambda_n_warmup_frac"] * run.plan["epochs"] * spe
        ln = cfg["lambda_n"] * min(1.0, step / ramp) if ramp > 0 else cfg["lambda_n"]
        loss, terms = _train_step(run.model, run.opt, *run.batch_at(idx), cfg, run.cw, run.device, ln, run.bf16)
        if run.ema is not None:
            run.ema.update(run.model)
        losses.append(loss)
        for k, v in terms.items():
            terms_sum[k] = terms_sum.get(k, 0.0) + v
    if not all(math.isfinite(v) for v in losses):
        raise FloatingPointError(f"[{run.name}] non-finite loss in epoch {epoch}")
    return s0, losses, terms_sum


@torch.no_grad()
def repair_batchnorm(net, x_uint8: torch.Tensor, size: int, device: torch.device,
                     batches: int = 8, batch: int = 64) -> List[str]:
    """Re-estimates, in float32, the running statistics of the batch-norm layers of ``net`` whose
    statistics are not finite, from ``batches`` batches of ``x_uint8`` (a fixed draw: no RNG stream
    of the training is used); every other layer keeps its own. One overflowing batch leaves a
    layer's running variance infinite for good while training goes on with batch statistics, and
    the network then predicts one grade for every knee in eval mode. Returns the layers repaired."""
    broken = [(name, m) for name, m in net.named_modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.track_running_stats
              and not (torch.isfinite(m.running_mean).all() and torch.isfinite(m.running_var).all())]
    if not broken:
        return []
    was_training = net.training
    net.eval()
    momenta = []
    for _, m in broken:
        momenta.append(m.momentum)
        m.reset_running_stats()
        m.momentum = None          # a cumulative average over the batches below
        m.train()
    order = torch.randperm(x_uint8.shape[0], generator=torch.Generator().manual_seed(0))[:batches * batch]
    for i in range(0, len(order), batch):
        xb = to_input(x_uint8[order[i:i + batch]].to(device), size)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        net(xb)
    for (_, m), momentum in zip(broken, momenta):
        m.momentum = momentum
    net.train(was_training)
    return [name for name, _ in broken]


def _validate(run: _Run, val_x: torch.Tensor, val_y: np.ndarray, epoch: int):
    """Validation of the weights that would be kept (the EMA's where there is one); the best so far
    is replaced when its QWK is beaten. Batch-norm statistics that are not finite are re-estimated
    first, in the trained network and in the one validated. Returns the report, whether it was the
    best, and the layers repaired."""
    repaired = repair_batchnorm(run.model, run.train_x, run.size, run.device)
    if run.ema is not None:
        repair_batchnorm(run.ema.model, run.train_x, run.size, run.device)
    net = run.eval_net()
    logits = predict_logits(net, val_x, run.size, run.device)
    r = report(softmax(logits), val_y, run.cfg["num_classes"])
    improved = r["qwk"] > run.best["qwk"]
    if improved:
        run.best = {"qwk": r["qwk"], "epoch": epoch, "val": r, "logits": logits,
                    "state_dict": {k: v.detach().float().cpu().clone() for k, v in net.state_dict().items()}}
    return r, improved, repaired


def _replan(run: _Run, epoch: int, ep_s: float, s0: int, last: bool, line: dict) -> None:
    """The epoch time used for planning: the median of the last five (a resumed epoch counts
    scaled up), so one epoch slowed by other work on the machine does not cut the plan short.
    With a budget, the number of epochs is fitted to the time left."""
    plan, spe = run.plan, run.steps_per_epoch
    full_s = ep_s * spe / max(1, spe - s0)
    plan.setdefault("epoch_times", []).append(full_s)
    plan["epoch_s"] = float(np.median(plan["epoch_times"][-5:]))
    if run.budget and plan["epoch_s"] and not last:
        fit = epoch + int(max(0.0, run.budget - run.elapsed) / plan["epoch_s"])
        new = max(epoch, min(run.cfg["epochs"], fit))
        if new != plan["epochs"]:
            line["replanned"] = f"{plan['epochs']}->{new}"
            plan["epochs"] = new


def _run_epoch(run: _Run, epoch: int, val_x: torch.Tensor, val_y: np.ndarray, log) -> None:
    """One epoch: its steps, validation when due, re-planning, its log line and the saved state."""
    cfg, spe = run.cfg, run.steps_per_epoch
    run.model.train()
    t_ep = time.perf_counter()
    s0, losses, terms_sum = _train_epoch(run, epoch, t_ep, log)
    t_train = time.perf_counter() - t_ep
    line = {"member": run.name, "epoch": epoch, "of": run.plan["epochs"], "loss": round(float(np.mean(losses)), 4),
            "terms": {k: round(v / spe, 4) for k, v in terms_sum.items()},
            "lr": round(run.opt.param_groups[0]["lr"], 5), "train_s": round(t_train, 1),
            "ms_per_image": round(t_train * 1000 / max(1, (spe - s0) * run.bs), 1)}
    last = epoch == run.plan["epochs"]
    early = epoch <= cfg["eval_after_frac"] * run.plan["epochs"]  # early epochs are never the best: save the time
    if (epoch % cfg["eval_every"] == 0 and not early) or last:
        r, improved, repaired = _validate(run, val_x, val_y, epoch)
        line.update({"val_acc": round(r["accuracy"], 4), "val_qwk": round(r["qwk"], 4),
                     "val_per_grade": [round(v, 3) if v is not None else None for v in r["per_grade_accuracy"]]})
        if repaired:
            line["batchnorm_reestimated"] = repaired
        if improved:
            line["best"] = True
    ep_s = time.perf_counter() - t_ep
    run.elapsed += ep_s
    _replan(run, epoch, ep_s, s0, last, line)
    line["eta_s"] = round(max(0, run.plan["epochs"] - epoch) * (run.plan["epoch_s"] or ep_s))
    run.history.append({k: v for k, v in line.items() if k != "member"})
    log(json.dumps(line))
    if epoch == run.plan["epochs"] and "val_qwk" not in line:
        # re-planning made this the last epoch after it ran: validate it now
        r, _, _ = _validate(run, val_x, val_y, epoch)
        log(json.dumps({"member": run.name, "epoch": epoch, "val_acc": round(r["accuracy"], 4),
                        "val_qwk": round(r["qwk"], 4)}))
    run.save_state(epoch, None)


def _final_checkpoint(run: _Run, epoch: int, val_y: np.ndarray, log, out_path: Optional[Path]) -> Dict[str, object]:
    """The best epoch's weights with a softmax temperature fitted on val, and the run's record."""
    best = run.best
    temp = fit_temperature(best["logits"], val_y)
    ckpt = {"config": run.cfg, "state_dict": best["state_dict"], "best_epoch": best["epoch"],
            "epochs_run": epoch, "epochs_planned": run.plan["epochs"], "train_seconds": round(run.elapsed, 1),
            "precision": "bf16-autocast" if run.bf16 else "float32", "history": run.history,
            "val": best["val"], "temperature": temp, "val_calibrated": report(softmax(best["logits"], temp), val_y),
            "val_logits": best["logits"], "labels": LABELS}
    log(f"[{run.name}] best epoch {best['epoch']}: val qwk {best['qwk']:.4f} acc {best['val']['accuracy']:.4f}, "
        f"temperature {temp:.3f}, {ckpt['train_seconds']}s")
    if out_path is not None:
        Path(out_path).parent.mkdir(parents=True, exist_ok=True)
        _save_atomic(ckpt, Path(out_path))
    return ckpt


def train_member(cfg: dict, train_x: torch.Tensor, train_y: torch.Tensor, val_x: torch.Tensor, val_y: np.ndarray,
                 device: torch.device, log: Callable[[str], None], out_path: Optional[Path] = None,
                 resume: bool = False) -> Dict[str, object]:
    """Train one member on uint8 tensors already on ``device``; return its best checkpoint dict.

    With ``out_path``, a resumable state (weights, EMA, optimizer, schedule position, RNG states,
    epoch, best so far, elapsed time) is written to ``<out_path>.state.pt`` after every epoch and
    when a stop is requested (SIGTERM via :func:`install_stop_handlers`; then :class:`Interrupted`
    is raised). ``resume=True`` continues from that state. With ``cfg['time_budget_s']`` the number
    of epochs is planned from a timing probe and re-planned after every epoch from the measured
    epoch time, so the cosine schedule always ends within the budget, however busy the machine.
    """
    run = _Run(cfg, train_x, train_y, device, out_path)
    if resume and run.st_path is not None and run.st_path.exists():
        _resume(run, log)
    elif run.budget:
        _plan_budget(run, val_x, log)
    bf16 = run.bf16
    log(f"[{run.name}] {'bf16 autocast + channels_last' if bf16 else 'float32'} training"
        f"{'' if bf16 or device.type == 'cuda' else ' (bf16: ' + bf16_support()[1] + ')'}; "
        f"validation, selection and temperature in float32")
    epoch = run.epoch_done
    while epoch < run.plan["epochs"]:
        epoch += 1
        _run_epoch(run, epoch, val_x, val_y, log)
    return _final_checkpoint(run, epoch, val_y, log, out_path)


def report_heldout_val(ckpt: dict, held, device: torch.device, log, out_path: Path) -> dict:
    """For a member chosen on the selection set: its figures on val, measured once and stored as
    ``val_heldout`` (``val``/``val_calibrated``/``val_logits`` of such a checkpoint are the selection
    set's, marked by ``chosen_on``)."""
    model = build_model(ckpt["config"]).to(device)
    model.load_state_dict(ckpt["state_dict"])
    vx, vy = held
    logits = predict_logits(model, torch.from_numpy(vx).to(device), ckpt["config"]["input_size"], device)
    r = report(softmax(logits, ckpt["temperature"]), vy, ckpt["config"]["num_classes"])
    ckpt.update({"chosen_on": "selection", "val_heldout": r, "val_heldout_logits": logits})
    _save_atomic(ckpt, Path(out_path))
    log(f"[{ckpt['config']['name']}] val (reported once, not chosen on): accuracy {r['accuracy']:.4f} "
        f"qwk {r['qwk']:.4f} per grade {[None if v is None else round(v, 3) for v in r['per_grade_accuracy']]}")
    return r


def load_checkpoint(path):
    ckpt = _torch_load(path)
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
    ap.add_argument("--resume", action="store_true", help="continue from <out>/<member>.state.pt where present")
    ap.add_argument("--set", action="append", metavar="KEY=JSON", help="override a config key for every member")
    args = ap.parse_args(argv)
    cfg = apply_overrides(load_config(args.config), args.set)
    out = Path(args.out) if args.out else Path(__file__).parent / "runs" / Path(args.config).stem
    out.mkdir(parents=True, exist_ok=True)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    install_stop_handlers()
    log = make_logger(out / "train_log.txt")
    device = pick_device()
    t0 = time.perf_counter()
    (tx, ty), selection = load_train_selection(cfg)
    vx, vy = load_split(cfg, "val")
    held = None
    if selection is not None:
        # Epochs and temperature are chosen on the selection set; val is only reported, once.
        held, (vx, vy) = (vx, vy), selection
    log(f"device {device}, torch {torch.__version__}; train {len(ty)} "
        f"{'selection' if held is not None else 'val'} {len(vy)}"
        f"{f' (val {len(held[1])} reported once)' if held is not None else ''} images "
        f"(loaded in {time.perf_counter() - t0:.1f}s)")
    tx_t, ty_t = torch.from_numpy(tx).to(device), torch.from_numpy(ty).to(device)
    vx_t = torch.from_numpy(vx).to(device)
    for m in cfg["members"]:
        if args.member and m["name"] not in args.member:
            continue
        mc = member_config(cfg, m)
        if args.resume and (out / f"{mc['name']}.pt").exists() and not state_path(out / f"{mc['name']}.pt").exists():
            log(f"[{mc['name']}] already trained ({mc['name']}.pt): skipped")
            continue
        try:
            ckpt = train_member(mc, tx_t, ty_t, vx_t, vy, device, log, out / f"{mc['name']}.pt", resume=args.resume)
        except Interrupted:
            raise SystemExit(143)
        if held is not None:
            report_heldout_val(ckpt, held, device, log, out / f"{mc['name']}.pt")
        state_path(out / f"{mc['name']}.pt").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
