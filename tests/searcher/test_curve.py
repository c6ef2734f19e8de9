"""The one budget curve and its rule beyond its ends, read by the search and the confirmation."""

from __future__ import annotations

import math
import random

import optuna
import pytest
from optuna.trial import create_trial

from searcher import BudgetCurve, derived_metrics
from searcher.verdict.statistics import SeedResult, Settings, summarise

# Issue 19's worked example: a schedule more accurate than the full budget, at 0.8 of its cost.
PLAIN = [(1.0, 0.50), (2.0, 0.60), (3.0, 0.65), (4.0, 0.66)]
CANDIDATE = (3.2, 0.68)


def test_a_schedule_above_the_best_point_gets_the_speedup_the_points_show() -> None:
    curve = BudgetCurve.from_points(PLAIN, PLAIN[-1])
    assert curve.cost_to_reach(0.68) == 4.0  # at least the last point's cost
    assert curve.effective_speedup(*CANDIDATE) == pytest.approx(1.25)  # never 6 / 3.2 = 1.875


def test_the_search_and_the_confirmation_read_the_worked_example_alike() -> None:
    attrs = {"role": "baseline", "device": "cpu", "epochs": 4}
    trials = [
        create_trial(values=list(p), user_attrs={**attrs, "budget_fraction": (i + 1) / 4})
        for i, p in enumerate(PLAIN)
    ]
    trials.append(create_trial(values=list(CANDIDATE), user_attrs={"role": "search"}))
    study = optuna.create_study(directions=["minimize", "maximize"])
    study.add_trials(trials)
    search = derived_metrics(study.trials[-1], study.trials)
    assert search["effective_speedup"] == pytest.approx(1.25)

    seeds = [SeedResult(s, *CANDIDATE, tuple(PLAIN), PLAIN[-1]) for s in range(3)]
    assert seeds[0].effective_speedup() == pytest.approx(1.25)
    summary = summarise(seeds, Settings())
    assert summary.effective_speedup.mean == pytest.approx(1.25)
    assert [row["effective_speedup"] for row in summary.per_seed] == pytest.approx([1.25] * 3)


def test_accuracy_is_interpolated_and_extended_along_the_end_segments() -> None:
    curve = BudgetCurve.from_points([(10, 0.70), (20, 0.80), (40, 0.85)], (40, 0.85))
    assert curve.accuracy_at(15) == pytest.approx(0.75)
    assert curve.accuracy_at(5) == pytest.approx(0.65)  # first segment, extended
    assert curve.accuracy_at(50) == pytest.approx(0.875)  # last segment, extended
    assert curve.cost_to_reach(0.825) == pytest.approx(30)
    assert curve.cost_to_reach(0.65) == pytest.approx(5)  # first segment, extended
    assert curve.cost_to_reach(0.875) == 40  # not 50: above the best point, a lower bound


def test_curve_is_made_non_decreasing_and_keeps_the_better_of_a_tie() -> None:
    curve = BudgetCurve.from_points([(10, 0.70), (10, 0.74), (20, 0.72), (30, 0.80)], (30, 0.8))
    assert curve.accuracies == (0.74, 0.74, 0.80)
    assert curve.cost_to_reach(0.90) == 30
    flat = BudgetCurve.from_points([(10, 0.70), (20, 0.70)], (20, 0.70))
    assert flat.cost_to_reach(0.75) == 20  # a flat end never makes the needed cost unbounded
    assert flat.accuracy_at(5) == 0.70 and flat.cost_to_reach(0.60) == 0.0
    assert flat.effective_speedup(5.0, 0.60) is None  # needs no cost: no ratio


def test_a_one_point_curve_reads_its_point_and_what_one_point_bounds() -> None:
    curve = BudgetCurve.from_points([(40.0, 0.85)], (40.0, 0.85))
    assert curve.accuracy_at(40.0) == 0.85 and curve.accuracy_at(30.0) == 0.85
    assert curve.cost_to_reach(0.90) == 40.0 and curve.cost_to_reach(0.80) is None
    assert curve.effective_speedup(20.0, 0.90) == 2.0


def _old_extended(points: list[tuple[float, float]], cost: float) -> float:
    """The confirmation's earlier reading of a cost: linear, end segments extended."""
    i = min(max(sum(c < cost for c, _ in points), 1), len(points) - 1)
    (c0, a0), (c1, a1) = points[i - 1], points[i]
    return a0 + (a1 - a0) * (cost - c0) / (c1 - c0)


def test_the_verdict_statistic_reads_the_curve_as_before() -> None:
    rng = random.Random(0)
    for _ in range(500):
        costs = sorted(rng.sample(range(5, 100), 4))
        accuracies = sorted(rng.uniform(0.3, 0.9) for _ in costs)
        points = [(float(c), a) for c, a in zip(costs, accuracies)]
        curve = BudgetCurve.from_points(points, points[-1])
        cost = rng.uniform(1, 130)
        assert curve.accuracy_at(cost) == pytest.approx(_old_extended(points, cost))


def _concave(rng: random.Random):
    """A random concave, increasing accuracy against cost: a - b exp(-c / scale)."""
    top, drop, scale = rng.uniform(0.6, 0.95), rng.uniform(0.2, 0.5), rng.uniform(5, 60)

    def accuracy(cost: float) -> float:
        return top - drop * math.exp(-cost / scale)

    def cost_for(a: float) -> float:  # inf where it is never reached
        return -scale * math.log((top - a) / drop) if a < top else math.inf

    return accuracy, cost_for


def test_every_read_beyond_the_ends_is_on_the_schedule_s_unfavourable_side() -> None:
    # On exact points of a concave curve: the plain model is never credited with less accuracy
    # than it reaches, nor with needing more cost than it needs, beyond either end.
    rng = random.Random(1)
    for _ in range(500):
        accuracy, cost_for = _concave(rng)
        costs = sorted(rng.sample(range(10, 80), 3))
        points = [(float(c), accuracy(c)) for c in costs]
        curve = BudgetCurve.from_points(points, points[-1])
        for cost in (rng.uniform(0.5, costs[0]), rng.uniform(costs[-1], 200)):
            assert curve.accuracy_at(cost) >= accuracy(cost) - 1e-12
        for a in (rng.uniform(points[-1][1], 1.0), rng.uniform(0.0, points[0][1])):
            needed = curve.cost_to_reach(a)
            assert needed is not None and needed <= max(cost_for(a), 0.0) + 1e-9
