"""Does a schedule beat training less? The statistics of a confirmation, on paired seeds.

For each fresh seed s, the candidate schedule and the plain model at a few budgets are trained
with that seed (same initialisation, data order and augmentation) and scored on the test split.
Per seed, the plain model's points form a budget curve C_s (`curve.BudgetCurve`, the search's
curve too): accuracy against cost, piecewise linear, read beyond its ends on the side least
favourable to the schedule (its docstring says how).

The test statistic of seed s is the candidate's accuracy minus that of the plain model given
1 / (1 - min_saving) of the candidate's cost:

    d_s = a_s - C_s(c_s / (1 - min_saving))

d_s > 0 says the plain model needs more than that much extra cost to match the candidate: the
schedule saves at least `min_saving` of the plain model's cost at equal accuracy. A schedule
identical to the plain model has d_s < 0 however its timing falls, unless the clock errs by more
than `min_saving`: that is what `min_saving` is for.

The sequential procedure looks after every seed from `min_seeds` to `max_seeds` and splits
alpha evenly over those looks (Bonferroni): at each look it computes a one-sided Student-t bound
at level alpha / looks on each side. The false-win rate over all looks is at most alpha.

With `plain_runs="read-point"` each seed trains the plain model once, at a number of steps just
above where d_s reads its curve. That one point (c_p, a_p) is read conservatively: at or below
c_p the plain model reaches at least a_p (more budget can stop where less did), beyond it the
chord from (0, 0) through the point, extended, which lies above a concave curve (BudgetCurve's
rule for one point).
`futility` stops a candidate, undecided, once a win is out of reach at `max_seeds`: a stop that
never declares anything can only lower the false-win rate.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence

from scipy import stats

from searcher.verdict.curve import BudgetCurve

WIN, LOSS, UNDECIDED = "win", "loss", "undecided"
MIN_SEEDS = 3
MAX_SEEDS = 8
ALPHA = 0.05
MIN_SAVING = 0.05
BUDGETS, READ_POINT = "budgets", "read-point"  # how a confirmation places its plain runs
# Confirmations stored before these settings existed ran this way.
LEGACY_SETTINGS = {"plain_runs": BUDGETS, "futility": False}


@dataclasses.dataclass(frozen=True)
class Settings:
    """How a confirmation decides; stored with the study on the first confirmation, since
    changing them after seeing results would make the error rate a fiction."""

    min_seeds: int = MIN_SEEDS
    max_seeds: int = MAX_SEEDS
    alpha: float = ALPHA
    min_saving: float = MIN_SAVING
    # BUDGETS: the plain model at the whole-epoch budgets around the read point and the full
    # one; READ_POINT: once, in steps, just above the read point (see the module's docstring).
    plain_runs: str = READ_POINT
    futility: bool = True  # stop a candidate undecided once a win is out of reach

    def __post_init__(self) -> None:
        if self.plain_runs not in (BUDGETS, READ_POINT):
            raise ValueError(f"plain_runs must be {BUDGETS} or {READ_POINT}, got {self.plain_runs}")
        if not 2 <= self.min_seeds <= self.max_seeds:
            raise ValueError(
                f"seeds: need 2 <= min_seeds ({self.min_seeds}) <= max_seeds ({self.max_seeds})"
            )
        if not 0 < self.alpha < 0.5:
            raise ValueError(f"alpha must be in (0, 0.5), got {self.alpha}")
        if not 0 <= self.min_saving < 1:
            raise ValueError(f"min_saving must be in [0, 1), got {self.min_saving}")

    @property
    def looks(self) -> int:
        return self.max_seeds - self.min_seeds + 1

    @property
    def alpha_per_look(self) -> float:
        return self.alpha / self.looks

    def t_critical(self, n: int) -> float:
        """The one-sided Student-t quantile a look at `n` seeds uses."""
        return _t_quantile(1 - self.alpha_per_look, n - 1)


@functools.lru_cache(maxsize=4096)
def _t_quantile(p: float, df: int) -> float:
    return float(stats.t.ppf(p, df))


@dataclasses.dataclass(frozen=True)
class SeedResult:
    """The paired numbers of one seed: the candidate's (cost, accuracy), the plain model's
    points, and the full budget's cost (measured, or from a plain run's cost per step) and
    accuracy (None when the full budget was not trained)."""

    seed: int
    cost: float
    accuracy: float
    plain: tuple[tuple[float, float], ...]
    full: tuple[float, float | None]

    def curve(self) -> BudgetCurve:
        """The seed's plain model: its runs at several budgets, or its one read-point run."""
        return BudgetCurve.from_points(self.plain, self.full)

    def _plain_accuracy_at(self, cost: float) -> float:
        return self.curve().accuracy_at(cost)

    def statistic(self, min_saving: float) -> float:
        """d_s in accuracy points: the candidate's accuracy minus the plain model's at
        1 / (1 - min_saving) of the candidate's cost."""
        return 100 * (self.accuracy - self._plain_accuracy_at(self.cost / (1 - min_saving)))

    def margin_pp(self) -> float:
        """Accuracy above the plain model at the same cost, in points."""
        return 100 * (self.accuracy - self._plain_accuracy_at(self.cost))

    def effective_speedup(self) -> float | None:
        """Cost the plain model needs for the candidate's accuracy / the candidate's cost."""
        return self.curve().effective_speedup(self.cost, self.accuracy)


@dataclasses.dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def to_dict(self) -> dict[str, float]:
        return dataclasses.asdict(self)


def mean_interval(values: Sequence[float], confidence: float = 0.95) -> Interval:
    """Mean and two-sided Student-t interval (a zero-width one for a single value)."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return Interval(mean, mean, mean)
    half = _t_quantile(0.5 + confidence / 2, n - 1) * _sd(values) / math.sqrt(n)
    return Interval(mean, mean - half, mean + half)


def _sd(values: Sequence[float]) -> float:
    n = len(values)
    mean = sum(values) / n
    return math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


@dataclasses.dataclass(frozen=True)
class Look:
    """The decision after the first `n` seeds."""

    n: int
    verdict: str
    bound: Interval  # of d_s, at the look's Bonferroni level (one-sided on each side)
    more_seeds: int | None  # roughly how many more would decide, at the current mean and spread
    futile: bool = False  # undecided, and a win out of reach at max_seeds: stopped


def look(statistics: Sequence[float], settings: Settings) -> Look:
    """Win when the lower bound of mean d_s clears 0, loss when its upper bound is below 0."""
    n = len(statistics)
    mean = sum(statistics) / n
    sd = _sd(statistics)
    half = settings.t_critical(n) * sd / math.sqrt(n)
    bound = Interval(mean, mean - half, mean + half)
    if bound.low > 0:
        return Look(n, WIN, bound, 0)
    if bound.high < 0:
        return Look(n, LOSS, bound, 0)
    futile = (
        settings.futility and n < settings.max_seeds and _win_out_of_reach(mean, sd, n, settings)
    )
    return Look(n, UNDECIDED, bound, _seeds_to_decide(mean, sd, n, settings), futile)


def _win_out_of_reach(mean: float, sd: float, n: int, settings: Settings) -> bool:
    """Even a true mean one standard error above the one seen would, with the spread seen, not
    clear the win bound at `max_seeds`."""
    m = settings.max_seeds
    return mean + sd / math.sqrt(n) < settings.t_critical(m) * sd / math.sqrt(m)


def _seeds_to_decide(mean: float, sd: float, n: int, settings: Settings) -> int | None:
    """Seeds beyond `n` after which |mean| would clear the bound, if mean and sd stayed as they
    are (a rough guide, not a promise); None when not within a few hundred."""
    if mean == 0:
        return None
    for total in range(n + 1, 500):
        if abs(mean) > settings.t_critical(total) * sd / math.sqrt(total):
            return total - n
    return None


def sequential_verdict(statistics: Sequence[float], settings: Settings) -> Look | None:
    """Replay the looks over seeds in order: the first decided (or futile) look stops the
    procedure, else the last look so far. None before `min_seeds` seeds."""
    result = None
    for n in range(settings.min_seeds, min(len(statistics), settings.max_seeds) + 1):
        result = look(statistics[:n], settings)
        if result.verdict != UNDECIDED or result.futile:
            return result
    return result


def is_final(result: Look | None, settings: Settings) -> bool:
    return result is not None and (
        result.verdict != UNDECIDED or result.futile or result.n >= settings.max_seeds
    )


@dataclasses.dataclass(frozen=True)
class Summary:
    """What a confirmation says of one candidate, from its paired seeds."""

    seeds: tuple[int, ...]
    decision: Look | None
    statistic: Interval  # d_s, 95%
    margin_pp: Interval  # accuracy above the plain model at the same cost, 95%
    effective_speedup: Interval | None  # geometric mean and 95% interval; None if undefined
    time_ratio: Interval  # candidate cost / full-budget cost (measured or from cost per step)
    accuracy_change_pp: Interval | None  # candidate accuracy - full-budget accuracy
    per_seed: tuple[dict[str, float | int | None], ...]

    @property
    def verdict(self) -> str:
        return self.decision.verdict if self.decision is not None else UNDECIDED

    def to_dict(self) -> dict:
        out = {
            "verdict": self.verdict,
            "seeds": list(self.seeds),
            "decided_at_seeds": self.decision.n if self.decision else None,
            "bound_pp": self.decision.bound.to_dict() if self.decision else None,
            "more_seeds_to_decide": self.decision.more_seeds if self.decision else None,
            "futile": bool(self.decision and self.decision.futile),
            "statistic_pp": self.statistic.to_dict(),
            "margin_pp": self.margin_pp.to_dict(),
            "effective_speedup": self.effective_speedup.to_dict()
            if self.effective_speedup
            else None,
            "time_ratio": self.time_ratio.to_dict(),
            "accuracy_change_pp": self.accuracy_change_pp.to_dict()
            if self.accuracy_change_pp
            else None,
            "per_seed": list(self.per_seed),
        }
        return out


def summarise(results: Sequence[SeedResult], settings: Settings) -> Summary:
    """The verdict and intervals over `results` (seeds in the order they were planned)."""
    d = [r.statistic(settings.min_saving) for r in results]
    decision = sequential_verdict(d, settings)
    used = results[: decision.n] if decision is not None else results
    d = d[: len(used)]
    speedups = [r.effective_speedup() for r in used]
    effective = None
    if speedups and all(s is not None and s > 0 for s in speedups):
        logs = mean_interval([math.log(s) for s in speedups])
        effective = Interval(*(math.exp(v) for v in (logs.mean, logs.low, logs.high)))
    full_known = all(r.full[1] is not None for r in used)
    per_seed = tuple(
        {
            "seed": r.seed,
            "cost": r.cost,
            "test_accuracy": r.accuracy,
            "full_cost": r.full[0],
            "full_test_accuracy": r.full[1],
            "margin_pp": r.margin_pp(),
            "statistic_pp": s,
            "effective_speedup": e,
        }
        for r, s, e in zip(used, d, speedups)
    )
    return Summary(
        seeds=tuple(r.seed for r in used),
        decision=decision,
        statistic=mean_interval(d),
        margin_pp=mean_interval([r.margin_pp() for r in used]),
        effective_speedup=effective,
        time_ratio=mean_interval([r.cost / r.full[0] for r in used]),
        accuracy_change_pp=mean_interval([100 * (r.accuracy - r.full[1]) for r in used])
        if full_known
        else None,
        per_seed=per_seed,
    )
