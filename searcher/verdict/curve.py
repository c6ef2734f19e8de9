"""The plain model's budget curve: its best accuracy within a cost, from (cost, accuracy) points.

One class, one rule beyond its ends, read alike by the search (derived metrics, picks), the
confirmation (each seed's verdict statistic and effective speedup, from its plain runs at several
budgets or from one read-point run), the report, the dashboard notes and the benchmarks.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from collections.abc import Sequence

from optuna.trial import FrozenTrial, TrialState

from searcher.study.record import budget_fraction


def monotone_points(points: list[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """(cost, accuracy) points as costs and accuracies sorted by cost, one point per cost (the
    best of a tie) and accuracy made non-decreasing: more budget can always stop where less
    did, so the plain model's best within a cost is what it must be compared with."""
    costs: list[float] = []
    accuracies: list[float] = []
    best = -math.inf
    for cost, accuracy in sorted(points):
        best = max(best, accuracy)
        if costs and cost == costs[-1]:
            accuracies[-1] = best
        else:
            costs.append(cost)
            accuracies.append(best)
    return costs, accuracies


@dataclasses.dataclass(frozen=True)
class BudgetCurve:
    """The plain model's best accuracy reachable within a cost: (cost, accuracy) points sorted
    by cost, accuracy made non-decreasing, linear between points.

    Beyond its ends every read gives the value least favourable to a schedule:

    - `accuracy_at(cost)` (the verdict's statistic: more plain accuracy is the conservative
      side) extends the end segments. Accuracy against budget is concave, and a concave curve
      lies below its chords extended, so the extension credits the plain model with at least
      what it would reach. Past the last point the points alone bound nothing from above, so
      this is where the concave shape is needed; the verdict reads there only within
      1 / (1 - min_saving) of a candidate's cost.
    - `cost_to_reach(accuracy)` (effective speedup: less needed cost is the conservative side)
      never exceeds the dearest point's cost. Above the best point the points show only that
      the plain model needs at least the last point's cost, so that is what it returns: a
      lower bound. Extending the last segment would divide the gap by its slope, a nearly flat
      difference of two noisy accuracies, and claim any cost at all: plain points (1, 0.50),
      (2, 0.60), (3, 0.65), (4, 0.66) and a schedule at (3.2, 0.68) read 4 / 3.2 = 1.25x, never
      the 6 / 3.2 = 1.875x of the extended segment. Below the cheapest point's accuracy it
      extends the first segment (no further than cost 0), which for a concave curve reaches
      each accuracy no later than the curve does, and never costs more than the first point,
      which the points show is enough.

    A curve of one point (c_p, a_p), such as a confirmation's one read-point plain run, has no
    segment to extend, so it is read by the same rule with what one point bounds: at or below
    c_p the plain model reaches at least a_p (more budget can stop where less did); beyond c_p
    the chord from (0, 0) through the point, extended, which lies above a concave curve that
    starts at or above 0. The cost to reach an accuracy: at or above a_p, c_p (a lower bound);
    below it, None: a concave curve may get there at almost no cost, so one point shows no
    speedup there (the chord from (0, 0) would be an upper bound, and print a speedup above 1
    for a schedule that loses).
    """

    costs: tuple[float, ...]
    accuracies: tuple[float, ...]
    full_cost: float  # the full-budget baseline's (measured, or from a plain run's cost a step)
    full_accuracy: float | None  # None where the full budget was not trained

    @classmethod
    def from_points(
        cls, points: Sequence[tuple[float, float]], full: tuple[float, float | None]
    ) -> BudgetCurve:
        """`points`: (cost, accuracy) of the plain model at one budget or several; `full`: the
        whole budget's (its accuracy None where it was not trained)."""
        costs, accuracies = monotone_points(list(points))
        return cls(tuple(costs), tuple(accuracies), full[0], full[1])

    @classmethod
    def from_trials(cls, baseline_trials: list[FrozenTrial]) -> BudgetCurve | None:
        """The curve of the completed baseline trials; None without a completed full one."""
        done = [t for t in baseline_trials if t.state == TrialState.COMPLETE]
        full = [t for t in done if budget_fraction(t) == 1.0]
        if not done or not full:
            return None
        return cls.from_points([(t.values[0], t.values[1]) for t in done], tuple(full[0].values))

    def accuracy_at(self, cost: float) -> float:
        """The plain model's accuracy at `cost`: interpolated, the end segments extended beyond
        the ends (a one-point curve: its accuracy at or below its cost, the chord beyond)."""
        costs, accuracies = self.costs, self.accuracies
        i = bisect.bisect_left(costs, cost)
        if i < len(costs) and costs[i] == cost:
            return accuracies[i]
        if len(costs) < 2:
            c_p, a_p = costs[0], accuracies[0]
            if cost <= c_p:
                return a_p
            if c_p <= 0:  # no chord from (0, 0): one point at no cost bounds nothing above it
                raise ValueError("a one-point plain curve needs a positive cost")
            return a_p * cost / c_p
        i = min(max(i, 1), len(costs) - 1)  # the segment, or the end segment to extend
        c0, c1, a0, a1 = costs[i - 1], costs[i], accuracies[i - 1], accuracies[i]
        return a0 + (a1 - a0) * (cost - c0) / (c1 - c0)

    def cost_to_reach(self, accuracy: float) -> float | None:
        """The cost at which the plain model reaches `accuracy`: interpolated (the cheapest
        cost of a flat stretch); above the best point the last point's cost (a lower bound);
        below the cheapest point the first segment extended, at least 0. None below a one-point
        curve."""
        costs, accuracies = self.costs, self.accuracies
        if accuracy > accuracies[-1]:
            return costs[-1]
        i = bisect.bisect_left(accuracies, accuracy)
        if accuracies[i] == accuracy:
            return costs[i]
        if i == 0:
            if len(costs) < 2:
                return None
            i = 1
        c0, c1, a0, a1 = costs[i - 1], costs[i], accuracies[i - 1], accuracies[i]
        if a1 == a0:  # a flat first segment, extended: reached at no cost at all
            return 0.0
        return max(0.0, c0 + (c1 - c0) * (accuracy - a0) / (a1 - a0))

    def effective_speedup(self, cost: float, accuracy: float) -> float | None:
        """Cost the plain model needs for `accuracy` / `cost`. Above 1: the schedule beats
        training less. None for a free trial or where the needed cost is 0."""
        needed = self.cost_to_reach(accuracy)
        return needed / cost if needed is not None and needed > 0 and cost > 0 else None


def plain_line(baseline_trials: list[FrozenTrial]) -> tuple[list[float], list[float]]:
    """Where a figure draws the plain model, as (costs, accuracies): its budget curve (the best
    accuracy within a cost, as speedups read it), or the measured points sorted by cost until
    the full budget has completed."""
    curve = BudgetCurve.from_trials(baseline_trials)
    if curve is not None:
        return list(curve.costs), list(curve.accuracies)
    points = sorted(t.values for t in baseline_trials if t.state == TrialState.COMPLETE)
    return [cost for cost, _ in points], [accuracy for _, accuracy in points]
