"""PIM training objective (reference main.py) with optional soft ordinal targets and class weights.

loss = lambda_b * sum_l CE(mean over tokens of level-l logits)
     + lambda_s * sum_l CE(selected tokens' logits)            (off by default, as the reference)
     + lambda_n * sum_l MSE(tanh(dropped tokens' logits), -1)
     + lambda_c * CE(combiner logits)
With ``ordinal_sigma = 0``, ``label_smoothing = 0`` and no class weights every CE term equals the
reference's ``nn.CrossEntropyLoss``.
"""
from typing import Dict, Optional, Sequence

import torch
import torch.nn.functional as F


def soft_targets(labels: torch.Tensor, num_classes: int, ordinal_sigma: float = 0.0,
                 label_smoothing: float = 0.0) -> torch.Tensor:
    """One-hot targets, optionally spread to neighbouring grades with a Gaussian of width
    ``ordinal_sigma`` (in grades), then mixed with a uniform distribution by ``label_smoothing``."""
    grades = torch.arange(num_classes, device=labels.device, dtype=torch.float32)
    if ordinal_sigma > 0:
        d = grades.unsqueeze(0) - labels.float().unsqueeze(1)
        t = torch.exp(-0.5 * (d / ordinal_sigma) ** 2)
        t = t / t.sum(1, keepdim=True)
    else:
        t = F.one_hot(labels, num_classes).float()
    if label_smoothing > 0:
        t = t * (1 - label_smoothing) + label_smoothing / num_classes
    return t


def soft_ce(logits: torch.Tensor, targets: torch.Tensor, weights: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Cross-entropy against target distributions; ``weights`` per sample (weighted mean)."""
    nll = -(targets * F.log_softmax(logits.float(), dim=-1)).sum(-1)
    if weights is None:
        return nll.mean()
    return (nll * weights).sum() / weights.sum()


def suppression_loss(dropped_logits: torch.Tensor) -> torch.Tensor:
    """Reference L_n: MSE between tanh(logits of dropped tokens) and -1 (all classes)."""
    return F.mse_loss(torch.tanh(dropped_logits.float()), torch.full_like(dropped_logits.float(), -1.0))


def pim_loss(out: Dict[str, object], labels: torch.Tensor, num_classes: int, lambda_b: float = 0.5,
             lambda_s: float = 0.0, lambda_n: float = 5.0, lambda_c: float = 1.0, ordinal_sigma: float = 0.0,
             label_smoothing: float = 0.0, class_weights: Optional[Sequence[float]] = None):
    """Returns (total loss, dict of the unweighted terms as floats for logging)."""
    t = soft_targets(labels, num_classes, ordinal_sigma, label_smoothing)
    w = None
    if class_weights is not None:
        w = torch.as_tensor(class_weights, dtype=torch.float32, device=labels.device)[labels]
    terms = {}
    total = torch.zeros((), device=labels.device)
    if lambda_b:
        lb = sum(soft_ce(lg.mean(1), t, w) for lg in out["token_logits"])
        total = total + lambda_b * lb
        terms["b"] = float(lb)
    if lambda_s:
        ls = 0.0
        for lg in out["selected_logits"]:
            s = lg.shape[1]
            ws = None if w is None else w.repeat_interleave(s)
            ls = ls + soft_ce(lg.reshape(-1, num_classes), t.repeat_interleave(s, dim=0), ws)
        total = total + lambda_s * ls
        terms["s"] = float(ls)
    if lambda_n:
        if out.get("dropped_logits") is None:
            raise ValueError("lambda_n needs the dropped tokens: run the model in training mode")
        ln = sum(suppression_loss(lg) for lg in out["dropped_logits"])
        total = total + lambda_n * ln
        terms["n"] = float(ln)
    if lambda_c:
        lc = soft_ce(out["logits"], t, w)
        total = total + lambda_c * lc
        terms["c"] = float(lc)
    return total, terms
