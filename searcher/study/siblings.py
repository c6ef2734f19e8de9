"""Where a study's confirmation runs live: a sibling study `NAME.confirm` that the search study
names (the search stays alone in every figure optuna-dashboard draws), or, for a study confirmed
before siblings existed, the study itself."""

from __future__ import annotations

import optuna
from optuna.storages import RDBStorage

from objectives import ConfigError
from searcher.study.optuna_internals import (
    storage_of,
)
from searcher.study.record import (
    CONFIRM_STUDY_ATTR,
    CONFIRM_SUFFIX,
    CONFIRMATION_OF_ATTR,
    is_confirm,
)


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


def confirmation_runs(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The confirmation runs of the search study `study`, wherever they live."""
    runs = confirmation_study(study)
    if runs is None:
        return []
    return [t for t in runs.get_trials(deepcopy=False) if is_confirm(t)]
