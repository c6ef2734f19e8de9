"""The search space in one place: a trial's parameters -> the TrainConfig it trains."""

from __future__ import annotations

from typing import Any

import optuna

from objectives import Schedule, TrainConfig
from searcher.study.record import budget_fraction, is_baseline
from searcher.study.spec import SEARCHABLE, Choices, FloatRange, IntRange, StudySpec


def _suggest(trial: optuna.Trial, name: str, value: Any) -> Any:
    if isinstance(value, Choices):
        return trial.suggest_categorical(name, value.choices)
    if isinstance(value, FloatRange):
        return trial.suggest_float(name, value.low, value.high, step=value.step, log=value.log)
    if isinstance(value, IntRange):
        return trial.suggest_int(name, value.low, value.high)
    return value


def baseline_epochs(spec: StudySpec, fraction: float) -> int:
    return max(1, round(spec.train.epochs * fraction))


def plain_config(spec: StudySpec, fraction: float, *, search: bool = False) -> TrainConfig:
    """The plain model (no reduced step) trained for `fraction` of the spec's epochs, at full
    fidelity or (`search`) at the search's."""
    epochs = baseline_epochs(spec, fraction)
    base = spec.search_train() if search else spec.train
    return base.model_copy(update={"epochs": epochs, "schedule": Schedule("none")})


def trial_config(trial: optuna.Trial, spec: StudySpec) -> TrainConfig:
    """Sample (or, for an enqueued baseline, fix) the trial's schedule and budget."""
    seed = spec.train.seed
    if is_baseline(trial):
        return plain_config(spec, budget_fraction(trial), search=True)
    space = spec.space
    values = {name: _suggest(trial, name, getattr(space, name)) for name in SEARCHABLE}
    epochs = values.pop("epochs") or spec.train.epochs
    try:
        schedule = Schedule(**values, seed=seed)
    except ValueError as e:  # a sampled start above a sampled end: the trial fails with this
        raise ValueError(f"the sampled {e}; narrow the space so that start < end") from None
    return spec.search_train().model_copy(update={"epochs": epochs, "schedule": schedule})
