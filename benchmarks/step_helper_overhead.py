"""What the step helper costs a training loop: the example's loop (examples/acme, on the CPU)
with `ScheduledSteps.step` and with `RunContext.step` (what a `train.loop` trial uses: clock
marks, optimiser hooks), against a pass-through helper of the same interface that does nothing.
The schedule reduces nothing (policy none), so every variant computes the same steps and the
difference is the helper's bookkeeping alone. Runs alternate; the median of each is compared.

    PYTHONPATH=$PWD OMP_NUM_THREADS=1 .venv/bin/python benchmarks/step_helper_overhead.py \
        [--runs 5] [--epochs 2] [--train-size 1024]

Target: within 3% (ratio <= 1.03). Wall time: on a shared machine, say so with the numbers.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "acme"))

from acme.train import build, train_epoch  # noqa: E402

from objectives import RunContext, Schedule, ScheduledSteps, TrainConfig  # noqa: E402

DEVICE = torch.device("cpu")


@contextlib.contextmanager
def pass_through(model, x, optimizer=None):
    yield x


def one_run(variant: str, params: dict, epochs: int) -> float:
    """Seconds of `epochs` training epochs of the example's loop with one helper."""
    model, optimizer, lr_schedule, loader, _val, _test = build(0, params, epochs)
    if variant == "pass-through":
        step, report = pass_through, lambda: None
    elif variant == "ScheduledSteps":
        step = ScheduledSteps(Schedule("none"), epochs * len(loader)).step
        report = lambda: None  # noqa: E731
    else:
        ctx = RunContext(TrainConfig(loop="acme.train:run", epochs=epochs), DEVICE)
        epochs_iter = ctx.epochs(loader)
        next(epochs_iter)
        step = ctx.step

        def report() -> None:
            ctx.report(val_accuracy=0.5)
            next(epochs_iter, None)

    start = time.perf_counter()
    for _ in range(epochs):
        train_epoch(model, loader, optimizer, lr_schedule, DEVICE, step)
        report()
    return time.perf_counter() - start


def bookkeeping_us(variant: str, steps: int = 2000) -> float:
    """Microseconds per step of the helper alone: a step with no training work (an identity
    model, an optimiser over one parameter), less noisy than whole runs on a busy machine."""
    model, x = torch.nn.Identity(), torch.zeros(1, 1, 4, 4)
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    if variant == "pass-through":
        step = pass_through
    elif variant == "ScheduledSteps":
        step = ScheduledSteps(Schedule("none"), steps).step
    else:
        ctx = RunContext(TrainConfig(loop="acme.train:run", epochs=1), DEVICE)
        next(ctx.epochs(steps))
        step = ctx.step
    start = time.perf_counter()
    for _ in range(steps):
        with step(model, x, optimizer):
            pass
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=1024)
    args = parser.parse_args()
    params = {"train_size": args.train_size, "val_size": 100, "test_size": 100}
    variants = ["pass-through", "ScheduledSteps", "RunContext"]
    one_run("pass-through", params, 1)  # warm-up: oneDNN primitives, the data file's cache
    times: dict[str, list[float]] = {v: [] for v in variants}
    for i in range(args.runs):
        order = variants if i % 2 == 0 else variants[::-1]  # alternating, so drift hits all
        for variant in order:
            times[variant].append(one_run(variant, params, args.epochs))
    base = statistics.median(times["pass-through"])
    steps = args.epochs * (args.train_size // 64)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} CPU thread(s), {args.runs} "
          f"alternating runs of {steps} steps (acme, batch 64, 28 px)")  # fmt: skip
    per_step = base / steps
    alone = {v: statistics.median(bookkeeping_us(v) for _ in range(5)) for v in variants}
    for variant in variants:
        extra = alone[variant] - alone["pass-through"]
        print(f"{variant:15s} bookkeeping {alone[variant]:.1f} us/step with an empty step: "
              f"{extra:+.1f} us over pass-through = {extra * 1e-6 / per_step:+.3%} of a "
              f"{per_step * 1e3:.0f} ms training step")  # fmt: skip
    for variant in variants:
        median = statistics.median(times[variant])
        spread = f"{min(times[variant]):.3f}-{max(times[variant]):.3f}"
        print(f"{variant:15s} median {median:.3f} s (range {spread}), "
              f"ratio {median / base:.4f}")  # fmt: skip


if __name__ == "__main__":
    main()
