import numpy as np
import pytest
import torch

from models.data import augment, load_folder, read_pack, to_input, write_pack
from models.metrics import (LOG_MEAN, MEAN, bootstrap_intervals, ece, ensemble_probabilities, fit_ensemble_temperature,
                            fit_temperature, nll, pool, qwk, report, softmax)


def test_qwk_values():
    y = np.array([0, 1, 2, 3, 4])
    assert qwk(y, y) == pytest.approx(1.0)
    assert qwk(y, y[::-1]) == pytest.approx(-1.0)
    # hand computation: one sample off by one among 4
    t, p = np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1])
    # observed weighted disagreement = 1/16 per off-by-one over n=4; expected from marginals
    obs = (1 / 16) / 4
    rows, cols = np.array([2, 2, 0, 0, 0]) / 4, np.array([1, 3, 0, 0, 0]) / 4
    w = (np.subtract.outer(np.arange(5), np.arange(5)) ** 2) / 16
    exp = (w * np.outer(rows, cols)).sum()
    assert qwk(t, p) == pytest.approx(1 - obs / exp)


def test_report_and_ece():
    probs = np.eye(5)[[0, 1, 2, 2]] * 0.9 + 0.02
    r = report(probs, np.array([0, 1, 2, 3]))
    assert r["accuracy"] == 0.75 and r["mae"] == 0.25
    assert r["per_grade_accuracy"] == [1.0, 1.0, 1.0, 0.0, None]
    assert r["confusion"][3][2] == 1
    assert r["ece"] == pytest.approx(abs(0.92 - 0.75))


def test_temperature_fit_recovers_known_temperature():
    rs = np.random.RandomState(0)
    true_logits = rs.randn(4000, 5) * 2
    y = np.array([rs.choice(5, p=p) for p in softmax(true_logits)])
    t = fit_temperature(true_logits * 3.0, y)   # over-confident by 3x
    assert t == pytest.approx(3.0, rel=0.1)


def test_bootstrap_intervals_hold_the_estimate_and_narrow_with_more_cases():
    rng = np.random.default_rng(8)
    y = rng.integers(0, 5, 400)
    pred = np.where(rng.random(400) < 0.7, y, rng.integers(0, 5, 400))
    iv = bootstrap_intervals(y, pred, resamples=500)
    assert iv == bootstrap_intervals(y, pred, resamples=500)          # seeded
    for name, value in (("accuracy", (pred == y).mean()), ("qwk", qwk(y, pred)), ("mae", np.abs(pred - y).mean())):
        lo, hi = iv[name]
        assert lo < value < hi, name
    # Sixteen times the cases: about a quarter of the width (the standard error goes as 1/sqrt(n)).
    big = bootstrap_intervals(np.tile(y, 16), np.tile(pred, 16), resamples=500)
    width = iv["accuracy"][1] - iv["accuracy"][0]
    assert 0.15 * width < big["accuracy"][1] - big["accuracy"][0] < 0.4 * width
    perfect = bootstrap_intervals(y, y, resamples=50)
    assert perfect["accuracy"] == [1.0, 1.0] and perfect["mae"] == [0.0, 0.0]


def test_log_mean_rule_is_the_normalised_geometric_mean():
    """The second rule pools log-probabilities: softmax of the members' mean log p, which equals the
    softmax of their mean temperature-scaled logits; a grade one member all but rules out loses the
    weight the arithmetic mean would give it."""
    rng = np.random.default_rng(5)
    logits = [rng.normal(0, 2, (50, 5)) for _ in range(3)]
    temps = [0.8, 1.0, 1.3]
    members = [softmax(z, t) for z, t in zip(logits, temps)]
    geo = pool(members, LOG_MEAN)
    np.testing.assert_allclose(geo, softmax(np.mean([z / t for z, t in zip(logits, temps)], 0)), atol=1e-9)
    np.testing.assert_allclose(ensemble_probabilities(members, rule=LOG_MEAN), geo)
    np.testing.assert_allclose(ensemble_probabilities(members), np.mean(members, 0))
    # Member 1 is sure of grade 0, member 2 of grade 1 with grade 0 nearly impossible: the mean
    # votes 0 (0.45 vs 0.35), the geometric mean 1 (0.25 vs 0.03).
    a, b = np.array([[0.9, 0.1, 0, 0, 0]]) + 1e-3, np.array([[1e-4, 0.6, 0.4, 0, 0]]) + 1e-3
    assert pool([a, b], MEAN).argmax() == 0 and pool([a, b], LOG_MEAN).argmax() == 1
    t = fit_ensemble_temperature(members, rng.integers(0, 5, 50), LOG_MEAN)
    assert (ensemble_probabilities(members, t, LOG_MEAN).argmax(1) == geo.argmax(1)).all()
    with pytest.raises(ValueError, match="unknown ensemble rule"):
        pool(members, "median")


def test_ensemble_temperature_sharpens_without_changing_grades():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 5, 4000)
    # Two members that each know the grade but disagree on the rest: their mean is under-confident.
    members = []
    for _ in range(2):
        logits = rng.normal(0, 1, (4000, 5))
        logits[np.arange(4000), y] += 2.5
        members.append(softmax(logits, 1.6))
    q = ensemble_probabilities(members)
    np.testing.assert_allclose(q, np.mean(members, 0))
    t = fit_ensemble_temperature(members, y)
    p = ensemble_probabilities(members, t)
    assert t < 1.0  # sharpened
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-9)
    assert (p.argmax(1) == q.argmax(1)).all()
    as_logits = np.log(np.clip(q, 1e-12, None))
    assert nll(as_logits, y, t) < nll(as_logits, y, 1.0)


def test_pack_round_trip(tmp_path, data_dir):
    info = write_pack(data_dir / "val", tmp_path / "v.kgpack", quality=75, limit_per_grade=2)
    x, y, names = read_pack(tmp_path / "v.kgpack")
    x0, y0, n0 = load_folder(data_dir / "val", limit_per_grade=2)
    assert info["images"] == 10 and names == n0 and (y == y0).all()
    assert x.shape == (10, 1, 224, 224) and x.dtype == np.uint8
    err = np.abs(x.astype(int) - x0).mean()
    assert 0 < err < 6          # lossy but close (NOTES: ~3.5 grey levels at q75)
    assert info["bytes"] < 10 * 14000


def test_augment_identity_and_range():
    x8 = torch.randint(0, 256, (3, 1, 32, 32), dtype=torch.uint8)
    zero = {k: 0.0 for k in ("rotate_deg", "scale", "shift", "hflip", "brightness", "contrast", "gamma")}
    assert torch.allclose(augment(x8, 32, zero), to_input(x8, 32), atol=1e-5)
    flip = dict(zero, hflip=1.0)
    assert torch.allclose(augment(x8, 32, flip), to_input(x8, 32).flip(-1), atol=1e-5)
    g = torch.Generator().manual_seed(0)
    a = augment(x8, 16, {}, g)
    assert a.shape == (3, 1, 16, 16) and a.min() >= 0 and a.max() <= 1
    assert not torch.allclose(a, to_input(x8, 16))


def test_only_packs_inside_the_repository_travel(tmp_path):
    from models.pack import REPO_ROOT, travels
    assert travels(REPO_ROOT / "models" / ".pack")
    assert not travels(REPO_ROOT / "var" / "test-models" / "test-x" / "pack")
    assert not travels(tmp_path / "pack")
