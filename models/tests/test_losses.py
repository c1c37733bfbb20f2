import math

import pytest
import torch
import torch.nn.functional as F

from models.losses import pim_loss, soft_ce, soft_targets, suppression_loss


def test_suppression_loss_values():
    assert suppression_loss(torch.zeros(2, 3, 5)).item() == pytest.approx(1.0)       # tanh(0) = 0 -> (0+1)^2
    assert suppression_loss(torch.full((2, 3, 5), -20.0)).item() == pytest.approx(0.0, abs=1e-6)
    assert suppression_loss(torch.full((1, 1, 5), 20.0)).item() == pytest.approx(4.0, abs=1e-6)  # (1+1)^2


def test_soft_ce_matches_cross_entropy_for_one_hot():
    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(7, 5, generator=g), torch.tensor([0, 1, 2, 3, 4, 4, 0])
    t = soft_targets(y, 5)
    assert soft_ce(logits, t).item() == pytest.approx(F.cross_entropy(logits, y).item(), rel=1e-6)
    w = torch.tensor([1.0, 2.0, 1.0, 1.0, 3.0])
    assert soft_ce(logits, t, w[y]).item() == pytest.approx(F.cross_entropy(logits, y, weight=w).item(), rel=1e-6)


def test_ordinal_targets():
    t = soft_targets(torch.tensor([0, 2, 4]), 5, ordinal_sigma=1.0)
    assert torch.allclose(t.sum(1), torch.ones(3))
    assert t[1].argmax() == 2 and t[1, 1] == pytest.approx(t[1, 3].item())        # symmetric around the grade
    assert t[1, 1] > t[1, 0] > 0                                                  # decays with distance
    e = math.exp(-0.5)
    assert t[0, 1].item() == pytest.approx(e / (1 + e + math.exp(-2) + math.exp(-4.5) + math.exp(-8)), rel=1e-5)
    ls = soft_targets(torch.tensor([3]), 5, label_smoothing=0.1)
    assert ls[0, 3].item() == pytest.approx(0.92) and ls[0, 0].item() == pytest.approx(0.02)


def test_pim_loss_weighted_sum_of_terms():
    y = torch.tensor([1, 3])
    out = {
        "token_logits": [torch.zeros(2, 10, 5), torch.zeros(2, 4, 5)],
        "selected_logits": [torch.zeros(2, 3, 5), torch.zeros(2, 2, 5)],
        "dropped_logits": [torch.zeros(2, 7, 5), torch.zeros(2, 2, 5)],
        "logits": torch.zeros(2, 5),
    }
    total, terms = pim_loss(out, y, 5, lambda_b=0.5, lambda_s=0.25, lambda_n=5.0, lambda_c=1.0)
    ln5 = math.log(5)
    assert terms["b"] == pytest.approx(2 * ln5) and terms["s"] == pytest.approx(2 * ln5)
    assert terms["n"] == pytest.approx(2.0) and terms["c"] == pytest.approx(ln5)
    assert total.item() == pytest.approx(0.5 * 2 * ln5 + 0.25 * 2 * ln5 + 5.0 * 2.0 + ln5, rel=1e-6)
    # the reference default switches L_s off
    _, terms = pim_loss(out, y, 5)
    assert "s" not in terms


def test_pim_loss_gradient_pushes_dropped_tokens_down():
    d = torch.zeros(1, 4, 5, requires_grad=True)
    out = {"token_logits": [], "selected_logits": [], "dropped_logits": [d], "logits": torch.zeros(1, 5)}
    total, _ = pim_loss(out, torch.tensor([0]), 5, lambda_b=0, lambda_c=0)
    total.backward()
    assert (d.grad > 0).all()   # gradient descent lowers every dropped logit


def test_lambda_n_needs_dropped_tokens():
    out = {"token_logits": [], "selected_logits": [], "dropped_logits": None, "logits": torch.zeros(1, 5)}
    with pytest.raises(ValueError):
        pim_loss(out, torch.tensor([0]), 5)
