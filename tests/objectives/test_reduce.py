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


# --- a reduced layer against a hand-written convolution (mutation testing's findings) ----------


def _hand_pool(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average-pool the last two dimensions to `size` by explicit windows (output cell i covers
    rows floor(i*k/k')..ceil((i+1)*k/k')), times k*k'/(kr*kr') so a filter keeps its sum."""
    (kh, kw), (rh, rw) = weight.shape[-2:], size
    out = torch.empty(*weight.shape[:2], rh, rw, dtype=weight.dtype)
    for i in range(rh):
        for j in range(rw):
            rows = slice(i * kh // rh, -(-(i + 1) * kh // rh))
            cols = slice(j * kw // rw, -(-(j + 1) * kw // rw))
            out[..., i, j] = weight[..., rows, cols].mean(dim=(-2, -1))
    return out * (kh * kw) / (rh * rw)


def _hand_reduced_conv(conv: nn.Conv2d, x: torch.Tensor, scale: float, later: bool):
    """What a reduced layer must compute: the pooled kernel (round-half-up k/scale, at least 1),
    the total padding cut by d*(k - k') and split with the larger half after the input for the
    1st, 3rd, ... reduced layer (`later=False`) and before it for the 2nd, 4th, ..."""
    kernel = tuple(max(1, int(k / scale + 0.5)) for k in conv.kernel_size)
    if conv.padding == "valid":
        total = (0, 0)
    elif conv.padding == "same":
        total = tuple(d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation))
    else:
        total = tuple(2 * p for p in conv.padding)
    sides = []
    for t, d, k, kr in zip(total, conv.dilation, conv.kernel_size, kernel):
        p = t - d * (k - kr)
        small, large = p // 2, p - p // 2
        sides.append((large, small) if later else (small, large))
    (top, bottom), (left, right) = sides
    mode = "constant" if conv.padding_mode == "zeros" else conv.padding_mode
    x = F.pad(x, (left, right, top, bottom), mode=mode)
    weight = _hand_pool(conv.weight, kernel)
    return F.conv2d(x, weight, conv.bias, conv.stride, 0, conv.dilation, conv.groups)


def _geometries() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1),
        nn.Conv2d(3, 3, (1, 3), padding=(0, 1)),  # asymmetric in width only
        nn.Conv2d(3, 3, (3, 1), padding=(1, 0)),  # asymmetric in height only
        nn.Conv2d(3, 3, 1),  # never reduced: it does not count in the alternation
        nn.Conv2d(3, 4, 5, stride=2, padding=2),
        nn.Conv2d(4, 4, 3, padding=2, dilation=2),
        nn.Conv2d(4, 4, 3, padding=1, groups=2),
        nn.Conv2d(4, 3, 3, padding="same"),
        nn.Conv2d(3, 2, 3, padding="valid"),
        nn.Conv2d(2, 2, (1, 5), padding=(0, 2)),  # 1x5 at scale 4: 1x1
    )


@pytest.mark.parametrize("scale", [1.5, 2.0, 3.0, 4.0])
def test_every_reduced_layer_computes_the_hand_written_pooled_convolution(scale: float) -> None:
    stack = _geometries().double()
    x = torch.randn(1, 2, 24, 24, dtype=torch.float64)
    with torch.no_grad(), reduced(stack, scale):
        out = stack(x)
    expected, index = x, 0
    with torch.no_grad():
        for conv in stack:
            if tuple(max(1, int(k / scale + 0.5)) for k in conv.kernel_size) == conv.kernel_size:
                expected = conv(expected)
            else:
                expected = _hand_reduced_conv(conv, expected, scale, later=index % 2 == 1)
                index += 1
    torch.testing.assert_close(out, expected)


@pytest.mark.parametrize("kernel", [3, 5])  # 3 -> 2: one-sided padding; 5 -> 3: even padding
def test_reflect_padding_is_reduced_when_it_needs_no_crop(kernel: int) -> None:
    conv = nn.Conv2d(1, 2, kernel, padding=kernel // 2, padding_mode="reflect").double()
    x = torch.randn(1, 1, 9, 9, dtype=torch.float64)
    with torch.no_grad(), reduced(conv, 2.0):
        out = conv(x)
    torch.testing.assert_close(out, _hand_reduced_conv(conv, x, 2.0, later=False))


@pytest.mark.parametrize("padding", [(0, 1), (1, 0)])
@pytest.mark.parametrize("second", [False, True])  # the crop falls on the other side
def test_reflect_padding_that_would_need_a_crop_is_refused(padding, second: bool) -> None:
    reflect = nn.Conv2d(1, 1, 3, padding=padding, padding_mode="reflect")
    model = nn.Sequential(nn.Conv2d(1, 1, 3, padding=1), reflect) if second else reflect
    message = (
        "padding_mode 'reflect' with negative padding cannot be reduced; "
        "use padding_mode='zeros' or kernel_pool=False"
    )
    with reduced(model, 2.0), pytest.raises(ValueError) as info:
        model(torch.randn(1, 1, 9, 9))
    assert str(info.value).endswith(message)


def test_the_smallest_input_a_reduced_layer_accepts_gives_one_pixel() -> None:
    # 5 -> 3 at scale 2, padding 0 -> -2: the reduced layer gives what the 5x5 one would, so 5
    # pixels give 1 and 4 are too few.
    conv = nn.Conv2d(1, 1, 5)
    with reduced(conv, 2.0):
        assert conv(torch.randn(1, 1, 5, 5)).shape == (1, 1, 1, 1)
        with pytest.raises(ValueError, match="too small"):
            conv(torch.randn(1, 1, 4, 5))


def test_downsample_keeps_at_least_one_pixel_and_wants_a_batch() -> None:
    assert downsample(torch.randn(1, 1, 1, 2), 4.0).shape == (1, 1, 1, 1)
    with pytest.raises(ValueError, match="NCHW"):
        downsample(torch.randn(3, 8, 8), 2.0)


def test_nested_reduced_is_refused_and_leaves_the_model_restored() -> None:
    conv = nn.Conv2d(1, 1, 3, padding=1)
    with reduced(conv, 2.0):
        with pytest.raises(RuntimeError, match="nested reduced"):
            with reduced(conv, 2.0):
                pass
        assert "forward" in conv.__dict__  # the outer block's patch is still there
    assert "forward" not in conv.__dict__


@pytest.mark.parametrize("bn", ["freeze", "update"])
def test_batch_norms_of_any_dimension_and_without_running_statistics(bn: str) -> None:
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.BatchNorm1d(72))
    untracked = nn.BatchNorm2d(2, track_running_stats=False)
    model.append(nn.Unflatten(1, (2, 6, 6))).append(untracked).train()
    before = _state(model)
    with reduced(model, 2.0, bn=bn):
        if bn == "freeze":
            assert not any(m.track_running_stats for m in model.modules() if hasattr(m, "eps"))
        model(torch.randn(4, 1, 8, 8))
    assert not untracked.track_running_stats  # a layer without statistics stays without
    assert model[1].track_running_stats and model[3].track_running_stats
    moved = not torch.equal(before["3.running_mean"], model.state_dict()["3.running_mean"])
    assert moved == (bn == "update")


def test_a_bad_bn_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="bn must be one of freeze, update, got 'separate'"):
        with reduced(nn.Conv2d(1, 1, 3), 2.0, bn="separate"):
            pass


def test_a_too_small_input_is_named_with_its_size_and_the_fix() -> None:
    conv = nn.Conv2d(1, 1, 5)
    with reduced(conv, 2.0):
        for x in (torch.randn(1, 1, 4, 5), torch.randn(1, 4, 5)):  # batched and unbatched
            with pytest.raises(ValueError) as info:
                conv(x)
            assert str(info.value) == (
                "layer '': its input is (4, 5) pixels, too small for a (5, 5) kernel "
                "(dimension 0); use a smaller scale or larger images"
            )
