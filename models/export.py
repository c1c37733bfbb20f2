"""Export trained members to ONNX, write the manifest and the parity fixtures.

``python3 -m models.export --run models/runs/smoke --out models/out/smoke [--status smoke]``
reads every ``<run>/*.pt`` checkpoint written by models.train. The manifest's format is in
models/README.md.
"""
import argparse
import datetime as _dt
import hashlib
import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch

from . import LABELS
from .metrics import LOG_MEAN, MEAN, check_rule, ensemble_probabilities, softmax
from .onnx_io import export_onnx, output_names, torch_outputs
from .train import load_checkpoint

SCHEMA_VERSION = 1
FIXTURES_FILE = "fixtures.json"
# The knee localiser's settings travel with the model (manifest "localiser"): its thresholds, and
# its templates (models.knee_template's output) copied beside the members when the repo has them.
LOCALISER_THRESHOLDS = {"min_score": 0.45, "pair_min_score": 0.42, "low_confidence_score": 0.6,
                        "verifier_min_probability": 0.35}
KNEE_TEMPLATE = Path(__file__).resolve().parent.parent / "packages" / "knee" / "assets" / "knee-template.json"
DATA_SOURCE = {
    "name": "Knee Osteoarthritis Severity Grading Dataset (Chen 2018)",
    "doi": "10.17632/56rmx5bjcr.1",
    "licence": "CC BY 4.0",
    "derived_from": "Osteoarthritis Initiative (OAI) baseline radiographs",
    "splits_used": {"train": 5778, "val": 826},
}


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def onnx_opset(path: Path) -> int:
    import onnx
    m = onnx.load(str(path), load_external_data=False)
    return max(int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx"))


def fixture_input(size: int, batch: int = 2, seed: int = 1234) -> np.ndarray:
    """Deterministic synthetic grey images (no patient data): smooth bands plus noise, uint8."""
    rs = np.random.RandomState(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    imgs = []
    for b in range(batch):
        base = 0.5 + 0.3 * np.sin(2 * np.pi * (yy * (b + 1) + 0.3 * xx)) * np.cos(2 * np.pi * xx * (b + 2))
        imgs.append(np.clip(base * 255 + rs.normal(0, 20, (size, size)), 0, 255))
    return np.stack(imgs)[:, None].astype(np.uint8)


def member_entry(model, ckpt: dict, onnx_path: Path) -> Dict[str, object]:
    cfg = ckpt["config"]
    s = model.input_size
    outputs = [{"name": "logits", "shape": ["batch", model.num_classes],
                "meaning": "combiner class logits (uncalibrated); divide by temperature before softmax"}]
    for i, ((h, w), name) in enumerate(zip(model.grids, output_names(model)[1:])):
        outputs.append({"name": name, "shape": ["batch", model.num_classes, h, w], "stride": s // h,
                        "meaning": f"per-token class logits of FPN level {i + 1} (heat map, {h}x{w} grid)"})
    val = ckpt.get("val") or {}
    return {
        "name": cfg["name"],
        "backbone": cfg["backbone"],
        "file": onnx_path.name,
        "sha256": sha256(onnx_path),
        "bytes": onnx_path.stat().st_size,
        "opset": onnx_opset(onnx_path),
        "input": {
            "name": "image", "dtype": "float32", "layout": "NCHW", "shape": ["batch", 1, s, s],
            "channels": 1, "height": s, "width": s,
            "intensity": {"formula": "image = grey / 255", "scale": 1 / 255, "offset": 0.0, "range": [0.0, 1.0],
                          "in_graph_normalisation": {"mean": cfg["mean"], "std": cfg["std"]}},
            "preprocessing": {
                "clahe": {"expected": True,
                          "note": "trained on crops released CLAHE-enhanced (Chen 2018); apply comparable CLAHE "
                                  "to crops cut from raw radiographs"},
                "crop": "one knee, square, centred on the tibiofemoral joint, femur above, tibia below",
                "resize": f"to {s}x{s} (area interpolation when shrinking)",
                "bit_depth": "8-bit grey (window the DICOM to 8 bits before CLAHE)",
                "laterality": "either knee as is (trained with horizontal flips)",
            },
        },
        "outputs": outputs,
        "labels": LABELS,
        "temperature": float(ckpt.get("temperature", 1.0)),
        "val": {"source": "knee-kl/val as used during training", "n": val.get("n"),
                "accuracy": val.get("accuracy"), "qwk": val.get("qwk"),
                "per_grade_accuracy": val.get("per_grade_accuracy"),
                "ece_calibrated": (ckpt.get("val_calibrated") or {}).get("ece")},
        "training": {"best_epoch": ckpt.get("best_epoch"), "epochs_run": ckpt.get("epochs_run"),
                     "train_seconds": ckpt.get("train_seconds"),
                     "config": {k: v for k, v in cfg.items() if k not in ("train_dir", "val_dir", "train_pack",
                                                                           "val_pack")}},
    }


def export_member(ckpt_path: Path, out_dir: Path):
    model, ckpt = load_checkpoint(ckpt_path)
    onnx_path = export_onnx(model, Path(out_dir) / f"{ckpt['config']['name']}.onnx")
    return model, ckpt, member_entry(model, ckpt, onnx_path)


def ensemble_fixture(p: np.ndarray, temperature: float) -> dict:
    """The fixtures' ensemble block: its probabilities on the fixture input, grades, temperature."""
    return {"probabilities": np.round(p, 6).tolist(), "grades": p.argmax(1).tolist(), "temperature": temperature}


_POOLS = {MEAN: "q = mean over members of softmax(logits_m / temperature_m)",
          LOG_MEAN: "q = softmax(mean over members of log softmax(logits_m / temperature_m))"}


def ensemble_section(temperature: float, rule: str = MEAN) -> dict:
    """The manifest's "ensemble": the rule the runtimes apply, with the ensemble temperature."""
    return {"rule": check_rule(rule), "temperature": temperature,
            "formula": f"{_POOLS[rule]}; p = q ** (1 / temperature) renormalised (the ensemble "
                       "temperature, fitted on val; 1 keeps q); grade = argmax p"}


def member_fixture(outputs: Dict[str, np.ndarray]) -> dict:
    """A member's block of the fixtures: each output's shape and values (rounded to 1e-6)."""
    return {n: {"shape": list(v.shape), "data": np.round(v.reshape(-1), 6).tolist()} for n, v in outputs.items()}


def val_ensemble_section(ensemble: dict, by: str = "models.evaluate") -> dict:
    """The manifest's "val_ensemble": the ensemble's figures on the val PNGs (``by`` the tool that
    ran the exported members on them)."""
    section = {k: ensemble[k] for k in ("n", "accuracy", "qwk", "mae", "ece", "per_grade_accuracy")}
    if "rule" in ensemble:
        section["rule"] = ensemble["rule"]
    section["source"] = f"knee-kl/val original PNGs, exported ONNX files ({by})"
    return section


def write_fixtures(models: List, out_dir: Path, temperatures: List[float], ensemble_temperature: float = 1.0,
                   rule: str = MEAN) -> Path:
    """Inputs (as uint8 grey levels) and the PyTorch outputs of every member, plus the ensemble."""
    size = models[0].input_size
    grey = fixture_input(size)
    image = grey.astype(np.float32) / 255.0
    doc = {"schema_version": SCHEMA_VERSION,
           "input": {"name": "image", "shape": list(image.shape), "grey_uint8": grey.reshape(-1).tolist(),
                     "formula": "image = grey / 255 (float32)"},
           "tolerance": {"abs": 1e-3, "rel": 1e-3, "note": "compare logits and token maps element-wise"},
           "members": {}}
    probs = []
    for m, t in zip(models, temperatures):
        outs = torch_outputs(m, image)
        doc["members"][m.member_name] = member_fixture(outs)
        probs.append(softmax(outs["logits"], t))
    doc["ensemble"] = ensemble_fixture(ensemble_probabilities(probs, ensemble_temperature, rule), ensemble_temperature)
    path = Path(out_dir) / FIXTURES_FILE
    path.write_text(json.dumps(doc))
    return path


def localiser_section(out_dir: Path) -> dict:
    """The manifest's "localiser": thresholds, and the template file (copied) with its sha256."""
    section = dict(LOCALISER_THRESHOLDS)
    if KNEE_TEMPLATE.exists():
        dst = Path(out_dir) / KNEE_TEMPLATE.name
        shutil.copyfile(KNEE_TEMPLATE, dst)
        section["template"] = {"file": dst.name, "sha256": sha256(dst)}
    return section


def write_manifest(entries: List[dict], out_dir: Path, status: str, fixtures: Optional[Path] = None,
                   extra: Optional[dict] = None, ensemble_temperature: float = 1.0, rule: str = MEAN) -> Path:
    man = {
        "schema_version": SCHEMA_VERSION,
        "kind": "kneegrade-kl-ensemble",
        "status": status,
        "created_utc": _dt.datetime.utcnow().replace(microsecond=0).isoformat() + "Z",
        "torch_version": torch.__version__,
        "labels": LABELS,
        "label_meaning": "Kellgren-Lawrence grade 0-4 of one knee",
        "members": entries,
        "ensemble": ensemble_section(ensemble_temperature, rule),
        "data": DATA_SOURCE,
        "localiser": localiser_section(out_dir),
    }
    if fixtures is not None:
        man["fixtures"] = {"file": fixtures.name, "sha256": sha256(fixtures)}
    if extra:
        man.update(extra)
    path = Path(out_dir) / "manifest.json"
    path.write_text(json.dumps(man, indent=2))
    return path


def export_run(run_dir: Path, out_dir: Path, status: str, extra: Optional[dict] = None) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ckpts = sorted(p for p in Path(run_dir).glob("*.pt") if not p.name.endswith(".state.pt"))
    if not ckpts:
        raise FileNotFoundError(f"no checkpoints in {run_dir}")
    models, entries = [], []
    for c in ckpts:
        model, ckpt, entry = export_member(c, out_dir)
        model.member_name = entry["name"]
        models.append(model)
        entries.append(entry)
    fx = write_fixtures(models, out_dir, [e["temperature"] for e in entries])
    return write_manifest(entries, out_dir, status, fx, extra)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--run", required=True, help="folder of member checkpoints (*.pt) from models.train")
    ap.add_argument("--out", default=str(Path(__file__).parent / "out" / "export"))
    ap.add_argument("--status", default="candidate", choices=["smoke", "candidate", "trained", "release"],
                    help="'smoke' marks a toy model the product must refuse")
    args = ap.parse_args(argv)
    path = export_run(Path(args.run), Path(args.out), args.status)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
