"""Trials per hour of one worker, eager against compiled-and-reused (`compile: true`).

A worker runs many trials of one model: it compiles each step shape (full, reduced) in its
first trial's warm-up and reuses the graphs in the next trials, re-initialising the model in
place (objectives._step.prepared_stepper). This runs `--trials` trials of ResNet-20 on
synthetic CIFAR-size data (every other step reduced, pooled 2x2 kernels), eager and then
compiled in one process, and prints each trial's whole time (data, warm-up and compilation
included), the graphs each trial built and torch's recompilation messages: after the first
trial there must be none.

    python benchmarks/compile_check.py --device cuda --mode reduce-overhead --batch 512
"""

from __future__ import annotations

import argparse
import logging
import statistics
import time

import torch
import torch._dynamo
from torch._dynamo.utils import counters

from objectives import Schedule, TrainConfig, train


class _Messages(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _timed_trials(config: TrainConfig, trials: int, handler: _Messages) -> list[dict]:
    rows = []
    for seed in range(trials):
        graphs, messages = counters["stats"]["unique_graphs"], len(handler.messages)
        start = time.perf_counter()
        result = train(config.model_copy(update={"seed": seed}))
        rows.append(
            {
                "total_s": time.perf_counter() - start,
                "train_s": result.train_time_s,
                "val": result.val_accuracy,
                "graphs": counters["stats"]["unique_graphs"] - graphs,
                "recompiles": sum("ecompil" in m for m in handler.messages[messages:]),
                "device": result.device,
                "steps": (result.total_steps, result.reduced_steps),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--subset", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--mode", default="default", help="torch.compile mode")
    args = parser.parse_args()

    config = TrainConfig(
        model="resnet20",
        data="synthetic",
        subset=args.subset,
        image_size=args.size,
        epochs=args.epochs,
        batch_size=args.batch,
        lr=0.2,
        schedule=Schedule("deterministic", 0.5, 2.0, kernel_pool=True),
        device=args.device,
    )
    handler = _Messages()
    logging.getLogger("torch._dynamo").addHandler(handler)
    torch._logging.set_logs(recompiles=True)
    train(config.model_copy(update={"epochs": 1}))  # process start-up costs, for both sides
    eager = _timed_trials(config, args.trials, handler)
    torch._dynamo.reset()
    counters.clear()
    compiled_config = config.model_copy(update={"compile": True, "compile_mode": args.mode})
    compiled = _timed_trials(compiled_config, args.trials, handler)

    total, steps = eager[0]["steps"]
    print(
        f"compile check ({args.mode}): resnet20, batch {args.batch}, {args.size}x{args.size}, "
        f"{args.epochs} epochs = {total} steps ({steps} reduced) a trial, {eager[0]['device']}"
    )
    print(f"{'trial':<7}{'run':<10}{'total s':>9}{'steps s':>9}{'val':>7}{'graphs':>8}"
          f"{'recompiles':>12}")  # fmt: skip
    for i, (e, c) in enumerate(zip(eager, compiled), 1):
        for name, row in (("eager", e), ("compiled", c)):
            print(f"{i:<7}{name:<10}{row['total_s']:>9.2f}{row['train_s']:>9.2f}{row['val']:>7.3f}"
                  f"{row['graphs'] if name == 'compiled' else '-':>8}"
                  f"{row['recompiles'] if name == 'compiled' else '-':>12}")  # fmt: skip
    eager_hour = 3600 / statistics.mean(r["total_s"] for r in eager)
    compiled_hour = 3600 / statistics.mean(r["total_s"] for r in compiled)
    ratio = compiled_hour / eager_hour
    print(f"trials per hour over {args.trials} trials: eager {eager_hour:.0f}, "
          f"compiled and reused {compiled_hour:.0f} ({ratio:.2f}x)")  # fmt: skip
    if len(compiled) > 1:
        steady = 3600 / statistics.mean(r["total_s"] for r in compiled[1:])
        print(f"after the first trial: compiled and reused {steady:.0f} trials per hour "
              f"({steady / eager_hour:.2f}x eager)")  # fmt: skip
    later = compiled[1:]
    reused = all(r["graphs"] == 0 and r["recompiles"] == 0 for r in later)
    print(f"graphs reused after the first trial: {'yes' if reused else 'NO'}")


if __name__ == "__main__":
    main()
