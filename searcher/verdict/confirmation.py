"""`dikd confirm`: re-train the study's best candidates and the plain model over fresh seeds,
paired, scored on the test split, until a sequential verdict (`statistics.py`) is reached; the
verdict is stored on the study, and read back here too.

What is trained comes from a `Plan` (`plan.py`). Every run is a trial (role `confirm`) where
the study's confirmation runs live (`study/confirmation_runs.py`: a sibling study, so the
search study's own trials stay the search alone), keyed by its seed and what it trains, so a
killed confirmation resumes without re-training finished runs and several processes can share
the work: each takes a seed no live process is on, and trains that seed's runs back to back on
its device, so that drift hits the candidate and its baselines alike.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives import ConfigError, TrainConfig, TrainResult, check_data, train
from searcher.study.confirmation_runs import RunTrials
from searcher.study.record import (
    BUDGET_FRACTION,
    CANDIDATE,
    CONFIRM,
    CONFIRM_RUN,
    CONFIRM_SETTINGS_ATTR,
    FIRST_SEED_ATTR,
    ROLE,
    VERDICT_ATTR,
    WORKER,
    accuracy_on_test,
    budget_fraction,
    config_attrs,
    is_confirm,
    result_attrs,
    seed_of,
    stored_config,
)
from searcher.study.search import default_worker_id
from searcher.study.space import plain_config
from searcher.study.spec import StudySpec
from searcher.verdict.plan import (
    LEGACY_FIRST_SEED,
    Candidate,
    Plan,
    Run,
    first_seed,
    stored_settings,
)
from searcher.verdict.statistics import (
    READ_POINT,
    SeedResult,
    Settings,
    Summary,
    is_final,
    summarise,
)


class ConfirmationFailedError(RuntimeError):
    """A confirmation run failed: the verdict cannot be reached until it is fixed."""


def completed_runs(trials: list[FrozenTrial]) -> dict[str, FrozenTrial]:
    """The first completed trial of each run key."""
    out: dict[str, FrozenTrial] = {}
    for t in sorted(trials, key=lambda t: t.number):
        if is_confirm(t) and t.state == TrialState.COMPLETE:
            out.setdefault(t.user_attrs[CONFIRM_RUN], t)
    return out


def _cost(trial: FrozenTrial) -> float:
    return trial.values[0]


def full_cost_of(plain_run: FrozenTrial) -> float:
    """The full budget's cost that a plain run says: its own, or for a run of a share of the
    steps, its cost per step times the full budget's steps (a plain step costs the same
    whatever the budget)."""
    config = stored_config(plain_run) or {}
    return _cost(plain_run) / config.get("step_fraction", 1.0)


def seed_results(
    candidate: Candidate, done: dict[str, FrozenTrial], first: int
) -> list[SeedResult]:
    """The candidate's paired results over consecutive seeds from `first`, while complete."""
    results = []
    for seed in range(first, first + 10_000):
        runs = [done.get(run.key) for run in candidate.runs(seed)]
        if any(r is None for r in runs):
            return results
        mine, *plain = runs
        points = tuple((_cost(t), accuracy_on_test(t)) for t in plain)
        full = next(((_cost(t), accuracy_on_test(t)) for t in plain
                     if budget_fraction(t) == 1.0), (full_cost_of(plain[-1]), None))  # fmt: skip
        results.append(SeedResult(seed, _cost(mine), accuracy_on_test(mine), points, full))
    return results


def summaries(
    candidates: list[Candidate], trials: list[FrozenTrial], settings: Settings, first: int
) -> dict[int, Summary | None]:
    done = completed_runs(trials)
    out: dict[int, Summary | None] = {}
    for c in candidates:
        results = seed_results(c, done, first)
        out[c.number] = summarise(results, settings) if results else None
    return out


def _seeds_wanted(summary: Summary | None, settings: Settings) -> int:
    """Seeds the candidate needs for its next look; 0 once its verdict is final."""
    if summary is not None and is_final(summary.decision, settings):
        return 0
    have = len(summary.seeds) if summary is not None else 0
    return min(max(settings.min_seeds, have + 1), settings.max_seeds)


class _Runner:
    """Trains one seed's runs. All of their trials are started before the first trains, so
    that the seed stays claimed until its last run ends."""

    def __init__(self, spec: StudySpec, candidates: list[Candidate]):
        self.spec = spec
        self.configs = {c.number: candidate_config(spec, c.trial) for c in candidates}

    def config(self, run: Run) -> TrainConfig:
        if run.steps is not None:
            base = plain_config(self.spec, 1.0).model_copy(update={"step_fraction": run.steps})
        elif run.candidate is None:
            base = plain_config(self.spec, run.fraction)
        else:
            base = self.configs[run.candidate]
        # Only the final model is scored: on the test split, and on validation for the record.
        return base.model_copy(update={"seed": run.seed, "test": True, "eval_every_epoch": False})

    @staticmethod
    def _attrs(run: Run, config: TrainConfig, worker: str) -> dict[str, Any]:
        attrs = {ROLE: CONFIRM, CONFIRM_RUN: run.key, CANDIDATE: run.candidate, WORKER: worker}
        if run.fraction is not None:
            attrs[BUDGET_FRACTION] = run.fraction
        return {**attrs, **config_attrs(config)}

    def train_seed(
        self,
        holder: RunTrials,
        runs: list[Run],
        on_epoch: Callable[[int, int], None] | None,
        on_run: Callable[[Run, float, TrainResult], None] | None,
    ) -> None:
        configs = [self.config(run) for run in runs]
        worker = default_worker_id()
        trials = holder.start([self._attrs(r, c, worker) for r, c in zip(runs, configs)])
        with holder.kept_alive(trials):
            for index, (run, config, trial) in enumerate(zip(runs, configs, trials)):
                try:
                    result = train(
                        config,
                        on_epoch=None
                        if on_epoch is None
                        else lambda epoch, _r, n=config.epochs: on_epoch(epoch, n),
                    )
                except BaseException as e:
                    holder.fail(trial, f"{type(e).__name__}: {e}")
                    for left in trials[index + 1 :]:
                        holder.fail(left, f"not run: run '{run.key}' stopped first")
                    if isinstance(e, Exception):
                        raise ConfirmationFailedError(
                            f"confirmation run '{run.key}' failed: {type(e).__name__}: {e}; fix "
                            f"it and run `dikd confirm {self.spec.name}` again (finished "
                            "runs are kept)"
                        ) from e
                    raise
                cost = result.train_time_s if self.spec.objective == "wall" else result.flops
                holder.complete(trial, [cost, result.val_accuracy], result_attrs(result))
                if on_run is not None:
                    on_run(run, cost, result)


def candidate_config(spec: StudySpec, trial: FrozenTrial) -> TrainConfig:
    """What a confirmation trains for a search trial: its schedule and epochs at the spec's
    full fidelity (`train`), whatever cheaper fidelity the search trained it at."""
    searched_config = TrainConfig.from_dict(stored_config(trial))
    return spec.train.model_copy(
        update={"schedule": searched_config.schedule, "epochs": searched_config.epochs}
    )


def _next_seed(
    candidates: list[Candidate],
    sums: dict[int, Summary | None],
    settings: Settings,
    trials: list[FrozenTrial],
    first: int,
) -> tuple[list[Run] | None, bool]:
    """The missing runs of the first seed that needs work and that no live process is on, and
    whether any seed is left to others."""
    done = completed_runs(trials)
    busy = {seed_of(t) for t in trials
            if is_confirm(t) and t.state == TrialState.RUNNING}  # fmt: skip
    wanted = {c.number: _seeds_wanted(sums[c.number], settings) for c in candidates}
    waiting = False
    for offset in range(max(wanted.values(), default=0)):
        seed = first + offset
        runs: list[Run] = []
        for c in candidates:
            if offset < wanted[c.number]:
                runs += [r for r in c.runs(seed) if r.key not in done and r not in runs]
        if not runs:
            continue
        if seed in busy:
            waiting = True
            continue
        if seed % 2:  # alternate which runs first: a drift in time hits both sides alike
            runs.reverse()
        return runs, waiting
    return None, waiting


def confirm(
    study: optuna.Study,
    spec: StudySpec,
    plan: Plan,
    *,
    on_run: Callable[[Run, float, TrainResult], None] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
    poll_s: float = 5.0,
) -> dict[int, Summary | None]:
    """Run the plan until every candidate's verdict is final; store and return it."""
    candidates, first, settings = plan.candidates, plan.first_seed, plan.settings
    if first != first_seed(study) or stored_settings(study, settings) != settings:
        raise ConfigError(
            f"the plan's seeds or settings are not study '{study.study_name}''s: make it with "
            "plan_confirmation"
        )
    runner = _Runner(spec, candidates)
    for c in candidates:  # the test split too: missing data is one line before any training
        check_data(runner.config(Run(first, c.number)))
    runs = RunTrials(study)  # after the checks: a refused confirmation stores nothing
    if FIRST_SEED_ATTR not in study.user_attrs:  # before the settings: first_seed reads them
        study.set_user_attr(FIRST_SEED_ATTR, first)
    if CONFIRM_SETTINGS_ATTR not in study.user_attrs:
        study.set_user_attr(CONFIRM_SETTINGS_ATTR, dataclasses.asdict(settings))
    while True:
        trials = runs.trials()
        sums = summaries(candidates, trials, settings, first)
        store_verdict(study, candidates, sums, settings, first)
        todo, waiting = _next_seed(candidates, sums, settings, trials, first)
        if todo is None and not waiting:
            return sums
        if todo is None:  # every seed left is being trained by another process
            time.sleep(poll_s)
            continue
        runner.train_seed(runs, todo, on_epoch, on_run)


def store_verdict(
    study: optuna.Study,
    candidates: list[Candidate],
    sums: dict[int, Summary | None],
    settings: Settings,
    first: int,
) -> None:
    """The verdict as a study attribute (merged with earlier candidates' verdicts)."""
    verdicts = {str(n): v for n, v in stored_verdict(study).candidates.items()}
    for c in candidates:
        summary = sums[c.number]
        verdicts[str(c.number)] = {
            "trial": c.number,
            "plain_fractions": list(c.fractions),
            "plain_steps": c.steps,
            "final": summary is not None and is_final(summary.decision, settings),
            **(summary.to_dict() if summary is not None else {"verdict": "pending"}),
        }
    study.set_user_attr(
        VERDICT_ATTR,
        {
            "settings": dataclasses.asdict(settings),
            "procedure": procedure_text(settings),
            "first_seed": first,
            "split": "test",
            "candidates": verdicts,
        },
    )


@dataclasses.dataclass(frozen=True)
class StoredVerdict:
    """A study's stored verdict: each candidate's (by trial number; none before a confirmation),
    how they were reached, from which seed, under which settings."""

    candidates: dict[int, dict[str, Any]]
    procedure: str = ""
    first_seed: int = LEGACY_FIRST_SEED  # studies stored before each had its own seeds
    settings: dict[str, Any] = dataclasses.field(default_factory=dict)


def stored_verdict(study: optuna.Study) -> StoredVerdict:
    """The verdict `confirm` stored on the study."""
    stored = study.user_attrs.get(VERDICT_ATTR, {})
    return StoredVerdict(
        candidates={int(k): v for k, v in stored.get("candidates", {}).items()},
        procedure=stored.get("procedure", ""),
        first_seed=int(stored.get("first_seed", LEGACY_FIRST_SEED)),
        settings=stored.get("settings", {}),
    )


def procedure_text(settings: Settings) -> str:
    plain = (
        "the plain model once a seed, in steps, just above that cost (read conservatively)"
        if settings.plain_runs == READ_POINT
        else "the plain model at the whole-epoch budgets around that cost and the full one"
    )
    futility = "; stopped undecided once a win is out of reach" if settings.futility else ""
    return (
        f"paired seeds, test split; win when the plain model needs over "
        f"{1 / (1 - settings.min_saving):.3f}x the candidate's cost for its accuracy "
        f"(min_saving {settings.min_saving:.0%}; {plain}); one-sided Student-t bounds at "
        f"alpha {settings.alpha:g} split over {settings.looks} looks "
        f"({settings.min_seeds}-{settings.max_seeds} seeds, Bonferroni){futility}"
    )
