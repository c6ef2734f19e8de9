"""Every way a user's spec or config file can fail to load is one line and exit code 2."""

from __future__ import annotations

import pytest
import yaml
from click.testing import CliRunner

from searcher.cli import cli


def _write(kind: str, path) -> None:
    if kind == "folder":
        path.mkdir()
    elif kind == "not utf-8":
        path.write_bytes(b"name: \xff\xfe\x00bad")
    elif kind == "huge":
        path.write_text("# padding\n" * 200_000)
    elif kind == "deeply nested":
        path.write_text("[" * 100_000 + "]" * 100_000)
    elif kind == "invalid yaml":
        path.write_text("name: [unclosed\n  train: {")
    elif kind == "not a mapping":
        path.write_text("- just\n- a list\n")
    elif kind == "empty":
        path.write_text("")


KINDS = ["missing", "folder", "not utf-8", "huge", "deeply nested", "invalid yaml",
         "not a mapping", "empty"]  # fmt: skip


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("command", ["study run", "train --config"])
def test_a_bad_file_is_one_line_and_exit_2(kind, command, tmp_path) -> None:
    path = tmp_path / "file.yaml"
    if kind != "missing":
        _write(kind, path)
    result = CliRunner().invoke(cli, [*command.split(), str(path)])
    assert result.exit_code == 2, (result.output, result.exception)
    assert result.output.startswith("error: ") and result.output.count("\n") == 1, result.output
    assert not (tmp_path / "dikd.db").exists()


def test_missing_data_is_found_before_any_trial_and_names_the_package(tmp_path) -> None:
    from tiny import TINY_TRAIN

    empty = tmp_path / "no-data"
    empty.mkdir()
    spec = tmp_path / "s.yaml"
    storage = f"sqlite:///{tmp_path / 's.db'}"
    train = {**TINY_TRAIN, "data_dir": str(empty)}
    spec.write_text(yaml.safe_dump({"name": "s", "storage": storage, "train": train,
                                    "n_trials": 5}))  # fmt: skip
    result = CliRunner().invoke(cli, ["study", "run", str(spec)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1
    assert "dataset-fashion-mnist" in result.output and "make data" in result.output
    assert not (tmp_path / "s.db").exists()  # no study was made
