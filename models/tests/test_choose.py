import numpy as np
import pytest

from models.choose import candidates, choose, paired_difference


def _logits(y, right, rng):
    """Logits that put the true grade first for the knees in ``right``, a wrong grade first elsewhere."""
    z = rng.normal(0, 0.1, (len(y), 5)).astype(np.float32)
    for i, g in enumerate(y):
        z[i, g if right[i] else (g + 2) % 5] += 3.0
    return z


def test_the_chosen_candidate_is_the_best_on_the_selection_set_and_ties_go_to_fewer_members():
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(5), 20)
    good = {"selection_logits": _logits(y, rng.random(100) < 0.9, rng), "temperature": 1.0}
    poor = {"selection_logits": _logits(y, rng.random(100) < 0.4, rng), "temperature": 1.0}
    cands = candidates({"good": good, "poor": poor}, y)
    # two singles (one rule each) and the pair under both rules
    assert sorted((tuple(c["members"]), c["rule"]) for c in cands)[0][0] == ("good",)
    assert len(cands) == 4
    best = choose(cands)
    assert best["members"] == ["good"]
    assert best["selection"]["accuracy"] == pytest.approx(max(c["selection"]["accuracy"] for c in cands))
    tie = [dict(c, selection={"accuracy": 0.7, "qwk": 0.8}) for c in cands]
    assert len(choose(tie)["members"]) == 1


def test_paired_difference_is_zero_for_the_same_predictions_and_positive_when_one_is_better():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 400)
    same = paired_difference(y, y.copy(), y.copy(), resamples=200)
    assert same["accuracy"] == 0 and same["accuracy_interval"] == [0.0, 0.0]
    worse = y.copy()
    worse[:120] = (worse[:120] + 1) % 5
    d = paired_difference(y, y, worse, resamples=500)
    assert d["accuracy"] == pytest.approx(0.3)
    assert 0 < d["accuracy_interval"][0] < d["accuracy"] < d["accuracy_interval"][1]
    assert d["qwk_interval"][0] > 0
