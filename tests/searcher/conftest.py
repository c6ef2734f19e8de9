"""Fixtures shared by the tests of searcher/."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def confirmed_null_study(tmp_path_factory, pytestconfig) -> tuple[str, Path]:
    """The null study, run and confirmed on tiny real training (the slowest fixture of the
    suite, so made once per test run, shared by pytest-xdist's workers under a file lock): its
    storage URL and folder. The confirmation's and the dashboard's tests share it; they only
    read it (a refused `confirm` changes nothing)."""
    from filelock import FileLock
    from tiny import make_confirmed_study

    if not hasattr(pytestconfig, "workerinput"):  # not an xdist worker (or xdist not loaded)
        folder = tmp_path_factory.mktemp("confirm")
        return make_confirmed_study(folder), folder
    shared = tmp_path_factory.getbasetemp().parent  # this run's, common to its workers
    folder, made = shared / "confirm", shared / "confirm.url"
    with FileLock(str(shared / "confirm.lock")):
        if not made.is_file():
            folder.mkdir()
            made.write_text(make_confirmed_study(folder))
    return made.read_text(), folder
