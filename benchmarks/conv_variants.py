"""Candidate formulations of a reduced step's pooled 2x2 convolution on the CPU, side by side.

A 3x3 kernel pooled to 2x2 needs one pixel of padding on one side only. PyTorch's convolution
takes symmetric padding, so the candidates are: a separate `F.pad` then an unpadded convolution
(what `reduced` does), the convolution's own padding plus a crop, the 2x2 taps as one 1x1
convolution over four shifted copies (a single GEMM), and four shifted matmuls. Each is timed
forward and backward with its kernel pooling, at the three stage shapes of ResNet-20 at scale 2,
against the input-only step's 3x3 convolution, in both memory formats. Times are the minimum over
interleaved rounds (robust to a busy machine).

    python benchmarks/conv_variants.py
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F

SHAPES = [(16, 16), (32, 8), (64, 4)]  # (channels, size) of ResNet-20's stages at 16x16 input
BATCH = 128


def candidates(x: torch.Tensor, w3: torch.Tensor, size: int):
    channels = w3.shape[0]

    def pooled() -> torch.Tensor:
        return F.adaptive_avg_pool2d(w3, (2, 2)) * 2.25

    def input_only_3x3():
        F.conv2d(x, w3, padding=1).sum().backward()

    def pad_then_conv():
        F.conv2d(F.pad(x, (0, 1, 0, 1)), pooled()).sum().backward()

    def conv_padding_then_crop():
        F.conv2d(x, pooled(), padding=1)[:, :, 1:, 1:].sum().backward()

    def shifted_copies_1x1():
        xp = F.pad(x, (0, 1, 0, 1))
        stacked = torch.cat(
            [xp[:, :, i : i + size, j : j + size] for i in (0, 1) for j in (0, 1)], 1
        )
        weight = pooled().permute(0, 2, 3, 1).reshape(channels, 4 * channels, 1, 1)
        F.conv2d(stacked, weight).sum().backward()

    def shifted_matmuls():
        w = pooled()
        xh = F.pad(x, (0, 1, 0, 1)).permute(0, 2, 3, 1)
        out = sum(
            xh[:, i : i + size, j : j + size, :] @ w[:, :, i, j].t() for i in (0, 1) for j in (0, 1)
        )
        out.sum().backward()

    return {
        "3x3 (input-only)": input_only_3x3,
        "pad + 2x2": pad_then_conv,
        "2x2 pad 1 + crop": conv_padding_then_crop,
        "1x1 on 4 shifts": shifted_copies_1x1,
        "4 shifted matmuls": shifted_matmuls,
    }


def best_ms(functions: dict, rounds: int = 10, repeats: int = 5) -> dict[str, float]:
    times = {name: [] for name in functions}
    for f in functions.values():
        f(), f()
    for _ in range(rounds):
        for name, f in functions.items():
            for _ in range(repeats):
                start = time.perf_counter()
                f()
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * min(values) for name, values in times.items()}


def main() -> None:
    torch.manual_seed(0)
    print(f"forward+backward ms (min), batch {BATCH}, {torch.get_num_threads()} threads, "
          f"torch {torch.__version__}")  # fmt: skip
    for memory_format in (torch.contiguous_format, torch.channels_last):
        for channels, size in SHAPES:
            x = torch.randn(BATCH, channels, size, size).contiguous(memory_format=memory_format)
            x.requires_grad_()
            w3 = torch.randn(channels, channels, 3, 3, requires_grad=True)
            results = best_ms(candidates(x, w3, size))
            layout = "NHWC" if memory_format == torch.channels_last else "NCHW"
            cells = "  ".join(f"{name} {ms:.2f}" for name, ms in results.items())
            print(f"{layout} C={channels:<3} {size:>2}x{size:<2} {cells}")


if __name__ == "__main__":
    main()
