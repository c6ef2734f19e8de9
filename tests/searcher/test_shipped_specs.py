"""The shipped specs (`studies/*.yaml`) are package data: listed by `dikd specs`, found by name
from any folder, and inside the wheel that `pip install .` installs."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from searcher.cli import cli
from searcher.study.shipped import find_spec, load_spec_file, shipped_specs

ROOT = Path(__file__).resolve().parents[2]
SOURCE_SPECS = sorted(p.stem for p in (ROOT / "studies").glob("*.yaml"))


def test_specs_lists_every_shipped_spec_with_its_first_comment_line() -> None:
    assert list(shipped_specs()) == SOURCE_SPECS and "quickstart" in SOURCE_SPECS
    done = CliRunner().invoke(cli, ["specs"])
    assert done.exit_code == 0, done.output
    lines = done.output.splitlines()
    assert [line.split()[0] for line in lines] == SOURCE_SPECS
    first_comment = (ROOT / "studies" / "quickstart.yaml").read_text().splitlines()[0]
    assert first_comment.lstrip("# ") in done.output
    shown = CliRunner().invoke(cli, ["specs", "quickstart"])
    assert shown.output == (ROOT / "studies" / "quickstart.yaml").read_text()
    unknown = CliRunner().invoke(cli, ["specs", "nope"])
    assert unknown.exit_code == 2 and "choose one of" in unknown.output


def test_a_shipped_spec_is_found_by_name_from_any_folder(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "quickstart").mkdir()  # `dikd quickstart`'s output folder does not hide it
    assert load_spec_file("quickstart").name == "quickstart"
    assert load_spec_file("cifar10-resnet20.yaml").name == "cifar10-resnet20"
    own = tmp_path / "quickstart.yaml"  # a file of the user's own is taken as given
    own.write_text((ROOT / "studies" / "quickstart.yaml").read_text().replace(
        "name: quickstart", "name: mine"))  # fmt: skip
    assert find_spec("quickstart.yaml") == Path("quickstart.yaml")
    assert load_spec_file("quickstart.yaml").name == "mine"


@pytest.mark.parametrize("command", [["study", "run", "nope"], ["quickstart", "--spec", "nope"]])
def test_an_unknown_name_is_one_line_naming_the_shipped_specs(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    done = CliRunner().invoke(cli, command)
    assert done.exit_code == 2
    assert done.output.count("\n") == 1 and "not found" in done.output
    assert all(name in done.output for name in SOURCE_SPECS)
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_the_wheel_holds_the_shipped_specs(tmp_path) -> None:
    source = tmp_path / "source"
    skip = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    for name in ("objectives", "searcher", "studies"):
        shutil.copytree(ROOT / name, source / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    command = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q"]
    done = subprocess.run([*command, "-w", str(tmp_path / "wheel"), str(source)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr
    (wheel,) = (tmp_path / "wheel").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {f"studies/{n}.yaml" for n in SOURCE_SPECS} <= set(names)
    assert "studies/__init__.py" in names
