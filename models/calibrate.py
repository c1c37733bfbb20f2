"""Fit the ensemble temperature of an exported model on val and write it into the model.

    python3 -m models.calibrate --models models/dist --data ../shared/data/knee-kl/val [--rule RULE]

For a model exported before the ensemble temperature existed, or one whose checkpoints are gone:
runs the exported members (onnxruntime) on the val PNGs, applies each member's own temperature,
fits the ensemble temperature (NLL of the members' mean probabilities, models.metrics), and updates
``manifest.json`` (``ensemble.temperature``, ``calibration_val.ensemble``, the fixtures' sha256) and
``fixtures.json`` (the ensemble's probabilities at that temperature). The temperature sharpens or
flattens the mean without reordering it, so no grade changes (checked, on val and on the
fixtures); the member files and hence the model version stay the same. Prints ECE before/after.
Fitted on val: the ECE it reports on val is optimistic, as the members' own temperatures are.

``--rule`` also sets the ensemble rule (``models.metrics.pool``: the mean of the members' calibrated
probabilities, or the normalised mean of their log-probabilities). Changing the rule may change
grades; the temperature fitted for it still changes none (checked as above).
"""
import argparse
import json
from pathlib import Path
from typing import Optional

import numpy as np
import torch

from .data import load_folder, to_input
from .evaluate import _members_onnx
from .export import ensemble_fixture, ensemble_section, sha256, val_ensemble_section
from .metrics import (ENSEMBLE_RULES, check_rule, ensemble_probabilities, fit_ensemble_temperature, manifest_rule, pool,
                      report, softmax)


def fixture_probabilities(fixtures: dict, man: dict, temperature: float, rule: Optional[str] = None) -> np.ndarray:
    """The ensemble's probabilities on the fixtures' input, from the members' recorded logits,
    under ``rule`` (default: the manifest's)."""
    probs = []
    for m in man["members"]:
        rec = fixtures["members"][m["name"]]["logits"]
        logits = np.asarray(rec["data"], dtype=np.float64).reshape(rec["shape"])
        probs.append(softmax(logits, m["temperature"]))
    return ensemble_probabilities(probs, temperature, rule or manifest_rule(man))


def calibrate(models_dir: Path, data_dir: Path, limit_per_grade: Optional[int] = None,
              rule: Optional[str] = None) -> dict:
    models_dir = Path(models_dir)
    members, man = _members_onnx(models_dir)
    x8, y, _ = load_folder(Path(data_dir), 224, limit_per_grade)
    probs, raw = [], []
    for m in members:
        x = to_input(torch.from_numpy(x8), m["size"]).numpy()
        logits = m["logits_fn"](x)
        probs.append(softmax(logits, m["temperature"]))
        raw.append(softmax(logits))
    t_old = float(man.get("ensemble", {}).get("temperature", 1.0))
    rule_old = manifest_rule(man)
    rule = check_rule(rule or rule_old)
    t_new = round(float(fit_ensemble_temperature(probs, y, rule)), 4)
    before = report(ensemble_probabilities(probs, t_old, rule_old), y)
    after = report(ensemble_probabilities(probs, t_new, rule), y)
    if report(pool(probs, rule), y)["confusion"] != after["confusion"]:
        raise AssertionError("the ensemble temperature changed a grade on val")

    fx_path = models_dir / man["fixtures"]["file"]
    fixtures = json.loads(fx_path.read_text())
    p = fixture_probabilities(fixtures, man, t_new, rule)
    expected = fixtures["ensemble"]["grades"] if rule == rule_old else \
        fixture_probabilities(fixtures, man, 1.0, rule).argmax(1).tolist()
    if p.argmax(1).tolist() != expected:
        raise AssertionError("the ensemble temperature changed a grade of the fixtures")
    fixtures["ensemble"] = ensemble_fixture(p, t_new)
    fx_path.write_text(json.dumps(fixtures))

    man["ensemble"].update(ensemble_section(t_new, rule))
    man["fixtures"]["sha256"] = sha256(fx_path)
    ens = man.setdefault("calibration_val", {}).setdefault("ensemble", {})
    # The mean before any temperature and after the members' own (the card's calibration table).
    ens.update({"ece_T1": report(pool(raw, rule), y)["ece"], "ece_fitted": report(pool(probs, rule), y)["ece"],
                "ece_ensemble_temperature": after["ece"], "temperature": t_new,
                "ensemble_temperature_fitted_by": "models.calibrate on the exported ONNX members"})
    if "val_ensemble" in man:
        if rule != rule_old:
            man["val_ensemble"] = val_ensemble_section(dict(after, rule=rule), by="models.calibrate")
        else:
            man["val_ensemble"]["ece"] = after["ece"]
    (models_dir / "manifest.json").write_text(json.dumps(man, indent=2))
    return {"rule_before": rule_old, "rule": rule, "temperature_before": t_old, "temperature": t_new,
            "ece_before": before["ece"], "ece_after": after["ece"], "accuracy_before": before["accuracy"],
            "qwk_before": before["qwk"], "accuracy": after["accuracy"], "qwk": after["qwk"]}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="models/dist", help="an export folder (manifest.json + ONNX members)")
    ap.add_argument("--data", default="../shared/data/knee-kl/val", help="val PNGs, <dir>/<grade>/*.png")
    ap.add_argument("--rule", choices=ENSEMBLE_RULES, default=None,
                    help="set the ensemble rule (default: keep the model's)")
    args = ap.parse_args(argv)
    print(json.dumps(calibrate(Path(args.models), Path(args.data), rule=args.rule)))


if __name__ == "__main__":
    main()
