"""Forward/backward for every backbone at a tiny input; selector and combiner behaviour."""
import pytest
import torch

from models.pim import PIM, GCNCombiner, select_tokens

MEMBER_BACKBONES = ["resnet_slim", "efficientnet_b0", "mobilenet_v3_large", "regnet_y_400mf",
                    "shufflenet_v2_x1_0", "resnet_tiny"]


@pytest.mark.parametrize("backbone", MEMBER_BACKBONES)
def test_forward_backward_tiny_input(backbone):
    torch.manual_seed(0)
    m = PIM(backbone, fpn_size=16, num_selects=(32, 16, 8, 2), input_size=64).train()
    assert m.grids == [(16, 16), (8, 8), (4, 4), (2, 2)]
    x = torch.rand(2, 1, 64, 64)
    out = m(x)
    assert out["logits"].shape == (2, 5)
    assert [t.shape for t in out["token_maps"]] == [(2, 5, 16, 16), (2, 5, 8, 8), (2, 5, 4, 4), (2, 5, 2, 2)]
    assert [t.shape for t in out["selected_logits"]] == [(2, 32, 5), (2, 16, 5), (2, 8, 5), (2, 2, 5)]
    assert [t.shape for t in out["dropped_logits"]] == [(2, 224, 5), (2, 48, 5), (2, 8, 5), (2, 2, 5)]
    loss = out["logits"].logsumexp(1).sum() + sum(t.square().mean() for t in out["token_logits"])
    loss.backward()
    first = next(p for p in m.backbone.parameters() if p.ndim == 4)
    assert first.shape[1] == 1, "backbones take one grey channel"
    assert first.grad is not None and torch.isfinite(first.grad).all() and first.grad.abs().sum() > 0
    # eval mode skips the dropped tokens (not needed for inference or export)
    m.eval()
    with torch.no_grad():
        assert m(x)["dropped_logits"] is None


def test_num_selects_must_leave_dropped_tokens():
    with pytest.raises(ValueError):
        PIM("resnet_tiny", fpn_size=8, num_selects=(32, 16, 8, 4), input_size=64)  # level 4 has 4 tokens


def _reference_select(feats, logits, k):
    """The reference WeaklySelector's per-sample loop (torch.sort of the max softmax probability)."""
    probs = torch.softmax(logits, dim=-1)
    sel, p1, p0 = [], [], []
    for bi in range(logits.size(0)):
        max_ids, _ = torch.max(probs[bi], dim=-1)
        _, ranks = torch.sort(max_ids, descending=True)
        sel.append(feats[bi][ranks[:k]])
        p1.append(logits[bi][ranks[:k]])
        p0.append(logits[bi][ranks[k:]])
    return torch.stack(sel), torch.stack(p1), torch.stack(p0)


@pytest.mark.parametrize("batch", [1, 3, 5])
def test_vectorised_selector_equals_reference_loop(batch):
    g = torch.Generator().manual_seed(batch)
    feats = torch.randn(batch, 49, 12, generator=g)
    logits = torch.randn(batch, 49, 5, generator=g) * 3
    got = select_tokens(feats, logits, 10, with_dropped=True)
    want = _reference_select(feats, logits, 10)
    for a, b in zip(got, want):
        assert torch.equal(a, b)
    # inference path (top-k, no dropped tokens) selects the same tokens in the same order
    s_f, s_l, d = select_tokens(feats, logits, 10, with_dropped=False)
    assert d is None and torch.equal(s_f, want[0]) and torch.equal(s_l, want[1])


def test_selector_keeps_most_confident_tokens():
    feats = torch.arange(6, dtype=torch.float32).view(1, 6, 1)
    logits = torch.zeros(1, 6, 5)
    logits[0, 4, 2] = 9.0   # most confident token
    logits[0, 1, 0] = 5.0   # second
    s_f, _, dropped = select_tokens(feats, logits, 2, with_dropped=True)
    assert s_f.view(-1).tolist() == [4.0, 1.0]
    assert dropped.shape == (1, 4, 5) and dropped.abs().sum() == 0


def test_combiner_shapes_and_init():
    c = GCNCombiner(total_num_selects=96, num_classes=5, dim=16)
    assert c.param_pool0.out_features == 3                       # nodes = total selected // 32
    assert torch.allclose(c.adj1, torch.eye(3) / 100 + 1 / 100)   # reference adjacency init
    assert float(c.alpha1) == 0.0
    out = c([torch.randn(4, 64, 16), torch.randn(4, 32, 16)])
    assert out.shape == (4, 5)


def test_selector_ties_go_to_lower_index():
    """Saturated tokens tie; the lower index wins (the ONNX TopK rule), so runtimes agree.
    (torch.topk and an unstable argsort order such ties arbitrarily on a grid this size.)"""
    n = 4096
    logits = torch.zeros(2, n, 5)
    logits[:, ::3, 2] = 1e4              # every third token has probability exactly 1.0
    feats = torch.arange(n, dtype=torch.float32).view(1, n, 1).expand(2, n, 1)
    for with_dropped in (True, False):
        s_f, _, _ = select_tokens(feats, logits, 50, with_dropped=with_dropped)
        assert s_f[..., 0].tolist() == [[3.0 * i for i in range(50)]] * 2


def test_ensemble_config_fits_the_budgets(repo_root):
    """gpu.json: each ONNX file <= 16 MiB (a quarter of the model budget) and the ensemble <= 64 MiB (fp32)."""
    from models.config import load_config, member_config
    from models.pim import build_model
    cfg = load_config(repo_root / "models" / "configs" / "gpu.json")
    sizes = []
    for m in cfg["members"]:
        mc = member_config(cfg, m)
        n = sum(p.numel() for p in build_model(mc).parameters())
        sizes.append(n * 4 + 100_000)        # fp32 weights + graph overhead (measured ~35 kB)
    assert len({m["backbone"] for m in cfg["members"]}) == 4
    assert max(sizes) <= 16 * 2**20 and sum(sizes) <= 64 * 2**20
