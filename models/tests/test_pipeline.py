"""Smoke run of the GPU script's path on the CPU: pack -> gpu_run (train, export, manifest,
fixtures) -> evaluate; plus the train CLI and the manifest's hashes and fixtures."""
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.evaluate import evaluate
from models.onnx_io import available_runtime, run_onnx
from models.pim import build_model


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory, data_dir, repo_root):
    tmp = tmp_path_factory.mktemp("rehearsal")
    env = dict(os.environ, OUT=str(tmp / "out"))
    py = sys.executable
    subprocess.run([py, "-m", "models.pack", "--data", str(data_dir), "--out", str(tmp / "pack"),
                    "--limit-per-grade", "3"], cwd=repo_root, check=True, env=env, capture_output=True)
    p = subprocess.run([py, "-m", "models.gpu_run", "--config", "models/configs/smoke.json",
                        "--pack-dir", str(tmp / "pack"), "--work", str(tmp / "work"), "--status", "smoke",
                        "--time-limit-s", "120"], cwd=repo_root, env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return tmp


def test_gpu_run_outputs(rehearsal):
    out = rehearsal / "out"
    files = sorted(f.name for f in out.iterdir())
    # knee-template.json: the localiser's template travels with the model (manifest "localiser").
    assert files == ["eval_val.json", "fixtures.json", "knee-template.json", "manifest.json", "tiny_a.onnx",
                     "tiny_b.onnx", "train_log.txt"]
    man = json.loads((out / "manifest.json").read_text())
    assert man["localiser"]["template"]["file"] == "knee-template.json"
    assert len(files) <= 8 and all(f.stat().st_size <= 16 * 2**20 for f in out.iterdir())
    log = (out / "train_log.txt").read_text()
    assert "decoded train 15" in log and "[tiny_a] best epoch" in log and "gpu_run done" in log
    epochs = [json.loads(l) for l in log.splitlines() if l.startswith("{")]
    assert {e["member"] for e in epochs} == {"tiny_a", "tiny_b"} and all("val_qwk" in e for e in epochs)


def test_manifest_hashes_and_contract(rehearsal):
    out = rehearsal / "out"
    man = json.loads((out / "manifest.json").read_text())
    assert man["schema_version"] == 1 and man["status"] == "smoke"
    assert man["labels"] == ["KL0", "KL1", "KL2", "KL3", "KL4"]
    assert man["ensemble"]["rule"] == "mean_calibrated_probabilities"
    assert [m["name"] for m in man["members"]] == ["tiny_a", "tiny_b"]
    for m in man["members"]:
        data = (out / m["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == m["sha256"] and len(data) == m["bytes"]
        assert m["input"]["shape"] == ["batch", 1, 64, 64] and m["input"]["channels"] == 1
        assert m["input"]["preprocessing"]["clahe"]["expected"] is True
        assert m["temperature"] > 0 and m["opset"] >= 17
        assert [o["name"] for o in m["outputs"]] == ["logits", "tokens_l1", "tokens_l2", "tokens_l3", "tokens_l4"]
    fx = man["fixtures"]
    assert hashlib.sha256((out / fx["file"]).read_bytes()).hexdigest() == fx["sha256"]


def test_fixtures_reproduce_checkpoints(rehearsal):
    """The fixtures hold the PyTorch outputs of the exported weights (and ONNX matches them)."""
    out = rehearsal / "out"
    fx = json.loads((out / "fixtures.json").read_text())
    man = json.loads((out / "manifest.json").read_text())
    x = (np.array(fx["input"]["grey_uint8"], np.uint8).reshape(fx["input"]["shape"]).astype(np.float32) / 255)
    probs = []
    for m in man["members"]:
        ckpt = torch.load(rehearsal / "work" / f"{m['name']}.pt", map_location="cpu")
        model = build_model(ckpt["config"])
        model.load_state_dict(ckpt["state_dict"])
        model.eval()
        with torch.no_grad():
            logits = model(torch.from_numpy(x))["logits"].numpy()
        want = fx["members"][m["name"]]["logits"]
        np.testing.assert_allclose(logits.reshape(-1), want["data"], atol=1e-5)
        if available_runtime():
            got = run_onnx(out / m["file"], x)["outputs"]
            for name, ref in fx["members"][m["name"]].items():
                np.testing.assert_allclose(got[name].reshape(-1), ref["data"], atol=1e-4, rtol=1e-4)
        z = logits / m["temperature"]
        e = np.exp(z - z.max(1, keepdims=True))
        probs.append(e / e.sum(1, keepdims=True))
    np.testing.assert_allclose(np.mean(probs, 0), fx["ensemble"]["probabilities"], atol=1e-5)


def test_evaluate_on_pngs(rehearsal, data_dir):
    doc = evaluate(data_dir / "val", rehearsal / "work", rehearsal / "eval", limit_per_grade=2)
    res = doc["results"]
    assert set(res) == {"tiny_a", "tiny_b", "ensemble"}
    for r in res.values():
        assert r["n"] == 10 and np.array(r["confusion"]).sum() == 10
        assert 0 <= r["accuracy"] <= 1 and -1 <= r["qwk"] <= 1 and 0 <= r["ece"] <= 1
        assert len(r["per_grade_accuracy"]) == 5
    assert (rehearsal / "eval" / "confusion.png").stat().st_size > 1000
    if available_runtime():
        doc2 = evaluate(data_dir / "val", rehearsal / "out", rehearsal / "eval_onnx", limit_per_grade=2)
        for name in ("tiny_a", "tiny_b", "ensemble"):
            assert doc2["results"][name]["confusion"] == res[name]["confusion"]


def test_train_cli(tmp_path, repo_root, data_dir):
    cfg = json.loads((repo_root / "models" / "configs" / "smoke.json").read_text())
    cfg.update(train_dir=str(data_dir / "train"), val_dir=str(data_dir / "val"), limit_per_grade=2, epochs=1,
               members=[{"name": "only", "backbone": "resnet_tiny"}])
    (tmp_path / "c.json").write_text(json.dumps(cfg))
    p = subprocess.run([sys.executable, "-m", "models.train", "--config", str(tmp_path / "c.json"), "--out",
                        str(tmp_path / "run")], cwd=repo_root, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    ckpt = torch.load(tmp_path / "run" / "only.pt", map_location="cpu")
    assert ckpt["best_epoch"] == 1 and ckpt["config"]["backbone"] == "resnet_tiny" and ckpt["temperature"] > 0
    assert '"epoch": 1' in (tmp_path / "run" / "train_log.txt").read_text()


def test_calibrate_writes_the_ensemble_temperature(rehearsal, data_dir, tmp_path):
    """models.calibrate: the ensemble temperature fitted on val goes into the manifest and the
    fixtures; member files and grades stay the same, the fixtures' probabilities follow the rule."""
    if available_runtime() is None:
        pytest.skip("no ONNX runtime (Python onnxruntime or onnxruntime-node)")
    import shutil
    from models.calibrate import calibrate, fixture_probabilities
    model = tmp_path / "model"
    shutil.copytree(rehearsal / "out", model)
    before_man = json.loads((model / "manifest.json").read_text())
    before_fx = json.loads((model / "fixtures.json").read_text())
    result = calibrate(model, data_dir / "val", limit_per_grade=4)
    man = json.loads((model / "manifest.json").read_text())
    fx = json.loads((model / "fixtures.json").read_text())
    t = man["ensemble"]["temperature"]
    assert t == result["temperature"] and t > 0 and t != 1.0
    assert man["members"] == before_man["members"]                    # same files, same version
    for m in man["members"]:
        assert hashlib.sha256((model / m["file"]).read_bytes()).hexdigest() == m["sha256"]
    assert man["fixtures"]["sha256"] == hashlib.sha256((model / "fixtures.json").read_bytes()).hexdigest()
    assert fx["ensemble"]["grades"] == before_fx["ensemble"]["grades"]
    assert fx["ensemble"]["temperature"] == t
    expected = fixture_probabilities(fx, man, t)
    assert np.allclose(fx["ensemble"]["probabilities"], expected, atol=1e-6)
    # The recorded probabilities are not the untempered mean (the temperature really applied).
    assert not np.allclose(expected, fixture_probabilities(fx, man, 1.0), atol=1e-4)
    assert man["calibration_val"]["ensemble"]["ece_ensemble_temperature"] == result["ece_after"]


def test_calibrate_sets_the_log_mean_rule(rehearsal, data_dir, tmp_path):
    """models.calibrate --rule: the manifest, the fixtures and the val figures follow the new rule;
    the member files (and so the version's members) stay; the model's old rule is reported."""
    if available_runtime() is None:
        pytest.skip("no ONNX runtime (Python onnxruntime or onnxruntime-node)")
    import shutil
    from models.calibrate import calibrate, fixture_probabilities
    from models.metrics import LOG_MEAN, MEAN
    model = tmp_path / "model"
    shutil.copytree(rehearsal / "out", model)
    before_man = json.loads((model / "manifest.json").read_text())
    result = calibrate(model, data_dir / "val", limit_per_grade=4, rule=LOG_MEAN)
    man = json.loads((model / "manifest.json").read_text())
    fx = json.loads((model / "fixtures.json").read_text())
    assert result["rule_before"] == MEAN and result["rule"] == LOG_MEAN
    assert man["ensemble"]["rule"] == LOG_MEAN and "mean over members of log softmax" in man["ensemble"]["formula"]
    assert man["members"] == before_man["members"]
    t = man["ensemble"]["temperature"]
    np.testing.assert_allclose(fx["ensemble"]["probabilities"], fixture_probabilities(fx, man, t), atol=1e-6)
    # Recomputed here from the members' recorded logits: softmax(mean_m(logits_m / T_m) / T).
    z = np.mean([np.asarray(fx["members"][m["name"]]["logits"]["data"], np.float64).reshape(-1, 5) / m["temperature"]
                 for m in man["members"]], 0) / t
    e = np.exp(z - z.max(1, keepdims=True))
    np.testing.assert_allclose(fx["ensemble"]["probabilities"], e / e.sum(1, keepdims=True), atol=2e-6)
    assert fx["ensemble"]["grades"] == np.asarray(fx["ensemble"]["probabilities"]).argmax(1).tolist()
    if "val_ensemble" in man:
        assert man["val_ensemble"]["rule"] == LOG_MEAN and man["val_ensemble"]["qwk"] == result["qwk"]
    doc = evaluate(data_dir / "val", model, tmp_path / "eval", limit_per_grade=4)
    assert doc["results"]["ensemble"]["rule"] == LOG_MEAN
    assert doc["results"]["ensemble"]["accuracy"] == pytest.approx(result["accuracy"])
    iv = doc["results"]["ensemble"]["interval"]
    assert iv["resamples"] == 2000 and iv["accuracy"][0] <= result["accuracy"] <= iv["accuracy"][1]
    with pytest.raises(ValueError, match="unknown ensemble rule"):
        calibrate(model, data_dir / "val", limit_per_grade=4, rule="vote")


def test_replace_member_swaps_one_member(rehearsal, data_dir, repo_root, tmp_path):
    """models.replace_member: a retrained member goes into a copy of the model; the other member,
    its file and its fixtures stay as they were; fixtures, hashes, temperature and val figures
    follow the new member."""
    if available_runtime() is None:
        pytest.skip("no ONNX runtime (Python onnxruntime or onnxruntime-node)")
    from models.calibrate import fixture_probabilities
    from models.replace_member import replace_member
    p = subprocess.run([sys.executable, "-m", "models.train", "--config", "models/configs/smoke.json", "--member",
                        "tiny_a", "--out", str(tmp_path / "run"), "--set", "seed=7", "--set", "epochs=1"],
                       cwd=repo_root, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    before = json.loads((rehearsal / "out" / "manifest.json").read_text())
    before_fx = json.loads((rehearsal / "out" / "fixtures.json").read_text())
    out = tmp_path / "model"
    result = replace_member(rehearsal / "out", tmp_path / "run" / "tiny_a.pt", out, data_dir / "val",
                            tmp_path / "eval", limit_per_grade=2, command="test")
    man = json.loads((out / "manifest.json").read_text())
    fx = json.loads((out / "fixtures.json").read_text())
    a, b = man["members"]
    assert a["name"] == "tiny_a" and a["sha256"] != before["members"][0]["sha256"]
    assert a["sha256"] == hashlib.sha256((out / a["file"]).read_bytes()).hexdigest()
    assert a["parity"]["max_abs_diff"] < 1e-3
    assert b == before["members"][1] and (out / b["file"]).read_bytes() == (rehearsal / "out" / b["file"]).read_bytes()
    assert fx["members"]["tiny_b"] == before_fx["members"]["tiny_b"]
    x = np.array(fx["input"]["grey_uint8"], np.uint8).reshape(fx["input"]["shape"]).astype(np.float32) / 255
    got = run_onnx(out / a["file"], x)["outputs"]["logits"]
    np.testing.assert_allclose(got.reshape(-1), fx["members"]["tiny_a"]["logits"]["data"], atol=1e-3)
    t = man["ensemble"]["temperature"]
    assert t == result["ensemble_temperature"] == fx["ensemble"]["temperature"]
    np.testing.assert_allclose(fixture_probabilities(fx, man, t), fx["ensemble"]["probabilities"], atol=1e-5)
    assert man["fixtures"]["sha256"] == hashlib.sha256((out / "fixtures.json").read_bytes()).hexdigest()
    assert man["replaced"][0]["member"] == "tiny_a"
    assert man["replaced"][0]["replaces_sha256"] == before["members"][0]["sha256"]
    assert man["val_ensemble"]["n"] == 10 == result["eval"]["results"]["ensemble"]["n"]
    assert set(man["calibration_val"]["tiny_a"]) == {"ece_T1", "ece_fitted", "temperature"}
    assert (tmp_path / "eval" / "eval.json").exists()
    with pytest.raises(FileExistsError):
        replace_member(rehearsal / "out", tmp_path / "run" / "tiny_a.pt", out, data_dir / "val", tmp_path / "e2")
    ckpt = torch.load(tmp_path / "run" / "tiny_a.pt", map_location="cpu")
    ckpt["config"]["name"] = "tiny_c"
    torch.save(ckpt, tmp_path / "tiny_c.pt")
    with pytest.raises(ValueError, match="tiny_c"):
        replace_member(rehearsal / "out", tmp_path / "tiny_c.pt", tmp_path / "m2", data_dir / "val", tmp_path / "e3")


def test_replace_member_at_a_larger_input(rehearsal, data_dir, repo_root, tmp_path):
    """A member retrained at twice the input: the ensemble's crop becomes its size; the fixture input
    is the old one with every pixel repeated, so the untouched member, shown its 2x2 block means,
    still gives the outputs recorded for it; a size that does not divide the crop is refused."""
    if available_runtime() is None:
        pytest.skip("no ONNX runtime (Python onnxruntime or onnxruntime-node)")
    from models.replace_member import replace_member

    def train(size: int, out: Path) -> Path:
        p = subprocess.run([sys.executable, "-m", "models.train", "--config", "models/configs/smoke.json", "--member",
                            "tiny_a", "--out", str(out), "--set", "epochs=1", "--set", f"input_size={size}"],
                           cwd=repo_root, capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        return out / "tiny_a.pt"

    before_fx = json.loads((rehearsal / "out" / "fixtures.json").read_text())
    out = tmp_path / "model"
    replace_member(rehearsal / "out", train(128, tmp_path / "r128"), out, data_dir / "val", tmp_path / "eval",
                   limit_per_grade=2, command="test")
    man = json.loads((out / "manifest.json").read_text())
    fx = json.loads((out / "fixtures.json").read_text())
    a, b = man["members"]
    assert (a["input"]["height"], b["input"]["height"]) == (128, 64)
    n = before_fx["input"]["shape"][0]
    assert fx["input"]["shape"] == [n, 1, 128, 128]
    big = np.array(fx["input"]["grey_uint8"], np.uint8).reshape(fx["input"]["shape"])
    small = np.array(before_fx["input"]["grey_uint8"], np.uint8).reshape(before_fx["input"]["shape"])
    assert (big[..., ::2, ::2] == small).all()
    x = big.astype(np.float32) / 255
    np.testing.assert_allclose(run_onnx(out / a["file"], x)["outputs"]["logits"].reshape(-1),
                               fx["members"]["tiny_a"]["logits"]["data"], atol=1e-3)
    shrunk = x.reshape(n, 1, 64, 2, 64, 2).mean(axis=(3, 5))
    assert fx["members"]["tiny_b"] == before_fx["members"]["tiny_b"]
    np.testing.assert_allclose(run_onnx(out / b["file"], shrunk)["outputs"]["logits"].reshape(-1),
                               fx["members"]["tiny_b"]["logits"]["data"], atol=1e-3)
    with pytest.raises(ValueError, match="divide"):
        replace_member(rehearsal / "out", train(96, tmp_path / "r96"), tmp_path / "m2", data_dir / "val",
                       tmp_path / "e2")
