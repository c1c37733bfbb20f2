"""Size and CPU latency of an ensemble config's members as ONNX (random weights; size and speed
do not depend on training): ``python3 -m models.bench --config models/configs/gpu.json``."""
import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from .config import load_config, member_config
from .onnx_io import available_runtime, export_onnx, run_onnx
from .pim import build_model


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", default=str(Path(__file__).parent / "configs" / "gpu.json"))
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args(argv)
    cfg = load_config(args.config)
    rt = available_runtime()
    rows, tot_bytes, tot_ms = [], 0, {t: 0.0 for t in args.threads}
    with tempfile.TemporaryDirectory() as td:
        for m in cfg["members"]:
            mc = member_config(cfg, m)
            model = build_model(mc).eval()
            with torch.no_grad():  # trained-like weights: zero-initialised BN scales would be deduplicated
                for mod in model.modules():
                    if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                        mod.weight.uniform_(0.5, 1.5)
            path = export_onnx(model, Path(td) / f"{mc['name']}.onnx")
            size = path.stat().st_size
            x = np.random.RandomState(0).rand(1, 1, mc["input_size"], mc["input_size"]).astype(np.float32)
            row = {"member": mc["name"], "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
                   "onnx_MiB": round(size / 2**20, 2)}
            for t in args.threads:
                if rt:
                    row[f"ms_{t}thr"] = round(run_onnx(path, x, threads=t, repeats=args.repeats)["ms"], 1)
                    tot_ms[t] += row[f"ms_{t}thr"]
            tot_bytes += size
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(json.dumps({"total_onnx_MiB": round(tot_bytes / 2**20, 2), "runtime": rt,
                      **{f"total_ms_{t}thr_batch1": round(v, 1) for t, v in tot_ms.items()}}))


if __name__ == "__main__":
    main()
