"""PyTorch side of the Node inference benchmark (tests/bench/infer.bench.ts).

``python3 -m models.bench_export --config models/configs/gpu.json --out DIR --threads 2 --batches 1 8``

Builds the members of a config at their real architecture and input size (random weights: speed
does not depend on training), exports them to ONNX in DIR with a manifest the Node runtime opens
(status "smoke": never a product model), writes the benchmark crops (synthetic uint8 grey images,
``crops.bin``, N x H x W), times PyTorch eval inference of the whole ensemble on those crops at each
batch size, and prints one JSON line: the members, the crops file, PyTorch's median ms per knee per
batch size and each member's logits on the largest batch (so the Node side can check it ran the
same model on the same inputs).

With ``--serve`` it times nothing by itself: after that JSON line it reads one JSON request per line
on stdin, ``{"batch": B}``, runs every member once on the first B crops and answers
``{"ms": <wall ms>}``, so the caller can interleave PyTorch and its own runs (paired samples under
the same machine load); EOF ends it.
"""
import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .config import load_config, member_config
from .export import fixture_input, member_entry, write_manifest
from .onnx_io import export_onnx, torch_outputs
from .pim import ExportWrapper, build_model


def build_members(cfg: dict):
    """(model, member config) for each member, eval mode, trained-like random weights."""
    out = []
    for m in cfg["members"]:
        mc = member_config(cfg, m)
        torch.manual_seed(int(mc.get("seed", 0)))
        model = build_model(mc).eval()
        with torch.no_grad():  # as models.bench: zero-initialised BN scales would be folded away
            for mod in model.modules():
                if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                    mod.weight.uniform_(0.5, 1.5)
        model.member_name = mc["name"]
        out.append((model, mc))
    return out


def export_members(members, out_dir: Path) -> Path:
    entries = []
    for model, mc in members:
        path = export_onnx(model, out_dir / f"{mc['name']}.onnx")
        entries.append(member_entry(model, {"config": mc, "temperature": 1.0}, path))
    return write_manifest(entries, out_dir, "smoke",
                          extra={"bench": "random weights, for speed measurements only"})


class EnsembleTimer:
    """Wall ms of one eval forward pass of every member on the first ``b`` crops (grey / 255)."""

    def __init__(self, members, grey: np.ndarray):
        self.wrappers = [ExportWrapper(m.float().eval()).eval() for m, _ in members]
        self.image = torch.from_numpy(grey[:, None].astype(np.float32) / 255.0)

    def run(self, b: int) -> float:
        x = self.image[:b]
        with torch.no_grad():
            t = time.perf_counter()
            for w in self.wrappers:
                w(x)
            return (time.perf_counter() - t) * 1000


def time_torch(timer: EnsembleTimer, batches, repeats: int, warmup: int):
    """Median wall ms per knee of all members' eval forward passes, per batch size."""
    res = {}
    for b in batches:
        runs = [timer.run(b) for _ in range(warmup + repeats)][warmup:]
        res[str(b)] = {"ms_per_knee": statistics.median(runs) / b, "runs_ms": [round(r, 2) for r in runs]}
    return res


def serve(timer: EnsembleTimer, count: int, stdin=None, stdout=None):
    stdin, stdout = stdin or sys.stdin, stdout or sys.stdout
    for line in stdin:
        if not line.strip():
            continue
        b = int(json.loads(line)["batch"])
        if not 1 <= b <= count:
            raise SystemExit(f"batch {b} outside 1..{count}")
        stdout.write(json.dumps({"ms": timer.run(b)}) + "\n")
        stdout.flush()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=str(Path(__file__).parent / "configs" / "gpu.json"))
    ap.add_argument("--out", required=True, help="folder for the ONNX members, manifest.json, crops.bin")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 8])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--serve", action="store_true", help="answer timing requests on stdin (see above)")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = load_config(args.config)
    t0 = time.perf_counter()
    members = build_members(cfg)
    manifest = export_members(members, out)
    export_s = time.perf_counter() - t0
    sizes = {mc["input_size"] for _, mc in members}
    if len(sizes) != 1:
        raise SystemExit(f"members disagree on input_size: {sorted(sizes)}")
    size = sizes.pop()
    n = max(args.batches)
    grey = fixture_input(size, batch=n, seed=args.seed)[:, 0]  # N x H x W uint8
    (out / "crops.bin").write_bytes(np.ascontiguousarray(grey).tobytes())
    timer = EnsembleTimer(members, grey)
    timing = None if args.serve else time_torch(timer, args.batches, args.repeats, args.warmup)
    image = grey[:, None].astype(np.float32) / 255.0
    logits = {m.member_name: torch_outputs(m, image)["logits"].round(6).tolist() for m, _ in members}
    print(json.dumps({
        "manifest": str(manifest), "crops_file": str(out / "crops.bin"), "count": n,
        "input_size": size, "members": [mc["name"] for _, mc in members],
        "threads": torch.get_num_threads(), "torch": torch.__version__, "export_s": round(export_s, 1),
        "timing": timing, "logits": logits,
    }), flush=True)
    if args.serve:
        serve(timer, n)


if __name__ == "__main__":
    main()
