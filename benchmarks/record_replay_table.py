"""Record the replay table that benchmarks/search_efficiency.py searches: full per-epoch curves
(FLOPs, wall time, validation accuracy) of a grid of schedules on the quickstart task, and of
the plain model at several epoch budgets.

The quickstart's model and data, made affordable on a shared 2-core CPU with one thread: fewer
training images, fewer validation images and more, shorter epochs, so that a pruner has several
epochs to decide on (TASK below). Each finished run is written at once; an interrupted recording
resumes where it stopped.

    OMP_NUM_THREADS=1 python benchmarks/record_replay_table.py --out benchmarks/replay_table.json
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import time
from pathlib import Path

import torch

from objectives import Schedule, TrainConfig, train
from searcher import load_spec

QUICKSTART = Path(__file__).resolve().parent.parent / "studies" / "quickstart.yaml"
# The quickstart's training, smaller so that the whole table records in about half an hour on
# one thread of a shared 2-core CPU (about 40 s a run): 768 of its 6,000 training images (6
# steps an epoch) and 800 of its 5,000 validation images, over 6 epochs instead of 4 (more
# epochs for a pruner to decide on).
TASK = {"subset": 768, "val_size": 800, "epochs": 6, "eval_every_epoch": True}
# The grid: the quickstart's searched dimensions, `end` fixed at the middle of its range.
GRID = {
    "policy": ["deterministic", "progressive"],
    "kernel_pool": [False, True],
    "scale": [1.5, 2.0],
    "frequency": [0.5, 0.625, 0.75, 0.875, 1.0],
}
FIXED = {"bn": "freeze", "start": 0.0, "end": 0.55}
BASELINE_FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def task_config() -> TrainConfig:
    return load_spec(QUICKSTART).train.model_copy(update=TASK)


def runs() -> list[dict]:
    """Every run of the table: the plain model at its budgets, then the grid's schedules."""
    epochs = TASK["epochs"]
    out = [{"kind": "baseline", "epochs": round(f * epochs), "schedule": None} for f in
           BASELINE_FRACTIONS]  # fmt: skip
    for values in itertools.product(*GRID.values()):
        schedule = {**dict(zip(GRID, values)), **FIXED}
        out.append({"kind": "schedule", "epochs": epochs, "schedule": schedule})
    return out


def key(run: dict) -> str:
    return json.dumps([run["kind"], run["epochs"], run["schedule"]], sort_keys=True)


def record(run: dict, base: TrainConfig) -> dict:
    schedule = Schedule(**run["schedule"], seed=base.seed) if run["schedule"] else Schedule()
    config = base.model_copy(update={"epochs": run["epochs"], "schedule": schedule})
    curve: list[dict] = []

    def on_epoch(epoch: int, so_far) -> bool:
        curve.append(
            {
                "epoch": epoch,
                "flops": so_far.flops,
                "time_s": so_far.train_time_s,
                "val_accuracy": so_far.val_accuracy,
            }
        )
        return False

    result = train(config, on_epoch=on_epoch)
    curve[-1]["flops"] = result.flops  # the final count includes BatchNorm re-estimation
    return {**run, "curve": curve, "reduced_fraction": result.reduced_fraction}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/replay_table.json"))
    parser.add_argument("--limit", type=int, default=None, help="record at most N runs")
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = task_config()
    table = (
        json.loads(args.out.read_text())
        if args.out.exists()
        else {
            "task": {"quickstart": "studies/quickstart.yaml", **TASK},
            "train": base.to_dict(),
            "grid": GRID,
            "fixed": FIXED,
            "recorded_on": f"{platform.node()}: {platform.processor() or platform.machine()}, "
            "1 thread, a shared machine (time_s is for information; compare on flops)",
            "torch": torch.__version__,
            "runs": [],
        }
    )
    done = {key(r) for r in table["runs"]}
    todo = [r for r in runs() if key(r) not in done][: args.limit]
    for i, run in enumerate(todo, start=1):
        start = time.perf_counter()
        table["runs"].append(record(run, base))
        args.out.write_text(json.dumps(table, indent=1) + "\n")
        last = table["runs"][-1]["curve"][-1]
        print(
            f"[{i}/{len(todo)}] {run['kind']} {run['schedule'] or ''} {run['epochs']} ep: "
            f"acc {last['val_accuracy']:.4f}, {last['flops']:.3g} FLOPs, "
            f"{time.perf_counter() - start:.0f} s",
            flush=True,
        )


if __name__ == "__main__":
    main()
