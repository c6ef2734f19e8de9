"""The study's trial budget when two workers take the last slot at once, and its time budget."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from tiny import TINY_TRAIN, stand_in_result, tiny_spec

from searcher import _study
from searcher._spec import parse_spec
from searcher._study import _Objective, budget_left, create_or_resume, run_trials

SPEC = tiny_spec("budget")


@pytest.fixture(autouse=True)
def _training_stood_in(monkeypatch):
    monkeypatch.setattr(
        _study, "train", lambda config, on_epoch=None: stand_in_result(config, 1.0, 0.5)
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
    study.set_user_attr(_study.CREATED_ATTR, study.user_attrs[_study.CREATED_ATTR] - 3601)
    assert not budget_left(study, spec)
    assert run_trials(study, spec) == 0


def test_resume_refuses_a_changed_training_config_and_accepts_an_older_stored_form(
    tmp_path,
) -> None:
    url = f"sqlite:///{tmp_path / 'r.db'}"
    spec = parse_spec({**SPEC, "storage": url})
    study = create_or_resume(spec, url)
    changed = parse_spec({**SPEC, "storage": url, "train": {**TINY_TRAIN, "lr": 0.05}})
    with pytest.raises(_study.StudyMismatchError, match=r"train\.lr"):
        create_or_resume(changed, url)
    # A study stored before the training config had val_size, data_seed, test and
    # eval_every_epoch resumes: the fields it lacks take their defaults.
    older = spec.stored_form()
    for key in ("val_size", "data_seed", "test", "eval_every_epoch"):
        del older["train"][key]
    study.set_user_attr(_study.SPEC_ATTR, older)
    assert create_or_resume(spec, url).study_name == "budget"


def test_a_trial_whose_worker_died_before_its_first_heartbeat_is_retried(
    tmp_path, monkeypatch
) -> None:
    from datetime import datetime, timedelta

    from optuna.trial import FrozenTrial

    monkeypatch.setenv("DIKD_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("DIKD_GRACE_PERIOD", "3")
    url = f"sqlite:///{tmp_path / 'z.db'}"
    spec = parse_spec({**SPEC, "storage": url})
    study = create_or_resume(spec, url)
    assert run_trials(study, spec, max_trials=2) == 2  # the baselines
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
