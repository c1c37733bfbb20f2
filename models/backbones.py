"""Backbones that return the feature maps of four stages (strides 4, 8, 16, 32).

All take a 1-channel (grey) image. torchvision builders are used with ``weights=None`` (no
pretrained weights exist offline); their first convolution is replaced by a 1-channel one and the
unused classification tails are dropped, which saves parameters and ONNX bytes.
"""
from typing import List, Sequence

import torch
import torch.nn as nn
import torchvision


def _grey_conv(conv: nn.Conv2d) -> nn.Conv2d:
    return nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     bias=conv.bias is not None)


class _BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        # Zero-init of the last BN makes each residual block start as identity: helps from scratch.
        nn.init.zeros_(self.bn2.weight)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return self.relu(y + idt)


class SlimResNet(nn.Module):
    """ResNet-18 layout at half width (32-64-128-256): ~2.8 M parameters instead of 11.2 M."""

    def __init__(self, widths: Sequence[int] = (32, 64, 128, 256), blocks: Sequence[int] = (2, 2, 2, 2)):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(1, widths[0], 7, 2, 3, bias=False), nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2, 1))
        stages, cin = [], widths[0]
        for i, (w, n) in enumerate(zip(widths, blocks)):
            layers = [_BasicBlock(cin, w, 1 if i == 0 else 2)] + [_BasicBlock(w, w, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            cin = w
        self.stages = nn.ModuleList(stages)
        self.channels = list(widths)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x) -> List[torch.Tensor]:
        x = self.stem(x)
        outs = []
        for s in self.stages:
            x = s(x)
            outs.append(x)
        return outs


class _Tapped(nn.Module):
    """Runs ``blocks`` in order and returns the outputs after the indices in ``taps``."""

    def __init__(self, blocks: Sequence[nn.Module], taps: Sequence[int], channels: Sequence[int]):
        super().__init__()
        self.blocks = nn.ModuleList(blocks[: max(taps) + 1])
        self.taps = list(taps)
        self.channels = list(channels)

    def forward(self, x) -> List[torch.Tensor]:
        outs = []
        for i, b in enumerate(self.blocks):
            x = b(x)
            if i in self.taps:
                outs.append(x)
        return outs


def efficientnet_b0() -> nn.Module:
    m = torchvision.models.efficientnet_b0(weights=None)
    f = m.features
    f[0][0] = _grey_conv(f[0][0])
    # features.2/3/5/7: strides 4/8/16/32; features.8 (1x1 conv to 1280) is not needed.
    return _Tapped(list(f), [2, 3, 5, 7], [24, 40, 112, 320])


def mobilenet_v3_large() -> nn.Module:
    m = torchvision.models.mobilenet_v3_large(weights=None)
    f = m.features
    f[0][0] = _grey_conv(f[0][0])
    # features.3/6/12/15: strides 4/8/16/32; features.16 (1x1 conv to 960) is dropped.
    return _Tapped(list(f), [3, 6, 12, 15], [24, 40, 112, 160])


def regnet_y_400mf() -> nn.Module:
    m = torchvision.models.regnet_y_400mf(weights=None)
    m.stem[0] = _grey_conv(m.stem[0])
    t = m.trunk_output
    return _Tapped([m.stem, t.block1, t.block2, t.block3, t.block4], [1, 2, 3, 4], [48, 104, 208, 440])


def shufflenet_v2_x1_0() -> nn.Module:
    m = torchvision.models.shufflenet_v2_x1_0(weights=None)
    m.conv1[0] = _grey_conv(m.conv1[0])
    return _Tapped([m.conv1, m.maxpool, m.stage2, m.stage3, m.stage4], [1, 2, 3, 4], [24, 116, 232, 464])


def _torchvision_resnet(builder) -> nn.Module:
    m = builder(weights=None)
    m.conv1 = _grey_conv(m.conv1)
    nn.init.kaiming_normal_(m.conv1.weight, mode="fan_out", nonlinearity="relu")
    for mod in m.modules():  # zero-init the last BN of each residual block (starts as identity)
        if isinstance(mod, torchvision.models.resnet.BasicBlock):
            nn.init.zeros_(mod.bn2.weight)
    stem = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool)
    widths = [m.layer1[-1].conv2.out_channels, m.layer2[-1].conv2.out_channels,
              m.layer3[-1].conv2.out_channels, m.layer4[-1].conv2.out_channels]
    # layer1..layer4: strides 4/8/16/32 (the reference taps the same four stages of its ResNet-50)
    return _Tapped([stem, m.layer1, m.layer2, m.layer3, m.layer4], [1, 2, 3, 4], widths)


def resnet18() -> nn.Module:
    return _torchvision_resnet(torchvision.models.resnet18)


def resnet34() -> nn.Module:
    return _torchvision_resnet(torchvision.models.resnet34)


def resnet_slim() -> nn.Module:
    return SlimResNet()


def resnet_tiny() -> nn.Module:
    """Very small ResNet for smoke runs and CI (not an ensemble member)."""
    return SlimResNet(widths=(8, 16, 24, 32), blocks=(1, 1, 1, 1))


BACKBONES = {
    "resnet_slim": resnet_slim,
    "resnet18": resnet18,
    "resnet34": resnet34,
    "efficientnet_b0": efficientnet_b0,
    "mobilenet_v3_large": mobilenet_v3_large,
    "regnet_y_400mf": regnet_y_400mf,
    "shufflenet_v2_x1_0": shufflenet_v2_x1_0,
    "resnet_tiny": resnet_tiny,
}


def build_backbone(name: str) -> nn.Module:
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[name]()
