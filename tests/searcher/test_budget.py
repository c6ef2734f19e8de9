"""The study's trial budget when two workers take the last slot at once, and its time budget."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState
from tiny import TINY_TRAIN, stand_in_result

from searcher import _study
from searcher._spec import parse_spec
from searcher._study import _Objective, budget_left, create_or_resume, run_trials

SPEC = {
    "name": "budget",
    "train": TINY_TRAIN,
    "baseline": {"fractions": [0.5, 1.0]},
    "sampler": {"name": "random", "seed": 0},
    "n_trials": 3,
}


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
