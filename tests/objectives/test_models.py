from __future__ import annotations

import pytest
import torch
from torch import nn

from objectives._errors import ConfigError
from objectives._models import build_model, list_models, register_model

MODELS = ["resnet20", "resnet32", "resnet56", "resnet18", "vgg11_bn", "mobilenet_v2"]
# VGG's five floor-mode 2x2 max-pools take 27 pixels to 0; its odd size is 33 instead.
ODD_SIZE = {"vgg11_bn": 33}


@pytest.mark.parametrize("in_channels", [1, 3])
@pytest.mark.parametrize("name", MODELS)
def test_forward_shapes(name: str, in_channels: int) -> None:
    torch.manual_seed(0)
    model = build_model(name, num_classes=10, in_channels=in_channels)
    first_conv = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
    assert first_conv.in_channels == in_channels
    model.eval()
    with torch.no_grad():
        for size in (32, ODD_SIZE.get(name, 27)):  # odd sizes go through strided shortcuts
            out = model(torch.randn(2, in_channels, size, size))
            assert out.shape == (2, 10)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [4, 7, 9])
def test_cifar_resnet_small_odd_inputs_train_mode(size: int) -> None:
    model = build_model("resnet20", num_classes=3, in_channels=1)
    out = model(torch.randn(2, 1, size, size))
    out.sum().backward()
    assert out.shape == (2, 3)


def test_resnet20_parameter_count() -> None:
    model = build_model("resnet20", num_classes=10, in_channels=3)
    count = sum(p.numel() for p in model.parameters())
    assert 0.26e6 < count < 0.28e6  # He et al. 2016: 0.27M


def test_replaced_conv_keeps_geometry() -> None:
    original = build_model("resnet18", num_classes=10, in_channels=3).conv1
    conv = build_model("resnet18", num_classes=10, in_channels=1).conv1
    assert conv.in_channels == 1
    for attr in ("out_channels", "kernel_size", "stride", "padding", "dilation", "groups"):
        assert getattr(conv, attr) == getattr(original, attr)
    assert (conv.bias is None) == (original.bias is None)


def test_list_models() -> None:
    names = list_models()
    assert names[:3] == ["resnet20", "resnet32", "resnet56"]
    assert "resnet18" in names and "mobilenet_v2" in names
    assert "fasterrcnn_resnet50_fpn" not in names  # detection, not classification
    assert len(names) == len(set(names))


@pytest.mark.parametrize("name", ["resnet21", "fasterrcnn_resnet50_fpn"])
def test_unknown_model_is_one_line(name: str) -> None:
    with pytest.raises(ValueError, match=name) as info:
        build_model(name, num_classes=10, in_channels=3)
    assert isinstance(info.value, ConfigError)
    assert "\n" not in str(info.value)
    assert "resnet20, resnet32, resnet56" in str(info.value)


def test_register_model_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_model("resnet20")(lambda num_classes, in_channels: nn.Linear(1, 1))
