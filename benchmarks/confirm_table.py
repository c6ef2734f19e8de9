"""Confirm the best schedules of benchmarks/README.md's end-to-end tables with `dikd confirm`.

Each setting is a study whose search space is that one schedule ("input-only for the first half
of training, then full resolution"): the study trains its budget curve and the schedule once
(search seed 0, validation split), then `dikd confirm --trial N` re-trains the schedule and the
plain model over fresh paired seeds on the test split until the verdict is reached.

    python benchmarks/confirm_table.py --settings 56px resnet32 28px --out benchmarks/results

The task is the end-to-end benchmark's (ResNet-20, Fashion-MNIST, 4 epochs, batch 128) with
5,000 training images instead of 10,000 (to fit a session on 2 cores), validated on 5,000 fixed
other images. `--objective flops` (the default here) makes
the verdict immune to other load on the machine; `wall` measures time as users' studies do.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import yaml

TASK = {
    "model": "resnet20",
    "data": "fashion-mnist",
    "subset": 5_000,
    "val_size": 5_000,
    "eval_every_epoch": False,
    "epochs": 4,
    "batch_size": 128,
    "lr": 0.1,
    "warmup_epochs": 0.25,
    "seed": 0,
}
SETTINGS = {
    "28px": {},
    "56px": {"image_size": 56},
    "resnet32": {"model": "resnet32"},
    # Real drawings above 32 px: Debian's openclipart-png, 7 classes (chance 31%), 2,000 of
    # its ~4,200 training drawings and a fixed 600 for validation, at 48 px to fit the CPU.
    "openclipart-48px": {"data": "openclipart", "image_size": 48, "subset": 2000, "val_size": 600},
}
FIRST_HALF_INPUT_ONLY = {
    "policy": "deterministic",
    "frequency": 1.0,
    "scale": 2.0,
    "kernel_pool": False,
    "bn": "freeze",
    "end": 0.5,
}
FRACTIONS = [0.5, 0.75, 1.0]  # the schedule costs about 0.6 of the full budget


def spec_for(setting: str, objective: str, storage: str) -> dict:
    return {
        "name": f"confirm-{setting}-{objective}",
        "storage": storage,
        "train": {**TASK, **SETTINGS[setting]},
        "space": FIRST_HALF_INPUT_ONLY,
        "baseline": {"fractions": FRACTIONS},
        "sampler": {"name": "random", "seed": 0},
        "n_trials": len(FRACTIONS) + 1,
        "objective": objective,
    }


def dikd(*args: str) -> None:
    command = [sys.executable, "-m", "searcher", *args]
    print("$", " ".join(command[2:]), flush=True)
    subprocess.run(command, check=True, env={k: v for k, v in os.environ.items()
                                              if k != "DIKD_STORAGE"})  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--objective", choices=["flops", "wall"], default="flops")
    parser.add_argument("--max-seeds", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    storage = f"sqlite:///{(args.out / 'confirm_table.db').resolve()}"
    for setting in args.settings:
        spec = spec_for(setting, args.objective, storage)
        path = args.out / f"{spec['name']}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        dikd("study", "run", str(path))
        trial = str(len(FRACTIONS))  # the schedule's trial, after the baselines
        dikd("confirm", spec["name"], "--storage", storage, "--trial", trial,
             "--max-seeds", str(args.max_seeds))  # fmt: skip


if __name__ == "__main__":
    main()
