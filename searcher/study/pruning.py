"""Multi-objective early stopping: stop a search trial whose (cost, accuracy) after an epoch
says it will not reach the front.

Optuna cannot prune a multi-objective study (`trial.report` and `trial.should_prune` raise), so
each trial writes its partial result after every epoch as a user attribute (`PARTIAL`) and the
objective raises `optuna.TrialPruned` itself. A pruner is one method, `reason_to_stop`, on
curves read from the storage: the decision is the same whichever worker asks.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable
from typing import Any, Protocol

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives import TrainResult
from searcher.study.record import PARTIAL, is_baseline, searched
from searcher.study.spec import DominancePruner, MOASHAPruner, StudySpec
from searcher.study.storage import set_user_attrs

Point = tuple[float, float]  # (cost, accuracy): cost minimised, accuracy maximised


@dataclasses.dataclass(frozen=True)
class Curve:
    """A trial's partial results: (cost, accuracy) after epochs 1, 2, ... of `planned_epochs`."""

    number: int
    planned_epochs: int
    points: tuple[tuple[float, float | None], ...]
    complete: bool = False

    @property
    def epoch(self) -> int:
        return len(self.points)

    def at(self, epoch: int) -> Point | None:
        """The point after `epoch`; None when the trial has not got there or was not scored."""
        if not 0 < epoch <= len(self.points) or self.points[epoch - 1][1] is None:
            return None
        return self.points[epoch - 1]  # type: ignore[return-value]


def curve_of(trial: FrozenTrial) -> Curve | None:
    partial = trial.user_attrs.get(PARTIAL)
    if not partial:
        return None
    points = tuple((p["cost"], p["val_accuracy"]) for p in partial["points"])
    return Curve(
        trial.number, partial["planned_epochs"], points, trial.state == TrialState.COMPLETE
    )


def _dominates(q: Point, p: Point, margin: float = 0.0) -> bool:
    """q is at most as costly as p and at least `margin` more accurate (and not the same)."""
    return q[0] <= p[0] and q[1] >= p[1] + margin and q != p


class Pruner(Protocol):
    def reason_to_stop(self, trial: Curve, others: list[Curve]) -> str | None:
        """Why `trial` should stop after its last epoch, or None to go on. `others`: the
        study's other curves with the same planned epochs (completed, pruned and running)."""


class Dominance:
    def __init__(self, spec: DominancePruner) -> None:
        self.spec = spec

    def reason_to_stop(self, trial: Curve, others: list[Curve]) -> str | None:
        s, epoch = self.spec, trial.epoch
        point = trial.at(epoch)
        done = [c for c in others if c.complete]
        if point is None or epoch < s.min_epoch or len(done) < s.min_completed:
            return None  # warm-up
        margin = s.margin_pp / 100
        by = sorted(
            c.number
            for c in done
            if (q := c.at(epoch)) is not None and _dominates(q, point, margin)
        )
        if len(by) < s.min_dominating:
            return None
        return (
            f"dominance: after epoch {epoch} ({point[0]:.4g}, {100 * point[1]:.2f}%) "
            f"{len(by)} completed trials were as cheap and {s.margin_pp:g}+ points more "
            f"accurate (trials {', '.join(map(str, by[:5]))}{', ...' if len(by) > 5 else ''})"
        )


def rungs(min_epoch: int, eta: float, planned_epochs: int) -> list[int]:
    """MO-ASHA's rungs: epochs min_epoch * eta^k before the last epoch."""
    out, r = [], float(min_epoch)
    while round(r) < planned_epochs:
        if round(r) not in out:
            out.append(round(r))
        r *= eta
    return out


def _epsilon_net(front: list[tuple[int, Point]], spans: Point) -> list[int]:
    """The front's trial numbers in epsilon-net order: the most accurate first, then each time
    the point farthest from those already taken (distances in units of the rung's range)."""

    def distance(a: Point, b: Point) -> float:
        return math.hypot((a[0] - b[0]) / spans[0], (a[1] - b[1]) / spans[1])

    rest = sorted(front)  # by trial number: ties go to the earlier trial
    first = max(rest, key=lambda item: (item[1][1], -item[1][0], -item[0]))
    taken, rest = [first], [item for item in rest if item is not first]
    while rest:
        far = max(rest, key=lambda item: min(distance(item[1], t[1]) for t in taken))
        taken.append(far)
        rest.remove(far)
    return [number for number, _ in taken]


def nondominated_order(points: list[tuple[int, Point]]) -> list[int]:
    """Trial numbers best first: front after front (non-dominated sorting), each front in
    epsilon-net order."""
    spans = tuple(
        (max(p[i] for _, p in points) - min(p[i] for _, p in points)) or 1.0 for i in (0, 1)
    )
    order: list[int] = []
    remaining = list(points)
    while remaining:
        front = [a for a in remaining if not any(_dominates(b[1], a[1]) for b in remaining)]
        order += _epsilon_net(front, spans)  # type: ignore[arg-type]
        remaining = [a for a in remaining if a not in front]
    return order


class MOASHA:
    """Ties inside a front are broken by an epsilon-net, as Syne Tune's `NonDominatedPriority`
    does, not by crowding distance: a rung's front is often 2 or 3 points, where crowding
    distance ranks both ends infinitely far and says nothing about the rest, while the
    epsilon-net keeps the survivors spread along the front (each pick is the point farthest from
    those kept). Unlike Syne Tune, the net starts at the front's most accurate point, not a
    random one, so every worker decides alike, and distances are in units of the rung's range,
    so that FLOPs (about 1e12) do not swamp accuracy."""

    def __init__(self, spec: MOASHAPruner) -> None:
        self.spec = spec

    def reason_to_stop(self, trial: Curve, others: list[Curve]) -> str | None:
        s, epoch = self.spec, trial.epoch
        point = trial.at(epoch)
        if point is None or epoch not in rungs(s.min_epoch, s.eta, trial.planned_epochs):
            return None
        reached = [(c.number, p) for c in others if (p := c.at(epoch)) is not None]
        order = nondominated_order([*reached, (trial.number, point)])
        rank = order.index(trial.number)
        if rank / len(order) <= 1 / s.eta:  # as Syne Tune's MOASHA: rank quantile within 1/eta
            return None
        return (
            f"mo-asha: ranked {rank + 1} of the {len(order)} trials at the rung of epoch "
            f"{epoch} ({point[0]:.4g}, {100 * point[1]:.2f}%), outside the top 1/{s.eta:g}"
        )


def make_pruner(spec: StudySpec) -> Pruner | None:
    if isinstance(spec.pruner, DominancePruner):
        return Dominance(spec.pruner)
    if isinstance(spec.pruner, MOASHAPruner):
        return MOASHA(spec.pruner)
    return None


# Trials whose curves a decision reads (failed ones are retried as new trials).
_LIVE = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)


def comparable(trial: Curve, trials: Iterable[FrozenTrial]) -> list[Curve]:
    """The other search trials' (and baselines') curves with the same planned epochs."""
    curves = (curve_of(t) for t in searched(trials) if t.number != trial.number)
    return [c for c in curves if c is not None and c.planned_epochs == trial.planned_epochs]


class EpochReporter:
    """The objective's `on_epoch`: stores the partial result after each epoch and asks the
    pruner (never for a baseline); `reason` says why it stopped the trial."""

    def __init__(self, trial: optuna.Trial, spec: StudySpec, planned_epochs: int) -> None:
        self.trial = trial
        self.objective = spec.objective
        self.pruner = None if is_baseline(trial) else make_pruner(spec)
        self.planned_epochs = planned_epochs
        self.points: list[dict[str, Any]] = []
        self.reason: str | None = None

    def __call__(self, epoch: int, so_far: TrainResult) -> bool:
        cost = so_far.train_time_s if self.objective == "wall" else so_far.flops
        self.points.append({"epoch": epoch, "cost": cost, "val_accuracy": so_far.val_accuracy})
        partial = {"planned_epochs": self.planned_epochs, "points": self.points}
        set_user_attrs(self.trial, {PARTIAL: partial})
        if self.pruner is None or epoch >= self.planned_epochs:
            return False
        me = Curve(self.trial.number, self.planned_epochs, tuple(
            (p["cost"], p["val_accuracy"]) for p in self.points
        ))  # fmt: skip
        trials = self.trial.study.get_trials(deepcopy=False, states=_LIVE)
        self.reason = self.pruner.reason_to_stop(me, comparable(me, trials))
        return self.reason is not None
