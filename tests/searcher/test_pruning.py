"""Pruners on synthetic learning curves: what they stop, what they never stop, and that the
decision depends only on what is stored."""

from __future__ import annotations

import random
from types import SimpleNamespace

import optuna
import pytest
from optuna.trial import TrialState
from tiny import TINY_TRAIN

from searcher.study.pruning import (
    MOASHA,
    Curve,
    Dominance,
    EpochReporter,
    comparable,
    nondominated_order,
    rungs,
)
from searcher.study.record import BASELINE, PARTIAL, ROLE, SEARCH
from searcher.study.spec import DominancePruner, MOASHAPruner, parse_spec

EPOCHS = 4


def curve(number: int, cost_per_epoch: float, accuracies: list[float], complete=True) -> Curve:
    points = tuple((cost_per_epoch * (e + 1), a) for e, a in enumerate(accuracies))
    return Curve(number, EPOCHS, points, complete)


# Five completed trials along a front: cheaper ones are less accurate.
FRONT = [
    curve(n, cost, [acc - 0.2, acc - 0.1, acc - 0.05, acc])
    for n, (cost, acc) in enumerate([(1, 0.6), (2, 0.7), (3, 0.8), (4, 0.85), (5, 0.9)])
]
DOMINANCE = Dominance(DominancePruner(name="dominance", min_completed=3, min_dominating=2))


def test_dominance_stops_a_clearly_dominated_trial() -> None:
    # As costly as the most expensive trial, far less accurate than three cheaper ones.
    bad = curve(10, 5, [0.3, 0.35])
    reason = DOMINANCE.reason_to_stop(bad, FRONT)
    assert reason is not None and reason.startswith("dominance: after epoch 2")


def test_dominance_never_stops_a_trial_on_the_front() -> None:
    for i, trial in enumerate(FRONT):
        others = FRONT[:i] + FRONT[i + 1 :]
        for epoch in range(1, EPOCHS):
            partial = Curve(trial.number, EPOCHS, trial.points[:epoch])
            assert DOMINANCE.reason_to_stop(partial, others) is None
    # Better than the front at the same cost: never stopped either.
    assert DOMINANCE.reason_to_stop(curve(10, 2.5, [0.9, 0.95]), FRONT) is None


def test_dominance_stops_nothing_during_warm_up() -> None:
    bad = curve(10, 5, [0.3, 0.35])
    assert DOMINANCE.reason_to_stop(bad, FRONT[:2]) is None  # 2 completed, 3 needed
    running = [Curve(c.number, EPOCHS, c.points, complete=False) for c in FRONT]
    assert DOMINANCE.reason_to_stop(bad, running) is None  # running trials do not count
    late = Dominance(DominancePruner(name="dominance", min_completed=3, min_epoch=3))
    assert late.reason_to_stop(bad, FRONT) is None  # before its first epoch to decide on


def test_dominance_margin_spares_a_trial_within_noise() -> None:
    close = curve(10, 3, [0.59, 0.695])  # 0.5 points below trial 2 at the same cost
    assert DOMINANCE.reason_to_stop(close, FRONT) is None


def test_rungs_grow_geometrically_below_the_last_epoch() -> None:
    assert rungs(1, 3.0, 27) == [1, 3, 9]
    assert rungs(1, 2.0, 6) == [1, 2, 4]
    assert rungs(2, 3.0, 6) == [2]


ASHA = MOASHA(MOASHAPruner(name="mo-asha", eta=2.0))


def test_mo_asha_stops_a_dominated_trial_at_a_rung_and_only_there() -> None:
    bad = curve(10, 5, [0.3, 0.35])
    assert ASHA.reason_to_stop(bad, FRONT).startswith("mo-asha: ranked 6 of the 6")
    three_epochs = curve(10, 5, [0.3, 0.35, 0.4])  # epoch 3 is no rung (1, 2)
    assert ASHA.reason_to_stop(three_epochs, FRONT) is None


def test_mo_asha_keeps_the_first_trial_at_a_rung_and_one_that_dominates_all() -> None:
    assert ASHA.reason_to_stop(curve(10, 5, [0.3]), []) is None
    assert ASHA.reason_to_stop(curve(10, 0.5, [0.95, 0.99]), FRONT) is None


def test_non_dominated_sorting_puts_fronts_in_order_and_starts_at_the_most_accurate() -> None:
    points = [(0, (1.0, 0.5)), (1, (2.0, 0.9)), (2, (2.0, 0.6)), (3, (3.0, 0.4))]
    order = nondominated_order(points)
    assert order[:2] == [1, 0] and order[2:] == [2, 3]


def _stored_study(url: str, curves: list[Curve], states: list[TrialState]) -> None:
    study = optuna.create_study(storage=url, directions=["minimize", "maximize"])
    for c, state in zip(curves, states):
        partial = {
            "planned_epochs": c.planned_epochs,
            "points": [{"epoch": e + 1, "cost": p[0], "val_accuracy": p[1]}
                       for e, p in enumerate(c.points)],
        }  # fmt: skip
        values = list(c.points[-1]) if state == TrialState.COMPLETE else None
        study.add_trial(
            optuna.trial.create_trial(
                state=state, values=values, user_attrs={PARTIAL: partial, ROLE: SEARCH}
            )
        )


@pytest.mark.parametrize("pruner", [DOMINANCE, ASHA], ids=["dominance", "mo-asha"])
def test_the_decision_is_the_same_whichever_worker_asks(tmp_path, pruner) -> None:
    url = f"sqlite:///{tmp_path / 'p.db'}"
    running = curve(5, 3.5, [0.45, 0.5], complete=False)  # another worker's trial, mid-way
    pruned = curve(6, 4.5, [0.3, 0.32], complete=False)
    states = [TrialState.COMPLETE] * len(FRONT) + [TrialState.RUNNING, TrialState.PRUNED]
    _stored_study(url, [*FRONT, running, pruned], states)
    asking = [curve(7, 4.8, [0.35, 0.4]), curve(7, 1.5, [0.5, 0.66]), curve(7, 0.5, [0.9])]
    decisions = []
    for worker in range(3):  # each worker loads the study itself, and sees the trials shuffled
        (name,) = optuna.get_all_study_names(url)
        study = optuna.load_study(study_name=name, storage=url)
        trials = study.get_trials(deepcopy=False)
        random.Random(worker).shuffle(trials)
        decisions.append([pruner.reason_to_stop(a, comparable(a, trials)) for a in asking])
    assert decisions[0] == decisions[1] == decisions[2]
    assert decisions[0][0] is not None  # the dominated one is stopped...
    assert decisions[0][2] is None  # ...and the one ahead of everyone goes on


def test_baselines_are_never_pruned_and_search_trials_are_asked() -> None:
    spec = parse_spec(
        {"name": "p", "train": TINY_TRAIN, "n_trials": 5, "pruner": {"name": "mo-asha"}}
    )
    baseline = SimpleNamespace(user_attrs={ROLE: BASELINE})
    assert EpochReporter(baseline, spec, EPOCHS).pruner is None
    assert isinstance(EpochReporter(SimpleNamespace(user_attrs={}), spec, EPOCHS).pruner, MOASHA)
