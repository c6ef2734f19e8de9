"""`dikd confirm` on tiny real training: pairing, the null schedule, resume, export, storage."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState
from tiny import NULL_TRIAL, run_null_study

from searcher.cli import cli
from searcher.study.confirmation_runs import confirmation_runs, confirmation_study
from searcher.study.record import (
    CANDIDATE,
    CONFIRM_RUN,
    CONFIRM_STUDY_ATTR,
    TEST_ACCURACY,
    WORKER,
    is_confirm,
    seed_of,
)
from searcher.study.search import BUDGET_STATES, open_study
from searcher.study.spec import STORAGE_ENV
from searcher.study.storage import count_trials
from searcher.verdict.confirmation import confirm, stored_verdict
from searcher.verdict.front import pareto_front
from searcher.verdict.plan import first_seed, plan_confirmation
from searcher.verdict.statistics import Settings


@pytest.fixture
def null_study(confirmed_null_study) -> tuple[str, object]:
    return confirmed_null_study  # tests/searcher/conftest.py


def _confirm_runs(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return confirmation_runs(study)


def test_the_null_schedule_is_never_called_a_win(null_study) -> None:
    url, _ = null_study
    study, _ = open_study("null", url)
    verdict = stored_verdict(study).candidates[NULL_TRIAL]
    assert verdict["verdict"] != "win"
    assert verdict["final"]
    assert len(verdict["seeds"]) >= 3 and verdict["seeds"][0] == first_seed(study) >= 10_000
    # Paired seeds: the null schedule computes exactly what the full-budget plain model does.
    # (Its one plain run a seed is the full budget unless the search's clock, on a loaded
    # machine, made the null schedule look 10% cheaper: then it reads a shorter run.)
    for row in verdict["per_seed"]:
        if row["full_test_accuracy"] is not None:
            assert row["test_accuracy"] == pytest.approx(row["full_test_accuracy"], abs=1e-9)
    # A wall-clock ratio: on a loaded machine it has read 3.7 for a schedule identical to the
    # plain model, so only its presence is checked (never a win is the guarantee).
    assert verdict["time_ratio"]["mean"] > 0


def test_confirmation_runs_stay_out_of_the_search(null_study) -> None:
    url, _ = null_study
    study, spec = open_study("null", url)
    runs = _confirm_runs(study)
    assert runs and all(t.state == TrialState.COMPLETE for t in runs)
    assert all(t.user_attrs[TEST_ACCURACY] is not None for t in runs)
    assert all(t.user_attrs["test_size"] == 10_000 for t in runs)
    # Outside the budget, the front and the sampler's view.
    assert count_trials(study, BUDGET_STATES) == spec.n_trials
    front = pareto_front(study.get_trials(deepcopy=False))
    assert not any(is_confirm(t) for t in front)
    keys = [t.user_attrs[CONFIRM_RUN] for t in runs]
    assert len(keys) == len(set(keys))  # each run trained once
    # In a sibling study the search study names: the search study's trials are the search.
    assert not any(is_confirm(t) for t in study.get_trials(deepcopy=False))
    assert study.user_attrs[CONFIRM_STUDY_ATTR] == "null.confirm"
    listed = CliRunner().invoke(cli, ["study", "list", "--storage", url])
    assert "1 study" in listed.output and "in 'null.confirm'" in listed.output, listed.output
    # Every command treats the pair as one study.
    sibling, _ = open_study("null.confirm", url)
    assert sibling.study_name == "null"


def test_commands_given_the_sibling_name_show_the_search_study(null_study, tmp_path) -> None:
    url, _ = null_study
    show = CliRunner().invoke(cli, ["study", "show", "null.confirm", "--storage", url])
    assert show.exit_code == 0, show.output
    assert "study 'null'" in show.output and "confirmation (fresh seeds" in show.output
    page = tmp_path / "r.html"
    report = CliRunner().invoke(cli, ["report", "null.confirm", "-o", str(page), "--storage", url])
    assert report.exit_code == 0, report.output
    assert "<title>dikd report: null</title>" in page.read_text()


def test_a_study_confirmed_in_the_earlier_form_reads_its_runs_where_they_are(tmp_path) -> None:
    study = optuna.create_study(directions=["minimize", "maximize"])
    attrs = {"role": "confirm", "confirm_run": "seed 1000: plain 1.0", "seed": 1000}
    study.add_trial(optuna.trial.create_trial(values=[1.0, 0.5], user_attrs=attrs))
    assert confirmation_study(study, create=True) is study  # nothing moved, nothing created
    assert [t.user_attrs["confirm_run"] for t in confirmation_runs(study)] == [attrs["confirm_run"]]
    assert CONFIRM_STUDY_ATTR not in study.user_attrs


def test_study_show_prints_the_verdict_table(null_study) -> None:
    url, _ = null_study
    result = CliRunner().invoke(cli, ["study", "show", "null", "--storage", url])
    assert result.exit_code == 0, result.output
    assert "confirmation (fresh seeds, paired, scored on the test split" in result.output
    assert "Bonferroni" in result.output
    assert "accuracy ±se" in result.output


def test_changed_settings_are_refused_with_one_line(null_study) -> None:
    url, _ = null_study
    args = ["confirm", "null", "--storage", url, "--trial", str(NULL_TRIAL), "--max-seeds", "6"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "would void its error rate" in result.output


def test_the_plain_runs_and_futility_are_fixed_settings_too(null_study) -> None:
    url, _ = null_study
    args = ["confirm", "null", "--storage", url, "--trial", str(NULL_TRIAL), "--max-seeds", "4"]
    for extra in (["--plain-runs", "budgets"], ["--no-futility"]):
        result = CliRunner().invoke(cli, [*args, *extra])
        assert result.exit_code == 2 and "would void its error rate" in result.output
        assert "plain runs read-point, futility on" in result.output


def test_export_of_a_confirmed_pick_carries_intervals_and_reproduces_its_first_seed(
    null_study,
) -> None:
    url, folder = null_study
    out = folder / "pick.yaml"
    runner = CliRunner()
    auto = runner.invoke(cli, ["export", "null", "--storage", url, "-o", str(out)])
    assert auto.exit_code == 2 and "no confirmed candidate" in auto.output  # not a win
    args = ["export", "null", "--storage", url, "-o", str(out), "--pick", f"trial:{NULL_TRIAL}"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "confirmation:" in result.output
    document = yaml.safe_load(out.read_text())
    confirmation = document["confirmation"]
    assert confirmation["split"] == "test"
    assert {"low", "high", "mean"} <= set(confirmation["margin_pp"])
    first = confirmation["per_seed"][0]["seed"]
    assert first == first_seed(open_study("null", url)[0])
    assert document["train"]["seed"] == first and document["train"]["test"] is True

    retrain = runner.invoke(cli, ["train", "--config", str(out)])
    assert retrain.exit_code == 0, retrain.output
    accuracy = float(retrain.output.split("test_accuracy=")[1].split()[0])
    assert accuracy == pytest.approx(confirmation["per_seed"][0]["test_accuracy"], abs=0.005)


def test_a_killed_confirmation_resumes_without_retraining_finished_runs(tmp_path) -> None:
    study, spec = open_study("null", run_null_study(tmp_path), heartbeat=True)
    settings = Settings(min_seeds=3, max_seeds=3, plain_runs="budgets")
    plan = plan_confirmation(study, spec, settings, 1, [NULL_TRIAL])
    runs_started = {"count": 0}

    def ctrl_c_in_the_second_run(epoch: int, total: int) -> None:
        runs_started["count"] += epoch == 1
        if runs_started["count"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        confirm(study, spec, plan, on_epoch=ctrl_c_in_the_second_run)
    runs = _confirm_runs(study)
    # The seed's runs were claimed together: one finished, the cut one and the rest FAIL.
    assert [t.state for t in runs] == [TrialState.COMPLETE] + [TrialState.FAIL] * 2
    finished = runs[0].user_attrs[CONFIRM_RUN]

    trained: list[str] = []
    confirm(study, spec, plan, on_run=lambda run, *_: trained.append(run.key))
    assert finished not in trained and len(trained) == 8
    done = [t for t in _confirm_runs(study) if t.state == TrialState.COMPLETE]
    assert len({t.user_attrs[CONFIRM_RUN] for t in done}) == len(done) == 9  # 3 seeds x 3 runs
    assert {t.user_attrs[CANDIDATE] for t in done} == {NULL_TRIAL, None}
    assert stored_verdict(study).candidates[NULL_TRIAL]["final"]


def test_two_processes_share_one_confirmation(tmp_path) -> None:
    """A second `dikd confirm` joins the first: it takes a seed the first is not on, and no
    run is trained twice."""
    url = run_null_study(tmp_path)
    env = {k: v for k, v in os.environ.items() if k != STORAGE_ENV}
    env["OMP_NUM_THREADS"] = "1"  # two processes on the machine's cores
    command = [sys.executable, "-m", "searcher", "confirm", "null", "--storage", url]
    command += ["--trial", str(NULL_TRIAL), "--max-seeds", "3"]
    first = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    study = optuna.load_study(study_name="null", storage=url)
    deadline = time.monotonic() + 120
    while not any(t.state == TrialState.RUNNING for t in _confirm_runs(study)):
        assert first.poll() is None and time.monotonic() < deadline, "the first never started"
        time.sleep(0.2)
    second = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    out, _ = first.communicate(timeout=600)
    assert first.returncode == 0 and second.returncode == 0, (out, second.stdout, second.stderr)
    done = [t for t in _confirm_runs(study) if t.state == TrialState.COMPLETE]
    # 3 seeds x 2 runs: the candidate and one read-point plain run (the null's is the full one)
    assert len({t.user_attrs[CONFIRM_RUN] for t in done}) == len(done) == 6
    workers = {t.user_attrs[WORKER] for t in done}
    assert len(workers) == 2  # both trained
    for seed in {seed_of(t) for t in done}:  # a seed's runs stay on one worker
        assert len({t.user_attrs[WORKER] for t in done if seed_of(t) == seed}) == 1
