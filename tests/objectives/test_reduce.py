from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from objectives import build_model, downsample, pool_kernel, reduced


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_downsample_sizes_and_identity():
    x = torch.randn(2, 3, 27, 32)
    assert downsample(x, 1) is x
    assert downsample(x, 2).shape == (2, 3, 14, 16)
    assert downsample(x, 4).shape == (2, 3, 7, 8)
    assert downsample(x, 1.5).shape == (2, 3, 18, 21)
    # area averaging keeps the mean of a batch whose size divides evenly
    y = torch.randn(1, 1, 32, 32)
    torch.testing.assert_close(downsample(y, 2).mean(), y.mean())


@pytest.mark.parametrize("scale", [0.5, 4.5, float("nan")])
def test_bad_scale_is_a_clear_error(scale):
    with pytest.raises(ValueError, match="scale must be in"):
        downsample(torch.randn(1, 1, 8, 8), scale)
    with pytest.raises(ValueError, match="scale must be in"):
        with reduced(nn.Conv2d(1, 1, 3), scale):
            pass


def test_pool_kernel_keeps_the_sum_of_a_constant_kernel():
    w = torch.ones(4, 2, 3, 3)
    pooled = pool_kernel(w, (2, 2))
    assert pooled.shape == (4, 2, 2, 2)
    torch.testing.assert_close(pooled.sum(dim=(2, 3)), w.sum(dim=(2, 3)))


def test_pooled_kernel_gradient_weights_taps_1_2_4():
    w = torch.zeros(1, 1, 3, 3, requires_grad=True)
    pool_kernel(w, (2, 2)).sum().backward()
    g = w.grad[0, 0] / w.grad[0, 0, 0, 0]
    torch.testing.assert_close(g, torch.tensor([[1.0, 2, 1], [2, 4, 2], [1, 2, 1]]))


def test_reduced_gradient_matches_finite_differences_float64():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Conv2d(3, 2, 3, stride=2, padding=1)
    ).double()
    x = torch.randn(2, 2, 12, 12, dtype=torch.float64)
    weight = model[0].weight

    def loss_of(w: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            weight.copy_(w)
        with reduced(model, 2.0):
            return (model(downsample(x, 2.0)) ** 2).sum()

    w0 = weight.detach().clone()
    with reduced(model, 2.0):
        (model(downsample(x, 2.0)) ** 2).sum().backward()
    analytic = weight.grad.clone()
    eps = 1e-7  # larger steps cross ReLU kinks
    numeric = torch.zeros_like(w0)
    for i in range(w0.numel()):
        d = torch.zeros_like(w0).view(-1)
        d[i] = eps
        d = d.view_as(w0)
        numeric.view(-1)[i] = (loss_of(w0 + d) - loss_of(w0 - d)) / (2 * eps)
    torch.testing.assert_close(analytic, numeric, rtol=1e-5, atol=1e-6)


def test_optimizer_step_on_a_reduced_batch_updates_the_original_parameters():
    torch.manual_seed(0)
    model = build_model("resnet20", num_classes=10, in_channels=3)
    before = _state(model)
    params_before = [id(p) for p in model.parameters()]
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, 32, 32), torch.randint(0, 10, (8,))
    with reduced(model, 2.0):
        nn.functional.cross_entropy(model(downsample(x, 2.0)), y).backward()
    optimizer.step()
    after = model.state_dict()
    assert after.keys() == before.keys()
    assert [id(p) for p in model.parameters()] == params_before
    changed = [k for k in before if k.endswith("weight") and not torch.equal(before[k], after[k])]
    conv_weights = [f"{n}.weight" for n, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    assert set(conv_weights) <= set(changed)


def test_bn_freeze_keeps_running_statistics_and_update_changes_them():
    model = build_model("resnet20", num_classes=10, in_channels=3).train()
    x = torch.randn(4, 3, 32, 32)
    before = _state(model)
    with reduced(model, 2.0, bn="freeze"):
        model(downsample(x, 2.0))
    after = model.state_dict()
    for key in before:
        if "running" in key or "num_batches" in key:
            assert torch.equal(before[key], after[key]), key
    with reduced(model, 2.0, bn="update"):
        model(downsample(x, 2.0))
    assert not torch.equal(before["bn1.running_mean"], model.state_dict()["bn1.running_mean"])


def _tiny_model(name: str) -> nn.Module:
    return build_model(name, num_classes=10, in_channels=3)


@pytest.mark.parametrize("name", ["resnet20", "resnet18", "vgg11_bn", "mobilenet_v2"])
@pytest.mark.parametrize("scale", [2.0, 4.0])
@pytest.mark.parametrize("odd", [False, True])
def test_reduced_forward_backward_shapes_and_restore(name, scale, odd):
    torch.manual_seed(0)
    model = _tiny_model(name).train()
    # VGG's five max-pools need 32 pixels after downsampling by 4.
    size = (128 if name.startswith("vgg") else 32) + 3 * odd
    keys = list(model.state_dict())
    forwards = {n: m.forward for n, m in model.named_modules()}
    x = torch.randn(2, 3, size, size)
    full = model(x)
    with reduced(model, scale, kernel_pool=True):
        out = model(downsample(x, scale))
        out.sum().backward()
    assert out.shape == full.shape
    assert list(model.state_dict()) == keys
    for n, m in model.named_modules():
        assert "forward" not in m.__dict__, n
        assert m.forward.__func__ is forwards[n].__func__
        assert not m._forward_hooks and not m._forward_pre_hooks
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)


def test_model_is_restored_after_an_exception():
    model = _tiny_model("resnet20")
    keys = list(model.state_dict())
    with pytest.raises(RuntimeError, match="boom"):
        with reduced(model, 2.0):
            raise RuntimeError("boom")
    assert all("forward" not in m.__dict__ for m in model.modules())
    assert all(m.track_running_stats for m in model.modules() if isinstance(m, nn.BatchNorm2d))
    assert list(model.state_dict()) == keys


@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(4, 8, 3, padding=1),
        nn.Conv2d(4, 8, 3, stride=2, padding=1),
        nn.Conv2d(4, 8, 7, stride=2, padding=3),
        nn.Conv2d(4, 8, 5, padding=2, dilation=2),
        nn.Conv2d(4, 4, 3, padding=1, groups=4),
        nn.Conv2d(4, 8, 3, padding=0),
        nn.Conv2d(4, 8, 3, padding="same"),
        nn.Conv2d(4, 8, (1, 5), padding=(0, 2)),
        nn.Conv2d(4, 8, 3, padding=1, padding_mode="reflect"),
    ],
    ids=str,
)
@pytest.mark.parametrize("scale", [1.5, 2.0, 3.0, 4.0])
@pytest.mark.parametrize("size", [16, 23])
def test_each_conv_geometry_gives_the_original_output_size(conv, scale, size):
    x = downsample(torch.randn(1, 4, size, size), scale)
    try:
        expected = conv(x).shape
    except RuntimeError:  # the input is too small for the layer itself: reduced must say so
        with pytest.raises(ValueError, match="too small"):
            with reduced(conv, scale):
                conv(x)
        return
    try:
        with reduced(conv, scale):
            out = conv(x)
    except ValueError as e:
        # The one refusal allowed: reflect padding cannot be negative (a crop).
        assert conv.padding_mode == "reflect" and "padding_mode 'reflect'" in str(e)
        assert "\n" not in str(e)
        return
    assert out.shape == expected


def test_input_only_keeps_kernels():
    conv = nn.Conv2d(1, 1, 3, padding=1)
    x = torch.randn(1, 1, 8, 8)
    with reduced(conv, 2.0, kernel_pool=False):
        torch.testing.assert_close(conv(x), nn.functional.conv2d(x, conv.weight, conv.bias, 1, 1))


def test_too_small_input_names_the_layer():
    model = nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3))
    with pytest.raises(ValueError, match="layer '1'"):
        with reduced(model, 4.0):
            model(torch.randn(1, 1, 3, 3))


def _step_flops(model: nn.Module, x: torch.Tensor, scale: float, kernel_pool: bool) -> int:
    counter = FlopCounterMode(display=False)
    with counter:
        if scale > 1:
            with reduced(model, scale, kernel_pool=kernel_pool):
                model(downsample(x, scale)).sum().backward()
        else:
            model(x).sum().backward()
    return counter.get_total_flops()


def test_reduced_step_flop_ratios_resnet20():
    model = _tiny_model("resnet20")
    x = torch.randn(8, 3, 32, 32)
    full = _step_flops(model, x, 1.0, True)
    assert _step_flops(model, x, 2.0, True) <= 0.15 * full
    assert _step_flops(model, x, 2.0, False) <= 0.30 * full


def test_torchvision_efficientnet_and_regnet_reduce():
    for name in ["efficientnet_b0", "regnet_y_400mf", "densenet121"]:
        model = getattr(torchvision.models, name)(num_classes=5).eval()
        x = torch.randn(1, 3, 64, 64)
        with reduced(model, 2.0):
            assert model(downsample(x, 2.0)).shape == (1, 5)


# --- the values a reduced layer computes ------------------------------------------------------


def _hand_pooled_3x3(weight: torch.Tensor) -> torch.Tensor:
    """3x3 -> 2x2 by averaging each overlapping 2x2 window, times 9/4 (the sum is kept)."""
    out = torch.empty(*weight.shape[:2], 2, 2, dtype=weight.dtype)
    for i in range(2):
        for j in range(2):
            out[..., i, j] = weight[..., i : i + 2, j : j + 2].mean(dim=(-2, -1))
    return out * 9 / 4


def test_reduced_layers_compute_the_pooled_convolution_with_alternating_padding() -> None:
    torch.manual_seed(0)
    convs = nn.Sequential(nn.Conv2d(2, 3, 3, padding=1), nn.Conv2d(3, 2, 3, padding=1))
    x = torch.randn(1, 2, 8, 8)
    with reduced(convs, 2.0):
        out = convs(x)
    first, second = convs
    # Pooled to 2x2, a 'same' padding of 1 per side becomes 1 in total: the first layer pads
    # after (right and bottom), the second before, so the half-pixel shifts cancel.
    hidden = F.conv2d(F.pad(x, (0, 1, 0, 1)), _hand_pooled_3x3(first.weight), first.bias)
    expected = F.conv2d(F.pad(hidden, (1, 0, 1, 0)), _hand_pooled_3x3(second.weight), second.bias)
    torch.testing.assert_close(out, expected)


def _centre_of_mass(image: torch.Tensor) -> tuple[float, float]:
    weights = image.clamp_min(0)
    rows = torch.arange(image.shape[-2], dtype=image.dtype)
    cols = torch.arange(image.shape[-1], dtype=image.dtype)
    total = weights.sum()
    return float((weights.sum(-1) * rows).sum() / total), float(
        (weights.sum(-2) * cols).sum() / total
    )


def test_a_centred_blob_stays_centred_through_a_stack_of_reduced_layers() -> None:
    stack = nn.Sequential(*[nn.Conv2d(1, 1, 3, padding=1, bias=False) for _ in range(6)])
    for conv in stack:
        nn.init.constant_(conv.weight, 1 / 9)
    x = torch.zeros(1, 1, 16, 16)
    x[..., 6:10, 6:10] = 1.0  # centred: its centre of mass is at (7.5, 7.5)
    with torch.no_grad(), reduced(stack, 2.0):
        out = stack(x)[0, 0]
    row, col = _centre_of_mass(out)
    assert abs(row - 7.5) < 0.1 and abs(col - 7.5) < 0.1  # one-sided padding would drift 3 px


def test_reduced_takes_how_the_small_kernel_is_derived() -> None:
    torch.manual_seed(0)
    conv = nn.Conv2d(2, 3, 3, padding=1, bias=False)
    x = downsample(torch.randn(1, 2, 8, 8), 2.0)
    asked = []

    def corner_taps(weight, size):
        asked.append(tuple(size))
        return weight[..., ::2, ::2]

    with reduced(conv, 2.0, derive_kernel=corner_taps):
        out = conv(x)
    out.sum().backward()
    assert asked == [(2, 2)]
    # The same padding as for the pooled kernel: one pixel, at the end for the first conv.
    expected = F.conv2d(F.pad(x, (0, 1, 0, 1)), conv.weight[..., ::2, ::2])
    assert torch.allclose(out, expected, atol=1e-6)
    assert conv.weight.grad[..., 1, :].abs().sum() == 0  # only the corner taps were used
    assert conv.weight.grad[..., ::2, ::2].abs().sum() > 0
