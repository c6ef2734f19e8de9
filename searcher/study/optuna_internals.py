"""Every place dikd relies on Optuna's private internals, one small function each.

Optuna offers no public way to do these; each is checked by tests/searcher/test_optuna_internals.py,
which fails loudly when an Optuna release changes what it relies on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState


def storage_of(study: optuna.Study) -> BaseStorage:
    """The study's storage, without the cache layer Optuna wraps around an RDB storage."""
    storage = study._storage
    return getattr(storage, "_backend", storage)


def storage_study_id(study: optuna.Study) -> int:
    return study._study_id


def storage_trial_id(trial: optuna.Trial | FrozenTrial) -> int:
    """The trial's id in the storage (not its number)."""
    return trial._trial_id


def create_trial_in_storage(study: optuna.Study, template: FrozenTrial) -> optuna.Trial:
    """A trial made directly in the storage from `template`, bypassing the sampler and the
    queue of waiting trials that `study.ask()` would take from."""
    new_id = study._storage.create_new_trial(study._study_id, template_trial=template)
    return optuna.Trial(study, new_id)


def rdb_models() -> Any:
    """Optuna's SQLAlchemy models of its RDB schema (TrialModel, TrialUserAttributeModel, ...)."""
    from optuna.storages._rdb import models

    return models


def rdb_session(storage: optuna.storages.RDBStorage) -> Any:
    """A session that commits on success and rolls back on error, as Optuna's own writes use."""
    from optuna.storages._rdb.storage import _create_scoped_session

    return _create_scoped_session(storage.scoped_session)


def cache_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Tell a running trial's cached copy about user attributes written behind its back."""
    trial._cached_frozen_trial.user_attrs.update(attrs)


def retry_history(trial: FrozenTrial) -> list[int]:
    """The numbers of the earlier trials of a retried trial's series, as Optuna's heartbeat
    retry records them in a system attribute."""
    return list(trial.system_attrs.get("retry_history", []))


def is_tell_of_finished_trial(error: BaseException) -> bool:
    """Whether `error` is Optuna refusing to tell a trial that is already finished (another
    worker failed it as stale). Optuna raises a plain ValueError, told apart by its text; inside
    `study.optimize` it surfaces as `AssertionError: Should not reach.` with that ValueError as
    its context (Optuna 5.1)."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, ValueError) and str(error).startswith("Cannot tell a"):
            return True
        error = error.__context__
    return False


class FilteredStudy:
    """A study as Optuna's samplers read it, with only the trials `keep` accepts: samplers read
    trials through the private `Study._get_trials` as well as `get_trials`."""

    def __init__(self, study: optuna.Study, keep: Callable[[FrozenTrial], bool]) -> None:
        self._study = study
        self._keep = keep

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _get_trials(
        self,
        deepcopy: bool = True,
        states: tuple[TrialState, ...] | None = None,
        use_cache: bool = False,
    ) -> list[FrozenTrial]:
        trials = self._study._get_trials(deepcopy=deepcopy, states=states, use_cache=use_cache)
        return [t for t in trials if self._keep(t)]

    def get_trials(self, deepcopy: bool = True, states=None) -> list[FrozenTrial]:
        return self._get_trials(deepcopy=deepcopy, states=states)

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()
