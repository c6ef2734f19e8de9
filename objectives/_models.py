"""Models by name: dikd's CIFAR-style ResNets, every torchvision classification model, the
names installed packages publish in the `dikd.models` entry-point group, and the user's own
`package.module:callable` (called as `fn(num_classes=..., in_channels=...)`).

`build_model("resnet20", num_classes=10, in_channels=1)` works like torchvision's `get_model`;
`list_models()` gives the names the CLI offers and the tests parametrize over. Checking a name
never imports the user's code (a stored study is shown without it); building does, under the
allow-list of `_imports.py`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from ._errors import ConfigError
from ._imports import MODEL_GROUP, entry_points, import_callable, is_import_path, load_entry_point

ModelFn = Callable[[int, int], nn.Module]

_REGISTRY: dict[str, ModelFn] = {}


def register_model(name: str) -> Callable[[ModelFn], ModelFn]:
    """Decorator: register `fn(num_classes, in_channels) -> nn.Module` under `name`."""

    def decorator(fn: ModelFn) -> ModelFn:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = fn
        return fn

    return decorator


def _torchvision_models() -> list[str]:
    # module=torchvision.models keeps only classification models (no detection, segmentation...).
    return torchvision.models.list_models(module=torchvision.models)


def list_models() -> list[str]:
    """dikd's own model names, then torchvision's classification models (sorted), then the
    names installed packages publish in the `dikd.models` entry-point group."""
    names = list(_REGISTRY) + [n for n in _torchvision_models() if n not in _REGISTRY]
    return names + sorted(n for n in entry_points(MODEL_GROUP) if n not in names)


def is_user_model(name: str) -> bool:
    """Whether `name` is the user's code: an import path or an entry point's name."""
    builtin = name in _REGISTRY or name in _torchvision_models()
    return not builtin and (is_import_path(name) or name in entry_points(MODEL_GROUP))


def check_model_name(name: str) -> str:
    """`name` if a model of that name can be built, else a one-line ConfigError. An import path
    is checked for its form only: nothing is imported here."""
    if name in _REGISTRY or name in _torchvision_models() or is_user_model(name):
        return name
    if name in torchvision.models.list_models():
        problem = f"model {name!r} is not a classification model"
    else:
        problem = f"unknown model {name!r}"
    raise ConfigError(
        f"{problem}: choose {', '.join(_REGISTRY)}, a torchvision classification "
        "model such as resnet18 (see `dikd models`) or your own as package.module:function"
    )


def _user_model(name: str, num_classes: int, in_channels: int) -> nn.Module:
    """The user's model: imported (if this process allows its package), called with keywords,
    checked to be an nn.Module; one-line ConfigErrors naming `train.model` otherwise."""
    field = "train.model"
    if is_import_path(name):
        fn = import_callable(name, field)
    else:
        fn = load_entry_point(MODEL_GROUP, name, field)
    try:
        inspect.signature(fn).bind(num_classes=num_classes, in_channels=in_channels)
    except TypeError:
        raise ConfigError(
            f"field '{field}': {name} cannot be called as fn(num_classes=..., in_channels=...); "
            "give it those two keyword parameters"
        ) from None
    except ValueError:  # no signature to read (a builtin): calling it will tell
        pass
    model = fn(num_classes=num_classes, in_channels=in_channels)
    if not isinstance(model, nn.Module):
        raise ConfigError(
            f"field '{field}': {name} returned a {type(model).__name__}, not a torch.nn.Module; "
            "return the model"
        )
    return model


def build_model(name: str, *, num_classes: int, in_channels: int) -> nn.Module:
    """A freshly initialised model (no pretrained weights) for `in_channels`-channel images."""
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    if in_channels < 1:
        raise ConfigError(f"in_channels must be at least 1, got {in_channels}")
    check_model_name(name)
    if is_user_model(name):
        return _user_model(name, num_classes, in_channels)
    if name in _REGISTRY:
        return _REGISTRY[name](num_classes, in_channels)
    model = torchvision.models.get_model(name, weights=None, num_classes=num_classes)
    if in_channels != 3:
        _replace_first_rgb_conv(model, name, in_channels)
    return model


def _replace_first_rgb_conv(model: nn.Module, name: str, in_channels: int) -> None:
    for path, child in model.named_modules():
        if isinstance(child, nn.Conv2d) and child.in_channels == 3:
            parent_path, _, child_name = path.rpartition(".")
            conv = nn.Conv2d(
                in_channels,
                child.out_channels,
                kernel_size=child.kernel_size,
                stride=child.stride,
                padding=child.padding,
                dilation=child.dilation,
                groups=child.groups,
                bias=child.bias is not None,
                padding_mode=child.padding_mode,
                device=child.weight.device,
                dtype=child.weight.dtype,
            )
            setattr(model.get_submodule(parent_path), child_name, conv)
            return
    raise ConfigError(
        f"model {name!r} has no 3-channel convolution to adapt to {in_channels} input channels: "
        "choose another model or use 3-channel images"
    )


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with an option-A (parameter-free) shortcut."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.stride = stride
        self.extra_channels = planes - in_planes

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x
        if self.stride != 1:
            # ceil(n/stride) rows, the same as the strided 3x3 conv with padding 1 gives.
            shortcut = shortcut[:, :, :: self.stride, :: self.stride]
        if self.extra_channels:
            before = self.extra_channels // 2
            shortcut = F.pad(shortcut, (0, 0, 0, 0, before, self.extra_channels - before))
        return F.relu(out + shortcut)


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for small images (He et al. 2016, section 4.2): 16/32/64 channels."""

    def __init__(self, depth: int, num_classes: int = 10, in_channels: int = 3) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2 (20, 32, 56...), got {depth}")
        n = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, n, stride=1)
        self.layer2 = self._stage(16, 32, n, stride=2)
        self.layer3 = self._stage(32, 64, n, stride=2)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = [BasicBlock(in_planes, planes, stride)]
        layers += [BasicBlock(planes, planes) for _ in range(blocks - 1)]
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.pool(x), 1))


@register_model("resnet20")
def resnet20(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(20, num_classes, in_channels)


@register_model("resnet32")
def resnet32(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(32, num_classes, in_channels)


@register_model("resnet56")
def resnet56(num_classes: int, in_channels: int) -> nn.Module:
    return CifarResNet(56, num_classes, in_channels)
