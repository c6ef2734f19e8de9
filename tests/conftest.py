"""Shared by every test: the user's dikd settings and caches never reach the suite."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _without_users_dikd_environment(tmp_path_factory: pytest.TempPathFactory):
    """A user of many workers has DIKD_STORAGE set: without this the suite would write its
    studies there. Session-scoped, so that module fixtures and the subprocesses they start
    (which inherit os.environ) see the clean environment too. The image cache goes to a
    temporary folder rather than the user's ~/.cache/dikd."""
    saved = {k: v for k, v in os.environ.items() if k.startswith("DIKD_")}
    for key in saved:
        del os.environ[key]
    os.environ["DIKD_CACHE_DIR"] = str(tmp_path_factory.mktemp("dikd-cache"))
    yield
    del os.environ["DIKD_CACHE_DIR"]
    os.environ.update(saved)
