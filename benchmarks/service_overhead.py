"""The search service's own cost per trial, against bare Optuna doing the same, side by side.

dikd runs trials whose training is replaced by an instant stand-in, so what is timed is sampling,
storage and bookkeeping. Bare Optuna runs the same sampler on the same storage with an objective
that suggests the same parameters and returns at once. Both at 10 and at 1,000 trials already in
the study, on SQLite and on PostgreSQL (a throwaway local cluster, as the tests start one).

    python benchmarks/service_overhead.py [--trials 20] [--no-postgres]
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
import warnings
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from optuna.trial import TrialState, create_trial

import searcher.study.search as study_module
from objectives import TrainResult
from searcher import create_or_resume, parse_spec, run_trials
from searcher.study.search import base_sampler
from searcher.study.storage import open_storage

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

SPEC = {
    "name": "overhead",
    "train": {"model": "resnet20", "epochs": 4},
    "space": {
        "policy": {"choices": ["stochastic", "deterministic", "progressive"]},
        "frequency": {"low": 0.25, "high": 1.0},
        "scale": {"choices": [1.5, 2.0]},
        "kernel_pool": {"choices": [True, False]},
        "end": {"low": 0.4, "high": 1.0},
    },
    "sampler": {"name": "tpe", "seed": 0},
    "n_trials": 100_000,
}
DISTRIBUTIONS = {
    "policy": CategoricalDistribution(["stochastic", "deterministic", "progressive"]),
    "frequency": FloatDistribution(0.25, 1.0),
    "scale": CategoricalDistribution([1.5, 2.0]),
    "kernel_pool": CategoricalDistribution([True, False]),
    "bn": CategoricalDistribution(["freeze"]),
    "start": CategoricalDistribution([0.0]),
    "end": FloatDistribution(0.4, 1.0),
}


def instant_train(config, on_epoch=None) -> TrainResult:
    accuracy = random.uniform(0.7, 0.9)
    return TrainResult(
        train_time_s=random.uniform(10, 40), val_accuracy=accuracy, flops=1e12,
        full_step_flops=1e10, reduced_step_flops=1e9, reduced_steps=10, total_steps=100,
        planned_steps=100, stopped_early=False, history=[], device="cpu", versions={},
    )  # fmt: skip


def prefill(study: optuna.Study, count: int, rng: random.Random) -> None:
    trials = []
    for _ in range(count):
        params = {
            "policy": rng.choice(["stochastic", "deterministic", "progressive"]),
            "frequency": rng.uniform(0.25, 1.0),
            "scale": rng.choice([1.5, 2.0]),
            "kernel_pool": rng.choice([True, False]),
            "bn": "freeze",
            "start": 0.0,
            "end": rng.uniform(0.4, 1.0),
        }
        trials.append(create_trial(
            params=params, distributions=DISTRIBUTIONS, state=TrialState.COMPLETE,
            values=[rng.uniform(10, 40), rng.uniform(0.7, 0.9)], user_attrs={"role": "search"},
        ))  # fmt: skip
    study.add_trials(trials)


def bare_objective(trial: optuna.Trial) -> tuple[float, float]:
    trial.suggest_categorical("policy", ["stochastic", "deterministic", "progressive"])
    trial.suggest_float("frequency", 0.25, 1.0)
    trial.suggest_categorical("scale", [1.5, 2.0])
    trial.suggest_categorical("kernel_pool", [True, False])
    trial.suggest_categorical("bn", ["freeze"])
    trial.suggest_categorical("start", [0.0])
    trial.suggest_float("end", 0.4, 1.0)
    return random.uniform(10, 40), random.uniform(0.7, 0.9)


def time_bare(url: str, name: str, existing: int, trials: int, *, as_dikd: bool = False) -> float:
    """Bare Optuna on the plain URL, or (`as_dikd`) on the storage exactly as dikd opens it:
    heartbeats with their per-trial stale check, SQLite's busy timeout and BEGIN IMMEDIATE."""
    spec = parse_spec({**SPEC, "name": name})
    storage = open_storage(url, heartbeat=True) if as_dikd else url
    study = optuna.create_study(study_name=name, storage=storage, sampler=base_sampler(spec, 0),
                                directions=["minimize", "maximize"])  # fmt: skip
    prefill(study, existing, random.Random(0))
    start = time.perf_counter()
    study.optimize(bare_objective, n_trials=trials)
    return (time.perf_counter() - start) / trials


def time_dikd(url: str, name: str, existing: int, trials: int) -> float:
    spec = parse_spec({**SPEC, "name": name})
    study = create_or_resume(spec, url)
    run_trials(study, spec, max_trials=4)  # the enqueued baseline curve
    prefill(study, max(existing - 4, 0), random.Random(0))
    start = time.perf_counter()
    run_trials(study, spec, max_trials=trials)
    return (time.perf_counter() - start) / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20, help="timed trials per cell")
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore")
    study_module.train = instant_train

    rows = []
    with tempfile.TemporaryDirectory() as folder, _postgres(args.no_postgres) as pg_url:
        storages = {"sqlite": f"sqlite:///{folder}/overhead.db"}
        if pg_url:
            storages["postgresql"] = pg_url
        for kind, url in storages.items():
            for existing in (10, 1000):
                bare = time_bare(url, f"bare-{existing}", existing, args.trials)
                same = time_bare(url, f"same-{existing}", existing, args.trials, as_dikd=True)
                dikd = time_dikd(url, f"dikd-{existing}", existing, args.trials)
                rows.append((kind, existing, bare, same, dikd))
    print(f"per-trial cost of the service, {args.trials} timed trials per cell, TPE "
          f"(multivariate), optuna {optuna.__version__}")  # fmt: skip
    print("'bare': Optuna on the plain URL; 'bare, same storage': on the storage as dikd opens it")
    print(
        f"{'storage':<12}{'trials in study':>16}{'bare ms':>9}{'bare, same storage ms':>23}"
        f"{'dikd ms':>9}{'dikd/bare':>11}{'dikd/same storage':>19}"
    )
    for kind, existing, bare, same, dikd in rows:
        print(
            f"{kind:<12}{existing:>16}{bare * 1e3:>9.1f}{same * 1e3:>23.1f}{dikd * 1e3:>9.1f}"
            f"{dikd / bare:>10.2f}x{dikd / same:>18.2f}x"
        )


class _postgres:
    """A throwaway PostgreSQL cluster (tests/postgres.py), or None."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.context = None

    def __enter__(self) -> str | None:
        if self.skip:
            return None
        from postgres import PostgresCluster

        self.context = PostgresCluster.started()
        cluster = self.context.__enter__()
        return cluster.create_database("overhead", password="bench")

    def __exit__(self, *exc) -> None:
        if self.context is not None:
            self.context.__exit__(*exc)


if __name__ == "__main__":
    main()
