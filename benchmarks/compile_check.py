"""`compile: true` on a whole training run: graphs built, recompilations, and time against eager.

Trains ResNet-20 on synthetic CIFAR-size data twice, eager and compiled, with every other step
reduced (pooled 2x2 kernels). Both graphs (full and reduced step) must be built in the warm-up,
before the clock starts; torch's recompilation log must stay silent during the steps.

    python benchmarks/compile_check.py --device cuda --batch 512 --epochs 3
"""

from __future__ import annotations

import argparse
import logging

import torch
import torch._dynamo
from torch._dynamo.utils import counters

import objectives._train
from objectives import Schedule, TrainConfig, train


class _CountRecompiles(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--subset", type=int, default=20000)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--mode", default="default", help="torch.compile mode")
    args = parser.parse_args()

    schedule = Schedule("deterministic", 0.5, 2.0, kernel_pool=True)
    config = TrainConfig(
        model="resnet20",
        data="synthetic",
        subset=args.subset,
        image_size=args.size,
        epochs=args.epochs,
        batch_size=args.batch,
        lr=0.2,
        schedule=schedule,
        device=args.device,
    )
    eager = train(config)

    torch._dynamo.reset()
    counters.clear()
    torch._logging.set_logs(recompiles=True)
    handler = _CountRecompiles()
    logging.getLogger("torch._dynamo").addHandler(handler)
    # Note where the warm-up ends: the reduced shape's graph is logged as a "recompile" there.
    warm_up, in_warm_up = objectives._train._warm_up, []

    def noted_warm_up(*a, **kw):
        warm_up(*a, **kw)
        in_warm_up.append(len(handler.messages))

    objectives._train._warm_up = noted_warm_up
    compiled = train(config.model_copy(update={"compile": True, "compile_mode": args.mode}))
    objectives._train._warm_up = warm_up
    before = [m for m in handler.messages[: in_warm_up[0]] if "ecompil" in m]
    recompiles = [m for m in handler.messages[in_warm_up[0] :] if "ecompil" in m]

    print(
        f"compile check ({args.mode}): resnet20, batch {args.batch}, {args.size}x{args.size}, "
        f"{compiled.total_steps} steps ({compiled.reduced_steps} reduced), {compiled.device}"
    )
    print(
        f"{'run':<10}{'train s':>9}{'val acc':>9}{'graphs':>8}"
        f"{'shape recompiles in warm-up':>29}{'recompiles in steps':>21}"
    )
    print(
        f"{'eager':<10}{eager.train_time_s:>9.2f}{eager.val_accuracy:>9.3f}{'-':>8}"
        f"{'-':>29}{'-':>21}"
    )
    print(
        f"{'compiled':<10}{compiled.train_time_s:>9.2f}{compiled.val_accuracy:>9.3f}"
        f"{counters['stats']['unique_graphs']:>8}{len(before):>29}{len(recompiles):>21}"
    )
    print(f"compiled vs eager: {eager.train_time_s / compiled.train_time_s:.2f}x faster")
    for message in recompiles[:5]:
        print("  recompile:", message.splitlines()[0][:160])


if __name__ == "__main__":
    main()
