"""A throwaway PostgreSQL cluster for tests: a temporary folder, a free loopback port, gone after.

The server binaries come from /usr/lib/postgresql/15/bin (`make system-test-deps` installs the
Debian `postgresql` package when they are missing) or from $DIKD_PG_BIN. PostgreSQL refuses to
run as root, so under root the cluster belongs to, and runs as, the `postgres` OS user.

The superuser `postgres` connects through the Unix socket without a password; every TCP
connection needs a password (scram-sha-256), as on a real deployment. Use it as

    with PostgresCluster.started() as pg:
        url = pg.create_database("dikd", password="...")
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from ports import reserve_port

DEFAULT_BIN = Path("/usr/lib/postgresql/15/bin")
BIN_ENV = "DIKD_PG_BIN"
START_TIMEOUT_S = 30
COMMAND_TIMEOUT_S = 60
# A test server: durability off, small, and quick to stop.
SERVER_SETTINGS = {
    "listen_addresses": "127.0.0.1",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "100",
    "shared_buffers": "32MB",
}


class PostgresNotFoundError(RuntimeError):
    """The PostgreSQL server binaries are missing."""


def find_bin_dir() -> Path:
    """The folder holding initdb, pg_ctl and postgres; a clear error naming the fix if absent."""
    installed = sorted(DEFAULT_BIN.parent.parent.glob("*/bin"), reverse=True)  # newest first
    candidates = (
        [Path(os.environ[BIN_ENV])] if os.environ.get(BIN_ENV) else [DEFAULT_BIN, *installed]
    )
    for folder in candidates:
        if all((folder / tool).is_file() for tool in ("initdb", "pg_ctl", "postgres")):
            return folder
    raise PostgresNotFoundError(
        f"PostgreSQL server binaries (initdb, pg_ctl, postgres) not found in "
        f"{', '.join(map(str, candidates))}: run `make system-test-deps` "
        f"(apt-get install -y postgresql) or point ${BIN_ENV} at the bin folder"
    )


# Run beside the test process, from the cluster's creation: when that process ends, however it
# ends (SIGKILL included), its end of the pipe closes, and the watchdog stops the server and
# deletes the cluster. Nothing is left to clean up by hand after a killed test run.
_WATCHDOG = """
import shutil, subprocess, sys
sys.stdin.read()
subprocess.run(sys.argv[1:-1], capture_output=True, timeout=60)
shutil.rmtree(sys.argv[-1], ignore_errors=True)
"""


class PostgresCluster:
    """One initialised cluster in `root` serving 127.0.0.1:`port`."""

    def __init__(self, bin_dir: Path, root: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self.host = "127.0.0.1"
        self._as_postgres = os.geteuid() == 0
        self._reservation: socket.socket | None = None  # the port, held until the server binds it
        self._watchdog: subprocess.Popen | None = None

    # --- life cycle -------------------------------------------------------------------------

    @classmethod
    @contextlib.contextmanager
    def started(cls) -> Iterator[PostgresCluster]:
        """Initialise and start a cluster; stop it and delete its folder on exit."""
        cluster = cls.create()
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.destroy()

    @classmethod
    def create(cls) -> PostgresCluster:
        bin_dir = find_bin_dir()
        root = Path(tempfile.mkdtemp(prefix="dikd-pg-"))
        reservation = reserve_port()
        cluster = cls(bin_dir, root, reservation.getsockname()[1])
        cluster._reservation = reservation
        cluster._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, *cluster._command(
                "pg_ctl", "-D", str(cluster.data), "-m", "immediate", "-w", "stop"), str(root)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C to the test run's process group spares it
        )  # fmt: skip
        try:
            if cluster._as_postgres:
                try:
                    entry = pwd.getpwnam("postgres")
                except KeyError:
                    raise PostgresNotFoundError(
                        "running as root, but there is no `postgres` OS user to own the "
                        "cluster: install the Debian postgresql package"
                    ) from None
                os.chown(root, entry.pw_uid, entry.pw_gid)
            cluster._run("initdb", "-D", str(cluster.data), "-A", "trust", "-U", "postgres",
                         "--no-sync", "--no-instructions", "-E", "UTF8")  # fmt: skip
            # Local socket: trusted (the tests' superuser); TCP: a password, always.
            cluster._write_as_owner(
                cluster.data / "pg_hba.conf",
                "local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n",
            )
        except BaseException:
            cluster.destroy()
            raise
        return cluster

    def start(self) -> None:
        options = " ".join(
            [f"-p {self.port}", f"-k {self.root}"]
            + [f"-c {key}={value}" for key, value in SERVER_SETTINGS.items()]
        )
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", options,
                  "-w", "-t", str(START_TIMEOUT_S), "start")  # fmt: skip
        if self._reservation is not None:  # the server listens on the port now
            self._reservation.close()
            self._reservation = None

    def stop(self) -> None:
        """Stop the server at once (`-m fast`: clients are disconnected)."""
        self._run("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t",
                  str(START_TIMEOUT_S), "stop")  # fmt: skip

    def running(self) -> bool:
        status = subprocess.run(
            self._command("pg_ctl", "-D", str(self.data), "status"),
            capture_output=True,
            timeout=COMMAND_TIMEOUT_S,
        )
        return status.returncode == 0

    def destroy(self) -> None:
        """Stop the server if it runs and delete the cluster's folder."""
        try:
            if self.data.is_dir() and self.running():
                self.stop()
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
            if self._reservation is not None:
                self._reservation.close()
            if self._watchdog is not None:  # nothing left for it to do: let it go
                self._watchdog.stdin.close()
                self._watchdog.wait(timeout=COMMAND_TIMEOUT_S)

    # --- databases --------------------------------------------------------------------------

    def execute(self, sql: str, params: tuple = (), *, dbname: str = "postgres") -> list[tuple]:
        """Run one statement as the superuser through the Unix socket (autocommit)."""
        with self.connect(dbname) as conn:
            conn.autocommit = True
            cursor = conn.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def connect(self, dbname: str = "postgres"):
        """A psycopg connection as the superuser through the Unix socket (close it yourself)."""
        import psycopg

        return psycopg.connect(host=str(self.root), port=self.port, user="postgres", dbname=dbname)

    def create_database(self, name: str, *, password: str, user: str | None = None) -> str:
        """A role `user` (default: `name`) with `password`, owning database `name`.
        Returns its SQLAlchemy URL (password percent-encoded)."""
        from psycopg import sql

        user = user or name
        self.execute(
            sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}")
            .format(sql.Identifier(user), sql.Literal(password))
            .as_string()
        )
        self.execute(
            sql.SQL("CREATE DATABASE {} OWNER {}")
            .format(sql.Identifier(name), sql.Identifier(user))
            .as_string()
        )
        return self.url(name, user=user, password=password)

    def url(self, dbname: str, *, user: str, password: str) -> str:
        return (
            f"postgresql+psycopg://{quote(user, safe='')}:{quote(password, safe='')}"
            f"@{self.host}:{self.port}/{dbname}"
        )

    # --- helpers ----------------------------------------------------------------------------

    def _command(self, tool: str, *args: str) -> list[str]:
        command = [str(self.bin_dir / tool), *args]
        return ["runuser", "-u", "postgres", "--", *command] if self._as_postgres else command

    def _run(self, tool: str, *args: str) -> None:
        result = subprocess.run(
            self._command(tool, *args),
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_S,
            cwd=self.root,
        )
        if result.returncode != 0:
            log = self.log.read_text()[-2000:] if self.log.is_file() else ""
            raise RuntimeError(
                f"{tool} {' '.join(args)} failed ({result.returncode}): "
                f"{result.stdout}{result.stderr}\n{log}"
            )

    def _write_as_owner(self, path: Path, text: str) -> None:
        path.write_text(text)
        if self._as_postgres:
            entry = pwd.getpwnam("postgres")
            os.chown(path, entry.pw_uid, entry.pw_gid)


def wait_for(predicate, *, timeout_s: float, interval_s: float = 0.2, what: str = "condition"):
    """Poll `predicate` until it returns a true value (returned), or fail after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(interval_s)


@contextlib.contextmanager
def started_for_tests() -> Iterator[PostgresCluster]:
    """A started cluster for a test fixture; a missing server fails the test, never skips it
    (`make test` installs the server)."""
    import pytest

    try:
        find_bin_dir()
    except PostgresNotFoundError as e:
        pytest.fail(str(e))
    with PostgresCluster.started() as cluster:
        yield cluster
