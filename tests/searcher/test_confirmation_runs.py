"""Where confirmation runs are kept (`study/confirmation_runs.py`): a run's trial is started
outside the sampler, stays RUNNING while its heartbeats go on, and turns FAIL once they stop."""

from __future__ import annotations

import dataclasses
import time

import optuna
import pytest
from optuna.trial import TrialState
from tiny import NULL_TRIAL, run_null_study

from objectives import ConfigError
from searcher.study.confirmation_runs import RunTrials
from searcher.study.record import (
    CONFIRM,
    CONFIRM_RUN,
    CONFIRM_STUDY_ATTR,
    FIRST_SEED_ATTR,
    ROLE,
    VERDICT_ATTR,
    is_confirm,
)
from searcher.study.search import open_study
from searcher.study.storage import GRACE_PERIOD_ENV, HEARTBEAT_INTERVAL_ENV, open_storage
from searcher.verdict.confirmation import confirm
from searcher.verdict.plan import plan_confirmation


def _run(key: str) -> dict:
    return {ROLE: CONFIRM, CONFIRM_RUN: key}


def test_runs_stay_running_while_kept_alive_and_fail_once_their_heartbeats_stop(
    tmp_path, monkeypatch
) -> None:
    monkeypatch.setenv(HEARTBEAT_INTERVAL_ENV, "1")
    monkeypatch.setenv(GRACE_PERIOD_ENV, "2")
    storage = open_storage(f"sqlite:///{tmp_path / 'runs.db'}", heartbeat=True)
    search = optuna.create_study(
        study_name="s", storage=storage, directions=["minimize", "maximize"]
    )
    runs = RunTrials(search)
    assert runs.runs_study.study_name == search.user_attrs[CONFIRM_STUDY_ATTR] == "s.confirm"
    assert search.get_trials() == []  # the search study holds the search alone

    done, cut = runs.start([_run("seed 1: trial 2"), _run("seed 1: plain 1.0")])
    with runs.kept_alive([done, cut]):
        time.sleep(3)  # past the grace period: only the heartbeats keep them RUNNING
        assert [t.state for t in runs.trials()] == [TrialState.RUNNING] * 2
        runs.complete(done, [1.0, 0.5], {"test_accuracy": 0.5})
    time.sleep(3)  # the process "died" with `cut` unfinished: its heartbeat has stopped
    states = {t.user_attrs[CONFIRM_RUN]: t.state for t in runs.trials()}
    assert states == {"seed 1: trial 2": TrialState.COMPLETE, "seed 1: plain 1.0": TrialState.FAIL}
    assert all(is_confirm(t) for t in runs.trials())


def test_a_failed_run_says_why(tmp_path) -> None:
    search = optuna.create_study(
        study_name="f", storage=f"sqlite:///{tmp_path / 'f.db'}", directions=["minimize"] * 2
    )
    runs = RunTrials(search)
    (trial,) = runs.start([_run("seed 1: trial 2")])
    runs.fail(trial, "RuntimeError: out of memory")
    (stored,) = runs.trials()
    assert stored.state == TrialState.FAIL
    assert stored.user_attrs["fail_reason"] == "RuntimeError: out of memory"


def test_a_plan_from_another_first_seed_is_refused_before_anything_is_stored(tmp_path) -> None:
    study, spec = open_study("null", run_null_study(tmp_path))
    plan = plan_confirmation(study, spec, None, 1, [NULL_TRIAL])
    study.set_user_attr(FIRST_SEED_ATTR, plan.first_seed)  # as a first confirmation stores it
    other = dataclasses.replace(plan, first_seed=plan.first_seed + 1)
    with pytest.raises(ConfigError, match="plan_confirmation"):
        confirm(study, spec, other)
    stored = optuna.load_study(study_name="null", storage=study._storage).user_attrs
    assert VERDICT_ATTR not in stored and CONFIRM_STUDY_ATTR not in stored
