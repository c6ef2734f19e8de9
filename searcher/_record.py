"""What a trial record holds: its role and the user-attribute keys every reader shares.

A study holds three kinds of trials:
- baseline: the plain model at a fraction of the epochs (the budget curve), enqueued at creation;
- search: a schedule the sampler proposed;
- confirm: a re-training with a fresh seed for `dikd confirm` (a candidate or the plain model),
  never seen by the sampler, never on the search front, outside the study's trial budget.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import optuna
from optuna.trial import FrozenTrial

ROLE = "role"  # user attribute: one of the roles below
BASELINE, SEARCH, CONFIRM = "baseline", "search", "confirm"
BUDGET_FRACTION = "budget_fraction"  # a baseline's (or confirmation plain run's) share of epochs
CONFIRM_RUN = "confirm_run"  # a confirmation run's key: its seed and what it trains
CANDIDATE = "candidate"  # the search trial a confirmation run re-trains; None for the plain model
TEST_ACCURACY = "test_accuracy"
VAL_SIZE = "val_size"  # images the validation accuracy was computed on
OVER_BUDGET = "over_budget"  # a PRUNED trial that never ran: another worker took the budget's last
# Early stopping (searcher/_pruning.py): the partial results after each epoch,
# {"planned_epochs": E, "points": [{"epoch", "cost", "val_accuracy"}, ...]}, cost in the study's
# objective unit; and why a pruner stopped a trial (PRUNED, counted in the trial budget).
PARTIAL = "partial"
PRUNED_REASON = "pruned_reason"
# Study attributes of `dikd confirm`: its settings, fixed by the first confirmation, and the
# verdict of each candidate.
CONFIRM_SETTINGS_ATTR = "dikd_confirm_settings"
VERDICT_ATTR = "dikd_verdict"


def role(trial: FrozenTrial) -> str | None:
    return trial.user_attrs.get(ROLE)


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


def stored_verdicts(study: optuna.Study) -> dict[int, dict[str, Any]]:
    """The stored confirmation verdict of each candidate, by its trial number."""
    stored = study.user_attrs.get(VERDICT_ATTR, {})
    return {int(k): v for k, v in stored.get("candidates", {}).items()}


def accuracy_standard_error(trial: FrozenTrial) -> float | None:
    """The binomial standard error of the trial's validation accuracy, from the number of
    images it was scored on; None for trials stored before that number was."""
    n = trial.user_attrs.get(VAL_SIZE)
    if not n or trial.values is None:
        return None
    p = trial.values[1]
    return math.sqrt(p * (1 - p) / n)
