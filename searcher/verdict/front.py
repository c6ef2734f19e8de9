"""What a study's trials mean against the baseline budget curve (`curve.py`): speedups, the
front and the picks.

Every number here is derived from the stored trials at read time, so it is the same whichever
worker computes it and however many baselines have finished.
"""

from __future__ import annotations

import math
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from searcher.study.record import device_of, epochs_of, is_baseline, searched
from searcher.verdict.curve import BudgetCurve

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
