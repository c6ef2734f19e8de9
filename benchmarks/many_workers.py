"""Many local workers on one SQLite study: they spend exactly the budget, and nothing breaks.

24 worker processes (default) join one study on one SQLite file through dikd's own worker
(`run_worker`, what `dikd worker` runs), with training stood in the way a user's own loop takes
part (`train.loop`, `stand_in_loop` below): it sleeps 0.2 s a run and reports. Checked at the end:

- the study holds exactly `n_trials` COMPLETE trials (the budget), none left RUNNING;
- no trial was run twice (each run logs what it trains: a schedule, with its sampled frequency,
  or the plain model at a number of epochs, which no two trials of the study share);
- no worker printed "database is locked" and every worker exited 0.

    python benchmarks/many_workers.py [--workers 24] [--n-trials 240] [--train-s 0.2]

Exits 1 when a check fails. Timings were taken on a shared machine: read them as rough.
"""

from __future__ import annotations

import argparse
import collections
import json
import multiprocessing
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

SPEC = {
    "name": "many-workers",
    # The stand-in loop below, imported by every worker as a user's loop is (this script's
    # folder is on sys.path, and its module is allowed).
    "train": {"loop": "many_workers:stand_in_loop", "epochs": 2},
    "baseline": {"fractions": [0.5, 1.0]},
    "sampler": {"name": "random", "seed": 0},
}


def stand_in_loop(ctx) -> None:
    """A training stood in: one step a run, a sleep, a report; logs what it trained."""
    import torch
    from torch import nn

    with open(Path(ctx.params["log_dir"]) / f"{os.getpid()}.runs", "a") as log:
        log.write(f"{ctx.epochs_total} {ctx.schedule!r}\n")
    model, x = nn.Identity(), torch.zeros(1, 1, 1, 1)
    for _epoch in ctx.epochs(1):
        with ctx.step(model, x):
            time.sleep(ctx.params["sleep_s"] / ctx.epochs_total)
        ctx.report(val_accuracy=0.8)


def _worker(index: int, url: str, log_dir: Path) -> None:
    """One worker process: dikd's `run_worker`; exits with its code."""
    import optuna

    from objectives import allow_imports
    from searcher import run_worker

    stderr = os.open(log_dir / f"worker-{index}.err", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.dup2(stderr, 2)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    allow_imports(["many_workers"])
    code = run_worker(SPEC["name"], url, n_trials=None, worker_id=f"w{index}", quiet=True)
    sys.stderr.flush()
    os._exit(code)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=24)
    parser.add_argument("--n-trials", type=int, default=240)
    parser.add_argument("--train-s", type=float, default=0.2, help="the stand-in's sleep")
    args = parser.parse_args()

    import optuna

    from objectives import allow_imports
    from searcher import create_or_resume, open_study, parse_spec
    from searcher.study.storage import rdb_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)

    folder = Path(tempfile.mkdtemp(prefix="dikd-many-workers-"))
    url = f"sqlite:///{folder / 'study.db'}"
    params = {"log_dir": str(folder), "sleep_s": args.train_s}
    allow_imports(["many_workers"])  # this script's module: the stand-in loop
    train = {**SPEC["train"], "params": params}
    spec = parse_spec({**SPEC, "train": train, "storage": url, "n_trials": args.n_trials})
    study = create_or_resume(spec, url)
    rdb_storage(study).engine.dispose()  # the workers open their own connections
    del study

    # fork: the workers share the parent's imports (torch included) instead of each paying them.
    context = multiprocessing.get_context("fork")
    workers = [context.Process(target=_worker, args=(i, url, folder)) for i in range(args.workers)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - start

    study, _ = open_study(SPEC["name"], url)
    states = collections.Counter(t.state.name for t in study.get_trials(deepcopy=False))
    over_budget = sum(bool(t.user_attrs.get("over_budget")) for t in study.get_trials())
    logs = list(folder.glob("*.runs"))  # one per worker process: what each run trained
    lines = [line for log in logs for line in log.read_text().splitlines()]
    runs = collections.Counter(lines)
    twice = sorted(line for line, count in runs.items() if count > 1)
    errors = "".join((folder / f"worker-{i}.err").read_text() for i in range(args.workers))
    locked = errors.count("database is locked")
    codes = [w.exitcode for w in workers]
    per_worker = sorted([len(log.read_text().splitlines()) for log in logs]
                        + [0] * (args.workers - len(logs)))  # fmt: skip
    result = {
        "workers": args.workers,
        "n_trials": args.n_trials,
        "train_s": args.train_s,
        "states": dict(states),
        "over_budget_pruned": over_budget,
        "training_runs": sum(runs.values()),
        "trials_run_twice": twice,
        "database_is_locked": locked,
        "exit_codes": dict(collections.Counter(codes)),
        "trials_per_worker_min_max": [per_worker[0], per_worker[-1]],
        "wall_s": round(elapsed, 1),
        "trials_per_s": round(args.n_trials / elapsed, 1),
    }
    print(json.dumps(result, indent=2))
    checks = {
        "exactly the budget completed": states.get("COMPLETE", 0) == args.n_trials,
        "none left RUNNING": states.get("RUNNING", 0) == 0,
        "no trial run twice": not twice,
        "no 'database is locked'": locked == 0,
        "every worker exited 0": all(code == 0 for code in codes),
    }
    for name, ok in checks.items():
        print(f"{'ok  ' if ok else 'FAIL'} {name}")
    if not all(checks.values()):
        print(f"worker logs kept in {folder}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
