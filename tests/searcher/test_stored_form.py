"""A study stored by an earlier version of dikd still reads correctly: its schedule and config
stored twice, its speedups stored at trial time (stale: ignored, computed again when read)."""

from __future__ import annotations

import optuna
import pytest
from optuna.trial import TrialState, create_trial
from tiny import tiny_spec

from objectives import Schedule
from searcher.study.record import SPEC_ATTR, epochs_of, schedule_of, seed_of
from searcher.study.search import create_or_resume
from searcher.study.spec import parse_spec
from searcher.views.dashboard import _trial_note
from searcher.views.export import export_document
from searcher.views.report import build_report
from searcher.views.terminal import describe_schedule, show_study

SPEC = tiny_spec("old", n_trials=5)
SCHEDULE = Schedule("deterministic", 0.5, 2.0).to_dict()
STALE = {"speedup": 99.0, "effective_speedup": 99.0, "accuracy_change_pp": 42.0}


def _old_trial(role: str, cost: float, accuracy: float, epochs: int, **attrs):
    """A completed trial with the attributes the previous version wrote."""
    train_config = {**parse_spec(SPEC).train.to_dict(), "epochs": epochs}
    if role == "search":
        train_config["schedule"] = SCHEDULE
    old = {
        "role": role,
        "schedule": train_config["schedule"],
        "epochs": epochs,
        "seed": 0,
        "train_config": train_config,
        "train_time_s": cost,
        "val_accuracy": accuracy,
        "flops": 1e9 * cost,
        "device": "cpu",
        "versions": {},
        "beats_curve": False,
        **STALE,
        **attrs,
    }
    return create_trial(values=[cost, accuracy], user_attrs=old)


@pytest.fixture
def old_study(tmp_path) -> tuple[optuna.Study, str]:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    study = optuna.create_study(study_name="old", storage=url, directions=["minimize", "maximize"])
    study.set_metric_names(["train_time_s", "val_accuracy"])
    study.set_user_attr(SPEC_ATTR, parse_spec(SPEC).stored_form())
    study.add_trials(
        [
            _old_trial("baseline", 10.0, 0.80, 1, budget_fraction=0.5),
            _old_trial("baseline", 20.0, 0.85, 2, budget_fraction=1.0),
            _old_trial("search", 10.0, 0.86, 2),
            # A failed trial of the previous version: its schedule and epochs, no config.
            create_trial(
                state=TrialState.FAIL,
                user_attrs={
                    "role": "search",
                    "schedule": SCHEDULE,
                    "epochs": 2,
                    "fail_reason": "RuntimeError: boom",
                },
            ),  # fmt: skip
            # A running confirmation run of the previous version: its seed on its own.
            create_trial(
                state=TrialState.RUNNING,
                user_attrs={"role": "confirm", "seed": 1001, "schedule": SCHEDULE, "epochs": 2},
            ),
        ]
    )
    return study, url


def test_the_record_helpers_read_the_old_form(old_study) -> None:
    study, _ = old_study
    search, failed, running = study.trials[2:]
    assert schedule_of(search) == schedule_of(failed) == SCHEDULE
    assert epochs_of(failed) == 2 and seed_of(running) == 1001 and seed_of(search) == 0
    assert describe_schedule(failed).startswith("deterministic f=0.50 x2")


def test_show_export_report_and_notes_recompute_the_stale_speedups(old_study) -> None:
    study, url = old_study
    search = study.trials[2]
    shown = show_study(study, "train_time_s")
    assert "2.00x" in shown and "99.00x" not in shown and "+42" not in shown
    assert "boom" in shown
    document = export_document(study, "trial:2")
    assert document["measured"]["speedup"] == pytest.approx(2.0)
    assert document["measured"]["effective_speedup"] == pytest.approx(2.0)
    assert "schedule" not in document and document["train"]["schedule"] == SCHEDULE
    page = build_report(study, parse_spec(SPEC))
    assert "99.00x" not in page and "2.00x" in page
    note = _trial_note(search, study.trials)
    assert "Speedup 2.00x" in note and "above the curve: yes" in note
    # And the study resumes with this version's spec.
    assert create_or_resume(parse_spec({**SPEC, "storage": url}), url).study_name == "old"
