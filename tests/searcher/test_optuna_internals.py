"""Each Optuna internal dikd relies on (searcher/study/optuna_internals.py), checked against the
installed Optuna: a failure here means an Optuna release changed it, and the one function
named in the test is what to fix."""

from __future__ import annotations

from datetime import datetime

import optuna
import pytest
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from searcher.study.optuna_internals import (
    FilteredStudy,
    cache_user_attrs,
    create_trial_in_storage,
    is_tell_of_finished_trial,
    rdb_models,
    rdb_session,
    retry_history,
    storage_of,
    storage_study_id,
    storage_trial_id,
)
from searcher.study.storage import RetryStaleTrial, open_storage


@pytest.fixture
def study(tmp_path) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'o.db'}", heartbeat=True)
    return optuna.create_study(study_name="o", storage=storage, directions=["minimize"])


def test_storage_ids_and_trials_made_in_the_storage(study) -> None:
    assert isinstance(storage_of(study), RDBStorage)
    assert storage_of(study).get_study_name_from_id(storage_study_id(study)) == "o"
    study.enqueue_trial({"x": 1.0})  # a queued trial that study.ask() would have taken
    template = FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None, datetime_start=datetime.now(),
        datetime_complete=None, params={}, distributions={}, user_attrs={"made": True},
        system_attrs={}, intermediate_values={}, trial_id=-1,
    )  # fmt: skip
    trial = create_trial_in_storage(study, template)
    frozen = storage_of(study).get_trial(storage_trial_id(trial))
    assert frozen.user_attrs == {"made": True} and frozen.state == TrialState.RUNNING
    assert storage_trial_id(frozen) == storage_trial_id(trial)
    assert study.get_trials(states=(TrialState.WAITING,))  # the queued one was left alone


def test_rdb_models_session_and_the_trials_cached_copy(study) -> None:
    models = rdb_models()
    trial = study.ask()
    with rdb_session(storage_of(study)) as session:
        found = models.TrialModel.find_or_raise_by_id(storage_trial_id(trial), session)
        assert found.state == TrialState.RUNNING
        assert models.TrialUserAttributeModel.__tablename__ and models.TrialHeartbeatModel
    cache_user_attrs(trial, {"k": 1})
    assert trial.user_attrs["k"] == 1  # read from the cached copy, not the storage


def test_retry_history_is_read_from_optunas_system_attribute(study) -> None:
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    storage_of(study).set_trial_state_values(storage_trial_id(trial), TrialState.FAIL)
    RetryStaleTrial(max_retry=2)(study, study.trials[0])
    retried = study.get_trials(states=(TrialState.WAITING,))[0]
    assert retry_history(retried) == [0] and retried.user_attrs["retry_of"] == 0


def test_telling_a_trial_another_worker_failed_is_recognised(study) -> None:
    def objective(trial: optuna.Trial) -> float:
        storage_of(study).set_trial_state_values(storage_trial_id(trial), TrialState.FAIL)
        return 1.0

    with pytest.raises((ValueError, AssertionError)) as info:
        study.optimize(objective, n_trials=1)
    assert is_tell_of_finished_trial(info.value), repr(info.value)
    assert not is_tell_of_finished_trial(ValueError("something else"))


def test_samplers_read_trials_through_the_filtered_study(study) -> None:
    distribution = optuna.distributions.FloatDistribution(0, 1)
    for x in (0.1, 0.2, 0.3):
        study.add_trial(optuna.trial.create_trial(
            params={"x": x}, distributions={"x": distribution}, value=x,
            user_attrs={"keep": x != 0.2}))  # fmt: skip
    read: list[int] = []

    def keep(t: FrozenTrial) -> bool:
        read.append(t.number)
        return t.user_attrs.get("keep", True)

    view = FilteredStudy(study, keep)
    assert [t.number for t in view.trials] == [0, 2]
    read.clear()
    sampler = optuna.samplers.TPESampler(multivariate=True, n_startup_trials=1, seed=0)
    trial = study.ask()
    sampler.infer_relative_search_space(view, trial)
    sampler.sample_independent(view, trial, "x", distribution)
    assert read, "Optuna's samplers no longer read trials through Study._get_trials/get_trials"


def test_a_worker_carries_on_when_another_failed_its_trial_as_stale(tmp_path, monkeypatch):
    from tiny import stand_in_result, tiny_spec

    from searcher.study import search
    from searcher.study.spec import parse_spec

    url = f"sqlite:///{tmp_path / 'w.db'}"
    spec = parse_spec(tiny_spec("w", storage=url, baseline={"fractions": [1.0]}))
    study = search.create_or_resume(spec, url)

    calls = []

    def failed_by_another_worker(config, on_epoch=None):
        calls.append(config)
        if len(calls) == 1:  # the first trial: another worker failed it as stale meanwhile
            (running,) = study.get_trials(states=(TrialState.RUNNING,))
            storage_of(study).set_trial_state_values(storage_trial_id(running), TrialState.FAIL)
        return stand_in_result(config, 1.0, 0.5)

    monkeypatch.setattr(search, "train", failed_by_another_worker)
    assert search.run_trials(study, spec, max_trials=1) == 1  # carried on to the next trial
    assert [t.state for t in study.trials] == [TrialState.FAIL, TrialState.COMPLETE]
