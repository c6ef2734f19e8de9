"""Fixtures shared by the tests of searcher/."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def confirmed_null_study(tmp_path_factory) -> tuple[str, Path]:
    """The null study, run and confirmed on tiny real training (the slowest fixture of the
    suite, so made once): its storage URL and folder. The confirmation's and the dashboard's
    tests share it; they only read it (a refused `confirm` changes nothing)."""
    from tiny import make_confirmed_study

    folder = tmp_path_factory.mktemp("confirm")
    return make_confirmed_study(folder), folder
