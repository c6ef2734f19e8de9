"""Many workers on one study, driven as a user drives them: `dikd worker` and `dikd study run
--jobs` in subprocesses, against a real PostgreSQL server (a throwaway cluster) and SQLite.

Heartbeats run at 1 s with a 3 s grace period (DIKD_HEARTBEAT_INTERVAL / DIKD_GRACE_PERIOD) so
a dead worker's trial goes stale in seconds. Every output of every command is checked for the
storage password.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path
from urllib.parse import quote

import optuna
import pytest
import yaml
from click.testing import CliRunner
from optuna.trial import TrialState
from postgres import started_for_tests, wait_for

from searcher.cli import cli
from searcher.study.search import create_or_resume
from searcher.study.spec import parse_spec
from searcher.study.storage import open_storage

PASSWORD = "dk-S3cret/pw@9x"  # '/' and '@' must be percent-encoded in the URL
USER = "dikd_worker"
# These tests check the service (budget, heartbeats, signals, a lost database), not training:
# a trial is a user's loop that sleeps and reports (tests/user_code/loops.py `sleeper`), as
# `dikd worker` imports it from an allowed module.
USER_CODE = Path(__file__).resolve().parent.parent / "user_code"
FAST_ENV = {
    "DIKD_HEARTBEAT_INTERVAL": "1",
    "DIKD_GRACE_PERIOD": "3",
    "OMP_NUM_THREADS": "1",  # many workers share two cores
    "PYTHONUNBUFFERED": "1",
    "PYTHONPATH": os.pathsep.join(filter(None, [str(USER_CODE), os.environ.get("PYTHONPATH")])),
    "DIKD_ALLOW_IMPORTS": "loops",
}
TRAIN = {"loop": "loops:sleeper", "epochs": 2, "params": {"sleep_s": 0.05}}
TINY = {
    "name": "tiny",
    "train": TRAIN,
    "baseline": {"fractions": [0.5, 1.0]},
    "space": {"frequency": {"low": 0.2, "high": 0.8}, "scale": {"choices": [2.0, 4.0]}},
    "n_trials": 6,
}
# Trials of a few seconds (6 epochs of 2 steps of 0.3 s), long enough to be killed mid-way.
SLOW = {
    **TINY,
    "train": {**TRAIN, "epochs": 6, "params": {"sleep_s": 0.3}},
    "baseline": {"fractions": [1.0]},
    "n_trials": 3,
}
DIKD = Path(sys.executable).with_name("dikd")
_STUDY = "searcher.study.search"
LOCK_ERRORS = ("database is locked", "Should not reach", "Traceback")


def dikd_command(*args: str) -> list[str]:
    # The installed `dikd` script, as a user (and the worker image) runs it.
    if DIKD.is_file():
        return [str(DIKD), *args]
    return [sys.executable, "-m", "searcher", *args]


def assert_no_password(text: str) -> None:
    for form in (PASSWORD, quote(PASSWORD, safe="")):
        assert form not in text, f"the storage password appears in the output:\n{text}"


class Proc:
    """A `dikd` subprocess whose stdout and stderr go to files (no pipe can fill up)."""

    def __init__(self, folder: Path, label: str, args: list[str], env: dict[str, str]) -> None:
        self.label = label
        self.out = folder / f"{label}.out"
        self.err = folder / f"{label}.err"
        with open(self.out, "w") as out, open(self.err, "w") as err:
            self.proc = subprocess.Popen(
                dikd_command(*args),
                stdout=out,
                stderr=err,
                env={**os.environ, **FAST_ENV, **env},
                cwd=folder,
            )

    def wait(self, timeout_s: float) -> int:
        try:
            code = self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            pytest.fail(f"{self.label} did not finish in {timeout_s:.0f} s:\n{self.output()}")
        assert_no_password(self.output())
        return code

    def output(self) -> str:
        return self.out.read_text() + self.err.read_text()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def procs():
    """Starts `dikd` subprocesses; kills any still alive at the end of the test."""
    started: list[Proc] = []

    def start(folder: Path, label: str, *args: str, env: dict[str, str] | None = None) -> Proc:
        proc = Proc(folder, label, list(args), env or {})
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="module")
def pg():
    with started_for_tests() as cluster:
        cluster.execute(f"CREATE ROLE {USER} LOGIN PASSWORD '{PASSWORD}'")
        yield cluster


@pytest.fixture
def pg_url(pg, request) -> str:
    """A fresh database for the test, owned by the password role."""
    name = request.node.name.removeprefix("test_")[:40]
    pg.execute(f"CREATE DATABASE {name} OWNER {USER}")
    return pg.url(name, user=USER, password=PASSWORD)


def create_study(url: str, spec: dict, *, baseline_done: bool = False) -> None:
    """Create the study; with `baseline_done` its enqueued baseline (trial 0) is told complete
    (with made-up values) so that a worker's first trial is a sampled one, with parameters."""
    study = create_or_resume(parse_spec(spec, "test spec"), url)
    if baseline_done:
        with warnings.catch_warnings():  # "Heartbeat ... used with Study.optimize": not here
            warnings.simplefilter("ignore", UserWarning)
            trial = study.ask()
        assert trial.number == 0 and trial.user_attrs["role"] == "baseline"
        study.tell(trial, [1.0, 0.5])


def trials(url: str, name: str) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(url)
    try:
        return optuna.load_study(study_name=name, storage=storage).get_trials()
    finally:
        storage.engine.dispose()


def count(ts: list[optuna.trial.FrozenTrial], state: TrialState) -> int:
    return sum(t.state == state for t in ts)


def running_trial(url: str, name: str, number: int | None = None):
    """The RUNNING trial (with that number), or None."""
    for t in trials(url, name):
        if t.state == TrialState.RUNNING and (number is None or t.number == number):
            return t
    return None


def test_three_workers_share_one_postgres_study_and_its_budget(pg_url, tmp_path, procs):
    spec_path = tmp_path / "tiny.yaml"
    spec_path.write_text(yaml.safe_dump(TINY))
    create_study(pg_url, TINY)  # so that all three start at once
    workers = [
        # Two local workers (they get the URL through DIKD_STORAGE from their parent) ...
        procs(tmp_path, "run", "study", "run", str(spec_path), "--jobs", "2", "--storage", pg_url),
        # ... and one joining "from another machine".
        procs(tmp_path, "outside", "worker", "tiny", "--quiet", "--storage", pg_url),
    ]
    codes = [w.wait(180) for w in workers]
    outputs = [w.output() for w in workers]
    assert codes == [0, 0], outputs

    ts = trials(pg_url, "tiny")
    assert count(ts, TrialState.COMPLETE) == 6, [(t.number, t.state) for t in ts]
    assert count(ts, TrialState.RUNNING) == 0
    assert count(ts, TrialState.FAIL) == 0
    numbers = [t.number for t in ts]
    assert len(numbers) == len(set(numbers))
    # Trials past the budget (taken by a worker in the same instant) are pruned, not run.
    assert all(t.user_attrs.get("over_budget") for t in ts if t.state == TrialState.PRUNED)
    # Each worker reports what it ran; together exactly the budget.
    ran = [int(part.split()[0]) for o in outputs for part in o.split(" ran ")[1:]]
    assert len(ran) == 3 and sum(ran) == 6, outputs
    assert "***" in outputs[0]  # `study run` names the storage, masked
    # Seeds per worker: no two search trials propose the same point.
    points = [tuple(sorted(t.params.items())) for t in ts if t.params]
    assert len(points) == len(set(points)), points


def test_sigkill_mid_trial_fails_it_and_a_live_worker_retries_its_parameters(
    pg_url, tmp_path, procs
):
    # Budget 2: the baseline (done) and trial 1. After the kill, trial 1 still counts as
    # running, so the survivor finds the budget spent: it must wait for trial 1 to go stale
    # and run its retry, not leave.
    create_study(pg_url, {**SLOW, "n_trials": 2}, baseline_done=True)
    env = {"DIKD_STORAGE": pg_url}
    doomed = procs(tmp_path, "doomed", "worker", "tiny", "--quiet", "--worker-id", "a", env=env)
    wait_for(lambda: running_trial(pg_url, "tiny", 1), timeout_s=90, what="trial 1 to run")
    time.sleep(0.5)
    doomed.proc.send_signal(signal.SIGKILL)
    doomed.wait(10)
    killed = running_trial(pg_url, "tiny", 1)
    assert killed is not None, "trial 1 finished before the kill: lengthen SLOW's trials"
    assert killed.params

    survivor = procs(tmp_path, "survivor", "worker", "tiny", "--quiet", "--worker-id", "b", env=env)
    assert survivor.wait(120) == 0, survivor.output()

    ts = {t.number: t for t in trials(pg_url, "tiny")}
    assert ts[1].state == TrialState.FAIL
    retries = [t for t in ts.values() if t.system_attrs.get("failed_trial") == 1]
    assert len(retries) == 1
    retry = retries[0]
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert retry.system_attrs["retry_history"] == [1]
    assert retry.user_attrs["retry_of"] == 1 and retry.user_attrs["retry_history"] == [1]
    assert count(list(ts.values()), TrialState.COMPLETE) == 2
    assert count(list(ts.values()), TrialState.RUNNING) == 0
    assert "ran 1 trials" in survivor.output()


def test_sigterm_fails_the_running_trial_and_a_second_sigint_stops_at_once(
    pg, pg_url, tmp_path, procs
):
    # Two studies, one worker each, stopped in two ways.
    create_study(pg_url, SLOW)
    create_study(pg_url, {**SLOW, "name": "other"})
    env = {"DIKD_STORAGE": pg_url}
    term = procs(tmp_path, "term", "worker", "tiny", "--quiet", env=env)
    impatient = procs(tmp_path, "int", "worker", "other", "--quiet", env=env)
    for name in ("tiny", "other"):
        wait_for(lambda n=name: running_trial(pg_url, n), timeout_s=90, what=f"a trial of {name}")
    time.sleep(0.5)

    term.proc.send_signal(signal.SIGTERM)
    assert term.wait(30) == 128 + signal.SIGTERM
    assert "stopped by SIGTERM" in term.output() and "Traceback" not in term.output()
    ts = trials(pg_url, "tiny")
    assert count(ts, TrialState.RUNNING) == 0
    assert count(ts, TrialState.FAIL) == 1

    # The second worker's database is slow (a table lock held here): its first SIGINT waits
    # for the trial's FAIL to be stored, the second one ends it at once.
    dbname = pg_url.rsplit("/", 1)[1]
    with pg.connect(dbname) as lock:
        lock.execute("LOCK TABLE trials IN ACCESS EXCLUSIVE MODE")
        impatient.proc.send_signal(signal.SIGINT)
        time.sleep(1.5)
        assert impatient.proc.poll() is None, "the first SIGINT did not wait for the database"
        # Still under the lock: only the second signal's immediate exit can end it now.
        impatient.proc.send_signal(signal.SIGINT)
        assert impatient.wait(30) == 128 + signal.SIGINT
        lock.rollback()


def test_four_local_workers_share_one_sqlite_file_without_lock_errors(tmp_path):
    """`study run --jobs` end to end (each trial the sleeping loop); 24 workers are
    benchmarks/many_workers.py's (each process here costs seconds of imports)."""
    spec = {**TINY, "n_trials": 10, "storage": f"sqlite:///{tmp_path / 'many.db'}"}
    path = tmp_path / "many.yaml"
    path.write_text(yaml.safe_dump(spec))
    started = time.monotonic()
    run = subprocess.run(
        dikd_command("study", "run", str(path), "--jobs", "4"),
        capture_output=True,
        text=True,
        timeout=300,
        # The default heartbeat (10 s, grace 30 s): 1 s beats from 4 processes would queue on
        # SQLite's single write lock, and these two loaded cores, past a 3 s grace period.
        # The spec file allows its own loop's module; it must only be importable.
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": FAST_ENV["PYTHONPATH"]},
        cwd=tmp_path,
    )
    elapsed = time.monotonic() - started
    output = run.stdout + run.stderr
    assert run.returncode == 0, output
    for error in LOCK_ERRORS:
        assert error not in output, output
    ts = trials(spec["storage"], "tiny")
    assert count(ts, TrialState.COMPLETE) == 10
    assert count(ts, TrialState.RUNNING) == 0
    assert count(ts, TrialState.FAIL) == 0
    print(f"4 SQLite workers: {len(ts)} trials in {elapsed:.1f} s")


def test_database_lost_mid_study_then_back_nothing_stored_is_lost(pg, pg_url, tmp_path, procs):
    create_study(pg_url, SLOW, baseline_done=True)
    env = {"DIKD_STORAGE": pg_url}
    first = procs(tmp_path, "first", "worker", "tiny", "--quiet", env=env)

    def one_done_one_running():
        ts = trials(pg_url, "tiny")
        return count(ts, TrialState.COMPLETE) >= 2 and count(ts, TrialState.RUNNING) == 1 and ts

    wait_for(one_done_one_running, timeout_s=90, what="a completed and a running trial")
    before = {
        t.number: (t.params, t.values) for t in trials(pg_url, "tiny") if t.state.is_finished()
    }
    pg.stop()
    try:
        assert first.wait(60) == 1
    finally:
        pg.start()
    lines = [line for line in first.err.read_text().splitlines() if line.strip()]
    assert len(lines) == 1, lines
    assert "lost the study storage" in lines[0] and "start a worker again" in lines[0]

    second = procs(tmp_path, "second", "worker", "tiny", "--quiet", env=env)
    assert second.wait(120) == 0, second.output()
    after = {t.number: t for t in trials(pg_url, "tiny")}
    for number, (params, values) in before.items():
        assert (after[number].params, after[number].values) == (params, values)
    assert count(list(after.values()), TrialState.COMPLETE) == 3
    assert count(list(after.values()), TrialState.RUNNING) == 0
    # The trial cut off by the outage was failed as stale and retried with its parameters.
    assert any(t.user_attrs.get("retry_of") is not None for t in after.values())


def test_password_never_appears_in_any_output(pg, pg_url, monkeypatch, capfd):
    """The commands that print the storage, run in-process (the subprocess tests above check
    every worker's and `study run`'s output too), with the URL in DIKD_STORAGE and --storage."""
    create_study(pg_url, TINY)
    dbname = pg_url.rsplit("/", 1)[1]
    wrong = pg.url(dbname, user=USER, password=PASSWORD[::-1])
    runner = CliRunner()

    def dikd(*args: str, env_url: str | None = pg_url) -> tuple[int, str]:
        if env_url is None:
            monkeypatch.delenv("DIKD_STORAGE", raising=False)
        else:
            monkeypatch.setenv("DIKD_STORAGE", env_url)
        result = runner.invoke(cli, list(args))
        captured = capfd.readouterr()
        output = result.output + captured.out + captured.err
        assert_no_password(output)
        return result.exit_code, output

    code, output = dikd("study", "list")
    assert code == 0 and f"{USER}:***@" in output and "tiny" in output
    code, output = dikd("study", "list", "--storage", pg_url, env_url=None)
    assert code == 0 and f"{USER}:***@" in output
    code, output = dikd("study", "show", "tiny")
    assert code == 0
    code, output = dikd("study", "show", "nope")
    assert code == 2 and "no study 'nope'" in output and f"{USER}:***@" in output
    code, output = dikd("study", "list", "--storage", pg_url.replace("+psycopg", "+nodriver"))
    assert code == 2 and f"{USER}:***@" in output
    # The password reversed is wrong: the server's refusal is reported, masked.
    code, output = dikd("study", "list", env_url=wrong)
    assert code == 2 and "password authentication failed" in output
    assert PASSWORD[::-1] not in output and quote(PASSWORD[::-1], safe="") not in output


def _call_through(*frames: tuple[str, str]) -> bool:
    """Whether a stop may be raised in a function reached through `frames` (module, function),
    outermost first."""
    from searcher.study.worker import _in_unsafe_code

    def probe() -> bool:
        return _in_unsafe_code(sys._getframe())

    function = probe
    for module, name in reversed(frames):
        namespace = {"__name__": module, "inner": function}
        exec(f"def {name}():\n    return inner()\n", namespace)
        function = namespace[name]
    return function()


@pytest.mark.parametrize(
    ("frames", "unsafe"),
    [
        # Training inside the objective inside Optuna's optimize: stop now.
        ([("optuna.study._optimize", "_run_trial"), (_STUDY, "objective"), ("torch.nn", "f")], 0),
        # The objective storing an attribute: wait for the database call to end.
        ([("optuna.study._optimize", "_run_trial"), (_STUDY, "objective"), ("sqlalchemy", "x")], 1),
        # Optuna creating the trial or storing its end: wait.
        (
            [("searcher.study.search", "run_trials"), ("optuna.study._tell", "_tell_with_warning")],
            1,
        ),
        # Between trials, waiting for others' trials: stop now.
        (
            [
                ("searcher.study.worker", "run_worker"),
                ("searcher.study.search", "_wait_for_running"),
            ],
            0,
        ),
    ],
)
def test_stop_signals_are_delivered_outside_database_calls(frames, unsafe):
    assert _call_through(*frames) is bool(unsafe)
