"""Metrics for ordinal 5-grade classification and temperature scaling."""
from typing import Dict, Optional

import numpy as np


def confusion(y_true: np.ndarray, y_pred: np.ndarray, k: int = 5) -> np.ndarray:
    cm = np.zeros((k, k), np.int64)
    np.add.at(cm, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return cm


def qwk(y_true: np.ndarray, y_pred: np.ndarray, k: int = 5) -> float:
    """Quadratic weighted Cohen's kappa."""
    cm = confusion(y_true, y_pred, k).astype(float)
    n = cm.sum()
    if n == 0:
        return 0.0
    i, j = np.meshgrid(np.arange(k), np.arange(k), indexing="ij")
    w = (i - j) ** 2 / (k - 1) ** 2
    expected = np.outer(cm.sum(1), cm.sum(0)) / n
    den = (w * expected).sum()
    return float(1 - (w * cm).sum() / den) if den > 0 else 0.0


def ece(probs: np.ndarray, y_true: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error of the top-class confidence, equal-width bins."""
    conf = probs.max(1)
    correct = (probs.argmax(1) == y_true).astype(float)
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        m = (conf > lo) & (conf <= hi)
        if m.any():
            total += m.mean() * abs(conf[m].mean() - correct[m].mean())
    return float(total)


def softmax(logits: np.ndarray, t: float = 1.0) -> np.ndarray:
    z = logits / t
    z = z - z.max(1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(1, keepdims=True)


def nll(logits: np.ndarray, y: np.ndarray, t: float) -> float:
    p = softmax(logits, t)
    return float(-np.log(np.clip(p[np.arange(len(y)), y], 1e-12, None)).mean())


def fit_temperature(logits: np.ndarray, y: np.ndarray) -> float:
    """Temperature minimising the negative log-likelihood (grid in log space, then refined)."""
    grid = np.exp(np.linspace(np.log(0.05), np.log(20.0), 121))
    best = min(grid, key=lambda t: nll(logits, y, t))
    fine = best * np.exp(np.linspace(-0.06, 0.06, 61))
    return float(min(fine, key=lambda t: nll(logits, y, t)))


MEAN = "mean_calibrated_probabilities"
LOG_MEAN = "mean_calibrated_log_probabilities"
ENSEMBLE_RULES = (MEAN, LOG_MEAN)


def check_rule(rule: str) -> str:
    """``rule`` if it is an ensemble rule, else ValueError naming the known ones."""
    if rule not in ENSEMBLE_RULES:
        raise ValueError(f"unknown ensemble rule {rule!r}; known: {', '.join(ENSEMBLE_RULES)}")
    return rule


def manifest_rule(man: Optional[dict]) -> str:
    """The ensemble rule of a manifest (a model exported before rules were named: the mean)."""
    return check_rule(((man or {}).get("ensemble") or {}).get("rule", MEAN))


def pool(member_probs, rule: str = MEAN) -> np.ndarray:
    """The members' calibrated probabilities pooled into one distribution per knee.

    ``mean_calibrated_probabilities``: their arithmetic mean (a mixture). ``mean_calibrated_log_probabilities``:
    the normalised geometric mean, softmax of the mean of log p (a product of experts; the same as
    averaging the temperature-scaled logits), where a grade only keeps its weight if every member
    gives it some."""
    if check_rule(rule) == MEAN:
        return np.mean(member_probs, 0)
    return softmax(np.mean([np.log(np.clip(p, 1e-12, None)) for p in member_probs], 0))


def ensemble_probabilities(member_probs, t: float = 1.0, rule: str = MEAN) -> np.ndarray:
    """The ensemble rule: the members' calibrated probabilities pooled (:func:`pool`), then
    sharpened or flattened by the ensemble temperature ``t`` (p ** (1 / t), renormalised; ``t`` = 1
    keeps the pool). The grade, argmax p, does not depend on ``t``."""
    p = pool(member_probs, rule)
    if t == 1.0:
        return p
    return softmax(np.log(np.clip(p, 1e-12, None)), t)


def fit_ensemble_temperature(member_probs, y: np.ndarray, rule: str = MEAN) -> float:
    """The ensemble temperature minimising the NLL of :func:`ensemble_probabilities` on ``y``."""
    return fit_temperature(np.log(np.clip(pool(member_probs, rule), 1e-12, None)), y)


def bootstrap_intervals(y_true: np.ndarray, y_pred: np.ndarray, resamples: int = 2000, seed: int = 0,
                        level: float = 0.95, k: int = 5) -> Dict[str, object]:
    """Percentile intervals of accuracy, QWK and MAE over ``resamples`` bootstrap resamples of the
    cases (drawn with replacement, seeded): how far each figure could move on another set of the
    same size from the same population."""
    y_true, y_pred = np.asarray(y_true, int), np.asarray(y_pred, int)
    rng = np.random.default_rng(seed)
    n = len(y_true)
    draws = {"accuracy": [], "qwk": [], "mae": []}
    for _ in range(resamples):
        i = rng.integers(0, n, n)
        t, p = y_true[i], y_pred[i]
        draws["accuracy"].append((t == p).mean())
        draws["qwk"].append(qwk(t, p, k))
        draws["mae"].append(np.abs(t - p).mean())
    q = [(1 - level) / 2 * 100, (1 + level) / 2 * 100]
    return {"level": level, "resamples": resamples, "seed": seed,
            **{name: [float(v) for v in np.percentile(d, q)] for name, d in draws.items()}}


def report(probs: np.ndarray, y_true: np.ndarray, k: int = 5) -> Dict[str, object]:
    pred = probs.argmax(1)
    cm = confusion(y_true, pred, k)
    per = [float(cm[g, g] / cm[g].sum()) if cm[g].sum() else None for g in range(k)]
    return {
        "n": int(len(y_true)),
        "accuracy": float((pred == y_true).mean()),
        "qwk": qwk(y_true, pred, k),
        "mae": float(np.abs(pred - y_true).mean()),
        "ece": ece(probs, y_true),
        "per_grade_accuracy": per,
        "confusion": cm.tolist(),
    }
