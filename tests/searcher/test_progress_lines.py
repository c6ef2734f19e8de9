"""With stdout not a terminal (a log, a pipe, CI), where progress bars are off, `study run` and
`confirm` print one flushed line per trial and per confirmation run. CliRunner's output is not
a terminal; training is stood in, since the lines, not the training, are under test."""

from __future__ import annotations

import dataclasses
import io
import re
import sys

import optuna
import pytest
import yaml
from click.testing import CliRunner
from tiny import stand_in_result, tiny_spec

from objectives import TrainConfig, TrainResult
from searcher.cli import cli
from searcher.study import search
from searcher.study.confirmation_runs import confirmation_runs
from searcher.study.spec import parse_spec
from searcher.verdict import confirmation
from searcher.views.run_progress import _Progress


def fake_train(config: TrainConfig, on_epoch=None) -> TrainResult:
    s = config.schedule
    f = 0.0 if s.policy == "none" else s.frequency
    cost = config.epochs * (1 - 0.5 * f)
    result = stand_in_result(config, cost, 0.6 + 0.05 * config.epochs - 0.1 * f, f)
    return dataclasses.replace(result, test_accuracy=result.val_accuracy, test_size=100)


@pytest.fixture
def stood_in(monkeypatch) -> None:
    monkeypatch.setattr(search, "train", fake_train)
    monkeypatch.setattr(confirmation, "train", fake_train)


def test_study_run_and_confirm_print_a_line_per_trial_and_per_run(tmp_path, stood_in) -> None:
    url = f"sqlite:///{tmp_path / 'lines.db'}"
    spec = tmp_path / "lines.yaml"
    spec.write_text(yaml.safe_dump({**tiny_spec("lines", n_trials=4), "storage": url}))
    run = CliRunner().invoke(cli, ["study", "run", str(spec)], catch_exceptions=False)
    assert run.exit_code == 0, run.output
    lines = [line for line in run.output.splitlines() if re.match(r"trial \d+ \(", line)]
    assert [line.split()[1] for line in lines] == ["0", "1", "2", "3"]
    assert "(baseline, 1 epochs): cost 1, accuracy 65.00%; 1/4 done, front 1" in lines[0]
    assert lines[-1].endswith("; 4/4 done, front 3, failed 0")

    args = ["confirm", "lines", "--storage", url, "--trial", "2", "--max-seeds", "3"]
    confirm = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert confirm.exit_code == 0, confirm.output
    runs = [line for line in confirm.output.splitlines() if line.startswith("  seed ")]
    stored = confirmation_runs(optuna.load_study(study_name="lines", storage=url))
    assert len(runs) == len(stored) >= 3 * 2  # the candidate and its plain budgets
    assert "test accuracy" in runs[0]


class _Log(io.StringIO):
    """A stdout that is a file: records what was written before each flush."""

    def __init__(self) -> None:
        super().__init__()
        self.flushed: list[str] = []

    def flush(self) -> None:
        self.flushed.append(self.getvalue())

    def isatty(self) -> bool:
        return False


def test_each_trial_line_is_flushed_when_written(tmp_path, stood_in, monkeypatch) -> None:
    spec = parse_spec(tiny_spec("flushed", n_trials=3))
    study = search.create_or_resume(spec, f"sqlite:///{tmp_path / 'flushed.db'}")
    log = _Log()
    monkeypatch.setattr(sys, "stdout", log)
    progress = _Progress(study, spec.n_trials)
    search.run_trials(study, spec, on_trial=progress.on_trial)
    progress.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 3
    for count in range(1, 4):  # after each trial, its line was out
        assert any(text.count("\n") == count for text in log.flushed)
