"""Interruptible training: SIGTERM writes a resumable state, SIGKILL loses at most the running
epoch, and --resume continues to the same result; bf16 detection falls back to float32."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from models.onnx_io import available_runtime, run_onnx
from models.train import autocast_ctx, bf16_support


def _config(tmp_path, data_dir, epochs: int, **extra):
    cfg = {"seed": 3, "train_dir": str(data_dir / "train"), "val_dir": str(data_dir / "val"),
           "limit_per_grade": 6, "val_limit_per_grade": 2, "input_size": 64, "fpn_size": 16,
           "num_selects": [32, 16, 8, 2], "batch_size": 4, "epochs": epochs, "lr": 0.05, "ema_decay": 0.9,
           "grad_clip": 2.0, "threads": 1, "bf16": False,
           "members": [{"name": "a", "backbone": "resnet_tiny"}, {"name": "b", "backbone": "resnet_tiny", "seed": 1}]}
    cfg.update(extra)
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    return path


def _run(args, repo_root, **kw):
    env = dict(os.environ, KNEEGRADE_BF16="0")
    return subprocess.Popen([sys.executable, "-m", *args], cwd=repo_root, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, **kw)


def _wait_for(path, text, proc, timeout=120):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if path.exists() and text in path.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"process ended before {text!r}: {proc.stdout.read()}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {text!r}")


def test_bf16_detection_and_fallback(monkeypatch):
    import models.train as t
    monkeypatch.setenv("KNEEGRADE_BF16", "0")
    t._BF16_CACHE.clear()
    assert bf16_support() == (False, "KNEEGRADE_BF16=0")
    assert t.use_bf16(torch.device("cpu"), {"bf16": "auto"}) is False
    assert t.use_bf16(torch.device("cpu"), {"bf16": True}) is True
    with autocast_ctx(torch.device("cpu"), bf16=False):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    with autocast_ctx(torch.device("cpu"), bf16=True):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16
    t._BF16_CACHE.clear()
    monkeypatch.delenv("KNEEGRADE_BF16")
    ok, why = bf16_support()  # the real detection: a reason either way
    assert isinstance(ok, bool) and why
    t._BF16_CACHE.clear()


def test_sigterm_then_resume_equals_an_uninterrupted_run(tmp_path, repo_root, data_dir):
    cfg = _config(tmp_path, data_dir, epochs=6, members=[{"name": "a", "backbone": "resnet_tiny"}])
    straight = _run(["models.train", "--config", str(cfg), "--out", str(tmp_path / "straight")], repo_root)
    assert straight.wait(300) == 0, straight.stdout.read()

    run = tmp_path / "cut"
    p = _run(["models.train", "--config", str(cfg), "--out", str(run)], repo_root)
    _wait_for(run / "train_log.txt", '"epoch": 2,', p)
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) == 143
    log = (run / "train_log.txt").read_text()
    assert "stop requested (signal 15)" in log
    assert (run / "a.state.pt").exists() and not (run / "a.pt").exists()
    p = _run(["models.train", "--config", str(cfg), "--out", str(run), "--resume"], repo_root)
    assert p.wait(300) == 0, p.stdout.read()
    assert "resumed from a.state.pt" in (run / "train_log.txt").read_text()
    assert not (run / "a.state.pt").exists()

    a = torch.load(tmp_path / "straight" / "a.pt", map_location="cpu")
    b = torch.load(run / "a.pt", map_location="cpu")
    assert a["epochs_run"] == b["epochs_run"] == 6 and a["best_epoch"] == b["best_epoch"]
    # Weights, schedule position, RNG streams and the half-done epoch were all restored: the
    # interrupted run ends exactly where the uninterrupted one did.
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k
    assert a["temperature"] == pytest.approx(b["temperature"])


def test_cpu_run_killed_resumes_and_ships(tmp_path, repo_root, data_dir):
    cfg = _config(tmp_path, data_dir, epochs=40, time_budget_s=30)
    work, out = tmp_path / "work", tmp_path / "dist"
    args = ["models.cpu_run", "--config", str(cfg), "--work", str(work), "--out", str(out), "--status", "smoke"]
    p = _run(args, repo_root)
    _wait_for(work / "train_log.txt", '"epoch": 2,', p)
    p.send_signal(signal.SIGKILL)  # no chance to write anything: the last epoch's state must do
    p.wait(30)
    assert (work / "a.state.pt").exists()
    again = _run(args, repo_root)  # without --resume it refuses to start over a half-done run
    assert again.wait(60) != 0 and "pass --resume" in again.stdout.read()
    p = _run([*args, "--resume"], repo_root)
    assert p.wait(600) == 0, p.stdout.read()
    log = (work / "train_log.txt").read_text()
    assert "[a] resumed from a.state.pt" in log and "[b] best epoch" in log and "cpu_run done" in log
    man = json.loads((out / "manifest.json").read_text())
    assert man["status"] == "smoke" and [m["name"] for m in man["members"]] == ["a", "b"]
    assert man["run"]["kind"] == "cpu_run" and man["run"]["sessions"] == 2
    assert man["val_ensemble"]["n"] == 10
    cal = man["calibration_val"]
    assert set(cal) == {"a", "b", "ensemble"} and all(0 <= v["ece_fitted"] <= 1 for v in cal.values())
    t_ens = man["ensemble"]["temperature"]
    assert t_ens > 0 and cal["ensemble"]["temperature"] == t_ens
    fx = json.loads((out / "fixtures.json").read_text())
    assert fx["ensemble"]["temperature"] == t_ens
    x = np.array(fx["input"]["grey_uint8"], np.uint8).reshape(fx["input"]["shape"]).astype(np.float32) / 255
    for m in man["members"]:
        assert m["training"]["precision"] == "float32" and m["training"]["epochs_run"] >= 2
        # Stored as float16 (lossless: weights were rounded first), computed in float32: the
        # runtime reproduces the fixtures' PyTorch outputs.
        assert m["weights"]["initializers_fp16"] > 0 and m["weights"]["compute"] == "float32"
        if available_runtime():
            got = run_onnx(out / m["file"], x)["outputs"]["logits"]
            np.testing.assert_allclose(got.reshape(-1), fx["members"][m["name"]]["logits"]["data"], atol=1e-4)
    assert (work / "eval" / "reliability.png").stat().st_size > 1000
    assert (work / "eval" / "confusion.png").stat().st_size > 1000
    ev = json.loads((work / "eval" / "eval.json").read_text())
    assert len(ev["results"]["ensemble"]["reliability"]) == 10
