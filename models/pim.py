"""Plug-in module (PIM) network after Chou, Kao & Lin 2022 (reference: chou141253/FGVC-PIM).

backbone (4 stages) -> FPN (per-level projection, top-down fusion) -> token classifier per level
-> weakly supervised selector (top-k most confident tokens per level, vectorised over the batch)
-> graph-convolution combiner over the selected tokens -> class logits.
Deviations from the reference are listed in models/README.md.
"""
from typing import Dict, List, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .backbones import build_backbone


class GCNCombiner(nn.Module):
    """Reference ``GCNCombiner`` with an FPN in front (``fpn_size`` given), same layers and init."""

    def __init__(self, total_num_selects: int, num_classes: int, dim: int):
        super().__init__()
        num_joints = max(1, total_num_selects // 32)
        self.param_pool0 = nn.Linear(total_num_selects, num_joints)
        self.adj1 = nn.Parameter(torch.eye(num_joints) / 100 + 1 / 100)
        self.conv1 = nn.Conv1d(dim, dim, 1)
        self.batch_norm1 = nn.BatchNorm1d(dim)
        self.conv_q1 = nn.Conv1d(dim, dim // 4, 1)
        self.conv_k1 = nn.Conv1d(dim, dim // 4, 1)
        self.alpha1 = nn.Parameter(torch.zeros(1))
        self.param_pool1 = nn.Linear(num_joints, 1)
        self.dropout = nn.Dropout(p=0.1)
        self.classifier = nn.Linear(dim, num_classes)

    def forward(self, selected: List[torch.Tensor]) -> torch.Tensor:
        hs = torch.cat(selected, dim=1).transpose(1, 2)  # B, S, C -> B, C, S
        hs = self.param_pool0(hs)                         # B, C, J
        q1 = self.conv_q1(hs).mean(1)
        k1 = self.conv_k1(hs).mean(1)
        a1 = torch.tanh(q1.unsqueeze(-1) - k1.unsqueeze(1))
        a1 = self.adj1 + a1 * self.alpha1
        hs = self.conv1(hs)
        hs = torch.matmul(hs, a1)
        hs = self.batch_norm1(hs)
        hs = self.param_pool1(hs)
        hs = self.dropout(hs)
        hs = hs.flatten(1)
        return self.classifier(hs)


def select_tokens(feats: torch.Tensor, logits: torch.Tensor, k: int, with_dropped: bool):
    """Weakly supervised selection, vectorised over the batch.

    feats: B, N, C token features; logits: B, N, K token logits. Tokens are ranked by their
    highest class probability, descending (as the reference's per-sample ``torch.sort``).
    Returns (selected feats B,k,C; selected logits B,k,K; dropped logits B,N-k,K or None).
    """
    # Rank by the highest class log-probability: the same order as the reference's highest softmax
    # probability, with fewer exact ties (probabilities saturate at 1.0 in float32). Remaining ties
    # go to the lower token index, as the ONNX TopK specification demands, so PyTorch (stable sort)
    # and onnxruntime (TopK) select the same tokens.
    # In float32 even under bf16 autocast: bf16's 8-bit mantissa would tie most tokens, and ties
    # go to the lowest index, which would make the selection positional instead of learned.
    lf = logits.float()
    scores = lf.max(dim=-1)[0] - torch.logsumexp(lf, dim=-1)
    if torch.onnx.is_in_onnx_export():
        sel_ids = torch.topk(scores, k, dim=1, largest=True, sorted=True)[1]
        drop_ids = None
    else:
        order = torch.sort(scores, dim=1, descending=True, stable=True)[1]
        sel_ids = order[:, :k]
        drop_ids = order[:, k:] if with_dropped else None

    def take(t: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        return torch.gather(t, 1, ids.unsqueeze(-1).expand(-1, -1, t.shape[-1]))

    dropped = take(logits, drop_ids) if drop_ids is not None else None
    return take(feats, sel_ids), take(logits, sel_ids), dropped


class PIM(nn.Module):
    """A PIM network on a 1-channel image in [0, 1] (grey / 255); normalisation is in the graph."""

    def __init__(self, backbone: str, num_classes: int = 5, fpn_size: int = 128,
                 num_selects: Sequence[int] = (256, 128, 64, 32), input_size: int = 224,
                 mean: float = 0.5, std: float = 0.25, fpn_hidden_max: int = 0):
        super().__init__()
        self.backbone_name = backbone
        self.num_classes = num_classes
        self.input_size = input_size
        self.backbone = build_backbone(backbone)
        self.register_buffer("in_mean", torch.tensor(float(mean)), persistent=False)
        self.register_buffer("in_std", torch.tensor(float(std)), persistent=False)
        was = self.backbone.training
        self.backbone.eval()
        with torch.no_grad():
            shapes = [f.shape for f in self.backbone(torch.zeros(1, 1, input_size, input_size))]
        self.backbone.train(was)
        self.channels = [int(s[1]) for s in shapes]
        self.grids = [(int(s[2]), int(s[3])) for s in shapes]
        if len(num_selects) != len(shapes):
            raise ValueError("one num_selects entry per level is needed")
        self.num_selects = []
        for k, (h, w) in zip(num_selects, self.grids):
            if not 1 <= k < h * w:
                raise ValueError(f"num_selects {k} must be in [1, {h * w - 1}] for a {h}x{w} grid")
            self.num_selects.append(int(k))
        # FPN projection, reference "Conv" type for CNNs: 1x1 conv (C -> C), ReLU, 1x1 conv to fpn_size.
        # fpn_hidden_max > 0 caps the hidden width (deviation, to fit wide backbones in the size budget).
        hid = [min(c, fpn_hidden_max) if fpn_hidden_max else c for c in self.channels]
        self.fpn_proj = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c, h, 1), nn.ReLU(), nn.Conv2d(h, fpn_size, 1)) for c, h in zip(self.channels, hid))
        # Token classifiers: the reference's Conv1d(k=1), BN1d, ReLU, Conv1d(k=1) over the H*W tokens,
        # written as the identical 1x1 Conv2d/BN2d on the grid so the maps keep static H, W in ONNX.
        self.token_cls = nn.ModuleList(
            nn.Sequential(nn.Conv2d(fpn_size, fpn_size, 1), nn.BatchNorm2d(fpn_size), nn.ReLU(),
                          nn.Conv2d(fpn_size, num_classes, 1)) for _ in self.channels)
        self.combiner = GCNCombiner(sum(self.num_selects), num_classes, fpn_size)

    def forward(self, image: torch.Tensor, with_dropped: bool = None) -> Dict[str, object]:
        if with_dropped is None:
            with_dropped = self.training
        if image.shape[-1] != self.input_size or image.shape[-2] != self.input_size:
            raise ValueError(f"expected {self.input_size}x{self.input_size} input, got {tuple(image.shape)}")
        x = (image - self.in_mean) / self.in_std
        feats = [p(f) for p, f in zip(self.fpn_proj, self.backbone(x))]
        # Top-down fusion: the coarser level is resized to the finer grid and added. Grid sizes are
        # fixed by input_size, so they enter the exported graph as constants (static map shapes).
        for i in range(len(feats) - 1, 0, -1):
            up = feats[i]
            (h0, w0), (h1, w1) = self.grids[i - 1], self.grids[i]
            if (h0, w0) != (h1, w1):
                if h0 % h1 == 0 and w0 % w1 == 0:  # constant scales keep the ONNX shapes static
                    up = F.interpolate(up, scale_factor=(h0 // h1, w0 // w1), mode="bilinear", align_corners=False)
                else:
                    up = F.interpolate(up, size=(h0, w0), mode="bilinear", align_corners=False)
            feats[i - 1] = feats[i - 1] + up
        token_maps, token_logits, sel_feats, sel_logits, drop_logits = [], [], [], [], []
        for f, cls, k in zip(feats, self.token_cls, self.num_selects):
            tmap = cls(f)                             # B, K, H, W
            token_maps.append(tmap)
            flat = f.flatten(2)                       # B, C, N
            lg = tmap.flatten(2).transpose(1, 2)      # B, N, K
            s_f, s_l, d_l = select_tokens(flat.transpose(1, 2), lg, k, with_dropped)
            token_logits.append(lg)
            sel_feats.append(s_f)
            sel_logits.append(s_l)
            drop_logits.append(d_l)
        return {
            "logits": self.combiner(sel_feats),
            "token_maps": token_maps,
            "token_logits": token_logits,
            "selected_logits": sel_logits,
            "dropped_logits": drop_logits if with_dropped else None,
        }


class ExportWrapper(nn.Module):
    """What the ONNX graph exposes: combiner logits and per-level token-logit maps (B, K, H, W)."""

    def __init__(self, model: PIM):
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor):
        out = self.model(image, with_dropped=False)
        return (out["logits"], *out["token_maps"])


def build_model(cfg: dict) -> PIM:
    return PIM(cfg["backbone"], num_classes=cfg.get("num_classes", 5), fpn_size=cfg.get("fpn_size", 128),
               num_selects=cfg.get("num_selects", (256, 128, 64, 32)), input_size=cfg.get("input_size", 224),
               mean=cfg.get("mean", 0.5), std=cfg.get("std", 0.25), fpn_hidden_max=cfg.get("fpn_hidden_max", 0))
