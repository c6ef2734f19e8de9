"""The method: downsampled inputs and pooled kernels, from one set of weights.

`downsample` shrinks a batch; `reduced` is a context manager under which every convolution of a
model runs with an average-pooled copy of its own kernel, padded so that each layer's output has
the size that the layer with its original kernel would give for the reduced input. Both are pure
PyTorch ops, so a reduced batch's gradients reach the original weights.
"""

from __future__ import annotations

import contextlib
import math
import types
import typing
from collections.abc import Callable, Iterator
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

BNMode = Literal["freeze", "update"]  # what reduced steps do to BatchNorm running statistics

MAX_SCALE = 4.0


def _round_half_up(x: float) -> int:
    # Python's round() rounds 2.5 to 2; kernel sizes want 7/2 -> 4 and 5/2 -> 3.
    return math.floor(x + 0.5)


def check_scale(scale: float) -> float:
    scale = float(scale)
    if not (1.0 <= scale <= MAX_SCALE) or math.isnan(scale):
        raise ValueError(f"scale must be in [1, {MAX_SCALE:g}], got {scale!r}")
    return scale


def reduced_size(size: int, scale: float) -> int:
    """The spatial size a dimension of `size` pixels has after `downsample` by `scale`."""
    return max(1, _round_half_up(size / scale))


def downsample(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Resize an NCHW batch to round(H/scale) x round(W/scale) by area averaging.

    Area averaging (adaptive average pooling) is a box filter over exactly the input pixels that
    fall into each output pixel: an anti-aliased resize that is exact for integer factors, cheap on
    every backend and dtype, and the same operation `reduced` uses to pool kernels.
    `scale == 1` returns `x` itself.
    """
    scale = check_scale(scale)
    if scale == 1.0:
        return x
    if x.dim() != 4:
        raise ValueError(f"downsample expects an NCHW batch, got shape {tuple(x.shape)}")
    size = (reduced_size(x.shape[-2], scale), reduced_size(x.shape[-1], scale))
    return F.adaptive_avg_pool2d(x, size)


def pooled_kernel_size(kernel_size: tuple[int, int], scale: float) -> tuple[int, int]:
    return tuple(max(1, _round_half_up(k / scale)) for k in kernel_size)  # type: ignore[return-value]


# How a reduced step's small kernel is made from a conv's weight: (weight, size) -> kernel.
KernelDerivation = Callable[[torch.Tensor, tuple[int, int]], torch.Tensor]


def pool_kernel(weight: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Average-pool a conv weight (O, I, kh, kw) to (O, I, *size), keeping each filter's sum."""
    kh, kw = weight.shape[-2:]
    if (kh, kw) == tuple(size):
        return weight
    gain = (kh * kw) / (size[0] * size[1])
    return F.adaptive_avg_pool2d(weight, size) * gain


def _total_padding(conv: nn.Conv2d) -> tuple[int, int]:
    """Total padding (both sides) the layer applies per spatial dimension."""
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        return tuple(d * (k - 1) for k, d in zip(conv.kernel_size, conv.dilation))  # type: ignore
    return tuple(2 * p for p in conv.padding)  # type: ignore[return-value]


def _split(total: int, more_at_start: bool) -> tuple[int, int]:
    small, large = total // 2, total - total // 2
    return (large, small) if more_at_start else (small, large)


def _pad_mode(conv: nn.Conv2d) -> str:
    return "constant" if conv.padding_mode == "zeros" else conv.padding_mode


def _reduced_conv_forward(
    conv: nn.Conv2d,
    x: torch.Tensor,
    kernel: tuple[int, int],
    more_at_start: bool,
    name: str,
    derive_kernel: KernelDerivation,
) -> torch.Tensor:
    # The output size of a conv is floor((n + P - d(k-1) - 1)/s) + 1. Keeping P - d(k-1) fixed
    # when k shrinks to k' (P' = P - d(k - k')) gives exactly the output size the original
    # kernel would give on this input, for every stride, dilation and input size.
    total = _total_padding(conv)
    pads = [t - d * (k - kr) for t, d, k, kr in zip(total, conv.dilation, conv.kernel_size, kernel)]
    for dim, (n, p, d, kr) in enumerate(zip(x.shape[-2:], pads, conv.dilation, kernel)):
        if n + p < d * (kr - 1) + 1:
            raise ValueError(
                f"layer '{name}': its input is {tuple(x.shape[-2:])} pixels, too small for "
                f"a {conv.kernel_size} kernel (dimension {dim}); "
                "use a smaller scale or larger images"
            )
    (top, bottom), (left, right) = (_split(p, more_at_start) for p in pads)
    weight = derive_kernel(conv.weight, kernel)
    if min(top, bottom, left, right) < 0 and _pad_mode(conv) != "constant":
        raise ValueError(
            f"layer '{name}': padding_mode '{conv.padding_mode}' with negative padding cannot be "
            "reduced; use padding_mode='zeros' or kernel_pool=False"
        )
    if top == bottom and left == right and top >= 0 and left >= 0 and _pad_mode(conv) == "constant":
        padding: tuple[int, int] = (top, left)
    else:
        x = F.pad(x, (left, right, top, bottom), mode=_pad_mode(conv))
        padding = (0, 0)
    return F.conv2d(x, weight, conv.bias, conv.stride, padding, conv.dilation, conv.groups)


def _reducible_convs(model: nn.Module, scale: float) -> list[tuple[str, nn.Conv2d]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d) and pooled_kernel_size(m.kernel_size, scale) != m.kernel_size
    ]


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers, of any dimension."""
    return [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@contextlib.contextmanager
def reduced(
    model: nn.Module,
    scale: float,
    kernel_pool: bool = True,
    bn: BNMode = "freeze",
    *,
    derive_kernel: KernelDerivation | None = None,
) -> Iterator[nn.Module]:
    """Run `model` in reduced mode inside the block: `model(downsample(x, scale))`.

    - every `nn.Conv2d` with a kernel larger than 1 uses its weight average-pooled to
      max(1, round(k/scale)) per dimension (times kh*kw/kh'*kw', so a constant kernel keeps its
      sum), recomputed at each forward so gradients reach the original weight;
    - where the pooled kernel is even the padding is asymmetric; the larger side alternates from
      one conv to the next so that the half-pixel shifts of consecutive layers cancel;
    - `kernel_pool=False` leaves the kernels as they are (input-only reduction);
    - `derive_kernel(weight, size)`, when given, derives the small kernel instead of
      `pool_kernel` (benchmarks compare derivations); it must keep the graph to `weight`;
    - `bn="freeze"`: BatchNorm layers still normalise with batch statistics in training but do
      not update their running statistics; `bn="update"`: they do.
    On exit the model is restored exactly: no attribute, hook or buffer is left behind.
    """
    scale = check_scale(scale)
    if bn not in typing.get_args(BNMode):
        raise ValueError(f"bn must be one of {', '.join(typing.get_args(BNMode))}, got {bn!r}")
    convs = _reducible_convs(model, scale) if kernel_pool else []
    derive = derive_kernel or pool_kernel  # looked up now, not when the module was imported
    norms = [m for m in batch_norms(model) if m.track_running_stats]
    patched: list[nn.Module] = []
    try:
        for index, (name, conv) in enumerate(convs):
            if "forward" in conv.__dict__:
                raise RuntimeError(
                    f"layer '{name}' already has a patched forward; nested reduced()?"
                )
            kernel = pooled_kernel_size(conv.kernel_size, scale)

            def forward(self, x, _kernel=kernel, _start=index % 2 == 1, _name=name):
                return _reduced_conv_forward(self, x, _kernel, _start, _name, derive)

            conv.forward = types.MethodType(forward, conv)
            patched.append(conv)
        if bn == "freeze":
            # Without running statistics a BatchNorm layer in training normalises with the batch
            # statistics and updates nothing (num_batches_tracked included).
            for norm in norms:
                norm.track_running_stats = False
        yield model
    finally:
        for conv in patched:
            del conv.forward
        if bn == "freeze":
            for norm in norms:
                norm.track_running_stats = True
