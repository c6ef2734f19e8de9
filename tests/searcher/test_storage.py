"""The study storage: URLs and their passwords, heartbeat settings, SQLite's lock, PostgreSQL's
pool, the retry record of a dead worker's trial (a real PostgreSQL cluster, see tests/postgres.py).
"""

from __future__ import annotations

import multiprocessing
import time

import optuna
import pytest
import sqlalchemy
from optuna.trial import TrialState
from postgres import started_for_tests

from objectives import ConfigError
from searcher.study.secrets import mask_password, redact
from searcher.study.storage import (
    MAX_RETRY,
    PG_POOL,
    SQLITE_BUSY_TIMEOUT_S,
    RetryStaleTrial,
    error_reason,
    heartbeat_settings,
    open_storage,
    running_trials_with_heartbeat,
    storage_error,
)

PASSWORD = "st0rage-Secret"


@pytest.fixture(scope="module")
def pg():
    with started_for_tests() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pg_url(pg) -> str:
    return pg.create_database("dikd_storage", password=PASSWORD)


@pytest.fixture(autouse=True)
def _quiet_optuna():
    optuna.logging.set_verbosity(optuna.logging.ERROR)


# --- URLs and passwords ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("postgresql://u:secret@h:5432/db", "postgresql://u:***@h:5432/db"),
        ("postgresql+psycopg://u:p%40ss@h/db", "postgresql+psycopg://u:***@h/db"),
        ("postgresql://u:p@ss@h/db", "postgresql://u:***@h/db"),  # a raw '@' leaks nothing
        ("postgresql://u@h/db", "postgresql://u@h/db"),
        ("postgresql://h:5432/db", "postgresql://h:5432/db"),
        ("sqlite:///dikd.db", "sqlite:///dikd.db"),
        (
            "a postgresql://a:x@h/d and postgresql://b:y@k/e, mail me@home",
            "a postgresql://a:***@h/d and postgresql://b:***@k/e, mail me@home",
        ),
        ("postgresql+psycopg://u@h/d?password=s3cret", "postgresql+psycopg://u@h/d?password=***"),
        (
            "postgresql://u@h/d?sslmode=require&PASSWORD=s3&cret=1",
            "postgresql://u@h/d?sslmode=require&PASSWORD=***&cret=1",
        ),
        ("host=h user=u password=s3cret dbname=d", "host=h user=u password=*** dbname=d"),
        ("host=h password='a b\\'c' port=1", "host=h password=*** port=1"),
        ('dbname=d passwd=x pwd="y z"', "dbname=d passwd=*** pwd=***"),
        ("no_password=fine mypassword=also", "no_password=fine mypassword=also"),
    ],
)
def test_mask_password_hides_every_url_password(text, masked):
    assert mask_password(text) == masked


def test_redact_also_hides_the_password_written_out():
    url = "postgresql://u:s3cr%2Ft@h/db"
    assert redact("auth failed for s3cr/t at postgresql://u:s3cr%2Ft@h/db", url) == (
        "auth failed for *** at postgresql://u:***@h/db"
    )
    assert redact("nothing here", "sqlite:///x.db") == "nothing here"


@pytest.mark.parametrize(
    "url",
    ["not a url", "mysql://u:hunter22@h/db", "redis://u:hunter22@h/0"],
)
def test_unusable_urls_are_refused_with_the_password_masked(url):
    with pytest.raises(ConfigError, match="use sqlite") as info:
        open_storage(url)
    assert "hunter22" not in str(info.value)


# --- heartbeats -------------------------------------------------------------------------------


def test_heartbeat_settings_come_from_the_environment(monkeypatch):
    monkeypatch.delenv("DIKD_HEARTBEAT_INTERVAL", raising=False)
    monkeypatch.delenv("DIKD_GRACE_PERIOD", raising=False)
    assert heartbeat_settings() == (10, 30)
    monkeypatch.setenv("DIKD_HEARTBEAT_INTERVAL", "2")
    monkeypatch.setenv("DIKD_GRACE_PERIOD", "7")
    assert heartbeat_settings() == (2, 7)


@pytest.mark.parametrize(
    ("interval", "grace", "message"),
    [
        ("0", "30", "DIKD_HEARTBEAT_INTERVAL must be a whole number"),
        ("ten", "30", "DIKD_HEARTBEAT_INTERVAL must be a whole number"),
        ("10", "-1", "DIKD_GRACE_PERIOD must be a whole number"),
        ("10", "10", "must exceed DIKD_HEARTBEAT_INTERVAL"),
    ],
)
def test_bad_heartbeat_settings_name_the_variable(monkeypatch, interval, grace, message):
    monkeypatch.setenv("DIKD_HEARTBEAT_INTERVAL", interval)
    monkeypatch.setenv("DIKD_GRACE_PERIOD", grace)
    with pytest.raises(ConfigError, match=message):
        heartbeat_settings()


def test_sqlite_worker_storage_waits_for_the_lock_and_retries_dead_trials(tmp_path, monkeypatch):
    monkeypatch.setenv("DIKD_HEARTBEAT_INTERVAL", "1")
    monkeypatch.setenv("DIKD_GRACE_PERIOD", "3")
    storage = open_storage(f"sqlite:///{tmp_path / 'w.db'}", heartbeat=True)
    assert storage.engine_kwargs["connect_args"]["timeout"] == SQLITE_BUSY_TIMEOUT_S
    assert (storage.heartbeat_interval, storage.grace_period) == (1, 3)
    callback = storage.get_heartbeat_stale_trial_callback()
    assert isinstance(callback, RetryStaleTrial) and callback._max_retry == MAX_RETRY == 1
    reader = open_storage(f"sqlite:///{tmp_path / 'w.db'}")
    assert reader.get_heartbeat_interval() is None


def _ask_many(url: str, start_at: float, count: int, queue) -> None:
    storage = open_storage(url, heartbeat=True)
    study = optuna.load_study(study_name="race", storage=storage)
    while time.time() < start_at:
        time.sleep(0.001)
    numbers = []
    for _ in range(count):
        numbers.append(study._pop_waiting_trial_id())  # what study.ask() does first
    queue.put(numbers)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_each_enqueued_trial_goes_to_one_worker_only(backend, tmp_path, request):
    """Four processes take 40 enqueued trials at once. With SQLite's default transactions two
    processes took the same trial (6 of 40 here); BEGIN IMMEDIATE makes it one each."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'race.db'}"
    else:
        url = request.getfixturevalue("pg_url")
    study = optuna.create_study(study_name="race", storage=open_storage(url))
    for i in range(40):
        study.enqueue_trial({"x": i})
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    start_at = time.time() + 1.0
    workers = [context.Process(target=_ask_many, args=(url, start_at, 10, queue)) for _ in range(4)]
    for worker in workers:
        worker.start()
    taken = [n for _ in workers for n in queue.get(timeout=300)]  # a deadline for a loaded machine
    for worker in workers:
        worker.join(timeout=30)
    taken = [n for n in taken if n is not None]
    assert len(taken) == len(set(taken)) == 40
    optuna.delete_study(study_name="race", storage=open_storage(url))


@pytest.mark.filterwarnings("ignore:Heartbeat of storage:UserWarning")
def test_retry_of_a_stale_trial_is_recorded_and_happens_once(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'r.db'}", heartbeat=True)
    study = optuna.create_study(storage=storage, directions=["minimize", "maximize"])
    trial = study.ask()
    trial.suggest_float("frequency", 0.2, 0.8)
    trial.set_user_attr("role", "search")
    callback = storage.get_heartbeat_stale_trial_callback()

    def fail_and_call(number: int) -> None:
        frozen = study.get_trials()[number]
        storage.set_trial_state_values(frozen._trial_id, state=TrialState.FAIL)
        callback(study, study.get_trials()[number])

    fail_and_call(0)
    retry = study.get_trials()[1]
    assert retry.state == TrialState.WAITING
    assert retry.params == study.get_trials()[0].params
    assert retry.system_attrs["failed_trial"] == 0 and retry.system_attrs["retry_history"] == [0]
    assert retry.user_attrs == {"role": "search", "retry_of": 0, "retry_history": [0]}
    study.ask()  # the retry runs ... and its worker dies too
    fail_and_call(1)
    assert len(study.get_trials()) == 2  # retried once (MAX_RETRY), not again


def test_running_trials_with_heartbeat_counts_only_beating_trials(tmp_path):
    storage = open_storage(f"sqlite:///{tmp_path / 'h.db'}", heartbeat=True)
    study = optuna.create_study(storage=storage)
    with pytest.warns(UserWarning, match="Heartbeat"):
        beating, silent = study.ask(), study.ask()
    assert silent.number == 1
    storage.record_heartbeat(beating._trial_id)
    assert running_trials_with_heartbeat(study) == 1
    study.tell(beating, 1.0)
    assert running_trials_with_heartbeat(study) == 0


# --- database errors --------------------------------------------------------------------------


def _chain(outer: BaseException, inner: BaseException, *, cause: bool) -> BaseException:
    if cause:
        outer.__cause__ = inner
    else:
        outer.__context__ = inner
    return outer


def test_storage_error_is_found_behind_optunas_wrappers():
    driver = sqlalchemy.exc.OperationalError(
        "SELECT 1", {}, Exception("connection refused\nIs the server running?")
    )
    wrapped = _chain(optuna.exceptions.StorageInternalError("commit failed"), driver, cause=True)
    odd = _chain(AssertionError("Should not reach."), wrapped, cause=False)
    assert storage_error(odd) is wrapped
    assert error_reason(odd) == "connection refused"
    assert storage_error(ValueError("training diverged")) is None
    handled = ConfigError("cannot open storage")
    handled.__context__, handled.__suppress_context__ = driver, True  # raise ... from None
    assert storage_error(handled) is None


# --- PostgreSQL -------------------------------------------------------------------------------


def test_postgres_storage_has_a_bounded_pool_and_survives_a_server_restart(pg, pg_url):
    plain = pg_url.replace("postgresql+psycopg://", "postgresql://")
    storage = open_storage(plain)
    assert storage.engine.dialect.driver == "psycopg"
    assert storage.engine.pool.size() == PG_POOL["pool_size"]
    assert storage.engine.pool._max_overflow == PG_POOL["max_overflow"]
    assert storage.engine.pool._pre_ping
    optuna.create_study(study_name="survivor", storage=storage)
    pg.stop()
    with pytest.raises(Exception) as info:
        storage.get_all_studies()
    assert storage_error(info.value) is not None
    assert PASSWORD not in redact(error_reason(info.value), pg_url)
    pg.start()
    # The pooled connections died with the server; pre-ping replaces them.
    assert "survivor" in [s.study_name for s in storage.get_all_studies()]


def test_postgres_wrong_password_is_reported_without_it(pg, pg_url):
    wrong = pg.url("dikd_storage", user="dikd_storage", password="not-" + PASSWORD)
    with pytest.raises(ConfigError, match="password authentication failed") as info:
        open_storage(wrong)
    assert PASSWORD not in str(info.value) and "dikd_storage:***@" in str(info.value)
