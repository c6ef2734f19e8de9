"""The search service driven as a user drives it: `dikd ...`, in-process (a subprocess adds five
seconds of imports and nothing else: tests/searcher/test_workers.py runs the real executable)."""

from __future__ import annotations

import os
from pathlib import Path

import click.testing
import optuna
import pytest
import yaml
from click.testing import CliRunner
from tiny import tiny_spec

from objectives import Schedule, load_train_config, train
from searcher.cli import cli
from searcher.study.record import SEARCH, budget_fraction, epochs_of, is_baseline, role, schedule_of
from searcher.verdict.front import derived_metrics

TINY_SPEC = tiny_spec("tiny", sampler={"name": "tpe", "seed": 1}, n_trials=7)

# What a completed trial stores: what it trained (once) and what it measured; speedups are
# computed when read.
TRIAL_ATTRS = {
    "train_config", "flops", "reduced_fraction", "device", "versions", "history", "train_time_s",
}  # fmt: skip
DERIVED_ATTRS = {"speedup", "accuracy_change_pp", "effective_speedup", "beats_curve"}


def dikd(*args: str, cwd: Path, env: dict[str, str] | None = None) -> click.testing.Result:
    """`dikd ARGS` in `cwd`, in-process; the CLI's behaviour is the same as in a subprocess."""
    old = os.getcwd()
    os.chdir(cwd)
    try:
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)
    finally:
        os.chdir(old)


def write_spec(folder: Path, name: str = "tiny.yaml", **changes) -> Path:
    spec = {**TINY_SPEC, "storage": f"sqlite:///{folder / 'tiny.db'}", **changes}
    path = folder / name
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def ran_study(tmp_path_factory):
    """A tiny study run in two invocations: 4 trials, then the rest of its budget."""
    folder = tmp_path_factory.mktemp("study")
    spec = write_spec(folder)
    first = dikd("study", "run", str(spec), "--n-trials", "4", cwd=folder)
    assert first.exit_code == 0, first.stderr
    second = dikd("study", "run", str(spec), cwd=folder)
    assert second.exit_code == 0, second.stderr
    storage = f"sqlite:///{folder / 'tiny.db'}"
    return folder, storage, first, second


def load(storage: str) -> optuna.Study:
    return optuna.load_study(study_name="tiny", storage=storage)


def test_run_completes_baseline_curve_and_search_trials(ran_study):
    folder, storage, first, second = ran_study
    trials = load(storage).get_trials()
    assert len(trials) == 7
    assert all(t.state.name == "COMPLETE" and len(t.values) == 2 for t in trials)
    baselines = [t for t in trials if is_baseline(t)]
    assert sorted(budget_fraction(t) for t in baselines) == [0.5, 1.0]
    assert sorted(epochs_of(t) for t in baselines) == [1, 2]
    search = [t for t in trials if role(t) == SEARCH]
    assert len(search) == 5
    for t in search:
        assert TRIAL_ATTRS <= set(t.user_attrs), TRIAL_ATTRS - set(t.user_attrs)
        assert not DERIVED_ATTRS & set(t.user_attrs)
        assert "schedule" not in t.user_attrs  # stored once, inside train_config
        Schedule.from_dict(schedule_of(t))
        assert derived_metrics(t, trials)["speedup"] == pytest.approx(
            next(b.values[0] for b in baselines if budget_fraction(b) == 1.0) / t.values[0]
        )
    assert load(storage).metric_names == ["train_time_s", "val_accuracy"]
    assert "Pareto front" in second.stdout and "baseline budget curve" in second.stdout


def test_second_run_resumed_the_same_study(ran_study):
    folder, storage, first, second = ran_study
    assert "4 trials" in first.stdout and "7 trials" in second.stdout
    assert len(optuna.get_all_study_names(storage)) == 1


def test_list_and_show(ran_study):
    folder, storage, *_ = ran_study
    listed = dikd("study", "list", "--storage", storage, cwd=folder)
    assert listed.exit_code == 0 and "tiny  (7 trials)" in listed.stdout
    shown = dikd("study", "show", "tiny", cwd=folder, env={"DIKD_STORAGE": storage})
    assert shown.exit_code == 0, shown.stderr
    for header in ("trial", "schedule", "train_time_s", "speedup", "accuracy", "change pp"):
        assert header in shown.stdout
    assert "7 complete" in shown.stdout


@pytest.mark.parametrize("rule", ["most-accurate", "knee", "trial:3", "fastest-within:100"])
def test_export_rules_write_a_loadable_config(ran_study, rule):
    folder, storage, *_ = ran_study
    out = folder / f"pick-{rule.replace(':', '-')}.yaml"
    done = dikd("export", "tiny", "--pick", rule, "-o", str(out), "--storage", storage, cwd=folder)
    if rule.startswith("fastest-within") and done.exit_code == 2:
        # Legitimate on a tiny study: no schedule beats the curve; the error must say so.
        assert "beats the baseline budget curve" in done.stderr
        assert not out.exists()
        return
    assert done.exit_code == 0, done.stderr
    document = yaml.safe_load(out.read_text())
    assert "schedule" not in document  # written once, in the training config
    config = load_train_config(out)
    assert config.schedule == Schedule.from_dict(document["train"]["schedule"])
    assert {"train_time_s", "val_accuracy", "speedup"} <= set(document["measured"])
    if rule == "trial:3":
        assert document["trial"] == 3


def test_exported_pick_retrains(ran_study):
    folder, storage, *_ = ran_study
    out = folder / "best.yaml"
    done = dikd("export", "tiny", "--pick", "knee", "-o", str(out), "--storage", storage,
                cwd=folder)  # fmt: skip
    assert done.exit_code == 0, done.stderr
    result = train(load_train_config(out))
    # Training is seeded end to end: the export reproduces the trial's accuracy (up to float
    # reduction order, as the study's worker may have used another thread count).
    measured = yaml.safe_load(out.read_text())["measured"]["val_accuracy"]
    assert abs(result.val_accuracy - measured) <= 0.05
    again = dikd("export", "tiny", "--pick", "knee", "-o", str(out), "--storage", storage,
                 cwd=folder)  # fmt: skip
    assert again.exit_code == 2 and "exists" in again.stderr


def test_report(ran_study):
    folder, storage, *_ = ran_study
    out = folder / "report.html"
    done = dikd("report", "tiny", "-o", str(out), "--storage", storage, cwd=folder)
    assert done.exit_code == 0, done.stderr
    assert out.stat().st_size > 100_000 and "val_accuracy" in out.read_text()


def test_export_rules_errors(ran_study):
    folder, storage, *_ = ran_study
    for rule, message in [("trial:999", "not a completed trial"), ("best", "unknown rule")]:
        done = dikd("export", "tiny", "--pick", rule, "-o", str(folder / "x.yaml"),
                               "--storage", storage, cwd=folder)  # fmt: skip
        assert done.exit_code == 2 and message in done.stderr
    done = dikd("export", "nope", "-o", "x.yaml", "--storage", storage, cwd=folder)
    assert done.exit_code == 2 and "no study 'nope'" in done.stderr


def test_changed_space_is_refused_and_nothing_changes(ran_study):
    folder, storage, *_ = ran_study
    before = [(t.number, t.state, t.values, t.params) for t in load(storage).get_trials()]
    space = {**TINY_SPEC["space"], "scale": {"choices": [2.0, 3.0]}}
    spec = write_spec(folder, "changed.yaml", space=space)
    done = dikd("study", "run", str(spec), cwd=folder)
    assert done.exit_code == 2
    assert "different spec" in done.stderr and "space.scale" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    after = [(t.number, t.state, t.values, t.params) for t in load(storage).get_trials()]
    assert after == before


def test_empty_study_export_is_a_clear_error(tmp_path):
    from searcher import create_or_resume, parse_spec

    storage = f"sqlite:///{tmp_path / 'empty.db'}"
    create_or_resume(parse_spec({**TINY_SPEC, "storage": storage}), storage)
    done = dikd("export", "tiny", "-o", "x.yaml", "--storage", storage, cwd=tmp_path)
    assert done.exit_code == 2 and "no completed trial" in done.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"epochs_total": 3}, "field 'epochs_total': unknown field"),
        ({"space": {"frequency": {"low": 0.9, "high": 0.1}}}, "space.frequency"),
        ({"space": {"scale": {"low": 1.0, "high": 8.0}}}, "space.scale"),
        ({"sampler": {"name": "cmaes"}}, "sampler.name"),
        ({"storage": "mongodb://localhost/x"}, "backend 'mongodb' is not supported"),
        ({"n_trials": 2}, "must exceed the 2 baseline trials"),
        ({"train": {"model": "resnet20", "epochs": 0}}, "train.epochs"),
    ],
)
def test_bad_specs_fail_with_one_line_and_exit_2(tmp_path, change, message):
    spec = {**TINY_SPEC, "storage": f"sqlite:///{tmp_path / 'x.db'}", **change}
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(spec))
    done = dikd("study", "run", "bad.yaml", cwd=tmp_path)
    assert done.exit_code == 2, done.output
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.yaml"]  # nothing written


def test_missing_spec_file_and_bad_usage_exit_2(tmp_path):
    done = dikd("study", "run", "missing.yaml", cwd=tmp_path)
    assert done.exit_code == 2 and "not found" in done.stderr
    assert dikd("study", "run", cwd=tmp_path).exit_code == 2
    assert dikd("export", "tiny", "--pick", cwd=tmp_path).exit_code == 2


def test_every_command_has_help(tmp_path):
    for command in (
        [], ["study"], ["study", "run"], ["study", "list"], ["study", "show"], ["export"],
        ["report"], ["dashboard"], ["worker"], ["train"], ["quickstart"],
    ):  # fmt: skip
        done = dikd(*command, "--help", cwd=tmp_path)
        assert done.exit_code == 0 and "Usage:" in done.stdout, command


def test_trials_that_keep_failing_stop_the_run_with_exit_1(tmp_path):
    # A learning rate that diverges: the spec is valid and the data there, every run fails.
    spec = {
        **TINY_SPEC,
        "storage": f"sqlite:///{tmp_path / 'x.db'}",
        "train": {**TINY_SPEC["train"], "lr": 1e12, "epochs": 1},
    }
    (tmp_path / "failing.yaml").write_text(yaml.safe_dump(spec))
    done = dikd("study", "run", "failing.yaml", cwd=tmp_path)
    assert done.exit_code == 1, done.output
    assert "3 trials of 'tiny' failed in a row" in done.stderr and "NonFiniteLoss" in done.stderr
    trials = optuna.load_study(study_name="tiny", storage=spec["storage"]).get_trials()
    assert [t.state.name for t in trials].count("FAIL") == 3
    assert all(
        "lower the learning rate" in t.user_attrs["fail_reason"]
        for t in trials
        if t.state.name == "FAIL"
    )


def test_a_half_made_study_is_completed_and_a_foreign_one_refused(tmp_path, monkeypatch) -> None:
    import searcher.study.search as study_module
    from searcher.study.record import BUDGET_FRACTION, ROLE, is_baseline
    from searcher.study.search import StudyMismatchError, create_or_resume
    from searcher.study.spec import parse_spec

    monkeypatch.setattr(study_module, "SPEC_WAIT_S", 0.0)
    url = f"sqlite:///{tmp_path / 'half.db'}"
    spec = parse_spec({**TINY_SPEC, "storage": url})
    # A creator stopped right after enqueuing its first baseline, before storing the spec.
    half = optuna.create_study(study_name="tiny", storage=url, directions=["minimize", "maximize"])
    half.enqueue_trial({}, user_attrs={ROLE: "baseline", BUDGET_FRACTION: 0.5})
    study = create_or_resume(spec, url)
    fractions = sorted(t.user_attrs[BUDGET_FRACTION] for t in study.trials if is_baseline(t))
    assert fractions == [0.5, 1.0]  # completed, the first baseline kept and not doubled
    assert create_or_resume(spec, url).user_attrs["dikd_spec"] == spec.stored_form()

    foreign = optuna.create_study(study_name="other", storage=url)
    foreign.enqueue_trial({"x": 1.0})
    with pytest.raises(StudyMismatchError, match="not made by dikd"):
        create_or_resume(parse_spec({**TINY_SPEC, "name": "other", "storage": url}), url)
