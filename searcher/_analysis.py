"""What a study's trials mean: the baseline budget curve, speedups, the front and the picks.

Every number here is derived from the stored trials at read time, so it is the same whichever
worker computes it and however many baselines have finished.
"""

from __future__ import annotations

import bisect
import dataclasses
import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from searcher._record import budget_fraction, device_of, epochs_of, is_baseline, searched


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
    by cost, accuracy made non-decreasing (more budget can always stop where less did)."""

    costs: tuple[float, ...]
    accuracies: tuple[float, ...]
    full_cost: float  # the full-budget baseline
    full_accuracy: float

    @classmethod
    def from_points(
        cls, points: list[tuple[float, float]], full: tuple[float, float]
    ) -> BudgetCurve:
        """`points`: (cost, accuracy) of the plain model at several budgets; `full`: the one
        at the whole budget."""
        costs, accuracies = monotone_points(points)
        return cls(tuple(costs), tuple(accuracies), full[0], full[1])

    @classmethod
    def from_trials(cls, baseline_trials: list[FrozenTrial]) -> BudgetCurve | None:
        done = [t for t in baseline_trials if t.state == TrialState.COMPLETE]
        full = [t for t in done if budget_fraction(t) == 1.0]
        if not done or not full:
            return None
        return cls.from_points([(t.values[0], t.values[1]) for t in done], tuple(full[0].values))

    def accuracy_at(self, cost: float) -> float | None:
        """The plain model's accuracy at `cost`, interpolated; None outside the curve."""
        if not self.costs[0] <= cost <= self.costs[-1]:
            return None
        i = bisect.bisect_left(self.costs, cost)
        if self.costs[i] == cost:
            return self.accuracies[i]
        c0, c1 = self.costs[i - 1], self.costs[i]
        a0, a1 = self.accuracies[i - 1], self.accuracies[i]
        return a0 + (a1 - a0) * (cost - c0) / (c1 - c0)

    def cost_to_reach(self, accuracy: float) -> float | None:
        """Interpolated cost at which the curve reaches `accuracy`; None outside its range (below
        its cheapest point or above its best, where the curve says nothing)."""
        if accuracy < self.accuracies[0] or accuracy > self.accuracies[-1]:
            return None
        i = bisect.bisect_left(self.accuracies, accuracy)
        if self.accuracies[i] == accuracy or i == 0:
            return self.costs[i]
        a0, a1 = self.accuracies[i - 1], self.accuracies[i]
        c0, c1 = self.costs[i - 1], self.costs[i]
        return c0 + (c1 - c0) * (accuracy - a0) / (a1 - a0)

    def effective_speedup(self, cost: float, accuracy: float) -> float | None:
        """Cost the plain model needs for `accuracy` / `cost`. Above 1: the schedule beats
        training less. A trial more accurate than every baseline but cheaper than the full one
        gets the full one's cost as a lower bound."""
        needed = self.cost_to_reach(accuracy)
        if needed is None and accuracy > self.accuracies[-1] and cost < self.costs[-1]:
            needed = self.costs[-1]
        return needed / cost if needed is not None and cost > 0 else None


DERIVED = ("speedup", "accuracy_change_pp", "effective_speedup", "beats_curve")


def baselines(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in trials if is_baseline(t)]


def curve_for(device: str | None, trials: list[FrozenTrial]) -> BudgetCurve | None:
    """The budget curve measured on `device` when there is one: speedups compare runs on the
    same kind of machine."""
    same = [t for t in baselines(trials) if device_of(t) == device]
    return BudgetCurve.from_trials(same) or BudgetCurve.from_trials(baselines(trials))


def derived_metrics(trial: FrozenTrial, trials: list[FrozenTrial]) -> dict[str, Any]:
    """What the trial's measured cost and accuracy mean against the budget curve of `trials`'
    baselines (on its device when there is one), computed now: speedup and accuracy change
    against the full baseline, effective speedup against the curve, and whether it beats the
    curve. Every reader (show, export, report, dashboard notes) computes them here."""
    curve = curve_for(device_of(trial), trials) if trial.values is not None else None
    if curve is None:
        return dict.fromkeys(DERIVED, None)
    cost, accuracy = trial.values
    effective = curve.effective_speedup(cost, accuracy)
    return {
        "speedup": curve.full_cost / cost if cost > 0 else None,
        "accuracy_change_pp": 100 * (accuracy - curve.full_accuracy),
        "effective_speedup": effective,
        "beats_curve": not is_baseline(trial) and effective is not None and effective > 1.0,
    }


def completed(study: optuna.Study) -> list[FrozenTrial]:
    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))


def pareto_front(trials: list[FrozenTrial]) -> list[FrozenTrial]:
    """Completed trials that no other completed trial beats on both cost and accuracy;
    confirmation runs are not part of the search and never on its front."""
    done = [t for t in searched(trials) if t.state == TrialState.COMPLETE and t.values is not None]
    front = [
        t
        for t in done
        if not any(
            o.values[0] <= t.values[0] and o.values[1] >= t.values[1] and o.values != t.values
            for o in done
        )
    ]
    return sorted(front, key=lambda t: t.values[0])


class PickError(ValueError):
    """No trial meets the export rule."""


def pick(study: optuna.Study, rule: str) -> FrozenTrial:
    """The trial an export `rule` selects: fastest-within:PP, most-accurate, knee or trial:N."""
    trials = searched(study.get_trials(deepcopy=False))
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    if not done:
        raise PickError(f"study '{study.study_name}' has no completed trial yet; run it first")
    kind, _, argument = rule.partition(":")
    if kind == "trial":
        try:
            number = int(argument)
        except ValueError:
            raise PickError(f"rule {rule!r}: trial:N needs a trial number") from None
        match = [t for t in done if t.number == number]
        if not match:
            raise PickError(f"trial {number} of '{study.study_name}' is not a completed trial")
        return match[0]
    if kind == "most-accurate":
        return max(done, key=lambda t: (t.values[1], -t.values[0]))
    if kind == "knee":
        return _knee(pareto_front(done))
    if kind == "fastest-within":
        try:
            points = float(argument) if argument else 0.5
        except ValueError:
            raise PickError(f"rule {rule!r}: fastest-within:PP needs a number of points") from None
        return _fastest_within(study.study_name, trials, done, points)
    raise PickError(f"unknown rule {rule!r}; use fastest-within:PP, most-accurate, knee or trial:N")


def _fastest_within(name, trials, done, points: float) -> FrozenTrial:
    candidates = []
    for t in done:
        if is_baseline(t):
            continue
        m = derived_metrics(t, trials)
        if m["beats_curve"] and m["accuracy_change_pp"] >= -points - 1e-9:  # float noise
            candidates.append(t)
    if candidates:
        return min(candidates, key=lambda t: t.values[0])
    # Say what does as well: the cheapest baseline within the same accuracy margin.
    curve = BudgetCurve.from_trials(baselines(trials))
    hint = ""
    if curve is not None:
        within = [
            b
            for b in baselines(done)
            if 100 * (b.values[1] - curve.full_accuracy) >= -points - 1e-9
        ]
        if within:
            best = min(within, key=lambda t: t.values[0])
            hint = (
                f"; the plain model at {epochs_of(best)} epochs "
                f"(trial {best.number}) does as well: train that, or pick with most-accurate/knee"
            )
    raise PickError(
        f"no trial of '{name}' beats the baseline budget curve within {points:g} points "
        f"of the full baseline{hint}"
    )


def _knee(front: list[FrozenTrial]) -> FrozenTrial:
    """The front's point farthest from the line joining its two ends, in normalised units."""
    if len(front) <= 2:
        return max(front, key=lambda t: t.values[1])
    costs = [t.values[0] for t in front]
    accs = [t.values[1] for t in front]
    c_span = (max(costs) - min(costs)) or 1.0
    a_span = (max(accs) - min(accs)) or 1.0
    pts = [((c - min(costs)) / c_span, (a - min(accs)) / a_span) for c, a in zip(costs, accs)]
    (x0, y0), (x1, y1) = pts[0], pts[-1]
    length = math.hypot(x1 - x0, y1 - y0) or 1.0
    distances = [abs((x1 - x0) * (y0 - y) - (x0 - x) * (y1 - y0)) / length for x, y in pts]
    return front[max(range(len(front)), key=distances.__getitem__)]
