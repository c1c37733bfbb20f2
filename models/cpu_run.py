"""The CPU run: train every member, export, write the manifest and evaluate on val, in one command.

    setsid nohup nice -n 10 /usr/bin/python3 -m models.cpu_run --config models/configs/cpu.json \\
        > models/runs/cpu.out 2>&1 &
    python3 -m models.cpu_run --config models/configs/cpu.json --resume     # after an interruption

Trains the members one after another from the PNG folders (``train_dir``/``val_dir``), with bf16
autocast + channels_last where the CPU supports it (models.train), inside one wall-clock budget
(``--time-budget-s``, default the config's ``time_budget_s``) shared between the members by their
``budget_weight``; time a finished member did not use goes to the members after it. Every member
writes a resumable state after each epoch (``<work>/<member>.state.pt``); SIGTERM or SIGINT writes
one at once and exits with status 143; ``--resume`` continues where it stopped. When every member
is trained: ONNX export (float32) with a parity check against PyTorch (onnxruntime-node or Python
onnxruntime), fixtures, ``manifest.json`` (status ``trained``, provenance), and an evaluation of
the exported files on the original val PNGs (``eval.json``, confusion matrix and reliability
diagram as PNG) in ``<work>/eval``.
"""
import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .config import apply_overrides, load_config, member_config, resolve
from .evaluate import evaluate, format_table
from .metrics import check_rule, ensemble_probabilities, fit_ensemble_temperature, pool, report, softmax
from .export import member_entry, val_ensemble_section, write_fixtures, write_manifest
from .gpu_run import ort_parity
from .onnx_io import compact_model, export_onnx, store_initializers_fp16
from .train import (REPO_ROOT, Interrupted, bf16_support, install_stop_handlers, load_checkpoint, load_split,
                    make_logger, state_path, train_member)

RUN_FILE = "run.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "cpu"


def _git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def export_shipped_member(trained, ckpt: dict, path: Path):
    """A trained member as it ships: conv-bn folded and weights rounded to float16 values, stored as
    float16 (half the bytes, so four members fit in 64 MiB); computation stays float32. Returns the
    exported model and its manifest entry (with the ONNX-vs-PyTorch parity)."""
    model = compact_model(trained)
    model.member_name = ckpt["config"]["name"]
    export_onnx(model, path)
    packed = store_initializers_fp16(path)
    entry = member_entry(model, ckpt, path)
    entry["weights"] = {"storage": "float16 initializers + Cast (conv-bn folded)", "compute": "float32",
                        "initializers_fp16": packed["converted"]}
    entry["parity"] = ort_parity(path, model, model.input_size)
    entry["training"]["precision"] = ckpt.get("precision")
    entry["training"]["epochs_planned"] = ckpt.get("epochs_planned")
    return model, entry


def member_budget(total_s: float, spent_s: float, weight: float, weights_left: float) -> float:
    """A member's share of what is left of the run's budget (unused time of earlier members included)."""
    return max(0.0, total_s - spent_s) * weight / max(weights_left, 1e-9)


def _parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True)
    ap.add_argument("--out", default="models/dist", help="where the ONNX members and manifest.json go")
    ap.add_argument("--work", default="models/runs/cpu", help="checkpoints, resumable states, log, evaluation")
    ap.add_argument("--time-budget-s", type=float, default=None, help="training budget for all members (seconds)")
    ap.add_argument("--resume", action="store_true", help="continue an interrupted run from --work")
    ap.add_argument("--status", default="trained", choices=["smoke", "candidate", "trained", "release"])
    ap.add_argument("--set", action="append", metavar="KEY=JSON", help="override a config key for every member")
    return ap.parse_args(argv)


def _open_run(args, cfg: dict, run_path: Path, log) -> dict:
    """The run's record (``run.json``): the interrupted one on ``--resume``, else a new one; this
    invocation counted in either way."""
    if args.resume and run_path.exists():
        run = json.loads(run_path.read_text())
        if args.time_budget_s:
            run["budget_s"] = args.time_budget_s
        log(f"cpu_run: resuming the run started {run['started_utc']} ({run['budget_s']:.0f}s budget)")
    else:
        budget = args.time_budget_s or cfg.get("time_budget_s") or 7200.0
        run = {"started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "budget_s": budget,
               "config": str(args.config), "command": " ".join(shlex.quote(a) for a in [sys.executable, "-m",
                                                                                       "models.cpu_run", *sys.argv[1:]]),
               "git_commit": _git_commit(), "wall_s": 0.0, "sessions": 0}
    run["sessions"] = run.get("sessions", 0) + 1
    run_path.write_text(json.dumps(run, indent=2))
    return run


def _train_members(members, run: dict, work: Path, data, device, log, resume: bool, t_begin: float):
    """Trains each member not trained yet, within its share of the run's budget; the wall time
    is added to ``run.json`` after every member (and on a stop, which exits with status 143).
    Returns the checkpoints and when the wall time not yet counted began."""
    tx_t, ty_t, vx_t, vy = data
    run_path = work / RUN_FILE
    ckpts = {}
    for i, mc in enumerate(members):
        pt = work / f"{mc['name']}.pt"
        if pt.exists() and not state_path(pt).exists():
            ckpts[mc["name"]] = load_checkpoint(pt)[1]
            log(f"[{mc['name']}] already trained: best epoch {ckpts[mc['name']]['best_epoch']}, skipped")
            continue
        spent = sum(c["train_seconds"] for c in ckpts.values())
        mc["time_budget_s"] = member_budget(run["budget_s"], spent, mc["budget_weight"],
                                            sum(m["budget_weight"] for m in members[i:]))
        try:
            ckpts[mc["name"]] = train_member(mc, tx_t, ty_t, vx_t, vy, device, log, pt, resume=resume)
        except Interrupted:
            run["wall_s"] += time.time() - t_begin
            run_path.write_text(json.dumps(run, indent=2))
            raise SystemExit(143)
        state_path(pt).unlink(missing_ok=True)
        run["wall_s"] += time.time() - t_begin
        t_begin = time.time()
        run_path.write_text(json.dumps(run, indent=2))
    return ckpts, t_begin


def _export_members(members, work: Path, out: Path, log):
    """Every trained member exported into a cleared ``out``; returns the manifest entries and models."""
    out.mkdir(parents=True, exist_ok=True)
    for old in list(out.glob("*.onnx")) + [out / "manifest.json", out / "fixtures.json"]:
        old.unlink(missing_ok=True)
    entries, models = [], []
    for mc in members:
        trained, ckpt = load_checkpoint(work / f"{mc['name']}.pt")
        model, entry = export_shipped_member(trained, ckpt, out / f"{mc['name']}.onnx")
        log(f"[{mc['name']}] exported {entry['file']} ({entry['bytes'] / 2**20:.1f} MiB); parity {entry['parity']}")
        entries.append(entry)
        models.append(model)
    return entries, models


def _provenance(run: dict, cfg: dict, bf16_ok: bool) -> dict:
    return {"run": {"kind": "cpu_run", "device": _cpu_name(), "threads": torch.get_num_threads(),
                    "torch": torch.__version__, "python": platform.python_version(),
                    "precision": "bf16 autocast + channels_last (training); float32 validation, "
                                 "temperature and export" if bf16_ok else "float32",
                    "command": run["command"], "config": run["config"], "seed": cfg["seed"],
                    "git_commit": run["git_commit"], "started_utc": run["started_utc"],
                    "budget_s": run["budget_s"], "wall_s_training": round(run["wall_s"], 1),
                    "sessions": run["sessions"]}}


def _calibration_val(members, ckpts_final, entries, member_probs, vy, rule, t_ens: float, log) -> dict:
    """Calibration on val from the training run's own val logits (float32, trained weights):
    ECE of each member and of the ensemble before (T = 1) and after temperature scaling."""
    calib = {}
    for mc, c, e in zip(members, ckpts_final, entries):
        calib[mc["name"]] = {"ece_T1": report(softmax(c["val_logits"]), vy)["ece"],
                             "ece_fitted": report(softmax(c["val_logits"], e["temperature"]), vy)["ece"],
                             "temperature": e["temperature"]}
    p1 = pool([softmax(c["val_logits"]) for c in ckpts_final], rule)
    pt = pool(member_probs, rule)
    calib["ensemble"] = {"ece_T1": report(p1, vy)["ece"], "ece_fitted": report(pt, vy)["ece"],
                         "ece_ensemble_temperature": report(ensemble_probabilities(member_probs, t_ens, rule), vy)["ece"],
                         "temperature": t_ens}
    log("calibration on val (ECE T=1 -> fitted): " + ", ".join(
        f"{k} {v['ece_T1']:.3f} -> {v['ece_fitted']:.3f}" for k, v in calib.items())
        + f"; ensemble temperature {t_ens} -> {calib['ensemble']['ece_ensemble_temperature']:.3f}")
    return calib


def main(argv=None):
    args = _parse_args(argv)
    t_begin = time.time()
    out, work = resolve(args.out, REPO_ROOT), resolve(args.work, REPO_ROOT)
    work.mkdir(parents=True, exist_ok=True)
    run_path = work / RUN_FILE
    if not args.resume and any(work.glob("*.state.pt")):
        raise SystemExit(f"{work} holds an interrupted run: pass --resume, or remove the folder to start over")
    log = make_logger(work / "train_log.txt")
    cfg = apply_overrides(load_config(args.config), args.set)
    rule = check_rule(cfg["ensemble_rule"])  # now, not after hours of training
    run = _open_run(args, cfg, run_path, log)
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])
    install_stop_handlers()
    device = torch.device("cpu")
    bf16_ok, bf16_why = bf16_support()
    log(f"cpu_run: config {args.config}, CPU {_cpu_name()}, {torch.get_num_threads()} threads, torch "
        f"{torch.__version__}, python {platform.python_version()}; bf16 autocast "
        f"{'on' if bf16_ok else 'off (float32)'}: {bf16_why}; budget {run['budget_s']:.0f}s")
    t0 = time.time()
    tx, ty = load_split(cfg, "train")
    vx, vy = load_split(cfg, "val")
    log(f"loaded train {len(ty)} (per grade {np.bincount(ty, minlength=5).tolist()}), val {len(vy)} images "
        f"in {time.time() - t0:.1f}s")
    data = (torch.from_numpy(tx), torch.from_numpy(ty), torch.from_numpy(vx), vy)

    members = [member_config(cfg, m) for m in cfg["members"]]
    _, t_begin = _train_members(members, run, work, data, device, log, args.resume, t_begin)

    # Export, parity, manifest, evaluation on the original PNGs.
    entries, models = _export_members(members, work, out, log)
    # The ensemble temperature, fitted on val (NLL) from the training run's own val logits (float32,
    # trained weights) after each member's temperature: the mean of the members' probabilities is
    # less confident than it is accurate when they disagree.
    ckpts_final = [load_checkpoint(work / f"{mc['name']}.pt")[1] for mc in members]
    have_logits = all("val_logits" in c for c in ckpts_final)
    member_probs = [softmax(c["val_logits"], e["temperature"]) for c, e in zip(ckpts_final, entries)] if have_logits else []
    t_ens = round(fit_ensemble_temperature(member_probs, vy, rule), 4) if have_logits else 1.0
    log(f"ensemble rule {rule}, temperature {t_ens}")
    fx = write_fixtures(models, out, [e["temperature"] for e in entries], t_ens, rule)
    run["wall_s"] += time.time() - t_begin
    provenance = _provenance(run, cfg, bf16_ok)
    write_manifest(entries, out, args.status, fx, provenance, t_ens, rule)
    if have_logits:
        provenance["calibration_val"] = _calibration_val(members, ckpts_final, entries, member_probs, vy, rule,
                                                         t_ens, log)
    doc = evaluate(resolve(cfg["val_dir"], REPO_ROOT), out, work / "eval", cfg.get("val_limit_per_grade"))
    provenance["val_ensemble"] = val_ensemble_section(doc["results"]["ensemble"])
    write_manifest(entries, out, args.status, fx, provenance, t_ens, rule)
    log(format_table(doc))
    total = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    log(f"cpu_run done: {out} holds {total / 2**20:.1f} MiB; training wall time {run['wall_s']:.0f}s")
    if total > 64 * 2**20:
        log("WARNING: the exported model is over 64 MiB")
    run_path.write_text(json.dumps(run, indent=2))


if __name__ == "__main__":
    main()
