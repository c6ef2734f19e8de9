"""The study's trial budget when two workers take the last slot at once, and its time budget."""

from __future__ import annotations

import time
import types

import optuna
import pytest
from optuna.trial import TrialState
from tiny import TINY_TRAIN, stand_in_result, tiny_spec

from searcher.study import search, storage
from searcher.study.search import _Objective, budget_left, create_or_resume, run_trials
from searcher.study.spec import parse_spec

# The tests take trials with study.ask() as a second worker would: no optimize() around them.
pytestmark = pytest.mark.filterwarnings("ignore:Heartbeat of storage is supposed:UserWarning")

SPEC = tiny_spec("budget")


def _baselines_done(tmp_path, monkeypatch, grace_period_s: int):
    """A SQLite study with heartbeats every second whose two baselines have run."""
    monkeypatch.setenv("DIKD_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("DIKD_GRACE_PERIOD", str(grace_period_s))
    url = f"sqlite:///{tmp_path / 'budget.db'}"
    spec = parse_spec({**SPEC, "storage": url})
    study = create_or_resume(spec, url)
    assert run_trials(study, spec, max_trials=2) == 2  # the baselines
    return study, spec


@pytest.fixture(autouse=True)
def _training_stood_in(monkeypatch):
    monkeypatch.setattr(
        search, "train", lambda config, on_epoch=None: stand_in_result(config, 1.0, 0.5)
    )


def test_two_workers_taking_the_last_slot_at_once_run_it_once(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'b.db'}"
    spec = parse_spec({**SPEC, "storage": url})
    study = create_or_resume(spec, url)
    assert run_trials(study, spec, max_trials=2) == 2  # the two baselines
    # Both workers were handed a trial before either started training: one slot, two trials.
    first, second = study.ask(), study.ask()
    later = _Objective(spec, None)
    with pytest.raises(optuna.TrialPruned):
        later.objective(second)
    assert later.outcome.over_budget and second.user_attrs["over_budget"]
    earlier = _Objective(spec, None)
    earlier.objective(first)  # the first-numbered trial keeps the slot
    assert earlier.outcome.state == TrialState.COMPLETE


def test_a_spent_time_budget_stops_the_study(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    spec = parse_spec({**SPEC, "storage": url, "n_trials": None, "timeout_s": 3600})
    study = create_or_resume(spec, url)
    assert budget_left(study, spec)
    study.set_user_attr(search.CREATED_ATTR, study.user_attrs[search.CREATED_ATTR] - 3601)
    assert not budget_left(study, spec)
    assert run_trials(study, spec) == 0


def test_resume_refuses_a_changed_training_config_and_accepts_an_older_stored_form(
    tmp_path,
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    spec = parse_spec({**SPEC, "storage": url})
    study = create_or_resume(spec, url)
    changed = parse_spec({**SPEC, "storage": url, "train": {**TINY_TRAIN, "lr": 0.05}})
    with pytest.raises(search.StudyMismatchError, match=r"train\.lr"):
        create_or_resume(changed, url)
    # A study stored before the training config had val_size, data_seed, test and
    # eval_every_epoch resumes: the fields it lacks take their defaults.
    older = spec.stored_form()
    for key in ("val_size", "data_seed", "test", "eval_every_epoch"):
        del older["train"][key]
    study.set_user_attr(search.SPEC_ATTR, older)
    assert create_or_resume(spec, url).study_name == "budget"


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_retried(
    tmp_path, monkeypatch
) -> None:
    from datetime import datetime, timedelta

    from optuna.trial import FrozenTrial

    study, spec = _baselines_done(tmp_path, monkeypatch, grace_period_s=3)
    # A zombie: RUNNING since a minute ago, no heartbeat ever, holding the last slot.
    template = FrozenTrial(
        number=-1, state=TrialState.RUNNING, value=None,
        datetime_start=datetime.now() - timedelta(minutes=1), datetime_complete=None,
        params={}, distributions={}, user_attrs={}, system_attrs={}, intermediate_values={},
        trial_id=-1,
    )  # fmt: skip
    zombie = study._storage.create_new_trial(study._study_id, template_trial=template)
    assert not budget_left(study, spec)
    assert run_trials(study, spec) == 1  # the zombie is failed and its slot used
    states = {t._trial_id: t.state for t in study.get_trials()}
    assert states[zombie] == TrialState.FAIL
    assert sum(s == TrialState.COMPLETE for s in states.values()) == spec.n_trials


# --- two workers, one slot: the wait for a running trial (mutation testing's findings) ---------


@pytest.fixture
def one_slot_held_by_another_worker(tmp_path, monkeypatch):
    """A study whose baselines are done and whose last slot another worker is training (a
    RUNNING trial with a fresh heartbeat). Yields (study, spec, the other's trial)."""
    study, spec = _baselines_done(tmp_path, monkeypatch, grace_period_s=30)
    other = study.ask()
    storage.rdb_storage(study).record_heartbeat(other._trial_id)
    return study, spec, other


def _clock(monkeypatch, now=time.time):
    """The study module's clock: `now` for its time, its waits recorded and replaced by the
    action set in `on_wait` (the other worker's next move). Returns (waits, on_wait)."""
    waits: list[float] = []
    on_wait: list = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        on_wait[0]()

    fake = types.SimpleNamespace(time=lambda: now(), sleep=sleep, monotonic=time.monotonic)
    monkeypatch.setattr(search, "time", fake)
    return waits, on_wait


def _sleep_doing(monkeypatch, action) -> list[float]:
    waits, on_wait = _clock(monkeypatch)
    on_wait.append(action)
    return waits


def test_a_worker_waits_for_the_last_running_trial_and_stops_when_it_completes(
    one_slot_held_by_another_worker, monkeypatch
) -> None:
    study, spec, other = one_slot_held_by_another_worker
    waits = _sleep_doing(monkeypatch, lambda: study.tell(other, (1.0, 0.5)))
    assert not budget_left(study, spec)
    assert run_trials(study, spec) == 0  # the other one completed the budget
    assert waits == [1]  # one heartbeat interval
    assert storage.count_trials(study, (TrialState.COMPLETE,)) == spec.n_trials


def test_a_worker_takes_the_slot_when_the_other_workers_trial_fails(
    one_slot_held_by_another_worker, monkeypatch
) -> None:
    study, spec, other = one_slot_held_by_another_worker
    waits = _sleep_doing(monkeypatch, lambda: study.tell(other, state=TrialState.FAIL))
    assert run_trials(study, spec) == 1
    assert waits == [1]
    states = [t.state for t in study.get_trials()]
    assert states.count(TrialState.COMPLETE) == spec.n_trials and TrialState.RUNNING not in states


def test_a_worker_stops_waiting_when_the_time_budget_runs_out(
    one_slot_held_by_another_worker, monkeypatch
) -> None:
    study, spec, other = one_slot_held_by_another_worker
    timed = parse_spec({**SPEC, "storage": spec.storage, "timeout_s": 60})
    created = study.user_attrs[search.CREATED_ATTR]
    clock = [created]
    waits, on_wait = _clock(monkeypatch, now=lambda: clock[0])
    on_wait.append(lambda: clock.__setitem__(0, created + 60))
    assert search._wait_for_running(study, timed) is False
    assert waits == [1]  # looked once, waited, then found the time budget spent
    assert [t.state for t in study.get_trials()].count(TrialState.RUNNING) == 1


def test_the_time_budget_ends_exactly_at_timeout(tmp_path, monkeypatch) -> None:
    url = f"sqlite:///{tmp_path / 't.db'}"
    spec = parse_spec({**SPEC, "storage": url, "n_trials": None, "timeout_s": 60})
    study = create_or_resume(spec, url)
    created = study.user_attrs[search.CREATED_ATTR]
    clock = [created + 59.999]
    _clock(monkeypatch, now=lambda: clock[0])
    assert budget_left(study, spec)
    clock[0] = created + 60
    assert not budget_left(study, spec)


def test_without_heartbeats_a_worker_does_not_wait_for_running_trials(tmp_path) -> None:
    url = f"sqlite:///{tmp_path / 'n.db'}"
    spec = parse_spec({**SPEC, "storage": url})
    study = create_or_resume(spec, url)
    run_trials(study, spec, max_trials=2)
    other = study.ask()  # another worker's last trial, running, with its heartbeat
    storage.rdb_storage(study).record_heartbeat(other._trial_id)
    plain = optuna.load_study(study_name="budget", storage=storage.open_storage(url))
    assert storage.heartbeat_interval(plain) is None
    assert search._wait_for_running(plain, spec) is False


@pytest.mark.parametrize("backend", ["sqlite", "memory"])
def test_count_trials_counts_search_trials_in_states_below_a_number(tmp_path, backend) -> None:
    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else None
    study = optuna.create_study(storage=url, directions=["minimize", "maximize"])
    role = {"baseline": {"role": "baseline"}, "search": {"role": "search"}}
    for attrs in (role["baseline"], role["search"], {"role": "confirm"}, role["search"]):
        study.add_trial(optuna.trial.create_trial(values=[1.0, 0.5], user_attrs=attrs))
    study.add_trial(optuna.trial.create_trial(state=TrialState.FAIL, user_attrs=role["search"]))
    complete = (TrialState.COMPLETE,)
    assert storage.count_trials(study, complete) == 3  # the confirmation run stands outside
    assert storage.count_trials(study, (TrialState.COMPLETE, TrialState.FAIL)) == 4
    assert storage.count_trials(study, complete, below_number=3) == 2
    assert storage.count_trials(study, complete, below_number=0) == 0
