"""ONNX export and running ONNX models with whatever runtime this machine has.

Runtimes, in order: Python ``onnxruntime`` (the GPU machine has it), then ``onnxruntime-node``
through ``node`` (the Node side's runtime; found in the repo's node_modules or in the folder named
by $KNEEGRADE_ORT_NODE_DIR). Debian's onnx 1.12 has no reference evaluator.
"""
import inspect
import json
import os
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from .pim import PIM, ExportWrapper

OPSET = 17
REPO_ROOT = Path(__file__).resolve().parent.parent
NODE_RUNNER = Path(__file__).resolve().parent / "ort_node_run.cjs"


def output_names(model: PIM) -> List[str]:
    return ["logits"] + [f"tokens_l{i + 1}" for i in range(len(model.grids))]


def export_onnx(model: PIM, path: Path, batch: int = 2) -> Path:
    """Export ``model`` (eval mode, float32) with a dynamic batch axis named ``batch``."""
    model = model.float().eval()
    wrapper = ExportWrapper(model).eval()
    dummy = torch.rand(batch, 1, model.input_size, model.input_size)
    names = output_names(model)
    dyn = {n: {0: "batch"} for n in ["image"] + names}
    kwargs = dict(input_names=["image"], output_names=names, dynamic_axes=dyn, opset_version=OPSET,
                  do_constant_folding=True)
    if "dynamo" in inspect.signature(torch.onnx.export).parameters:
        kwargs["dynamo"] = False  # torch >= 2.9 defaults to the dynamo exporter; keep the TorchScript one
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about shape checks are expected here
        try:
            torch.onnx.export(wrapper, (dummy,), str(path), **kwargs)
        except Exception as err:  # noqa: BLE001 - fall back to the dynamo exporter where TorchScript is gone
            if "dynamo" not in kwargs:
                raise
            print(f"TorchScript ONNX export failed ({err!r}); trying dynamo exporter", flush=True)
            kwargs.pop("dynamic_axes")
            kwargs["dynamo"] = True
            kwargs["dynamic_shapes"] = {"image": {0: torch.export.Dim("batch", min=1, max=4096)}}
            torch.onnx.export(wrapper, (dummy,), str(path), **kwargs)
    import onnx
    m = onnx.load(str(path))
    onnx.checker.check_model(m)
    return path


def torch_outputs(model: PIM, image: np.ndarray) -> Dict[str, np.ndarray]:
    model = model.float().eval()
    with torch.no_grad():
        outs = ExportWrapper(model)(torch.from_numpy(image))
    return {n: o.numpy() for n, o in zip(output_names(model), outs)}


def find_ort_node_dir() -> Optional[Path]:
    cands = []
    if os.environ.get("KNEEGRADE_ORT_NODE_DIR"):
        cands.append(Path(os.environ["KNEEGRADE_ORT_NODE_DIR"]))
    cands.append(REPO_ROOT)
    for c in cands:
        if (c / "node_modules" / "onnxruntime-node" / "package.json").exists():
            return c
    return None


def available_runtime() -> Optional[str]:
    try:
        import onnxruntime  # noqa: F401
        return "onnxruntime"
    except ImportError:
        pass
    if shutil.which("node") and find_ort_node_dir() is not None:
        return "onnxruntime-node"
    return None


def run_onnx(path: Path, image: np.ndarray, threads: int = 1, repeats: int = 0) -> Dict[str, object]:
    """Run one ONNX file on ``image`` (float32 NCHW). Returns outputs and, when repeats > 0,
    the median latency in ms of ``repeats`` timed runs (after one warm-up)."""
    rt = available_runtime()
    image = np.ascontiguousarray(image, dtype=np.float32)
    if rt == "onnxruntime":
        import time
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        names = [o.name for o in sess.get_outputs()]
        outs = sess.run(names, {"image": image})
        res = {"outputs": dict(zip(names, outs)), "runtime": rt}
        if repeats:
            ts = []
            for _ in range(repeats):
                t = time.perf_counter()
                sess.run(names, {"image": image})
                ts.append((time.perf_counter() - t) * 1000)
            res["ms"] = float(np.median(ts))
        return res
    if rt == "onnxruntime-node":
        with tempfile.TemporaryDirectory() as td:
            inp = Path(td) / "in.bin"
            image.tofile(inp)
            req = {"model": str(Path(path).resolve()), "input": str(inp), "shape": list(image.shape),
                   "threads": threads, "repeats": repeats, "outdir": td}
            env = dict(os.environ, NODE_PATH=str(find_ort_node_dir() / "node_modules"))
            p = subprocess.run(["node", str(NODE_RUNNER), json.dumps(req)], capture_output=True, text=True,
                               env=env, timeout=600)
            if p.returncode != 0:
                raise RuntimeError(f"onnxruntime-node failed: {p.stderr[-2000:]}")
            meta = json.loads(p.stdout.strip().splitlines()[-1])
            outs = {}
            for o in meta["outputs"]:
                outs[o["name"]] = np.fromfile(Path(td) / o["file"], dtype=np.float32).reshape(o["shape"])
            res = {"outputs": outs, "runtime": rt}
            if repeats:
                res["ms"] = meta["ms"]
            return res
    raise RuntimeError("no ONNX runtime: install Python onnxruntime or onnxruntime-node (set KNEEGRADE_ORT_NODE_DIR)")
