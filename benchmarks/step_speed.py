"""Step time of full and reduced training steps, measured side by side in one run.

For each variant: the median time of a whole training step (forward, backward, optimiser step),
its FLOPs (torch's FLOP counter, forward and backward), and efficiency = time speedup / FLOP
speedup (1.0 means the step cashes in all of its FLOP savings). Variants are timed in
interleaved rounds so that drift of a shared machine hits all of them alike.

    python benchmarks/step_speed.py                       # ResNet-20, batch 128, 32x32
    python benchmarks/step_speed.py --model resnet50 --size 224 --batch 128 --device cuda
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from objectives import Schedule, TrainConfig, build_model, resolve_device
from objectives._step import _Stepper, _sync

VARIANTS = [  # (name, scale, kernel_pool)
    ("full", 1.0, True),
    ("input-only x2", 2.0, False),
    ("pooled x2", 2.0, True),
    ("input-only x4", 4.0, False),
    ("pooled x4", 4.0, True),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="resnet20")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--channels", type=int, default=3)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=6, help="timed steps per variant per round")
    parser.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--bf16", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument("--compile", action="store_true", help="torch.compile every step")
    parser.add_argument("--compile-mode", default="default", help="e.g. reduce-overhead")
    names = [name for name, _, _ in VARIANTS]
    parser.add_argument(
        "--variants", default=",".join(names), help=f"comma-separated subset of: {', '.join(names)}"
    )
    args = parser.parse_args()
    chosen = args.variants.split(",")
    if unknown := set(chosen) - set(names):
        parser.error(f"unknown variants {sorted(unknown)}; choose from {names}")
    if "full" not in chosen:
        parser.error("--variants must include full: every ratio is against it")

    device = resolve_device(args.device)
    torch.backends.cudnn.benchmark = True
    torch.manual_seed(0)
    model = build_model(args.model, num_classes=10, in_channels=args.channels).to(device)
    channels_last = args.channels_last
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(args.batch, args.channels, args.size, args.size, device=device)
    y = torch.randint(0, 10, (args.batch,), device=device)

    steppers = {}
    for name, scale, kernel_pool in VARIANTS:
        if name not in chosen:
            continue
        schedule = Schedule("deterministic", 1.0, scale, kernel_pool=kernel_pool)
        config = TrainConfig(
            schedule=schedule,
            channels_last=channels_last,
            bf16=args.bf16,
            compile=args.compile,
            compile_mode=args.compile_mode,
        )
        steppers[name] = (_Stepper(model, config, device), scale)
    if next(iter(steppers.values()))[0].channels_last:
        model.to(memory_format=torch.channels_last)

    def step(name: str) -> None:
        stepper, scale = steppers[name]
        loss = stepper.loss(x, y, scale)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    flops, peak_mb = {}, {}
    for name, (stepper, scale) in steppers.items():
        counter = FlopCounterMode(display=False)
        with counter:
            stepper.loss(x, y, scale, eager=True).backward()
        flops[name] = counter.get_total_flops()
        for _ in range(3):  # warm-up: allocator, cuDNN autotuning, oneDNN primitives
            step(name)
        if device.type == "cuda":
            _sync(device)
            torch.cuda.reset_peak_memory_stats(device)
            step(name)
            _sync(device)
            peak_mb[name] = torch.cuda.max_memory_allocated(device) / 2**20

    times: dict[str, list[float]] = {name: [] for name in steppers}
    for _ in range(args.rounds):
        for name in steppers:
            for _ in range(args.steps):
                _sync(device)
                start = time.perf_counter()
                step(name)
                _sync(device)
                times[name].append(time.perf_counter() - start)

    full_ms = statistics.median(times["full"]) * 1e3
    print(
        f"{args.model}, batch {args.batch}, {args.size}x{args.size}, {device.type}"
        f" ({torch.cuda.get_device_name(device) + ', ' if device.type == 'cuda' else ''}"
        f"{torch.get_num_threads()} threads), torch {torch.__version__}, "
        f"channels_last={next(iter(steppers.values()))[0].channels_last}, "
        f"compile={args.compile and args.compile_mode}, "
        f"{args.rounds}x{args.steps} timed steps per variant"
    )
    header = f"{'step':<15}{'median ms':>10}{'speedup':>9}{'FLOP ratio':>12}{'efficiency':>12}"
    if peak_mb:
        header += f"{'peak MiB':>10}"
    print(header)
    for name in steppers:
        ms = statistics.median(times[name]) * 1e3
        speedup = full_ms / ms
        ratio = flops[name] / flops["full"]
        line = f"{name:<15}{ms:>10.2f}{speedup:>8.2f}x{ratio:>12.3f}{speedup * ratio:>12.2f}"
        if peak_mb:
            line += f"{peak_mb[name]:>10.0f}"
        print(line)
    if {"pooled x2", "input-only x2"} <= set(times):
        pooled, input_only = (statistics.median(times[n]) for n in ("pooled x2", "input-only x2"))
        print(f"pooled x2 vs input-only x2: {input_only / pooled:.2f}x faster")


if __name__ == "__main__":
    main()
