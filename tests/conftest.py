"""Shared by every test: the user's dikd settings never reach the suite."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _without_users_dikd_environment():
    """A user of many workers has DIKD_STORAGE set: without this the suite would write its
    studies there. Session-scoped, so that module fixtures and the subprocesses they start
    (which inherit os.environ) see the clean environment too."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("DIKD_")}
    for key in saved:
        del os.environ[key]
    yield
    os.environ.update(saved)
