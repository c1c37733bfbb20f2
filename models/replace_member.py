"""Swap one retrained member into an exported model; the other members stay as they are.

    python3 -m models.train --config models/configs/cpu.json --member resnet18 --out models/runs/r18 \\
        --set threads=1 --set time_budget_s=5100
    python3 -m models.replace_member --models models/dist --checkpoint models/runs/r18/resnet18.pt \\
        --out models/runs/r18/dist

Writes a new export folder (``--out``: a copy of ``--models`` with the member replaced; compare it
on val, then copy it over models/dist to ship it): the member exported as ``models.cpu_run``
exports it (conv-bn folded, float16-stored weights, parity against PyTorch), its manifest entry and
its fixtures (PyTorch outputs on the fixture input); the ensemble temperature refitted on val with
the exported members (``models.calibrate``); the member's calibration from its training run; the
new ensemble evaluated on the val PNGs from the exported files (``models.evaluate``: manifest
``val_ensemble``, ``eval.json`` and the PNGs in ``--eval-out``); and the replacement's provenance in
the manifest's ``replaced`` list. The checkpoint's member must be in the model under the same name;
it may take another input size when every member's input divides the largest by a whole factor
(the ensemble is then given crops of the largest size and a smaller member sees their block means,
as ``models.data.to_input`` and the Node runtime shrink them).
"""
import argparse
import datetime as _dt
import json
import shlex
import shutil
import sys
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .calibrate import calibrate, fixture_probabilities
from .cpu_run import _cpu_name, export_shipped_member
from .data import to_input
from .evaluate import evaluate, format_table
from .export import ensemble_fixture, member_fixture, sha256, val_ensemble_section
from .onnx_io import torch_outputs
from .train import load_checkpoint


def _write(path: Path, doc: dict, indent: Optional[int] = None) -> None:
    path.write_text(json.dumps(doc, indent=indent))


def replace_member(models_dir: Path, checkpoint: Path, out_dir: Path, data_dir: Path, eval_dir: Path,
                   limit_per_grade: Optional[int] = None, command: Optional[str] = None) -> dict:
    models_dir, out_dir, checkpoint = Path(models_dir), Path(out_dir), Path(checkpoint)
    if out_dir.exists() and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty: give a new folder for the model with the member replaced")
    trained, ckpt = load_checkpoint(checkpoint)
    name = ckpt["config"]["name"]
    man = json.loads((models_dir / "manifest.json").read_text())
    names = [m["name"] for m in man["members"]]
    if name not in names:
        raise ValueError(f"{checkpoint} holds member {name!r}; the model's members are {names}")
    i = names.index(name)
    sizes = [m["input"]["height"] for j, m in enumerate(man["members"]) if j != i] + [trained.input_size]
    crop = max(sizes)
    if any(crop % s for s in sizes):
        raise ValueError(f"{name}: input {trained.input_size} px; every member's input must divide the "
                         f"ensemble's crop ({crop} px, its largest member's) by a whole factor, got {sizes}")
    replaced_sha256 = man["members"][i]["sha256"]
    shutil.copytree(models_dir, out_dir, dirs_exist_ok=True)

    # The member, exported as models.cpu_run exports its members.
    model, entry = export_shipped_member(trained, ckpt, out_dir / man["members"][i]["file"])
    man["members"][i] = entry

    # Its fixtures, and the ensemble's at the current temperature (models.calibrate refits it).
    fx_path = out_dir / man["fixtures"]["file"]
    fx = json.loads(fx_path.read_text())
    grey = np.asarray(fx["input"]["grey_uint8"], np.uint8).reshape(fx["input"]["shape"])
    if crop > grey.shape[-1]:
        # A larger crop than before: the fixture input with every pixel repeated, so the other
        # members, which see its block means (the runtime's and models.data.to_input's shrinking),
        # see exactly the input their recorded outputs came from.
        k = crop // grey.shape[-1]
        grey = grey.repeat(k, axis=-2).repeat(k, axis=-1)
        fx["input"].update(shape=list(grey.shape), grey_uint8=grey.reshape(-1).tolist())
    outs = torch_outputs(model, to_input(torch.from_numpy(grey), trained.input_size).numpy())
    fx["members"][name] = member_fixture(outs)
    t_ens = float(man["ensemble"].get("temperature", 1.0))
    fx["ensemble"] = ensemble_fixture(fixture_probabilities(fx, man, t_ens), t_ens)
    _write(fx_path, fx)
    man["fixtures"]["sha256"] = sha256(fx_path)
    man.setdefault("replaced", []).append({
        "member": name, "utc": _dt.datetime.utcnow().replace(microsecond=0).isoformat() + "Z",
        "checkpoint": checkpoint.name, "command": command, "device": _cpu_name(),
        "torch": torch.__version__, "threads": ckpt["config"].get("threads"),
        "train_seconds": ckpt.get("train_seconds"), "epochs_run": ckpt.get("epochs_run"),
        "best_epoch": ckpt.get("best_epoch"), "seed": ckpt["config"].get("seed"),
        "time_budget_s": ckpt["config"].get("time_budget_s"), "replaces_sha256": replaced_sha256})
    # The member's calibration on val, from its training run (T = 1 and its own temperature).
    man.setdefault("calibration_val", {})[name] = {
        "ece_T1": ckpt["val"]["ece"], "ece_fitted": ckpt["val_calibrated"]["ece"], "temperature": entry["temperature"]}
    _write(out_dir / "manifest.json", man, indent=2)

    fitted = calibrate(out_dir, data_dir, limit_per_grade)
    doc = evaluate(data_dir, out_dir, eval_dir, limit_per_grade)
    man = json.loads((out_dir / "manifest.json").read_text())
    man["val_ensemble"] = val_ensemble_section(doc["results"]["ensemble"])
    _write(out_dir / "manifest.json", man, indent=2)
    return {"member": name, "ensemble_temperature": fitted["temperature"], "eval": doc}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="models/dist", help="the export folder whose member is replaced")
    ap.add_argument("--checkpoint", required=True, help="the retrained member (models.train's <name>.pt)")
    ap.add_argument("--out", required=True, help="a new folder for the model with the member replaced")
    ap.add_argument("--data", default="../shared/data/knee-kl/val", help="val PNGs, <dir>/<grade>/*.png")
    ap.add_argument("--eval-out", default=None, help="eval.json and PNGs (default <out>/../eval)")
    ap.add_argument("--limit-per-grade", type=int, default=None)
    args = ap.parse_args(argv)
    out = Path(args.out)
    command = " ".join(shlex.quote(a) for a in [sys.executable, "-m", "models.replace_member", *sys.argv[1:]])
    result = replace_member(Path(args.models), Path(args.checkpoint), out, Path(args.data),
                            Path(args.eval_out) if args.eval_out else out.parent / "eval", args.limit_per_grade,
                            command)
    print(format_table(result["eval"]))
    print(f"{result['member']} replaced in {out}; ensemble temperature {result['ensemble_temperature']}")


if __name__ == "__main__":
    main()
