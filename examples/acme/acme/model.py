"""AcmeNet: a small CNN with the convolutions real networks use (3x3, depthwise, grouped,
dilated, 1x1, 5x5), every one of which dikd reduces on reduced steps."""

from __future__ import annotations

import torch
from torch import nn


def _conv_bn(conv: nn.Conv2d) -> nn.Sequential:
    return nn.Sequential(conv, nn.BatchNorm2d(conv.out_channels), nn.ReLU(inplace=True))


class AcmeNet(nn.Module):
    def __init__(self, num_classes: int = 10, in_channels: int = 1, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _conv_bn(nn.Conv2d(in_channels, w, 3, padding=1, bias=False)),
            _conv_bn(nn.Conv2d(w, w, 3, padding=1, groups=w, bias=False)),  # depthwise
            _conv_bn(nn.Conv2d(w, 2 * w, 1, bias=False)),  # pointwise
            _conv_bn(nn.Conv2d(2 * w, 2 * w, 5, stride=2, padding=2, bias=False)),
            _conv_bn(nn.Conv2d(2 * w, 2 * w, 3, padding=2, dilation=2, groups=4, bias=False)),
            _conv_bn(nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1, bias=False)),
        )
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x)
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def build(num_classes: int, in_channels: int) -> nn.Module:
    """What `train.model: acme.model:build` (or `acme-net`) builds."""
    return AcmeNet(num_classes, in_channels)
