"""A tiny real study with MO-ASHA, run as a user runs it: the trials it stops are PRUNED with
their reason and partial results, count in the trial budget, and stay off the front, the
export, the confirmation candidates and never touch a baseline."""

from __future__ import annotations

import optuna
import pytest
import torch
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState
from tiny import TINY_TRAIN

from objectives._errors import ConfigError
from searcher.cli import cli
from searcher.study.record import PARTIAL, PRUNED_REASON, is_baseline
from searcher.study.search import create_or_resume
from searcher.study.spec import parse_spec
from searcher.verdict.front import PickError, pareto_front, pick
from searcher.verdict.plan import choose_candidates
from searcher.verdict.statistics import Settings
from searcher.views.report import build_report
from searcher.views.terminal import show_study

SPEC = {
    "name": "pruned",
    "train": {**TINY_TRAIN, "epochs": 3, "val_size": 300},
    "baseline": {"fractions": [1.0]},
    "space": {
        "policy": {"choices": ["stochastic", "deterministic"]},
        "frequency": {"low": 0.2, "high": 0.9},
        "scale": {"choices": [2.0, 4.0]},
    },
    "sampler": {"name": "random", "seed": 0},
    "objective": "flops",  # the same costs on every machine
    "pruner": {"name": "mo-asha", "eta": 2},  # rungs after epochs 1 and 2
    "n_trials": 7,
}


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny model: more threads only wait on each other
    folder = tmp_path_factory.mktemp("pruned")
    url = f"sqlite:///{folder / 'p.db'}"
    path = folder / "p.yaml"
    path.write_text(yaml.safe_dump({**SPEC, "storage": url}))
    run = CliRunner().invoke(cli, ["study", "run", str(path)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    show = CliRunner().invoke(cli, ["study", "show", "pruned", "--storage", url])
    torch.set_num_threads(threads)
    return optuna.load_study(study_name="pruned", storage=url), show.output


def pruned(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return study.get_trials(states=(TrialState.PRUNED,))


def test_stopped_trials_are_pruned_with_reason_and_partial_results(study) -> None:
    study, _ = study
    stopped = pruned(study)
    assert stopped, "mo-asha with eta 2 stopped none of the 6 search trials"
    for t in stopped:
        assert t.user_attrs[PRUNED_REASON].startswith("mo-asha: ranked")
        points = t.user_attrs[PARTIAL]["points"]
        assert len(points) in (1, 2)  # stopped at a rung (epoch 1 or 2), before the last
        assert t.user_attrs["val_accuracy"] == points[-1]["val_accuracy"]
        assert t.user_attrs["flops"] == pytest.approx(points[-1]["cost"])
    assert not any(is_baseline(t) for t in stopped)


def test_stopped_trials_count_in_the_budget(study) -> None:
    study, _ = study
    ran = study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))
    assert len(ran) == SPEC["n_trials"]


def test_stopped_trials_are_never_on_the_front_exported_or_confirmed(study) -> None:
    study, _ = study
    numbers = {t.number for t in pruned(study)}
    trials = study.get_trials()
    assert not numbers & {t.number for t in pareto_front(trials)}
    for rule in ("most-accurate", "knee"):
        assert pick(study, rule).number not in numbers
    some = min(numbers)
    with pytest.raises(PickError, match="not a completed trial"):
        pick(study, f"trial:{some}")
    spec = parse_spec({**SPEC, "storage": "sqlite://"})
    with pytest.raises(ConfigError, match="not a completed search trial"):
        choose_candidates(study, spec, Settings(), 1, [some])


def test_show_and_report_mark_the_stopped_trials(study) -> None:
    study, shown = study
    assert "stopped early by the pruner" in shown
    for t in pruned(study):
        assert f"  {t.number}: " in shown
    page = build_report(study, parse_spec({**SPEC, "storage": "sqlite://"}))
    assert 'id="learning-curves"' in page and "stopped early" in page


def test_a_pruner_implies_accuracy_every_epoch_and_study_show_says_so(tmp_path) -> None:
    train = {**SPEC["train"], "eval_every_epoch": False}
    spec = parse_spec({**SPEC, "train": train})
    assert spec.train.eval_every_epoch  # the study scores every epoch: the pruner needs it
    assert spec.stored_form() == parse_spec(SPEC).stored_form()
    no_pruner = parse_spec({**SPEC, "train": train, "pruner": {"name": "none"}})
    assert not no_pruner.train.eval_every_epoch
    # A study stored from such a spec resumes from the same spec file (stored-spec comparison).
    url = f"sqlite:///{tmp_path / 'implied.db'}"
    create_or_resume(spec, url)
    study = create_or_resume(parse_spec({**SPEC, "train": train}), url)
    assert "early stopping: mo-asha pruner; validation scored after every epoch" in show_study(
        study, "train_flops"
    )
    other = create_or_resume(parse_spec({**no_pruner.stored_form(), "name": "plain"}), url)
    assert "early stopping" not in show_study(other, "train_flops")
