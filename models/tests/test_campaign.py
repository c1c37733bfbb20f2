"""Model v2's campaign: the selection set held apart from training, a member chosen on it with val
reported once, and a training state carried to another machine (float16, no momentum) that
continues where it stopped."""
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from models import campaign
from models.data import list_folder
from models.selection import choose_selection, read_selection, subject_of
from models.train import main as train_main, state_path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_selection_is_stratified_by_grade_and_keeps_subjects_whole():
    items = [(f"{9000000 + s:07d}{side}.png", (s + (side == "R")) % 5) for s in range(400) for side in "LR"]
    names = choose_selection(items, frac=0.1, seed=7)
    grade = dict(items)
    per = Counter(grade[n] for n in names)
    total = Counter(g for _, g in items)
    for g, n in total.items():
        assert abs(per[g] - round(0.1 * n)) <= 2, (g, per[g], n)
    subjects = {subject_of(n) for n in names}
    for s in subjects:  # both knees of a chosen subject, never one
        assert f"{s}L.png" in names and f"{s}R.png" in names
    # Seeded, and independent of the order the images were listed in.
    assert choose_selection(list(reversed(items)), frac=0.1, seed=7) == names
    assert choose_selection(items, frac=0.1, seed=8) != names


def test_committed_selection_list_is_the_train_split_draw(data_dir):
    listed = read_selection(REPO_ROOT / "models" / "splits" / "selection.txt")
    items = [(p.name, g) for p, g in list_folder(data_dir / "train")]
    assert sorted(listed) == choose_selection(items, frac=0.10, seed=20261207)
    val = {p.name for p, _ in list_folder(data_dir / "val")}
    assert not listed & val
    assert 0.09 < len(listed) / len(items) < 0.11


def _config(tmp_path, data_dir, epochs, selection):
    cfg = {"seed": 3, "train_dir": str(data_dir / "train"), "val_dir": str(data_dir / "val"),
           "limit_per_grade": 12, "val_limit_per_grade": 2, "input_size": 64, "fpn_size": 16,
           "num_selects": [32, 16, 8, 2], "batch_size": 4, "epochs": epochs, "lr": 0.05, "ema_decay": 0.9,
           "threads": 1, "bf16": False, "channels_last": True, "selection_list": str(selection),
           "members": [{"name": "a", "backbone": "resnet_tiny"}]}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    return path


@pytest.fixture()
def selection(tmp_path, data_dir):
    """The first two train crops of each grade as the selection set of a 12-per-grade run."""
    items = list_folder(data_dir / "train", 12)
    chosen = []
    for g in range(5):
        chosen += [p.name for p, gg in items if gg == g][:2]
    path = tmp_path / "selection.txt"
    path.write_text("# test\n" + "\n".join(chosen) + "\n")
    return path, set(chosen)


def test_member_is_chosen_on_the_selection_set_and_val_reported_once(tmp_path, data_dir, selection, monkeypatch):
    monkeypatch.setenv("KNEEGRADE_BF16", "0")
    sel_path, chosen = selection
    out = tmp_path / "run"
    train_main(["--config", str(_config(tmp_path, data_dir, 2, sel_path)), "--out", str(out)])
    ckpt = torch.load(out / "a.pt", map_location="cpu")
    assert ckpt["chosen_on"] == "selection"
    assert ckpt["val"]["n"] == len(chosen) == 10           # chosen on the 10 held-apart crops
    assert ckpt["val_heldout"]["n"] == 10                   # val (2 per grade) reported once
    assert ckpt["val_heldout_logits"].shape == (10, 5)
    log = (out / "train_log.txt").read_text()
    assert "train 50 selection 10 (val 10 reported once)" in log

    # The campaign takes the finished member in: figures in the state, float16 weights kept.
    state = {"config": "x", "selection_list": str(sel_path), "input_size": 64,
             "members": [{"name": "a", "status": "training", "runs": [{"started": "t"}]}]}
    kept, carried = tmp_path / "kept", tmp_path / "carry"
    carried.mkdir()
    (carried / "a.pt").write_bytes(b"superseded training state")
    state["members"][0]["carried"] = {"epoch": 1, "file": str(carried / "a.pt")}
    assert campaign.record(state, runs=out, kept=kept, carry_dir=carried) == ["a"]
    m = state["members"][0]
    assert not (carried / "a.pt").exists() and "carried" not in m
    assert m["status"] == "done" and m["selection"]["accuracy"] == pytest.approx(ckpt["val"]["accuracy"], abs=1e-4)
    assert m["val_once"]["qwk"] == pytest.approx(ckpt["val_heldout"]["qwk"], abs=1e-4)
    small = torch.load(kept / "a.pt", map_location="cpu")
    assert all(v.dtype == torch.float16 for v in small["state_dict"].values() if v.is_floating_point())
    assert "done" in campaign.table(state)


def test_a_carried_state_continues_on_another_machine(tmp_path, data_dir, selection, monkeypatch):
    import models.train as t
    monkeypatch.setenv("KNEEGRADE_BF16", "0")
    sel_path, _ = selection
    cfg = _config(tmp_path, data_dir, 3, sel_path)
    full = tmp_path / "full"
    # The session ends after the first epoch: a stop request as its epoch-1 line is logged.
    real_logger = t.make_logger

    def stopping_logger(path):
        log = real_logger(path)

        def wrapped(msg):
            log(msg)
            if msg.startswith("{") and json.loads(msg).get("epoch") == 1:
                t.request_stop()
        return wrapped
    monkeypatch.setattr(t, "make_logger", stopping_logger)
    try:
        with pytest.raises(SystemExit):
            train_main(["--config", str(cfg), "--out", str(full)])
    finally:
        t._STOP["signal"] = None
        monkeypatch.setattr(t, "make_logger", real_logger)
    st = state_path(full / "a.pt")
    carried = campaign.carry("a", runs=full, carry_dir=tmp_path / "carry")
    assert carried is not None
    s = torch.load(carried, map_location="cpu")
    assert s["opt"] is None and s["ema"] is None and s["epoch"] == 1
    assert all(v.dtype == torch.float16 for v in s["model"].values() if v.is_floating_point())
    assert carried.stat().st_size < st.stat().st_size / 2

    # Another machine: no runs folder, only the carried file.
    elsewhere = tmp_path / "elsewhere"
    assert campaign.restore("a", runs=elsewhere, carry_dir=tmp_path / "carry")
    assert not campaign.restore("a", runs=elsewhere, carry_dir=tmp_path / "carry")  # never overwrites
    train_main(["--config", str(cfg), "--out", str(elsewhere), "--resume"])
    log = (elsewhere / "train_log.txt").read_text()
    assert "resumed from a.state.pt: epoch 1" in log and "of 3" in log
    ckpt = torch.load(elsewhere / "a.pt", map_location="cpu")
    assert ckpt["epochs_run"] == 3 and ckpt["chosen_on"] == "selection"
    assert [h["epoch"] for h in ckpt["history"]] == [1, 2, 3]
    assert not state_path(elsewhere / "a.pt").exists()
