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


def fuse_conv_bn(model: PIM, size: Optional[int] = None) -> PIM:
    """A copy of ``model`` (eval mode) with every BatchNorm2d that directly follows a Conv2d folded
    into that convolution and replaced by Identity. Pairs are found by running one image and
    matching the BN's input tensor to a conv's output tensor, so it works for any backbone.
    The outputs stay equal to float32 rounding (checked)."""
    import copy
    from torch.nn.utils.fusion import fuse_conv_bn_eval
    fused = copy.deepcopy(model).float().eval()
    size = size or fused.input_size
    produced, pairs, hooks = {}, [], []
    names = {m: n for n, m in fused.named_modules()}

    def conv_hook(mod, _inp, out):
        produced[id(out)] = mod

    def bn_hook(mod, inp):
        conv = produced.get(id(inp[0]))
        if conv is not None:
            pairs.append((conv, mod))

    for m in fused.modules():
        if isinstance(m, torch.nn.Conv2d):
            hooks.append(m.register_forward_hook(conv_hook))
        elif isinstance(m, torch.nn.BatchNorm2d):
            hooks.append(m.register_forward_pre_hook(bn_hook))
    x = torch.rand(2, 1, size, size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ref = ExportWrapper(model.float().eval())(x)
        fused(x)
    for h in hooks:
        h.remove()
    parents = {}
    for n, m in fused.named_modules():
        for cn, c in m.named_children():
            parents[id(c)] = (m, cn)
    for conv, bn in pairs:
        new = fuse_conv_bn_eval(conv, bn)
        for target, repl in ((conv, new), (bn, torch.nn.Identity())):
            parent, child = parents[id(target)]
            setattr(parent, child, repl)
    with torch.no_grad():
        got = ExportWrapper(fused)(x)
    for r, g in zip(ref, got):
        if not torch.allclose(r, g, rtol=1e-3, atol=1e-3):
            raise RuntimeError(f"conv-bn fusion changed the outputs (max diff {(r - g).abs().max():.2e}); "
                               f"pairs: {[names[b] for _, b in pairs][:5]}")
    return fused


def round_weights_fp16(model: PIM) -> PIM:
    """Rounds every floating-point parameter and buffer to the nearest float16 value (kept as
    float32), so they can be stored as float16 without further loss."""
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(t.half().float())
    return model


def compact_model(model: PIM) -> PIM:
    """The model as it ships: conv-bn folded, weights rounded to float16 values. Evaluate, export
    and write fixtures from this model: the ONNX file then reproduces it in float32."""
    return round_weights_fp16(fuse_conv_bn(model))


def store_initializers_fp16(path: Path, min_elements: int = 16) -> Dict[str, int]:
    """Rewrites an exported ONNX file so that float32 initializers whose values are all exact in
    float16 are stored as float16, each followed by a Cast back to float32 (onnxruntime folds the
    casts when it loads the model: computation stays float32). Halves the file; lossless."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    m = onnx.load(str(path))
    g = m.graph
    casts, kept, converted = [], [], 0
    for init in g.initializer:
        arr = numpy_helper.to_array(init)
        if (init.data_type == TensorProto.FLOAT and arr.size >= min_elements
                and np.array_equal(arr.astype(np.float16).astype(np.float32), arr)):
            half = numpy_helper.from_array(arr.astype(np.float16), init.name + "__fp16")
            kept.append(half)
            casts.append(helper.make_node("Cast", [half.name], [init.name], to=TensorProto.FLOAT,
                                          name=init.name + "__cast"))
            converted += 1
        else:
            kept.append(init)
    before = path.stat().st_size
    del g.initializer[:]
    g.initializer.extend(kept)
    nodes = list(g.node)
    del g.node[:]
    g.node.extend(casts + nodes)
    onnx.checker.check_model(m)
    onnx.save(m, str(path))
    return {"converted": converted, "bytes_before": before, "bytes_after": path.stat().st_size}
