"""Creating, resuming and running a study: each trial is one real training run."""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import socket
import time
import warnings
from collections.abc import Callable
from typing import Any

import optuna
from optuna.trial import TrialState

from objectives import ConfigError, TrainResult, train
from searcher.study.confirmation_runs import search_study_name
from searcher.study.optuna_internals import FilteredStudy, is_tell_of_finished_trial
from searcher.study.pruning import EpochReporter
from searcher.study.record import (
    BASELINE,
    BUDGET_FRACTION,
    FAIL_REASON,
    METRIC_NAMES,
    OVER_BUDGET,
    PRUNED_REASON,
    ROLE,
    SEARCH,
    SPEC_ATTR,
    VAL_ACCURACY,
    budget_fraction,
    config_attrs,
    is_baseline,
    is_search,
    result_attrs,
)
from searcher.study.secrets import mask_password
from searcher.study.space import baseline_epochs, trial_config
from searcher.study.spec import StudySpec, parse_spec
from searcher.study.storage import (
    count_trials,
    fail_trials_without_heartbeat,
    heartbeat_interval,
    open_storage,
    running_trials_with_heartbeat,
    set_user_attrs,
    study_names,
)

CREATED_ATTR = "dikd_created_at"


class StudyMismatchError(ConfigError):
    """The stored study was created from a different spec."""


class TrialsKeepFailingError(RuntimeError):
    """Every recent trial failed: running more would only fill the study with failures."""


MAX_FAILURES_IN_A_ROW = 3


def base_sampler(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler the spec names. Workers share the study, so TPE's constant liar
    keeps them from proposing points next to the ones still being trained."""
    name = spec.sampler.name
    if name == "tpe":
        return optuna.samplers.TPESampler(
            seed=seed, multivariate=True, constant_liar=True, n_startup_trials=5
        )
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed)
    return optuna.samplers.RandomSampler(seed=seed)


def _sampler(spec: StudySpec, seed: int) -> optuna.samplers.BaseSampler:
    return SearchTrialsSampler(base_sampler(spec, seed))


def _search_trials_view(study: optuna.Study) -> FilteredStudy:
    """A study as a sampler should see it: its search trials, without baselines and
    confirmation runs (running search trials carry no role yet)."""
    return FilteredStudy(study, is_search)


class SearchTrialsSampler(optuna.samplers.BaseSampler):
    """Wraps a sampler so that it never sees the baseline trials. Baselines have no schedule
    parameters: counted in, they make the intersection search space empty, and multivariate
    TPE, GP and NSGA-II then silently sample every parameter independently (or at random)."""

    def __init__(self, sampler: optuna.samplers.BaseSampler) -> None:
        self.sampler = sampler

    def infer_relative_search_space(self, study, trial):
        return self.sampler.infer_relative_search_space(_search_trials_view(study), trial)

    def sample_relative(self, study, trial, search_space):
        return self.sampler.sample_relative(_search_trials_view(study), trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        view = _search_trials_view(study)
        return self.sampler.sample_independent(view, trial, param_name, param_distribution)

    def before_trial(self, study, trial):
        self.sampler.before_trial(_search_trials_view(study), trial)

    def after_trial(self, study, trial, state, values):
        self.sampler.after_trial(_search_trials_view(study), trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()


def worker_seed(study_seed: int, worker_id: str) -> int:
    """A seed per worker, so workers sharing a study do not propose the same points."""
    digest = hashlib.sha256(f"{study_seed}:{worker_id}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def default_worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


def _differences(stored: dict[str, Any], wanted: dict[str, Any], prefix: str = "") -> list[str]:
    keys = sorted(set(stored) | set(wanted))
    out = []
    for key in keys:
        a, b = stored.get(key), wanted.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{key}.")
        elif a != b:
            out.append(f"{prefix}{key}")
    return out


def _with_current_defaults(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored spec as this version writes it: fields added since it was stored take their
    defaults, so an older study resumes when nothing the user wrote differs."""
    try:
        return parse_spec(stored).stored_form()
    except ConfigError:
        return stored


def create_or_resume(spec: StudySpec, storage_url: str, *, seed_id: str | None = None):
    """Create the study (with its enqueued baseline curve), or load it when it exists with the
    same spec. A stored study with another spec is refused and left unchanged."""
    storage = open_storage(storage_url, heartbeat=True)
    sampler = _sampler(spec, spec.sampler.seed)  # replaced below, once the study is known
    try:
        study = optuna.create_study(
            study_name=spec.name,
            storage=storage,
            sampler=sampler,
            directions=["minimize", "maximize"],
        )
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=spec.name, storage=storage, sampler=sampler)
        stored = _wait_for_spec(study)
        if stored is None:
            if not all(is_baseline(t) for t in study.get_trials(deepcopy=False)):
                raise StudyMismatchError(
                    f"study '{spec.name}' in {mask_password(storage_url)} was not made by dikd; "
                    "choose another name"
                ) from None
            _set_up(study, spec)  # a creator stopped half-way: finish its set-up
            return _seeded(study, spec, seed_id)
        changed = _differences(_with_current_defaults(stored), spec.stored_form())
        if changed:
            raise StudyMismatchError(
                f"study '{spec.name}' exists with a different spec ({', '.join(changed[:4])} "
                "differ); nothing was changed: rename the study in the spec or restore it"
            ) from None
        return _seeded(study, spec, seed_id)
    _set_up(study, spec)
    return _seeded(study, spec, seed_id)


def _seeded(study: optuna.Study, spec: StudySpec, seed_id: str | None) -> optuna.Study:
    """Give this process's sampler its own seed. Without a worker id, the id is the number of
    trials already there: a new study replays exactly from its seed, and a resumed one does not
    propose the points of its first run again."""
    seed_id = seed_id or f"run-{len(study.get_trials(deepcopy=False))}"
    study.sampler = _sampler(spec, worker_seed(spec.sampler.seed, seed_id))
    return study


SPEC_WAIT_S = 5.0  # how long a second creator waits for the first to store the spec


def _wait_for_spec(study: optuna.Study) -> dict[str, Any] | None:
    """The stored spec; waits a little for a creator that is still setting the study up."""
    deadline = time.monotonic() + SPEC_WAIT_S
    while True:
        stored = study.user_attrs.get(SPEC_ATTR)
        if stored is not None or time.monotonic() > deadline:
            return stored
        time.sleep(0.5)


def baseline_fractions(spec: StudySpec) -> list[float]:
    """The spec's baseline fractions, one per distinct number of epochs (the largest fraction
    of each), so rounding never trains the same budget twice."""
    by_epochs: dict[int, float] = {}
    for fraction in sorted(set(spec.baseline.fractions), reverse=True):
        by_epochs.setdefault(baseline_epochs(spec, fraction), fraction)
    return sorted(by_epochs.values())


def _set_up(study: optuna.Study, spec: StudySpec) -> None:
    """The baselines first and the spec last: a study with its spec attribute is complete.
    Finishes the set-up of a study whose creator stopped half-way (its baselines are kept)."""
    trials = study.get_trials(deepcopy=False)
    present = {budget_fraction(t) for t in trials}
    for fraction in baseline_fractions(spec):
        if fraction not in present:
            study.enqueue_trial({}, user_attrs={ROLE: BASELINE, BUDGET_FRACTION: fraction})
    queued = [t.system_attrs.get("fixed_params") or t.params for t in trials]
    for schedule in spec.enqueue:  # known-good schedules, before the sampler's own
        if schedule not in queued:
            study.enqueue_trial(schedule)
    study.set_metric_names([METRIC_NAMES[spec.objective], VAL_ACCURACY])
    study.set_user_attr(CREATED_ATTR, time.time())
    study.set_user_attr(SPEC_ATTR, spec.stored_form())


def load_study_spec(study: optuna.Study) -> StudySpec:
    stored = study.user_attrs.get(SPEC_ATTR)
    if stored is None:
        raise ConfigError(f"study '{study.study_name}' was not made by dikd")
    return parse_spec(stored, f"stored spec of '{study.study_name}'")


def open_study(name: str, storage_url: str, *, heartbeat: bool = False, seed_id: str = "0"):
    """Load an existing dikd study by name with its spec; a clear error when there is none."""
    storage = open_storage(storage_url, heartbeat=heartbeat, create=False)
    name = search_study_name(storage, name)  # a confirmation sibling stands for its study
    names = study_names(storage)
    if name not in names:
        known = ", ".join(names) or "none"
        raise ConfigError(
            f"no study '{name}' in {mask_password(storage_url)} (studies there: {known}); "
            "check the name and --storage"
        )
    study = optuna.load_study(study_name=name, storage=storage)
    spec = load_study_spec(study)
    study.sampler = _sampler(spec, worker_seed(spec.sampler.seed, seed_id))
    return study, spec


# Trials that use the budget: completed, running and stopped by a pruner (failed ones are
# retried or replaced; count_trials leaves out the PRUNED trials that never ran, `over_budget`).
BUDGET_STATES = (TrialState.COMPLETE, TrialState.RUNNING, TrialState.PRUNED)


def _time_up(study: optuna.Study, spec: StudySpec) -> bool:
    if spec.timeout_s is None:
        return False
    created = study.user_attrs.get(CREATED_ATTR, time.time())
    return time.time() - created >= spec.timeout_s


def budget_left(study: optuna.Study, spec: StudySpec) -> bool:
    if _time_up(study, spec):
        return False
    if spec.n_trials is not None:
        return count_trials(study, BUDGET_STATES) < spec.n_trials
    return True


def _wait_for_running(study: optuna.Study, spec: StudySpec) -> bool:
    """The trial budget is spent, counting running trials. A running trial whose worker died
    becomes stale after the grace period and is queued again (the retry callback), so wait
    while running trials send heartbeats. True when the budget has room again."""
    interval = heartbeat_interval(study)
    if interval is None or spec.n_trials is None:
        return False
    while not _time_up(study, spec):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        fail_trials_without_heartbeat(study)
        if budget_left(study, spec):
            return True
        if running_trials_with_heartbeat(study) == 0:
            return False
        time.sleep(interval)
    return False


@dataclasses.dataclass
class TrialOutcome:
    """How a trial of this process ended, kept by the objective so that run_trials never reads
    the trial back from the storage."""

    number: int
    state: TrialState
    fail_reason: str | None = None
    over_budget: bool = False


class _Objective:
    """The study's objective (`objective`), and how its last trial ended (`outcome`)."""

    def __init__(self, spec: StudySpec, on_epoch: Callable[[int, int], None] | None) -> None:
        self.spec = spec
        self.on_epoch = on_epoch
        self.outcome: TrialOutcome | None = None

    def objective(self, trial: optuna.Trial) -> tuple[float, float]:
        """Train the trial's config; return (cost, val_accuracy). (The worker's stop signals
        are raised inside a function of this name.)"""
        spec = self.spec
        self.outcome = TrialOutcome(trial.number, TrialState.FAIL)
        if spec.n_trials is not None:
            earlier = count_trials(trial.study, BUDGET_STATES, below_number=trial.number)
            if earlier >= spec.n_trials:
                # Another worker took the last trial of the budget while this one was asked for.
                self.outcome = TrialOutcome(trial.number, TrialState.PRUNED, over_budget=True)
                trial.set_user_attr(OVER_BUDGET, True)
                raise optuna.TrialPruned("the study's trial budget was already used")
        # What the trial tries is written with its result or its failure, in one write; while
        # it runs, its parameters (or a baseline's role) say what it is.
        attrs: dict[str, Any] = {} if ROLE in trial.user_attrs else {ROLE: SEARCH}
        try:
            config = trial_config(trial, spec)
            attrs.update(config_attrs(config))

            progress = EpochReporter(trial, spec, config.epochs)

            def report(epoch: int, so_far: TrainResult) -> bool:
                if self.on_epoch is not None:
                    self.on_epoch(epoch, config.epochs)
                return progress(epoch, so_far)  # True: the pruner stops the trial

            result = train(config, on_epoch=report)
            if progress.reason is not None:
                attrs[PRUNED_REASON] = progress.reason
            cost = result.train_time_s if spec.objective == "wall" else result.flops
            set_user_attrs(trial, {**attrs, **result_attrs(result)})
        except Exception as e:  # recorded, then Optuna marks the trial FAIL and the study goes on
            reason = f"{type(e).__name__}: {e}"
            self.outcome.fail_reason = reason
            set_user_attrs(trial, {**attrs, FAIL_REASON: reason})
            raise
        if progress.reason is not None:  # recorded with its partial result, not on the front
            self.outcome = TrialOutcome(trial.number, TrialState.PRUNED)
            raise optuna.TrialPruned(progress.reason)
        self.outcome = TrialOutcome(trial.number, TrialState.COMPLETE)
        return cost, result.val_accuracy


def run_trials(
    study: optuna.Study,
    spec: StudySpec,
    *,
    max_trials: int | None = None,
    on_trial: Callable[[TrialOutcome], None] | None = None,
    on_epoch: Callable[[int, int], None] | None = None,
) -> int:
    """Run trials until the study's budget is spent or this process has run `max_trials`.
    Returns how many trials this process ran."""
    objective = _Objective(spec, on_epoch)
    ran = 0
    failures_in_a_row = 0
    while max_trials is None or ran < max_trials:
        if not budget_left(study, spec) and not _wait_for_running(study, spec):
            break
        objective.outcome = None
        try:
            study.optimize(objective.objective, n_trials=1, catch=(Exception,))
        except (ValueError, AssertionError) as e:  # Optuna: "Cannot tell a FAIL trial."
            if not is_tell_of_finished_trial(e):
                raise
            # This trial's heartbeats came later than the grace period, so another worker
            # failed it as stale and queued its retry: carry on with the next trial.
            logging.getLogger(__name__).warning(
                "a trial of this worker was failed as stale by another worker (%s); "
                "if the storage is slow, raise DIKD_GRACE_PERIOD",
                e,
            )
            continue
        outcome = objective.outcome
        assert outcome is not None  # optimize ran the objective once
        if outcome.over_budget:
            continue  # another worker took the budget's last trial: wait for it, or stop
        ran += 1
        if on_trial is not None:
            on_trial(outcome)
        failures_in_a_row = failures_in_a_row + 1 if outcome.state == TrialState.FAIL else 0
        if failures_in_a_row >= MAX_FAILURES_IN_A_ROW:
            raise TrialsKeepFailingError(
                f"{failures_in_a_row} trials of '{study.study_name}' failed in a row, the last "
                f"with: {outcome.fail_reason}; fix the spec or the data, then run it again "
                "(nothing stored was lost)"
            )
    return ran
