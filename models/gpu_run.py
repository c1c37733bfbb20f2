"""The one-shot GPU run: train every member, export, calibrate, check parity, write $OUT.

    python3 -m models.gpu_run --config models/configs/gpu.json --out "$OUT" --time-limit-s 560

Reads the packs (models/.pack/{train,val}.kgpack, made by ``python3 -m models.pack``), decodes
them once onto the device, trains the members one after another inside a shared time budget
(bf16 autocast on CUDA, float32 on CPU), keeps each member's best epoch by val QWK, fits its
temperature on val, exports ONNX and checks it with onnxruntime where installed. After every
member, $OUT holds a consistent manifest, fixtures and log, so a run cut short still returns
what it finished. $OUT gets 8 files: <member>.onnx x4 (or <member>.pt, fp16 weights, if
that member's export failed), manifest.json, fixtures.json, train_log.txt, eval_val.json.
"""
import argparse
import json
import os
import platform
import time
import traceback
from pathlib import Path

import numpy as np
import torch

from .config import apply_overrides, load_config, member_config, resolve
from .data import to_input
from .export import member_entry, write_fixtures, write_manifest
from .metrics import check_rule, pool, report, softmax
from .onnx_io import available_runtime, export_onnx, run_onnx, torch_outputs
from .train import REPO_ROOT, load_split, make_logger, pick_device, state_path, train_member

EXPORT_RESERVE_S = 15.0   # per member still to export
FINAL_RESERVE_S = 30.0    # final evaluation and manifest


def ort_parity(onnx_path: Path, model, size: int):
    """Max |ONNX runtime - torch| over all outputs at batch 1 and 3 (None without a runtime)."""
    rt = available_runtime()
    if rt is None:
        return None
    worst, worst_rel = 0.0, 0.0
    rs = np.random.RandomState(0)
    for b in (1, 3):
        x = rs.rand(b, 1, size, size).astype(np.float32)
        ref = torch_outputs(model, x)
        got = run_onnx(onnx_path, x)["outputs"]
        for n in ref:
            d = float(np.abs(ref[n] - got[n]).max())
            worst = max(worst, d)
            worst_rel = max(worst_rel, d / max(1e-12, float(np.abs(ref[n]).max())))
    # Near-tied token scores may be ordered differently by the two runtimes; that shows up here as
    # a logits difference well above float rounding while the token maps still agree.
    return {"runtime": rt, "batches": [1, 3], "max_abs_diff": worst, "max_rel_diff": worst_rel}


def ort_logits(onnx_path: Path, x: np.ndarray):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = min(16, os.cpu_count() or 1)
    sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
    return np.concatenate([sess.run(["logits"], {"image": x[i:i + 64]})[0] for i in range(0, len(x), 64)])


def _parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", default=os.environ.get("OUT"), help="output folder ($OUT)")
    ap.add_argument("--pack-dir", default="models/.pack", help="folder with train.kgpack and val.kgpack")
    ap.add_argument("--work", default="models/runs/gpu", help="checkpoints (not returned)")
    ap.add_argument("--time-limit-s", type=float, default=560.0, help="whole-script wall-clock limit")
    ap.add_argument("--status", default="candidate", choices=["smoke", "candidate", "trained", "release"])
    ap.add_argument("--set", action="append", metavar="KEY=JSON",
                    help="override a config key for every member (rehearsals: --set batch_size=4)")
    return ap.parse_args(argv)


def _set_up_device(cfg: dict):
    """The training device (CUDA tuned for speed where present) and its name."""
    device = pick_device()
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        dev_name = torch.cuda.get_device_name(0)
    else:
        dev_name = platform.processor() or "cpu"
        if cfg["threads"]:
            torch.set_num_threads(cfg["threads"])
    return device, dev_name


def _export_member(mc: dict, ckpt: dict, out: Path, log):
    """A trained member exported to ONNX with its parity: (model, manifest entry), or None when the
    export failed (its fp16 weights are then saved instead)."""
    from .pim import build_model
    model = build_model(ckpt["config"])
    model.load_state_dict(ckpt["state_dict"])
    model = model.float().eval()
    model.member_name = mc["name"]
    try:
        t0 = time.time()
        onnx_path = export_onnx(model, out / f"{mc['name']}.onnx")
        entry = member_entry(model, ckpt, onnx_path)
        entry["parity"] = ort_parity(onnx_path, model, model.input_size)
        if entry["bytes"] > 16 * 2**20:
            log(f"WARNING [{mc['name']}] ONNX file is over 16 MiB, its share of the model's 64 MiB")
        log(f"[{mc['name']}] exported {onnx_path.name} ({entry['bytes'] / 2**20:.1f} MiB, opset {entry['opset']}) "
            f"in {time.time() - t0:.1f}s; parity {entry['parity']}")
        return model, entry
    except Exception:  # noqa: BLE001 - keep the weights so the member can be exported later
        log(f"[{mc['name']}] export failed, saving fp16 weights instead:\n{traceback.format_exc()}")
        half = {k: (v.half() if v.is_floating_point() else v) for k, v in ckpt["state_dict"].items()}
        torch.save({"config": ckpt["config"], "state_dict": half, "temperature": ckpt["temperature"],
                    "val": ckpt["val"]}, out / f"{mc['name']}.pt")
        return None


def _train_and_export(members, args, data, device, dev_name: str, rule, deadline: float, t_begin: float, log):
    """Trains and exports the members one after another, each within its share of the time left;
    after every member ``out`` holds a consistent manifest and fixtures. Returns the manifest
    entries, the exported models and the names of the members that failed."""
    tx_t, ty_t, vx_t, vy = data
    out, work = Path(args.out), resolve(args.work, REPO_ROOT)
    entries, models, failed = [], [], []
    for i, mc in enumerate(members):
        left = len(members) - i
        avail = deadline - time.time() - EXPORT_RESERVE_S * left - FINAL_RESERVE_S
        if avail < 10:
            log(f"[{mc['name']}] skipped: only {avail:.0f}s left for training")
            failed.append(mc["name"])
            continue
        budget = avail / left
        if mc.get("time_budget_s"):
            budget = min(budget, mc["time_budget_s"])
        mc["time_budget_s"] = budget
        try:
            ckpt = train_member(mc, tx_t, ty_t, vx_t, vy, device, log, work / f"{mc['name']}.pt")
            state_path(work / f"{mc['name']}.pt").unlink(missing_ok=True)  # finished: only the checkpoint stays
        except Exception:  # noqa: BLE001 - one member failing must not cost the others
            log(f"[{mc['name']}] training failed:\n{traceback.format_exc()}")
            failed.append(mc["name"])
            continue
        exported = _export_member(mc, ckpt, out, log)
        if exported is None:
            failed.append(mc["name"])
        else:
            models.append(exported[0])
            entries.append(exported[1])
        if models:
            fx = write_fixtures(models, out, [e["temperature"] for e in entries], rule=rule)
            write_manifest(entries, out, args.status, fx,
                           {"run": {"device": dev_name, "torch": torch.__version__, "incomplete": failed,
                                    "elapsed_s": round(time.time() - t_begin, 1)}}, rule=rule)
    return entries, models, failed


def _evaluate_val(entries, models, vx: np.ndarray, vy: np.ndarray, rule, out: Path, log) -> dict:
    """The members and their ensemble on the (WebP-packed) val split, written to eval_val.json;
    the PNG evaluation is models.evaluate's job."""
    results, probs = {}, []
    for e, m in zip(entries, models):
        x = to_input(torch.from_numpy(vx), m.input_size).numpy()
        try:
            logits, backend = ort_logits(out / e["file"], x), "onnxruntime"
        except ImportError:
            with torch.no_grad():
                logits = np.concatenate([m(torch.from_numpy(x[j:j + 64]))["logits"].numpy()
                                         for j in range(0, len(x), 64)])
            backend = "torch"
        p = softmax(logits, e["temperature"])
        probs.append(p)
        results[e["name"]] = dict(report(p, vy), backend=backend, temperature=e["temperature"])
    results["ensemble"] = dict(report(pool(probs, rule), vy), rule=rule)
    (out / "eval_val.json").write_text(json.dumps({"data": "val (packed)", "results": results}, indent=2))
    for name, r in results.items():
        log(f"val {name}: acc {r['accuracy']:.4f} qwk {r['qwk']:.4f} mae {r['mae']:.3f} ece {r['ece']:.3f} "
            f"per grade {[round(v, 3) if v is not None else None for v in r['per_grade_accuracy']]}")
    return results


def main(argv=None):
    args = _parse_args(argv)
    t_begin = time.time()
    deadline = t_begin + args.time_limit_s
    if not args.out:
        raise SystemExit("--out or $OUT is required")
    out, work = Path(args.out), resolve(args.work, REPO_ROOT)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    log = make_logger(out / "train_log.txt")
    cfg = apply_overrides(load_config(args.config), args.set)
    rule = check_rule(cfg["ensemble_rule"])  # now, not after the training
    pack_dir = resolve(args.pack_dir, REPO_ROOT)
    cfg["train_pack"], cfg["val_pack"] = str(pack_dir / "train.kgpack"), str(pack_dir / "val.kgpack")
    device, dev_name = _set_up_device(cfg)
    log(f"gpu_run: config {args.config}, device {device} ({dev_name}), torch {torch.__version__}, "
        f"python {platform.python_version()}, time limit {args.time_limit_s:.0f}s")
    tx, ty = load_split(cfg, "train")
    vx, vy = load_split(cfg, "val")
    tx_t, ty_t = torch.from_numpy(tx).to(device), torch.from_numpy(ty).to(device)
    vx_t = torch.from_numpy(vx).to(device)
    log(f"decoded train {len(ty)} (per grade {np.bincount(ty, minlength=5).tolist()}), val {len(vy)} "
        f"images onto {device} in {time.time() - t_begin:.1f}s")

    members = [member_config(cfg, m) for m in cfg["members"]]
    entries, models, failed = _train_and_export(members, args, (tx_t, ty_t, vx_t, vy), device, dev_name, rule,
                                                deadline, t_begin, log)
    if models:
        results = _evaluate_val(entries, models, vx, vy, rule, out, log)
        fx = write_fixtures(models, out, [e["temperature"] for e in entries], rule=rule)
        write_manifest(entries, out, args.status, fx,
                       {"run": {"device": dev_name, "torch": torch.__version__, "incomplete": failed,
                                "elapsed_s": round(time.time() - t_begin, 1)},
                        "val_ensemble": {k: results["ensemble"][k] for k in ("accuracy", "qwk", "mae", "ece",
                                                                              "per_grade_accuracy", "rule")}},
                       rule=rule)
    files = sorted(p.name for p in out.iterdir())
    log(f"gpu_run done in {time.time() - t_begin:.1f}s; $OUT: {files}; failed: {failed}")
    if len(files) > 8:
        log("WARNING: more than the 8 files this run writes are in $OUT")


if __name__ == "__main__":
    main()
