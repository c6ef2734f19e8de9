"""Models of a user's own, by import path."""

from __future__ import annotations

import torch
from torch import nn


class EveryConv(nn.Module):
    """Every kind of nn.Conv2d a user model has: 3x3, depthwise, grouped, dilated, 1x1, 5x5."""

    def __init__(self, num_classes: int, in_channels: int) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            nn.Conv2d(in_channels, 8, 3, padding=1),
            nn.Conv2d(8, 8, 3, padding=1, groups=8),  # depthwise
            nn.Conv2d(8, 8, 3, padding=1, groups=2),  # grouped
            nn.Conv2d(8, 8, 3, padding=2, dilation=2),  # dilated
            nn.Conv2d(8, 16, 1),  # 1x1
            nn.Conv2d(16, 16, 5, stride=2, padding=2),  # 5x5
        )
        self.bn = nn.BatchNorm2d(16)
        self.head = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.relu(self.bn(self.convs(x)))
        return self.head(x.mean(dim=(2, 3)))


def every_conv(num_classes: int, in_channels: int) -> nn.Module:
    return EveryConv(num_classes, in_channels)


def positional_only(classes):  # the wrong signature
    return EveryConv(classes, 1)


def not_a_module(num_classes: int, in_channels: int):
    return "a model"


NOT_CALLABLE = 3
