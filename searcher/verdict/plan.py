"""What a confirmation trains: its candidates, the plain-model budgets each is compared with
(whole-epoch budgets or one read-point run in steps), its seeds, and its fixed settings."""

from __future__ import annotations

import dataclasses
import hashlib

import optuna
from optuna.trial import FrozenTrial, TrialState

from objectives import ConfigError
from searcher.study.record import (
    CONFIRM_SETTINGS_ATTR,
    FIRST_SEED_ATTR,
    budget_fraction,
    is_baseline,
    searched,
)
from searcher.study.search import CREATED_ATTR, baseline_fractions
from searcher.study.spec import StudySpec
from searcher.verdict.front import baselines, derived_metrics, pareto_front
from searcher.verdict.statistics import (
    LEGACY_SETTINGS,
    READ_POINT,
    Settings,
)

# Confirmations stored before each study had its own seeds used 1000, 1001, ... (still read so).
LEGACY_FIRST_SEED = 1000
# A read-point plain run trains this much more than where the statistic reads its curve, so
# that its measured cost usually lands above the read point despite the clock's noise.
PLACEMENT_MARGIN = 0.05


@dataclasses.dataclass(frozen=True)
class Run:
    """One confirmation training: the plain model at a budget fraction, or a candidate."""

    seed: int
    candidate: int | None = None  # the search trial's number; None: the plain model
    fraction: float | None = None  # the plain model's share of the epochs
    steps: float | None = None  # or its share of the full budget's steps (a read-point run)

    @property
    def key(self) -> str:
        if self.candidate is not None:
            what = f"trial {self.candidate}"
        elif self.steps is not None:
            what = f"plain steps {self.steps:.4f}"
        else:
            what = f"plain {self.fraction}"
        return f"seed {self.seed}: {what}"


@dataclasses.dataclass(frozen=True)
class Candidate:
    trial: FrozenTrial
    fractions: tuple[float, ...]  # the plain model's whole-epoch budgets it is compared with
    steps: float | None = None  # and the step share of its read-point plain run, if any

    @property
    def number(self) -> int:
        return self.trial.number

    def runs(self, seed: int) -> list[Run]:
        plain = [Run(seed, fraction=f) for f in self.fractions]
        if self.steps is not None:
            plain.append(Run(seed, steps=self.steps))
        return [Run(seed, self.number), *plain]


@dataclasses.dataclass(frozen=True)
class Plan:
    """What a confirmation trains: the candidates with their plain budgets, from which seed,
    under which settings (those of the study's first confirmation)."""

    candidates: list[Candidate]
    first_seed: int
    settings: Settings


def plan_confirmation(
    study: optuna.Study, spec: StudySpec, settings: Settings | None, top: int, numbers: list[int]
) -> Plan:
    """The confirmation of trials `numbers` (else the `top` of the front) under `settings`
    (None: the defaults), or under the stored ones for a study confirmed before."""
    settings = stored_settings(study, settings)
    candidates = choose_candidates(study, spec, settings, top, numbers)
    return Plan(candidates, first_seed(study), settings)


def first_seed(study: optuna.Study) -> int:
    """The study's first confirmation seed: its own, derived from its name and creation time
    (a pick that an earlier study's confirmation favoured is confirmed on seeds that one did not
    use); 1000 for studies confirmed before studies had their own."""
    stored = study.user_attrs.get(FIRST_SEED_ATTR)
    if stored is not None:
        return int(stored)
    if CONFIRM_SETTINGS_ATTR in study.user_attrs:
        return LEGACY_FIRST_SEED
    made = f"{study.study_name}/{study.user_attrs.get(CREATED_ATTR)}".encode()
    return 10_000 + int(hashlib.sha256(made).hexdigest()[:12], 16) % 1_000_000_000


def stored_settings(study: optuna.Study, settings: Settings | None) -> Settings:
    """The study's confirmation settings: those of its first confirmation (`confirm` stores
    them), refused if changed later, since a procedure's error rate holds only for settings
    fixed before the data. `settings` (None: the defaults) for a study not confirmed yet."""
    stored = study.user_attrs.get(CONFIRM_SETTINGS_ATTR)
    if stored is None:
        return settings or Settings()
    kept = Settings(**{**LEGACY_SETTINGS, **stored})
    if settings is not None and settings != kept:
        raise ConfigError(
            f"study '{study.study_name}' was confirmed with {_describe(kept)}; a confirmation "
            f"with {_describe(settings)} would void its error rate: drop the options"
        )
    return kept


def _describe(s: Settings) -> str:
    return (
        f"seeds {s.min_seeds}-{s.max_seeds}, alpha {s.alpha:g}, min_saving {s.min_saving:g}, "
        f"plain runs {s.plain_runs}, futility {'on' if s.futility else 'off'}"
    )


def choose_candidates(
    study: optuna.Study, spec: StudySpec, settings: Settings, top: int, numbers: list[int]
) -> list[Candidate]:
    """`numbers` (search trials), else the `top` search trials of the front by effective
    speedup against the search's budget curve."""
    trials = searched(study.get_trials(deepcopy=False))
    done = {t.number: t for t in trials if t.state == TrialState.COMPLETE}
    if numbers:
        chosen = []
        for number in numbers:
            trial = done.get(number)
            if trial is None or is_baseline(trial):
                raise ConfigError(
                    f"trial {number} of '{study.study_name}' is not a completed search trial; "
                    "pick one from `dikd study show`"
                )
            chosen.append(trial)
    else:
        front = [t for t in pareto_front(list(done.values())) if not is_baseline(t)]
        if not front:
            raise ConfigError(
                f"study '{study.study_name}' has no completed search trial on its front yet; "
                "run the study first"
            )

        def speedup(t: FrozenTrial) -> float:
            return derived_metrics(t, trials)["effective_speedup"] or 0.0

        chosen = sorted(front, key=lambda t: (-speedup(t), t.number))[:top]
    curve = {budget_fraction(t): t.values[0] for t in baselines(done.values())}
    if settings.plain_runs == READ_POINT and 1.0 in curve:
        return [_read_point_candidate(t, curve, spec, settings) for t in chosen]
    return [Candidate(t, _fractions(t.values[0], curve, spec, settings)) for t in chosen]


def _read_point_candidate(
    trial: FrozenTrial, curve: dict[float, float], spec: StudySpec, settings: Settings
) -> Candidate:
    """One plain run per seed, in steps, just above where the statistic reads the curve: 1 /
    (1 - min_saving) of the candidate's cost by the search's measured ratio, plus a margin;
    the full budget when that reaches it. (A user's own training loop would train whole
    epochs only: then the whole-epoch budgets.)"""
    share = trial.values[0] / curve[1.0] / (1 - settings.min_saving) * (1 + PLACEMENT_MARGIN)
    if share >= 1.0:
        return Candidate(trial, (1.0,))
    if getattr(spec.train, "loop", None) is not None:
        return Candidate(trial, _fractions(trial.values[0], curve, spec, settings))
    return Candidate(trial, (), round(share, 4))


def _fractions(
    cost: float, curve: dict[float, float], spec: StudySpec, settings: Settings
) -> tuple[float, ...]:
    """The plain-model budgets that bracket the candidate's cost and 1 / (1 - min_saving) of
    it (where the verdict reads the curve), by the search's measured costs, and the full one."""
    fractions = baseline_fractions(spec)
    known = [f for f in fractions if f in curve]
    if len(known) < 2:
        return tuple(fractions)
    target = cost / (1 - settings.min_saving)
    below = [f for f in known if curve[f] <= cost]
    above = [f for f in known if curve[f] >= target]
    low = max(below) if below else known[0]
    high = min(above) if above else known[-1]
    chosen = {f for f in known if low <= f <= high} | {1.0}
    if len(chosen) < 2:  # a candidate dearer than the full budget: the curve's last segment
        chosen.add(known[-2])
    return tuple(sorted(chosen))
