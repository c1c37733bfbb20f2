"""A batch-norm layer whose running variance overflowed is re-estimated before validation; the
layers that were fine keep their statistics."""
import json

import torch

from models.config import load_config, member_config
from models.pim import build_model
from models.train import predict_logits, repair_batchnorm


def _tiny(tmp_path):
    cfg = {"seed": 3, "train_dir": "unused", "val_dir": "unused", "input_size": 64, "fpn_size": 16,
           "num_selects": [32, 16, 8, 2], "batch_size": 4, "epochs": 1, "threads": 1, "bf16": False,
           "members": [{"name": "a", "backbone": "resnet_tiny"}]}
    path = tmp_path / "cfg.json"
    path.write_text(json.dumps(cfg))
    full = load_config(path)
    return member_config(full, full["members"][0])


def _batchnorms(net):
    return {n: m for n, m in net.named_modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}


def test_overflowed_running_variance_is_reestimated_and_the_rest_kept(tmp_path):
    cfg = _tiny(tmp_path)
    torch.manual_seed(0)
    net = build_model(cfg)
    x = torch.randint(0, 256, (40, 1, 64, 64), dtype=torch.uint8)
    net.train()
    with torch.no_grad():                      # running statistics that differ from a fresh layer's
        for _ in range(3):
            net(predict_input(x[:16]))
    bns = _batchnorms(net)
    assert "combiner.batch_norm1" in bns
    before = {n: (m.running_mean.clone(), m.running_var.clone()) for n, m in bns.items()}
    bns["combiner.batch_norm1"].running_var.fill_(float("inf"))
    net.eval()
    assert predict_logits(net, x, 64, torch.device("cpu")).std(axis=0).max() < 1e-6  # one answer for all

    repaired = repair_batchnorm(net, x, 64, torch.device("cpu"), batches=2, batch=16)

    assert repaired == ["combiner.batch_norm1"]
    assert not net.training
    bn = bns["combiner.batch_norm1"]
    assert torch.isfinite(bn.running_var).all() and (bn.running_var > 0).all()
    assert bn.momentum == 0.1
    for n, m in bns.items():
        if n != "combiner.batch_norm1":
            assert torch.equal(m.running_mean, before[n][0]) and torch.equal(m.running_var, before[n][1]), n
    assert predict_logits(net, x, 64, torch.device("cpu")).std(axis=0).max() > 1e-3
    assert repair_batchnorm(net, x, 64, torch.device("cpu")) == []               # nothing left to repair


def predict_input(x_uint8):
    from models.data import to_input
    return to_input(x_uint8, 64)
