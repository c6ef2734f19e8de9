"""The study's SQL storage: SQLite on one machine, PostgreSQL for many.

Heartbeats: every running trial records one every DIKD_HEARTBEAT_INTERVAL seconds (default 10);
a trial silent for DIKD_GRACE_PERIOD seconds (default 30) belongs to a dead worker, is marked
FAIL by the next worker that looks, and its parameters are queued once more (retried once).
"""

from __future__ import annotations

import datetime
import json
import os
import warnings
from typing import Any

import optuna
import sqlalchemy
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
from optuna.trial import TrialState

from objectives import ConfigError
from searcher.study.optuna_internals import (
    cache_user_attrs,
    rdb_models,
    rdb_session,
    retry_history,
    storage_of,
    storage_study_id,
    storage_trial_id,
)
from searcher.study.record import (
    CONFIRM,
    OVER_BUDGET,
    RETRY_HISTORY,
    RETRY_OF,
    ROLE,
    is_confirm,
)
from searcher.study.secrets import mask_password, redact

HEARTBEAT_INTERVAL_S = 10
GRACE_PERIOD_S = 30
HEARTBEAT_INTERVAL_ENV = "DIKD_HEARTBEAT_INTERVAL"
GRACE_PERIOD_ENV = "DIKD_GRACE_PERIOD"
MAX_RETRY = 1  # a dead worker's trial is run once more, then left FAIL
SQLITE_BUSY_TIMEOUT_S = 120
PG_CONNECT_TIMEOUT_S = 10
# PostgreSQL, per worker process: the main thread and the heartbeat thread each hold at most one
# connection at a time; overflow covers short bursts. The server needs max_connections of about
# 2 x (workers + dashboards).
PG_POOL = {"pool_size": 2, "max_overflow": 2, "pool_timeout": 30, "pool_recycle": 1800}
# TCP keepalives notice a lost database machine within about a minute instead of hours.
PG_KEEPALIVES = {
    "keepalives": 1,
    "keepalives_idle": 30,
    "keepalives_interval": 10,
    "keepalives_count": 3,
}
_URL_HELP = "use sqlite:///FILE.db or postgresql+psycopg://USER:PASSWORD@HOST:PORT/DB"


class RetryStaleTrial(RetryHeartbeatStaleTrialCallback):
    """Optuna's retry of a heartbeat-stale trial (same parameters, queued as WAITING), which
    records the retry in system attributes, plus the same record in user attributes, where
    `study show` and the dashboard see it: `retry_of` (the first trial of the series) and
    `retry_history` (every earlier trial of the series, oldest first)."""

    def __call__(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if is_confirm(trial):
            return  # `dikd confirm` plans its runs from what completed: it re-runs this one
        history = [*retry_history(trial), trial.number]
        trial.user_attrs = {**trial.user_attrs, RETRY_OF: history[0], RETRY_HISTORY: history}
        super().__call__(study, trial)


def heartbeat_settings() -> tuple[int, int]:
    """(interval, grace period) in seconds, from the environment or the defaults."""
    interval = _positive_int_env(HEARTBEAT_INTERVAL_ENV, HEARTBEAT_INTERVAL_S)
    grace = _positive_int_env(GRACE_PERIOD_ENV, GRACE_PERIOD_S)
    if grace <= interval:
        raise ConfigError(
            f"{GRACE_PERIOD_ENV} ({grace} s) must exceed {HEARTBEAT_INTERVAL_ENV} ({interval} s), "
            "or live trials would be failed; a grace of 3 intervals is safe"
        )
    return interval, grace


def _positive_int_env(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        value = 0
    if value < 1:
        raise ConfigError(f"{name} must be a whole number of seconds >= 1, got {raw!r}")
    return value


def _engine_kwargs(url: sqlalchemy.engine.URL) -> dict[str, Any]:
    if url.get_backend_name() == "sqlite":
        # Many local processes share one file: wait for the lock rather than fail.
        return {"connect_args": {"timeout": SQLITE_BUSY_TIMEOUT_S}}
    return {
        "pool_pre_ping": True,  # a connection dropped by a server restart is replaced, not used
        **PG_POOL,
        "connect_args": {
            "connect_timeout": PG_CONNECT_TIMEOUT_S,
            "application_name": "dikd",
            **PG_KEEPALIVES,
        },
    }


def open_storage(url: str, *, heartbeat: bool = False, create: bool = True) -> RDBStorage:
    """An RDBStorage for `url`; with `heartbeat`, running trials send heartbeats and a dead
    worker's trial is failed after the grace period and retried once. `create=False` refuses
    a SQLite file that does not exist (a reader must not leave an empty database behind)."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        raise ConfigError(
            f"storage URL {mask_password(url)!r} is not a database URL; {_URL_HELP}"
        ) from None
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"storage URL {mask_password(url)!r}: backend {backend!r} is not supported; {_URL_HELP}"
        )
    database = parsed.database or ""
    if backend == "sqlite" and not create and database not in ("", ":memory:"):
        if not os.path.isfile(database):
            raise ConfigError(
                f"no study storage at {mask_password(url)}: the SQLite file {database} does not "
                "exist; check --storage or DIKD_STORAGE"
            )
    if backend == "postgresql" and parsed.get_driver_name() in ("psycopg2", ""):
        parsed = parsed.set(drivername="postgresql+psycopg")
    heartbeat_kwargs: dict[str, Any] = {}
    with warnings.catch_warnings():
        # Heartbeats and the retry callback are "experimental" in Optuna since 2.x; every
        # worker would print that warning.
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if heartbeat:
            interval, grace = heartbeat_settings()
            heartbeat_kwargs = {
                "heartbeat_interval": interval,
                "grace_period": grace,
                "heartbeat_stale_trial_callback": RetryStaleTrial(max_retry=MAX_RETRY),
            }
        try:
            storage = RDBStorage(
                parsed.render_as_string(hide_password=False),
                engine_kwargs=_engine_kwargs(parsed),
                **heartbeat_kwargs,
            )
        except (
            sqlalchemy.exc.SQLAlchemyError,
            optuna.exceptions.StorageInternalError,
            ImportError,
        ) as e:
            raise ConfigError(
                f"cannot open storage {mask_password(url)}: {redact(error_reason(e), url)}; "
                "check the URL, that the database server runs, and --storage or DIKD_STORAGE"
            ) from None
    if heartbeat and backend == "sqlite":
        _serialize_sqlite_transactions(storage.engine)
    return storage


def _serialize_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Every transaction takes SQLite's write lock when it begins (BEGIN IMMEDIATE).

    Optuna hands an enqueued (WAITING) trial to one worker by reading its state, then setting
    it RUNNING. SQLite ignores SELECT ... FOR UPDATE and Python's sqlite3 reads outside a
    transaction, so two processes can both take the same trial (optuna/optuna#4002; seen here as
    "ValueError: Cannot tell a COMPLETE trial" with 8 workers). Taking the lock first makes the
    read and the write one step; the busy timeout makes the others wait their turn. Only for
    storages that run trials: readers (dashboard, `study show`) keep SQLite's shared reads.
    """

    @sqlalchemy.event.listens_for(engine, "connect")
    def _no_implicit_begin(dbapi_connection, _record) -> None:
        dbapi_connection.isolation_level = None  # sqlite3 sends no BEGIN of its own

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # connections opened before the listeners existed are replaced


def storage_error(exc: BaseException | None) -> BaseException | None:
    """The database error behind `exc` (following causes and contexts), or None.

    Optuna wraps database errors in StorageInternalError, and a failure while it stores a
    trial's end can surface as `AssertionError: Should not reach.` with the database error
    as its context.
    """
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(
            exc, (sqlalchemy.exc.SQLAlchemyError, optuna.exceptions.StorageInternalError)
        ):
            return exc
        # `raise ... from None` hides the context: that error was already turned into a message.
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    return None


def error_reason(exc: BaseException) -> str:
    """One line saying what the database (driver) reported."""
    found = storage_error(exc) or exc
    if isinstance(found, optuna.exceptions.StorageInternalError) and found.__cause__ is not None:
        found = found.__cause__
    orig = getattr(found, "orig", None)  # the driver's own exception inside SQLAlchemy's
    text = str(orig if orig is not None else found).strip()
    first = text.splitlines()[0].strip() if text else type(found).__name__
    return first


def rdb_storage(study: optuna.Study) -> RDBStorage | None:
    storage = storage_of(study)
    return storage if isinstance(storage, RDBStorage) else None


def heartbeat_interval(study: optuna.Study) -> int | None:
    """Seconds between heartbeats of the study's running trials; None without heartbeats."""
    storage = rdb_storage(study)
    return storage.get_heartbeat_interval() if storage is not None else None


def running_trials_with_heartbeat(study: optuna.Study) -> int:
    """RUNNING trials of the study that have sent a heartbeat: each either finishes or, when its
    worker is dead, becomes stale after the grace period (and is retried)."""
    models = rdb_models()

    storage = rdb_storage(study)
    if storage is None:
        return 0
    with storage.scoped_session() as session:
        query = (
            session.query(sqlalchemy.func.count(models.TrialModel.trial_id))
            .join(
                models.TrialHeartbeatModel,
                models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id,
            )
            .filter(models.TrialModel.study_id == storage_study_id(study))
            .filter(models.TrialModel.state == optuna.trial.TrialState.RUNNING)
            .filter(_not_confirmation(models))
        )
        return int(query.scalar() or 0)


def fail_trials_without_heartbeat(study: optuna.Study) -> list[int]:
    """Fail (and queue again, as for a stale trial) every RUNNING trial that never sent a
    heartbeat and started over a grace period ago: its worker died between creating it and its
    first heartbeat, and Optuna's stale check, which reads heartbeats, never sees it. Returns
    the numbers of the trials failed."""
    models = rdb_models()

    storage = rdb_storage(study)
    if storage is None or storage.get_heartbeat_interval() is None:
        return []
    _, grace = heartbeat_settings()
    deadline = datetime.datetime.now() - datetime.timedelta(seconds=grace)
    with storage.scoped_session() as session:
        silent = [
            row.trial_id
            for row in session.query(models.TrialModel.trial_id)
            .filter(models.TrialModel.study_id == storage_study_id(study))
            .filter(models.TrialModel.state == TrialState.RUNNING)
            .filter(
                ~sqlalchemy.exists().where(
                    models.TrialHeartbeatModel.trial_id == models.TrialModel.trial_id
                )
            )
        ]
    failed = []
    retry = RetryStaleTrial(max_retry=MAX_RETRY)
    for trial_id in silent:
        started = storage.get_trial(trial_id).datetime_start
        if started is None or started.replace(tzinfo=None) > deadline:
            continue
        if storage.set_trial_state_values(trial_id, TrialState.FAIL):
            trial = storage.get_trial(trial_id)
            retry(study, trial)
            failed.append(trial.number)
    return failed


def _not_confirmation(models) -> sqlalchemy.ColumnElement[bool]:
    """SQL: the trial is not a confirmation run (those stand outside the search's budget)."""
    attr = models.TrialUserAttributeModel
    return ~sqlalchemy.exists().where(
        attr.trial_id == models.TrialModel.trial_id,
        attr.key == ROLE,
        attr.value_json == json.dumps(CONFIRM),
    )


def _never_ran(models) -> sqlalchemy.ColumnElement[bool]:
    """SQL: the trial is PRUNED because another worker took the budget's last trial."""
    attr = models.TrialUserAttributeModel
    return sqlalchemy.exists().where(
        attr.trial_id == models.TrialModel.trial_id,
        attr.key == OVER_BUDGET,
        attr.value_json == json.dumps(True),
    )


def count_trials(
    study: optuna.Study, states: tuple[TrialState, ...], *, below_number: int | None = None
) -> int:
    """How many of the study's search trials (baselines included, confirmation runs not, nor
    PRUNED trials that never ran) are in `states` (and numbered below `below_number`): one COUNT
    query, where loading every trial would cost tens of milliseconds at 1,000 trials."""
    models = rdb_models()

    storage = rdb_storage(study)
    if storage is None:
        trials = study.get_trials(deepcopy=False, states=states)
        return sum(
            not is_confirm(t)
            and not t.user_attrs.get(OVER_BUDGET)
            and (below_number is None or t.number < below_number)
            for t in trials
        )
    with storage.scoped_session() as session:
        query = (
            session.query(sqlalchemy.func.count(models.TrialModel.trial_id))
            .filter(models.TrialModel.study_id == storage_study_id(study))
            .filter(models.TrialModel.state.in_(states))
            .filter(_not_confirmation(models))
            .filter(~_never_ran(models))
        )
        if below_number is not None:
            query = query.filter(models.TrialModel.number < below_number)
        return int(query.scalar() or 0)


def set_user_attrs(trial: optuna.Trial, attrs: dict[str, Any]) -> None:
    """Write many user attributes of a running trial in one statement.

    `trial.set_user_attr` commits once per key, each after reading the trial back (a few
    milliseconds a key on SQLite): with the twenty a trial records, that was most of the
    service's cost per trial. This checks the trial is still running once, then upserts every
    key at once into Optuna's table. Falls back to `set_user_attr` where Optuna's schema or
    a dialect's upsert is not there.
    """
    storage = rdb_storage(trial.study)
    try:
        from sqlalchemy.dialects import postgresql, sqlite

        models = rdb_models()

        insert = {"sqlite": sqlite.insert, "postgresql": postgresql.insert}[storage.engine.name]
    except (ImportError, KeyError, AttributeError):
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        return
    table = models.TrialUserAttributeModel
    rows = [
        {"trial_id": storage_trial_id(trial), "key": key, "value_json": json.dumps(value)}
        for key, value in attrs.items()
    ]
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["trial_id", "key"], set_={"value_json": statement.excluded.value_json}
    )
    with rdb_session(storage) as session:
        state = models.TrialModel.find_or_raise_by_id(storage_trial_id(trial), session).state
        storage.check_trial_is_updatable(storage_trial_id(trial), state)
        session.execute(statement, rows)
    cache_user_attrs(trial, attrs)


def study_names(storage: RDBStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


__all__ = [
    "RetryStaleTrial",
    "count_trials",
    "set_user_attrs",
    "error_reason",
    "fail_trials_without_heartbeat",
    "heartbeat_interval",
    "heartbeat_settings",
    "open_storage",
    "running_trials_with_heartbeat",
    "storage_error",
    "study_names",
]
