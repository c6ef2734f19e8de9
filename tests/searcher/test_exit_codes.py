"""Exit codes as documented: 0 success, 1 a failed run, 2 bad usage or input (one line)."""

from __future__ import annotations

import yaml
from click.testing import CliRunner
from tiny import TINY_TRAIN

from searcher.cli import cli


def test_study_list_on_a_missing_sqlite_file_is_2_and_creates_nothing(tmp_path) -> None:
    missing = tmp_path / "missing.db"
    result = CliRunner().invoke(cli, ["study", "list", "--storage", f"sqlite:///{missing}"])
    assert result.exit_code == 2 and result.output.count("\n") == 1, result.output
    assert "does not exist" in result.output and not missing.exists()


def test_report_refuses_to_overwrite_without_force(tmp_path) -> None:
    existing = tmp_path / "r.html"
    existing.write_text("keep me")
    result = CliRunner().invoke(cli, ["report", "x", "-o", str(existing)])
    assert result.exit_code == 2 and "--force" in result.output
    assert existing.read_text() == "keep me"


def test_train_that_fails_at_run_time_is_1(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_TRAIN, "lr": 1e12, "epochs": 1}))
    result = CliRunner().invoke(cli, ["train", "--config", str(config)])
    assert result.exit_code == 1, result.output
    assert "training failed: NonFiniteLossError" in result.output


def test_train_of_a_bad_config_field_is_2(tmp_path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({**TINY_TRAIN, "epochs": 0}))
    result = CliRunner().invoke(cli, ["train", "--config", str(config)])
    assert result.exit_code == 2 and "field 'epochs'" in result.output
