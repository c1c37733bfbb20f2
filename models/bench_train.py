"""Training speed of a config's members on this machine, float32 vs bf16 autocast + channels_last:
``python3 -m models.bench_train --config models/configs/cpu.json [--batch 32] [--steps 6]``.

Prints one JSON line per member and precision: ms per image of one full training step (forward,
PIM loss, backward, SGD step) and, to show where the time goes, of the backbone alone (forward +
backward of the sum of its four feature maps). Random weights and random images: speed does not
depend on either. Numbers are wall-clock on whatever else the machine is doing; run it quietly.
"""
import argparse
import json
import time

import torch

from .config import load_config, member_config
from .losses import pim_loss
from .pim import build_model
from .train import autocast_ctx, bf16_support


def _time(fn, steps: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    t0 = time.perf_counter()
    for _ in range(steps):
        fn()
    return (time.perf_counter() - t0) / steps


def bench_member(mc: dict, bf16: bool, batch: int, steps: int) -> dict:
    torch.manual_seed(0)
    device = torch.device("cpu")
    model = build_model(mc).train()
    if bf16:
        model = model.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    size = mc["input_size"]
    x = torch.rand(batch, 1, size, size)
    if bf16:
        x = x.contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 5, (batch,))

    def full():
        with autocast_ctx(device, bf16):
            out = model(x)
            loss, _ = pim_loss(out, y, 5, mc["lambda_b"], mc["lambda_s"], mc["lambda_n"], mc["lambda_c"],
                               mc["ordinal_sigma"], mc["label_smoothing"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def backbone():
        with autocast_ctx(device, bf16):
            feats = model.backbone((x - 0.5) / 0.25)
            loss = sum(f.float().mean() for f in feats)
        opt.zero_grad(set_to_none=True)
        loss.backward()

    t_full = _time(full, steps)
    t_bb = _time(backbone, steps)
    return {"member": mc["name"], "backbone": mc["backbone"], "precision": "bf16+channels_last" if bf16 else "float32",
            "input": size, "batch": batch, "train_ms_per_image": round(t_full * 1000 / batch, 1),
            "backbone_ms_per_image": round(t_bb * 1000 / batch, 1),
            "head_share": round(max(0.0, 1 - t_bb / t_full), 2),
            "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2)}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--member", action="append", help="only these member names")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--precision", choices=["both", "float32", "bf16"], default="both")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    ok, why = bf16_support()
    print(json.dumps({"torch": torch.__version__, "threads": args.threads, "bf16": ok, "why": why}), flush=True)
    precisions = {"both": [False, True], "float32": [False], "bf16": [True]}[args.precision]
    for m in cfg["members"]:
        mc = member_config(cfg, m)
        if args.member and mc["name"] not in args.member:
            continue
        for bf16 in precisions:
            if bf16 and not ok:
                continue
            print(json.dumps(bench_member(mc, bf16, args.batch, args.steps)), flush=True)


if __name__ == "__main__":
    main()
