"""The plain-CNN floor the PIM members are measured against, on the same CPU and budget as one.

``python3 -m models.baseline --size 128 --time-budget-s 2000 --out models/runs/baseline``

A torchvision ResNet-18 (1 grey channel, random init, no PIM head) trained with a standard recipe:
bf16 autocast + channels_last where the CPU has it, batch 64, SGD momentum 0.9 Nesterov, one-cycle
to lr 0.1, weight decay 5e-4, label smoothing 0.1, the toolkit's augmentation (flip, rotation,
scale, shift, brightness/contrast/gamma), best epoch by val QWK with flip test-time augmentation.
With a time budget the number of epochs (at most ``--epochs``) is planned from a timing probe, so
the run ends inside the budget; one JSON line per epoch and ``<out>/baseline.json`` with the best
epoch's val figures. It answers "is it the PIM head or the budget?" — train it with the budget and
input size a PIM member got in ``models.cpu_run``.
"""
import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from .data import augment, to_input
from .metrics import report
from .train import autocast_ctx, bf16_support, load_split

AUGMENT = {"rotate_deg": 10.0, "scale": 0.10, "shift": 0.08, "hflip": 0.5, "brightness": 0.10,
           "contrast": 0.15, "gamma": 0.15}


def build_resnet18() -> torch.nn.Module:
    m = torchvision.models.resnet18(weights=None, num_classes=5)
    m.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    torch.nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
    return m


@torch.no_grad()
def predict_tta(model, x_uint8: torch.Tensor, size: int, batch: int = 128) -> np.ndarray:
    """Mean of the softmax of the image and its horizontal mirror (float32)."""
    model.eval()
    out = []
    for i in range(0, x_uint8.shape[0], batch):
        x = (to_input(x_uint8[i:i + batch], size) - 0.5) / 0.25
        p = F.softmax(model(x), 1) + F.softmax(model(torch.flip(x, dims=[3])), 1)
        out.append((p / 2).numpy())
    return np.concatenate(out)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--epochs", type=int, default=24, help="at most this many epochs")
    ap.add_argument("--time-budget-s", type=float, default=None)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--train-dir", default="../shared/data/knee-kl/train")
    ap.add_argument("--val-dir", default="../shared/data/knee-kl/val")
    ap.add_argument("--limit-per-grade", type=int, default=None)
    ap.add_argument("--out", default="models/runs/baseline")
    a = ap.parse_args(argv)

    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    gen = torch.Generator().manual_seed(a.seed)
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = {"train_dir": a.train_dir, "val_dir": a.val_dir, "limit_per_grade": a.limit_per_grade,
           "val_limit_per_grade": a.limit_per_grade}
    tx, ty = (torch.from_numpy(v) for v in load_split(cfg, "train"))
    vx, vy = load_split(cfg, "val")
    vx = torch.from_numpy(vx)
    bf16, why = bf16_support()
    print(json.dumps({"baseline": "resnet18", "size": a.size, "train": len(ty), "val": len(vy),
                      "bf16": bf16, "bf16_reason": why}), flush=True)

    model = build_resnet18().to(memory_format=torch.channels_last)
    decay = [p for p in model.parameters() if p.ndim > 1]
    rest = [p for p in model.parameters() if p.ndim <= 1]
    opt = torch.optim.SGD([{"params": decay, "weight_decay": 5e-4}, {"params": rest, "weight_decay": 0.0}],
                          lr=a.lr, momentum=0.9, nesterov=True)
    steps = len(ty) // a.batch
    device = torch.device("cpu")

    def step(idx):
        x = (augment(tx[idx], a.size, AUGMENT, gen) - 0.5) / 0.25
        with autocast_ctx(device, bf16):
            loss = F.cross_entropy(model(x.contiguous(memory_format=torch.channels_last)).float(), ty[idx],
                                   label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return float(loss)

    epochs = a.epochs
    if a.time_budget_s:  # plan from a probe (its updates are undone: weights and optimizer reset)
        state = ({k: v.clone() for k, v in model.state_dict().items()}, opt.state_dict())
        model.train()
        t0 = time.time()
        for _ in range(6):
            step(torch.randint(len(ty), (a.batch,), generator=gen))
        per_step = (time.time() - t0) / 6
        model.load_state_dict(state[0])
        opt.load_state_dict(state[1])
        t_eval = per_step * len(vy) / a.batch * 0.6
        epochs = max(1, min(a.epochs, int(a.time_budget_s / (steps * per_step + t_eval))))
        print(json.dumps({"plan": {"epochs": epochs, "s_per_step": round(per_step, 3)}}), flush=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=a.lr, total_steps=max(8, epochs * steps),  # >= 8: tiny runs
                                                pct_start=0.25, div_factor=25, final_div_factor=1e3)
    best, t_start = None, time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        perm = torch.randperm(len(ty), generator=gen)
        losses = []
        for s in range(steps):
            losses.append(step(perm[s * a.batch:(s + 1) * a.batch]))
            sched.step()
        probs = predict_tta(model, vx, a.size)
        r = report(probs, vy)
        line = {"epoch": epoch, "of": epochs, "loss": round(float(np.mean(losses)), 4),
                "elapsed_s": round(time.time() - t_start), "accuracy": round(r["accuracy"], 4),
                "qwk": round(r["qwk"], 4), "per_grade": [round(v, 2) for v in r["per_grade_accuracy"]]}
        print(json.dumps(line), flush=True)
        if best is None or r["qwk"] > best["qwk"]:
            best = dict(r, epoch=epoch)
    doc = {"model": "torchvision resnet18, 1 grey channel, random init, no PIM head",
           "recipe": "SGD-Nesterov 0.9, one-cycle to lr %g, batch %d, wd 5e-4, label smoothing 0.1, "
                     "toolkit augmentation, best epoch by val QWK, flip TTA" % (a.lr, a.batch),
           "size": a.size, "epochs": epochs, "time_budget_s": a.time_budget_s,
           "train_seconds": round(time.time() - t_start), "bf16": bf16, "best": best,
           "val_probabilities_rule": "mean softmax of image and mirror"}
    (out / "baseline.json").write_text(json.dumps(doc, indent=1))
    print(json.dumps({"best": {k: best[k] for k in ("epoch", "accuracy", "qwk", "mae", "per_grade_accuracy")}}))


if __name__ == "__main__":
    main()
