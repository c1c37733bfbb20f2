"""The plain-CNN floor (models.baseline): a tiny run on real crops writes its figures, and a time
budget plans fewer epochs than asked for when they would not fit."""
import json

from models import baseline


def test_baseline_run_writes_best_epoch(data_dir, tmp_path):
    out = tmp_path / "bl"
    baseline.main(["--size", "32", "--epochs", "2", "--limit-per-grade", "24", "--threads", "1",
                   "--train-dir", str(data_dir / "train"), "--val-dir", str(data_dir / "val"), "--out", str(out)])
    doc = json.loads((out / "baseline.json").read_text())
    best = doc["best"]
    assert doc["epochs"] == 2 and doc["size"] == 32
    assert best["epoch"] in (1, 2)
    assert best["n"] == 120  # 24 val crops per grade
    assert 0.0 <= best["accuracy"] <= 1.0 and len(best["per_grade_accuracy"]) == 5
    assert sum(map(sum, best["confusion"])) == 120


def test_time_budget_caps_the_epochs(data_dir, tmp_path, capsys):
    out = tmp_path / "bl"
    baseline.main(["--size", "32", "--epochs", "50", "--time-budget-s", "3", "--limit-per-grade", "24",
                   "--threads", "1", "--train-dir", str(data_dir / "train"), "--val-dir", str(data_dir / "val"),
                   "--out", str(out)])
    doc = json.loads((out / "baseline.json").read_text())
    assert 1 <= doc["epochs"] < 50
    assert '"plan"' in capsys.readouterr().out
