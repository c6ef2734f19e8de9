"""The study's SQL storage: SQLite on one machine, PostgreSQL for many."""

from __future__ import annotations

import re
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback

from objectives._errors import ConfigError

HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30
SQLITE_BUSY_TIMEOUT_S = 120


def mask_password(url: str) -> str:
    """`postgresql://user:secret@host/db` -> `postgresql://user:***@host/db`."""
    return re.sub(r"(://[^:/@]*:)[^@]*@", r"\1***@", url)


def _engine_kwargs(url: sqlalchemy.engine.URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        # Many local processes share one file: wait for the lock rather than fail.
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    return {"pool_pre_ping": True, "pool_size": 2, "max_overflow": 2, "pool_recycle": 1800}


def open_storage(url: str, *, heartbeat: bool = False) -> RDBStorage:
    """An RDBStorage for `url`; with `heartbeat`, running trials send heartbeats and a dead
    worker's trial is failed after the grace period and retried once."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except sqlalchemy.exc.ArgumentError:
        raise ConfigError(
            f"storage URL {mask_password(url)!r} is not a database URL; "
            "use sqlite:///FILE.db or postgresql+psycopg://USER@HOST/DB"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"storage URL {mask_password(url)!r}: backend {backend!r} is not supported; "
            "use sqlite:///FILE.db or postgresql+psycopg://USER@HOST/DB"
        )
    if backend == "postgresql" and parsed.get_driver_name() in ("psycopg2", ""):
        parsed = parsed.set(drivername="postgresql+psycopg")
    heartbeat_kwargs: dict[str, Any] = {}
    if heartbeat:
        heartbeat_kwargs = {
            "heartbeat_interval": HEARTBEAT_INTERVAL_S,
            "grace_period": GRACE_PERIOD_S,
            "failed_trial_callback": RetryHeartbeatStaleTrialCallback(max_retry=1),
        }
    try:
        return RDBStorage(
            parsed.render_as_string(hide_password=False),
            engine_kwargs=_engine_kwargs(parsed),
            **heartbeat_kwargs,
        )
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ArgumentError, ImportError) as e:
        reason = str(getattr(e, "orig", e)).strip().splitlines()[0]
        raise ConfigError(
            f"cannot open storage {mask_password(url)}: {mask_password(reason)}; "
            "check the URL, that the database server runs, and --storage or DIKD_STORAGE"
        ) from None


def study_names(storage: RDBStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


__all__ = ["open_storage", "mask_password", "study_names", "optuna"]
