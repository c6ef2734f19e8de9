"""Search efficiency: how much compute a search needs for its front, with and without early
stopping, replayed from recorded learning curves so that a whole search runs in seconds.

A trial is answered from benchmarks/replay_table.json (benchmarks/record_replay_table.py), the
nearest grid point's per-epoch (FLOPs, accuracy) curve; a pruner sees the same partial results
a dikd study stores and decides with the same code (searcher/study/pruning.py). Every search starts,
as a dikd study does, with the plain model at 1/4, 1/2, 3/4 and all of the epochs.

Compared over seeds: random search, TPE, NSGA-II (dikd's samplers), TPE with each pruner, random
search with dikd's MO-ASHA, and Syne Tune's MOASHA (random configurations, its own stopping) as
the outside reference. Each seed's budget is the compute the unpruned TPE search spends on
`--trials` search trials; every method runs until it has spent that much. Compute = the sum of
the FLOPs of all trials, pruned ones up to where they stopped. Hypervolume of the front with a
reference point fixed from the table, as a fraction of the whole table's front.

    python benchmarks/search_efficiency.py --seeds 10   # the figure: benchmarks/results/
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import optuna
import plotly.graph_objects as go

from searcher.study.pruning import MOASHA, Curve, Dominance, Pruner
from searcher.study.spec import DominancePruner, MOASHAPruner
from searcher.views.figures import hypervolume_2d

TABLE = Path(__file__).resolve().parent / "replay_table.json"
TOLERANCE = 0.02  # "the same hypervolume": within 2%
Point = tuple[float, float]


class Replay:
    """The recorded table: a trial's parameters -> the nearest grid point's curve."""

    def __init__(self, table: dict) -> None:
        self.grid = table["grid"]
        self.epochs = table["task"]["epochs"]
        self.curves: dict[tuple, list[Point]] = {}
        self.baselines: list[tuple[int, list[Point]]] = []
        for run in table["runs"]:
            curve = [(p["flops"], p["val_accuracy"]) for p in run["curve"]]
            if run["kind"] == "baseline":
                self.baselines.append((run["epochs"], curve))
            else:
                self.curves[self._key(run["schedule"])] = curve
        finals = [c[-1] for c in self.curves.values()] + [c[-1] for _, c in self.baselines]
        # Fixed from the table: just beyond its most costly and least accurate final points.
        self.reference = (1.05 * max(c for c, _ in finals), min(a for _, a in finals) - 0.01)
        self.best_hypervolume = self._raw_hypervolume(finals)

    def _key(self, params: dict) -> tuple:
        frequency = min(self.grid["frequency"], key=lambda f: abs(f - params["frequency"]))
        return (params["policy"], params["kernel_pool"], params["scale"], frequency)

    def curve(self, params: dict) -> list[Point]:
        key = self._key(params)
        if key not in self.curves:  # a table still being recorded: the nearest recorded point
            key = min(self.curves, key=lambda k: sum(a != b for a, b in zip(k, key)))
        return self.curves[key]

    def _raw_hypervolume(self, points: list[Point]) -> float:
        rx, ra = self.reference
        return hypervolume_2d([(c, -a) for c, a in points], (rx, -ra))

    def hypervolume(self, points: list[Point]) -> float:
        """As a fraction of the hypervolume of the whole table's front."""
        return self._raw_hypervolume(points) / self.best_hypervolume


class Run:
    """One search: its trials' spent compute and the front's hypervolume after each trial."""

    def __init__(self, replay: Replay) -> None:
        self.replay = replay
        self.finals: list[Point] = []  # completed trials: on the front or not
        self.curves: list[Curve] = []  # what a pruner reads
        self.compute = 0.0
        self.history: list[tuple[float, float]] = []  # (compute spent, hypervolume)
        self.pruned = 0
        for epochs, curve in replay.baselines:
            self.finish(-1, curve, epochs)
        self.baseline_trials = len(self.history)

    @property
    def search_trials(self) -> int:
        return len(self.history) - self.baseline_trials

    def finish(self, number: int, curve: list[Point], planned: int) -> None:
        complete = len(curve) == planned
        self.compute += curve[-1][0]
        self.curves.append(Curve(number, planned, tuple(curve), complete))
        if complete:
            self.finals.append(curve[-1])
        else:
            self.pruned += 1
        self.history.append((self.compute, self.replay.hypervolume(self.finals)))

    def hypervolume_at(self, compute: float) -> float:
        """The front's hypervolume once `compute` was spent (trials finished by then)."""
        reached = [hv for spent, hv in self.history if spent <= compute * (1 + 1e-12)]
        return reached[-1] if reached else 0.0

    def compute_to_reach(self, hypervolume: float) -> float:
        for spent, hv in self.history:
            if hv >= hypervolume:
                return spent
        return math.inf


def optuna_search(
    replay: Replay, sampler: optuna.samplers.BaseSampler, pruner: Pruner | None, budget: float
) -> Run:
    run = Run(replay)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=sampler)
    grid = replay.grid

    def objective(trial: optuna.Trial) -> tuple[float, float]:
        params = {
            "policy": trial.suggest_categorical("policy", grid["policy"]),
            "kernel_pool": trial.suggest_categorical("kernel_pool", grid["kernel_pool"]),
            "scale": trial.suggest_categorical("scale", grid["scale"]),
            "frequency": trial.suggest_float(
                "frequency", min(grid["frequency"]), max(grid["frequency"])
            ),
        }
        full = replay.curve(params)
        for epoch in range(1, replay.epochs):
            if pruner is None:
                break
            me = Curve(trial.number, replay.epochs, tuple(full[:epoch]))
            comparable = [c for c in run.curves if c.planned_epochs == replay.epochs]
            if pruner.reason_to_stop(me, comparable) is not None:
                run.finish(trial.number, full[:epoch], replay.epochs)
                raise optuna.TrialPruned()
        run.finish(trial.number, full, replay.epochs)
        return full[-1]

    while run.compute < budget:
        study.optimize(objective, n_trials=1)
    return run


def syne_tune_moasha(replay: Replay, seed: int, budget: float) -> Run | str:
    """Syne Tune's MOASHA, driven trial by trial: its random configuration, its decision after
    each epoch (both objectives minimised: FLOPs and 1 - accuracy). A string: why not run."""
    try:
        from syne_tune.backend.trial_status import Trial
        from syne_tune.config_space import choice, uniform
        from syne_tune.optimizer.scheduler import SchedulerDecision
        from syne_tune.optimizer.schedulers.multiobjective.moasha import MOASHA as SyneMOASHA
    except ImportError as e:
        return f"syne-tune is not installed ({e}); pip install '.[benchmark]'"
    import datetime

    grid = replay.grid
    space = {
        "policy": choice(grid["policy"]),
        "kernel_pool": choice(grid["kernel_pool"]),
        "scale": choice(grid["scale"]),
        "frequency": uniform(min(grid["frequency"]), max(grid["frequency"])),
        "epochs": replay.epochs,
    }
    np.random.seed(seed)  # MOASHA's bracket choice and configurations draw from numpy
    scheduler = SyneMOASHA(
        config_space=space,
        metrics=["flops", "error"],
        time_attr="epoch",
        max_t=replay.epochs,
        grace_period=1,
        reduction_factor=3,
        random_seed=seed,
    )
    run = Run(replay)
    full_baseline = next(c for e, c in replay.baselines if e == replay.epochs)
    number = 0
    while run.compute < budget:
        if number == 0:
            config, curve = None, full_baseline  # the plain model reaches the rungs too
        else:
            config = scheduler.suggest().config
            curve = replay.curve(config)
        trial = Trial(number, config or {}, datetime.datetime.now())
        scheduler.on_trial_add(trial)
        for epoch, (flops, accuracy) in enumerate(curve, start=1):
            result = {"epoch": epoch, "flops": flops, "error": 1 - accuracy}
            if epoch == replay.epochs:
                scheduler.on_trial_complete(trial, result)
                break
            if scheduler.on_trial_result(trial, result) == SchedulerDecision.STOP:
                break
        if number > 0:  # the baseline is already in the run
            run.finish(number, curve[:epoch], replay.epochs)
        number += 1
    return run


def methods(
    seed: int,
) -> dict[str, Callable[[], tuple[optuna.samplers.BaseSampler, Pruner | None]]]:
    dominance = Dominance(DominancePruner(name="dominance"))
    mo_asha = MOASHA(MOASHAPruner(name="mo-asha"))
    late_asha = MOASHA(MOASHAPruner(name="mo-asha", min_epoch=2))

    def tpe() -> optuna.samplers.BaseSampler:  # as dikd's studies (searcher/study/search.py)
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True, n_startup_trials=5
        )

    return {
        "random": lambda: (optuna.samplers.RandomSampler(seed=seed), None),
        "tpe": lambda: (tpe(), None),
        "nsga2": lambda: (optuna.samplers.NSGAIISampler(seed=seed), None),
        "tpe + dominance": lambda: (tpe(), dominance),
        "tpe + mo-asha": lambda: (tpe(), mo_asha),
        # The first rung after epoch 2: after one epoch the accuracies are mostly noise.
        "tpe + mo-asha@2": lambda: (tpe(), late_asha),
        "random + mo-asha": lambda: (optuna.samplers.RandomSampler(seed=seed), mo_asha),
    }


def reference_budget(replay: Replay, seed: int, trials: int) -> tuple[Run, float]:
    """The unpruned TPE search of `trials` search trials, and the compute it spent."""
    sampler, _ = methods(seed)["tpe"]()
    run = Run(replay)
    baseline_compute = run.compute
    # Per full trial: the table's mean cost; a search runs until it has spent that many.
    mean = statistics.fmean(c[-1][0] for c in replay.curves.values())
    run = optuna_search(replay, sampler, None, baseline_compute + trials * mean)
    return run, run.compute


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--trials", type=int, default=30, help="search trials of unpruned TPE")
    parser.add_argument(
        "--out", type=Path, default=Path("benchmarks/results/search_efficiency.html")
    )
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    replay = Replay(json.loads(args.table.read_text()))

    runs: dict[str, list[Run]] = {}
    budgets: list[float] = []
    syne_note = None
    for seed in range(args.seeds):
        reference, budget = reference_budget(replay, seed, args.trials)
        budgets.append(budget)
        for name, make in methods(seed).items():
            run = reference if name == "tpe" else optuna_search(replay, *make(), budget)
            runs.setdefault(name, []).append(run)
        syne = syne_tune_moasha(replay, seed, budget)
        if isinstance(syne, str):
            syne_note = syne
        else:
            runs.setdefault("syne-tune MOASHA", []).append(syne)

    summary = summarise(runs, budgets)
    print_table(summary, replay, args)
    if syne_note:
        print(f"Syne Tune's MOASHA not run: {syne_note}")
    write_figure(runs, budgets, args.out)
    print(f"figure: {args.out}")
    pruners = [n for n in summary if n.startswith("tpe + ")]
    best = min(pruners, key=lambda n: (summary[n]["compute_ratio"], -summary[n]["hv_ratio"]))
    s = summary[best]
    print(
        f"best pruner: {best.removeprefix('tpe + ')} compute_ratio={s['compute_ratio']:.3f} "
        f"hypervolume_ratio={s['hv_ratio']:.4f} seeds={args.seeds}"
    )


def summarise(runs: dict[str, list[Run]], budgets: list[float]) -> dict[str, dict]:
    """Per method, medians over seeds, each seed against its own unpruned TPE search."""
    out = {}
    for name, seeds in runs.items():
        targets = [(1 - TOLERANCE) * tpe.history[-1][1] for tpe in runs["tpe"]]
        ratios = [run.compute_to_reach(t) / b for run, t, b in zip(seeds, targets, budgets)]
        hv_ratio = [
            run.hypervolume_at(b) / tpe.history[-1][1]
            for run, tpe, b in zip(seeds, runs["tpe"], budgets)
        ]
        out[name] = {
            "hv_half": statistics.median(
                run.hypervolume_at(b / 2) for run, b in zip(seeds, budgets)
            ),
            "hv_full": statistics.median(run.hypervolume_at(b) for run, b in zip(seeds, budgets)),
            "hv_ratio": statistics.median(hv_ratio),
            "compute_ratio": statistics.median(ratios),
            "reached": sum(math.isfinite(r) for r in ratios),
            "trials": statistics.median(run.search_trials for run in seeds),
            "pruned": statistics.median(run.pruned for run in seeds),
        }
    return out


def print_table(summary: dict[str, dict], replay: Replay, args) -> None:
    print(
        f"replay table: {len(replay.curves)} schedules + {len(replay.baselines)} baseline "
        f"budgets, {replay.epochs} epochs; {args.seeds} seeds; budget = unpruned TPE's compute "
        f"for {args.trials} search trials (+ the baselines)"
    )
    print("hypervolume: fraction of the whole table's front; medians over seeds")
    header = (
        f"{'method':<20} {'HV @50%':>8} {'HV @100%':>9} {'HV/tpe':>7} {'compute to tpe-2%':>18} "
        f"{'reached':>8} {'trials':>7} {'pruned':>7}"  # trials: search trials, baselines apart
    )
    print(header)
    print("-" * len(header))
    for name, s in summary.items():
        ratio = "never" if math.isinf(s["compute_ratio"]) else f"{s['compute_ratio']:.2f}x"
        print(
            f"{name:<20} {s['hv_half']:>8.4f} {s['hv_full']:>9.4f} {s['hv_ratio']:>7.4f} "
            f"{ratio:>18} {s['reached']:>5}/{args.seeds:<2} {s['trials']:>7.0f} {s['pruned']:>7.0f}"
        )


def write_figure(runs: dict[str, list[Run]], budgets: list[float], path: Path) -> None:
    """Median hypervolume over seeds against compute, as a fraction of the seed's budget."""
    xs = np.linspace(0, 1, 101)
    fig = go.Figure()
    for name, seeds in runs.items():
        ys = [
            statistics.median(r.hypervolume_at(x * b) for r, b in zip(seeds, budgets)) for x in xs
        ]
        fig.add_trace(go.Scatter(x=100 * xs, y=ys, name=name, mode="lines", line=dict(shape="hv")))
    fig.update_layout(
        title="Hypervolume of the front against compute spent (median over seeds)",
        xaxis_title="compute spent (% of the unpruned TPE search's)",
        yaxis_title="hypervolume (fraction of the whole table's front)",
        template="plotly_white",
        height=520,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.write_html(path, include_plotlyjs="cdn")


if __name__ == "__main__":
    main()
