"""Where a study's confirmation runs live, and how their trials are made: a sibling study
`NAME.confirm` that the search study names (the search stays alone in every figure
optuna-dashboard draws), or, for a study confirmed before siblings existed, the study itself.

A run's trial is made RUNNING directly in the storage (never handed out by the sampler or the
queue of waiting search trials) and kept alive by heartbeats while it trains, so that a dead
process's runs turn stale, are failed and planned again instead of staying RUNNING for ever.
"""

from __future__ import annotations

import contextlib
import threading
import warnings
from collections.abc import Iterator
from datetime import datetime
from typing import Any

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from objectives import ConfigError
from searcher.study.optuna_internals import create_trial_in_storage, storage_of, storage_trial_id
from searcher.study.record import (
    CONFIRM_STUDY_ATTR,
    CONFIRM_SUFFIX,
    CONFIRMATION_OF_ATTR,
    FAIL_REASON,
    is_confirm,
)
from searcher.study.storage import set_user_attrs


def search_study_name(storage: RDBStorage, name: str) -> str:
    """The search study `name` stands for: itself, or the study whose confirmation runs it
    holds (the two are one study to every command)."""
    for s in storage.get_all_studies():
        if s.study_name == name:
            return s.user_attrs.get(CONFIRMATION_OF_ATTR, name)
    return name


def confirmation_study(study: optuna.Study, *, create: bool = False) -> optuna.Study | None:
    """Where `study`'s confirmation runs live: the sibling study it names, so that the search
    study's trials (and every figure optuna-dashboard draws of them) are the search alone; or
    the study itself, for one confirmed before siblings existed (its runs stay where they are).
    None when there is none yet, unless `create`."""
    storage = storage_of(study)
    name = study.user_attrs.get(CONFIRM_STUDY_ATTR)
    if name is not None:
        return optuna.load_study(study_name=name, storage=storage)
    if any(is_confirm(t) for t in study.get_trials(deepcopy=False)):
        return study
    if not create:
        return None
    name = study.study_name + CONFIRM_SUFFIX
    sibling = optuna.create_study(
        study_name=name, storage=storage, directions=study.directions, load_if_exists=True
    )
    if sibling.user_attrs.get(CONFIRMATION_OF_ATTR, study.study_name) != study.study_name:
        raise ConfigError(
            f"study '{name}' holds another study's confirmation runs; rename study "
            f"'{study.study_name}' in its spec to confirm it"
        )
    sibling.set_user_attr(CONFIRMATION_OF_ATTR, study.study_name)
    if study.metric_names:
        sibling.set_metric_names(study.metric_names)
    study.set_user_attr(CONFIRM_STUDY_ATTR, name)
    return sibling


def confirmation_runs(study: optuna.Study) -> list[FrozenTrial]:
    """The confirmation runs of the search study `study`, wherever they live."""
    runs = confirmation_study(study)
    if runs is None:
        return []
    return [t for t in runs.get_trials(deepcopy=False) if is_confirm(t)]


class RunTrials:
    """The trials of the search study `study`'s confirmation runs, in the study that holds
    them (`runs_study`, made when missing): read them, start new ones, keep them alive while
    they train, end them."""

    def __init__(self, study: optuna.Study) -> None:
        self.runs_study = confirmation_study(study, create=True)
        storage = storage_of(self.runs_study)
        self._storage = storage if isinstance(storage, RDBStorage) else None
        self._interval = self._storage.get_heartbeat_interval() if self._storage else None

    def trials(self) -> list[FrozenTrial]:
        """Every confirmation run, after failing those whose process died (stale heartbeats)."""
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(self.runs_study)
        return [t for t in self.runs_study.get_trials(deepcopy=False) if is_confirm(t)]

    def start(self, attrs: list[dict[str, Any]]) -> list[optuna.Trial]:
        """A RUNNING trial for each run, with its user attributes: `study.ask()` would hand
        out a queued search trial instead, and the sampler must not see confirmation runs."""
        started = []
        for run_attrs in attrs:
            template = FrozenTrial(
                number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(),
                datetime_complete=None, params={}, distributions={}, user_attrs=run_attrs,
                system_attrs={}, intermediate_values={}, trial_id=-1,
            )  # fmt: skip
            started.append(create_trial_in_storage(self.runs_study, template))
        return started

    @contextlib.contextmanager
    def kept_alive(self, trials: list[optuna.Trial]) -> Iterator[None]:
        """Heartbeats for `trials` while the block runs (finished ones are skipped)."""
        storage, interval = self._storage, self._interval
        if storage is None or interval is None:
            yield
            return
        trial_ids = [storage_trial_id(t) for t in trials]

        def beat_all() -> None:
            for trial_id in trial_ids:
                with contextlib.suppress(Exception):  # finished, or a missed beat: risks a re-run
                    if not storage.get_trial(trial_id).state.is_finished():
                        storage.record_heartbeat(trial_id)

        beat_all()
        stop = threading.Event()

        def beat() -> None:
            while not stop.wait(interval):
                beat_all()

        thread = threading.Thread(target=beat, name="confirm-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()

    def complete(self, trial: optuna.Trial, values: list[float], attrs: dict[str, Any]) -> None:
        set_user_attrs(trial, attrs)
        self.runs_study.tell(trial, values)

    def fail(self, trial: optuna.Trial, reason: str) -> None:
        with contextlib.suppress(Exception):  # the storage may be what failed
            trial.set_user_attr(FAIL_REASON, reason)
            self.runs_study.tell(trial, state=TrialState.FAIL)
