"""models.card prints the card's tables from the manifest and eval.json, figures as measured."""
import json

from models import card


def test_card_tables_carry_the_measured_figures(tmp_path, capsys):
    man = {"members": [{"name": "a", "backbone": "resnet_slim", "temperature": 0.8, "bytes": 3 * 2**20,
                        "training": {"best_epoch": 9, "epochs_run": 12, "train_seconds": 600.4},
                        "parity": {"max_abs_diff": 2e-6}}],
           "ensemble": {"rule": "mean_calibrated_probabilities", "temperature": 0.7},
           "calibration_val": {"a": {"ece_T1": 0.1, "ece_fitted": 0.05},
                               "ensemble": {"ece_T1": 0.12, "ece_fitted": 0.09, "ece_ensemble_temperature": 0.03,
                                            "temperature": 0.7}}}
    r = {"accuracy": 0.6512, "qwk": 0.7777, "mae": 0.5, "ece": 0.04, "per_grade_accuracy": [0.9, 0.1, 0.6, 0.7, None],
         "confusion": [[5, 1, 0, 0, 0], [2, 1, 0, 0, 0], [0, 0, 3, 1, 0], [0, 0, 0, 2, 0], [0, 0, 0, 0, 0]]}
    (tmp_path / "manifest.json").write_text(json.dumps(man))
    (tmp_path / "eval.json").write_text(json.dumps({"results": {"a": r, "ensemble": r}}))
    card.main(["--models", str(tmp_path), "--eval", str(tmp_path / "eval.json")])
    out = capsys.readouterr().out
    assert "| a | resnet_slim | 9 / 12 | 600 | 0.800 | 3.0 MiB | 2.0e-06 |" in out
    assert "| **ensemble** | rule `mean_calibrated_probabilities` |  | 600 | 0.700 (ensemble) | **3.0 MiB** |  |" in out
    assert "| **ensemble** | 0.651 | 0.778 | 0.500 | 0.040 | 0.90 | 0.10 | 0.60 | 0.70 | - |" in out
    assert "| KL1 | 2 | 1 | 0 | 0 | 0 |" in out
    assert "0.030 (+ ensemble T 0.700)" in out
