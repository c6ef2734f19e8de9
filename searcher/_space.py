"""The search space in one place: a trial's parameters -> the TrainConfig it trains."""

from __future__ import annotations

from typing import Any

import optuna

from objectives import Schedule, TrainConfig
from searcher._spec import SEARCHABLE, Choices, FloatRange, IntRange, StudySpec

ROLE = "role"  # trial user attribute: "baseline" or "search"
BUDGET_FRACTION = "budget_fraction"


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


def trial_config(trial: optuna.Trial, spec: StudySpec) -> TrainConfig:
    """Sample (or, for an enqueued baseline, fix) the trial's schedule and budget."""
    seed = spec.train.seed
    if trial.user_attrs.get(ROLE) == "baseline":
        epochs = baseline_epochs(spec, trial.user_attrs[BUDGET_FRACTION])
        return spec.train.model_copy(update={"epochs": epochs, "schedule": Schedule("none")})
    space = spec.space
    values = {name: _suggest(trial, name, getattr(space, name)) for name in SEARCHABLE}
    epochs = values.pop("epochs") or spec.train.epochs
    if values["start"] >= values["end"]:
        raise ValueError(
            f"sampled start {values['start']} is not below end {values['end']}; "
            "narrow the space so that start < end"
        )
    schedule = Schedule(**values, seed=seed)
    return spec.train.model_copy(update={"epochs": epochs, "schedule": schedule})
