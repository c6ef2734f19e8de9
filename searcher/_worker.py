"""A worker process: joins a study from any machine and runs its trials until the budget is spent.

Signals: SIGINT or SIGTERM fails the running trial (never left RUNNING) and stops the worker; a
second SIGINT stops it at once.
"""

from __future__ import annotations

import os
import signal
import sys

import sqlalchemy.exc
from tqdm import tqdm

from searcher._storage import mask_password
from searcher._study import default_worker_id, open_study, run_trials


class _Stop(KeyboardInterrupt):
    """Raised in the main thread by a stop signal; Optuna fails the running trial on it."""


def _install_signal_handlers() -> None:
    def stop(signum, _frame):
        # The next signal ends the process at once, without waiting for the trial to be stored.
        signal.signal(signal.SIGINT, lambda *_: os._exit(128 + signal.SIGINT))
        raise _Stop(signum)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)


def run_worker(
    name: str, storage_url: str, *, n_trials: int | None, worker_id: str | None, quiet: bool
) -> int:
    """Run trials of study `name`; returns the process exit code."""
    worker_id = worker_id or default_worker_id()
    _install_signal_handlers()
    try:
        study, spec = open_study(name, storage_url, heartbeat=True, seed_id=worker_id)
        bar = None if quiet else tqdm(desc=f"worker {worker_id}", unit="trial")
        on_trial = (lambda _t: bar.update(1)) if bar is not None else None
        ran = run_trials(study, spec, max_trials=n_trials, on_trial=on_trial)
        if bar is not None:
            bar.close()
        print(f"worker {worker_id}: ran {ran} trials of '{name}'", file=sys.stderr)
        return 0
    except _Stop as e:
        signum = e.args[0]
        print(
            f"worker {worker_id}: stopped by signal {signum}; its running trial was marked FAIL",
            file=sys.stderr,
        )
        return 128 + signum
    except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as e:
        reason = mask_password(str(getattr(e, "orig", e)).strip().splitlines()[0])
        print(
            f"worker {worker_id}: lost the study storage {mask_password(storage_url)} ({reason}); "
            "nothing stored was lost: start the worker again when the database is back",
            file=sys.stderr,
        )
        return 1
