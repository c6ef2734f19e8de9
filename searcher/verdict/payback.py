"""Does the answer pay for itself? The answer cost and the payback, from the stored trials.

    answer cost = the cost, in the study's objective unit (training only: evaluation and
                  warm-up excluded), of every run the answer needed (search, budget curve,
                  confirmation, pruned runs up to where they stopped) / the cost of one full
                  run: the mean of the confirmation's full-budget plain runs, else of its
                  plain runs' cost per step times the full budget's steps, else the search's
                  full baseline (said so when the search trains at a lower fidelity)
    saving      = 1 - 1 / (the confirmed winner's effective speedup)
    payback     = answer cost / saving: the trainings of the same model on the same data after
                  which the schedule has saved what finding it cost; none without a confirmed win

The payback's interval comes from the effective speedup's 95% interval, its low end floored at
the `min_saving` the verdict tested (a confirmed win saves at least that much).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives import ConfigError
from searcher.study.confirmation_runs import confirmation_runs, confirmation_study
from searcher.study.pruning import curve_of
from searcher.study.record import (
    budget_fraction,
    candidate_of,
    is_baseline,
    is_confirm,
    is_stopped_early,
    stored_config,
)
from searcher.study.search import load_study_spec
from searcher.verdict.confirmation import full_cost_of, stored_verdict


def run_cost(trial: FrozenTrial) -> float:
    """What a trial's training cost: a completed run's measured cost, a stopped one's up to
    where it stopped; nothing for a run that failed or never ran (no cost was recorded)."""
    if trial.state == TrialState.COMPLETE and trial.values is not None:
        return trial.values[0]
    if trial.state == TrialState.PRUNED and is_stopped_early(trial):
        curve = curve_of(trial)
        return curve.points[-1][0] if curve is not None and curve.points else 0.0
    return 0.0


def full_run_cost(trials: list[FrozenTrial]) -> tuple[float, str] | None:
    """The cost of one full run and where it comes from; None before there is one."""
    done = [t for t in trials if t.state == TrialState.COMPLETE and t.values is not None]
    plain = [t for t in done if is_confirm(t) and candidate_of(t) is None]
    full = [t.values[0] for t in plain if budget_fraction(t) == 1.0]
    if full:
        return sum(full) / len(full), "the confirmation's full-budget runs"
    steps = [full_cost_of(t) for t in plain if (stored_config(t) or {}).get("step_fraction")]
    if steps:
        return sum(steps) / len(steps), "the confirmation's plain runs, per step"
    search = [t for t in done if is_baseline(t) and budget_fraction(t) == 1.0]
    if search:
        return search[0].values[0], "the search's full baseline"
    return None


def _at_search_fidelity(study: optuna.Study) -> bool:
    """Whether the search's full baseline trained less than the spec's full fidelity."""
    try:
        spec = load_study_spec(study)
    except ConfigError:
        return False
    return bool(spec.search_fidelity.overrides())


def confirmed_winner(verdicts: dict[int, dict[str, Any]]) -> int | None:
    """The confirmed win with the highest lower bound of its statistic; None without a win."""
    wins = {n: v for n, v in verdicts.items() if v.get("verdict") == "win"}
    if not wins:
        return None
    return max(wins, key=lambda n: wins[n]["statistic_pp"]["low"])


def _saving(speedup: float) -> float:
    return 1 - 1 / speedup


@dataclasses.dataclass(frozen=True)
class Payback:
    cost: float  # every run's cost, in the study's objective unit
    unit: float | None  # one full run's cost
    unit_source: str | None
    search_fidelity: bool = False  # the unit is a full run at the search's lower fidelity
    winner: int | None = None  # the confirmed winner's trial number
    # The saving is a lower bound: one plain run a seed (a read-point confirmation) shows only
    # that the plain model needs at least that run's cost where the winner beat it.
    at_least: bool = False
    saving: tuple[float, float, float] | None = None  # point, low, high
    trainings: tuple[float, float, float] | None = None  # point, from high saving, from low

    @property
    def answer_cost(self) -> float | None:
        return self.cost / self.unit if self.unit else None

    def text(self) -> str:
        if self.answer_cost is None:
            return "answer cost: n/a (no full-budget run yet); payback: none, no confirmed win"
        head = f"answer cost {self.answer_cost:.1f} full runs"
        if self.search_fidelity:
            head += " of the search's fidelity (a confirmation gives the full one)"
        if self.trainings is None or self.saving is None:
            return f"{head}; payback: none, no confirmed win"
        point, low, high = self.trainings
        s_point, s_low, s_high = self.saving
        if self.at_least:
            return (
                f"{head}; payback at most {point:.0f} trainings [{low:.0f}, {high:.0f}] (trial "
                f"{self.winner} saves at least {s_point:.0%} [{s_low:.0%}, {s_high:.0%}] of a "
                "training: one plain run a seed bounds the saving from below)"
            )
        return (
            f"{head}; payback {point:.0f} trainings [{low:.0f}, {high:.0f}] (trial "
            f"{self.winner} saves {s_point:.0%} [{s_low:.0%}, {s_high:.0%}] of a training)"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "answer_cost_full_runs": self.answer_cost,
            "cost": self.cost,
            "full_run_cost": self.unit,
            "full_run_from": self.unit_source,
            "full_run_at_search_fidelity": self.search_fidelity,
            "winner": self.winner,
            "saving_is_a_lower_bound": self.at_least,
            "saving": list(self.saving) if self.saving else None,
            "payback_trainings": list(self.trainings) if self.trainings else None,
            "text": self.text(),
        }


def payback(study: optuna.Study) -> Payback:
    """The study's answer cost and payback, computed now from its stored trials."""
    trials = study.get_trials(deepcopy=False)
    runs_study = confirmation_study(study)
    if runs_study is not None and runs_study.study_name != study.study_name:
        trials = trials + confirmation_runs(study)  # kept in the sibling study
    cost = sum(run_cost(t) for t in trials)
    unit = full_run_cost(trials)
    base = Payback(cost, *(unit or (None, None)))
    if base.unit_source == "the search's full baseline":
        base = dataclasses.replace(base, search_fidelity=_at_search_fidelity(study))
    verdicts = stored_verdict(study).candidates
    winner = confirmed_winner(verdicts)
    if winner is None or base.answer_cost is None:
        return base
    min_saving = stored_verdict(study).settings["min_saving"]
    speedup = verdicts[winner].get("effective_speedup")
    if speedup is None:  # undefined on some seed: what the verdict itself guarantees
        point = low = high = min_saving
    else:
        point = _saving(speedup["mean"])
        high = _saving(speedup["high"])
        low = min(max(_saving(speedup["low"]), min_saving), point)
    if point <= 0:  # a win by its statistic whose mean speedup says none: no payback to promise
        return dataclasses.replace(base, winner=winner)
    answer = base.answer_cost
    trainings = (answer / point, answer / high, answer / low if low > 0 else float("inf"))
    at_least = verdicts[winner].get("plain_steps") is not None
    return dataclasses.replace(
        base, winner=winner, saving=(point, low, high), trainings=trainings, at_least=at_least
    )
