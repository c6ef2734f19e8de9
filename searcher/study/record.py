"""What a trial record holds: its role and the user-attribute keys every reader shares.

Trials have three roles:
- baseline: the plain model at a fraction of the epochs (the budget curve), enqueued at creation;
- search: a schedule the sampler proposed;
- confirm: a re-training with a fresh seed for `dikd confirm` (a candidate or the plain model),
  in the sibling study `NAME.confirm` (in the search study itself for studies confirmed before
  siblings existed): never seen by the sampler, never on the search front, outside the trial
  budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from optuna.trial import FrozenTrial

from objectives import TrainConfig, TrainResult

ROLE = "role"  # user attribute: one of the roles below
BASELINE, SEARCH, CONFIRM = "baseline", "search", "confirm"
BUDGET_FRACTION = "budget_fraction"  # a baseline's (or confirmation plain run's) share of epochs
CONFIRM_RUN = "confirm_run"  # a confirmation run's key: its seed and what it trains
CANDIDATE = "candidate"  # the search trial a confirmation run re-trains; None for the plain model
# The TrainConfig the trial trains, its schedule, epochs and seed included: stored once.
TRAIN_CONFIG = "train_config"
# Before the config was stored once, the schedule, epochs and seed had attributes of their own
# too (and a failed trial only those): still read from studies stored then.
_OLD_SCHEDULE, _OLD_EPOCHS, _OLD_SEED = "schedule", "epochs", "seed"
# What a run measured (`result_attrs`); derived numbers (speedups) are computed when read.
TRAIN_TIME_S = "train_time_s"
VAL_ACCURACY = "val_accuracy"
FLOPS = "flops"
DEVICE = "device"
VERSIONS = "versions"
REDUCED_FRACTION = "reduced_fraction"
TEST_ACCURACY = "test_accuracy"
TEST_SIZE = "test_size"  # images the test accuracy was computed on
VAL_SIZE = "val_size"  # images the validation accuracy was computed on
# How a trial ended when it did not complete, and who ran it.
FAIL_REASON = "fail_reason"
OVER_BUDGET = "over_budget"  # a PRUNED trial that never ran: another worker took the budget's last
WORKER = "worker"
# A retry of a trial whose worker died: the first trial of the series, and every earlier one.
RETRY_OF, RETRY_HISTORY = "retry_of", "retry_history"
# The study's objectives: the cost (by the spec's `objective`) and the validation accuracy.
METRIC_NAMES = {"wall": "train_time_s", "flops": "train_flops"}
# Early stopping (searcher/study/pruning.py): the partial results after each epoch,
# {"planned_epochs": E, "points": [{"epoch", "cost", "val_accuracy"}, ...]}, cost in the study's
# objective unit; and why a pruner stopped a trial (PRUNED, counted in the trial budget).
PARTIAL = "partial"
PRUNED_REASON = "pruned_reason"
# The study's spec as stored (StudySpec.stored_form), to refuse a resume with another one.
SPEC_ATTR = "dikd_spec"
# Confirmation runs live in a sibling study: the search study names it, it names the search
# study. (Studies confirmed before siblings existed keep their runs among their own trials.)
CONFIRM_STUDY_ATTR = "dikd_confirm_study"
CONFIRMATION_OF_ATTR = "dikd_confirmation_of"
CONFIRM_SUFFIX = ".confirm"
# Study attributes of `dikd confirm`: its settings, fixed by the first confirmation, and the
# verdict of each candidate.
CONFIRM_SETTINGS_ATTR = "dikd_confirm_settings"
VERDICT_ATTR = "dikd_verdict"
FIRST_SEED_ATTR = "dikd_confirm_first_seed"  # the study's own first confirmation seed


def config_attrs(config: TrainConfig) -> dict[str, Any]:
    """What a trial trains, as stored: the whole config, once."""
    return {TRAIN_CONFIG: config.to_dict()}


def result_attrs(result: TrainResult) -> dict[str, Any]:
    """What a training run measured, as stored."""
    return {
        TRAIN_TIME_S: result.train_time_s,
        VAL_ACCURACY: result.val_accuracy,
        FLOPS: result.flops,
        REDUCED_FRACTION: result.reduced_fraction,
        "reduced_steps": result.reduced_steps,
        "total_steps": result.total_steps,
        DEVICE: result.device,
        VAL_SIZE: result.val_size,
        TEST_ACCURACY: result.test_accuracy,
        TEST_SIZE: result.test_size,
        VERSIONS: result.versions,
        "history": [
            {"epoch": e.epoch, "time_s": e.time_s, "loss": e.loss, "val_accuracy": e.val_accuracy}
            for e in result.history
        ],
    }


def stored_config(trial: FrozenTrial) -> dict[str, Any] | None:
    """The TrainConfig the trial trains, as a dict; None before it was made (or, for studies
    stored before it was written with a failure, for a failed trial)."""
    return trial.user_attrs.get(TRAIN_CONFIG)


def _config_field(trial: FrozenTrial, name: str, old_key: str) -> Any:
    config = stored_config(trial)
    return config[name] if config is not None else trial.user_attrs.get(old_key)


def schedule_of(trial: FrozenTrial) -> dict[str, Any] | None:
    """The trial's schedule as a dict; None when it has none yet."""
    return _config_field(trial, "schedule", _OLD_SCHEDULE)


def epochs_of(trial: FrozenTrial) -> int | None:
    return _config_field(trial, "epochs", _OLD_EPOCHS)


def seed_of(trial: FrozenTrial) -> int | None:
    """The trial's training seed."""
    return _config_field(trial, "seed", _OLD_SEED)


def budget_fraction(trial: FrozenTrial) -> float | None:
    return trial.user_attrs.get(BUDGET_FRACTION)


def device_of(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(DEVICE)


def fail_reason(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(FAIL_REASON)


def accuracy_on_test(trial: FrozenTrial) -> float | None:
    """The test accuracy of a confirmation run; None where the test split was not scored."""
    return trial.user_attrs.get(TEST_ACCURACY)


def role(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(ROLE)


def is_search(trial: FrozenTrial) -> bool:
    """A trial the sampler proposed (running ones carry no role until they end)."""
    return role(trial) not in (BASELINE, CONFIRM)


def is_baseline(trial: FrozenTrial) -> bool:
    return role(trial) == BASELINE


def is_confirm(trial: FrozenTrial) -> bool:
    return role(trial) == CONFIRM


def is_stopped_early(trial: FrozenTrial) -> bool:
    """A trial a pruner stopped (not one that never ran for lack of budget)."""
    return PRUNED_REASON in trial.user_attrs


def searched(trials: Iterable[FrozenTrial]) -> list[FrozenTrial]:
    """The search's own trials, baselines included: everything but confirmation runs."""
    return [t for t in trials if not is_confirm(t)]


def candidate_of(trial: FrozenTrial) -> int | None:
    """The search trial a confirmation run re-trains; None for the plain model."""
    return trial.user_attrs.get(CANDIDATE)


def accuracy_standard_error(trial: FrozenTrial) -> float | None:
    """The binomial standard error of the trial's validation accuracy, from the number of
    images it was scored on; None for trials stored before that number was."""
    n = trial.user_attrs.get(VAL_SIZE)
    if not n or trial.values is None:
        return None
    p = trial.values[1]
    return math.sqrt(p * (1 - p) / n)
