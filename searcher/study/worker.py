"""A worker process: joins a study from any machine and runs its trials until the budget is spent.

Signals: SIGINT or SIGTERM fails the running trial (never left RUNNING) and stops the worker; a
second one stops it at once. When the database goes away (a storage call fails, or the heartbeat
thread cannot record a beat), the worker stops with one line on stderr and exit code 1; its
running trial, left RUNNING in the database, goes stale and is retried by the next worker.
"""

from __future__ import annotations

import _thread
import logging
import os
import signal
import sys
import threading
from types import FrameType

import optuna
from tqdm import tqdm

from objectives import check_data
from searcher.study.search import TrialsKeepFailingError, default_worker_id, open_study, run_trials
from searcher.study.secrets import redact
from searcher.study.storage import error_reason, storage_error

EXIT_STORAGE_LOST = 1
RETRY_DELIVERY_S = 0.05  # a stop that arrived during a database call: look again this soon
RESEND_S = 1.0
# Code running in these packages is in the middle of a database call or of Optuna's bookkeeping
# of a trial (creating it, storing its end): a stop raised there could leave the trial RUNNING.
# In weakref callbacks (and __del__) Python drops what is raised.
_UNSAFE_PACKAGES = ("optuna", "sqlalchemy", "psycopg", "sqlite3", "weakref")
_STUDY_MODULE = "searcher.study.search"


class _Stop(KeyboardInterrupt):
    """A stop signal, raised in the main thread; Optuna marks the running trial FAIL on it."""


class _StorageLost(KeyboardInterrupt):
    """The heartbeat thread could not reach the database."""


class _Stopper:
    """Turns signals into an exception raised in the main thread at a safe point: inside the
    objective (training) or outside Optuna, never in the middle of a database call.

    The exception is raised again every RESEND_S until `run_worker` acknowledges it: a signal
    handler can run inside a weakref callback or a `__del__`, where Python prints and drops
    whatever is raised.
    """

    def __init__(self) -> None:
        self.pending: BaseException | None = None
        self.stopping = False  # a stop signal came: the next one ends the process at once
        self.lost: BaseException | None = None

    def install(self) -> None:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_stop_signal)
        signal.signal(signal.SIGUSR1, self._on_storage_lost)
        signal.signal(signal.SIGALRM, lambda _signum, frame: self._deliver(frame))
        default_hook = threading.excepthook

        def on_thread_error(args: threading.ExceptHookArgs) -> None:
            # Optuna's heartbeat thread dies on a database error: stop the worker with one line
            # instead of training on while nobody can store the result.
            if storage_error(args.exc_value) is not None and self.lost is None:
                self.lost = args.exc_value
                _thread.interrupt_main(signal.SIGUSR1)
                return
            default_hook(args)

        threading.excepthook = on_thread_error

    def acknowledge(self) -> None:
        """The stop reached `run_worker`: no more raising."""
        signal.setitimer(signal.ITIMER_REAL, 0)
        self.pending = None

    def _on_stop_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.stopping:
            os._exit(128 + signum)  # the second signal: at once, whatever is running
        self.stopping = True
        self.pending = _Stop(signum)
        self._deliver(frame)

    def _on_storage_lost(self, _signum: int, frame: FrameType | None) -> None:
        if self.pending is None and not self.stopping:
            self.pending = _StorageLost()
        self._deliver(frame)

    def _deliver(self, frame: FrameType | None) -> None:
        if self.pending is None:
            return
        # In run_worker itself the stop is being (or about to be) acknowledged: raise deeper.
        unsafe = _in_unsafe_code(frame) or (frame is not None and frame.f_code is _RUN_WORKER)
        signal.setitimer(signal.ITIMER_REAL, RETRY_DELIVERY_S if unsafe else RESEND_S)
        if not unsafe:
            raise type(self.pending)(*self.pending.args)


def _in_unsafe_code(frame: FrameType | None) -> bool:
    """Whether the innermost frames, up to the objective, run Optuna or database code."""
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if module == _STUDY_MODULE and frame.f_code.co_name == "objective":
            return False
        if module.partition(".")[0] in _UNSAFE_PACKAGES or frame.f_code.co_name == "__del__":
            return True
        frame = frame.f_back
    return False


class _QuietStops(logging.Filter):
    """Optuna logs a trial that failed on a stop or a database error with a traceback; the
    worker says what happened in one line when it stops."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return True
        if storage_error(exc) is not None:
            return False
        if isinstance(exc, (_Stop, _StorageLost)):
            record.exc_info, record.exc_text = None, None  # the message names the signal
        return True


def run_worker(
    name: str, storage_url: str, *, n_trials: int | None, worker_id: str | None, quiet: bool
) -> int:
    """Run trials of study `name`; returns the process exit code."""
    worker_id = worker_id or default_worker_id()
    stopper = _Stopper()
    stopper.install()
    optuna.logging.get_verbosity()  # makes Optuna set up its handler, which the filter joins
    for handler in logging.getLogger("optuna").handlers:
        handler.addFilter(_QuietStops())
    bar = None
    try:
        study, spec = open_study(name, storage_url, heartbeat=True, seed_id=worker_id)
        check_data(spec.train)
        bar = None if quiet else tqdm(desc=f"worker {worker_id}", unit="trial")
        on_trial = (lambda _t: bar.update(1)) if bar is not None else None
        ran = run_trials(study, spec, max_trials=n_trials, on_trial=on_trial)
        if bar is not None:
            bar.close()
        print(f"worker {worker_id}: ran {ran} trials of '{name}'", file=sys.stderr)
        return 0
    except _Stop as e:
        stopper.acknowledge()
        if bar is not None:
            bar.close()
        signum = e.args[0]
        print(
            f"worker {worker_id}: stopped by {signal.Signals(signum).name}; "
            "its running trial, if any, was marked FAIL",
            file=sys.stderr,
        )
        return 128 + signum
    except TrialsKeepFailingError as e:
        if bar is not None:
            bar.close()
        print(f"worker {worker_id}: {redact(str(e), storage_url)}", file=sys.stderr)
        return 1
    except (Exception, _StorageLost) as e:
        stopper.acknowledge()
        cause = stopper.lost if isinstance(e, _StorageLost) else storage_error(e)
        if cause is None:
            raise
        if bar is not None:
            bar.close()
        reason = redact(error_reason(cause), storage_url)
        print(
            f"worker {worker_id}: lost the study storage {redact(storage_url, storage_url)} "
            f"({reason}); the trials stored are kept, and a trial left RUNNING is retried after "
            "the grace period: start a worker again when the database is back",
            file=sys.stderr,
        )
        return EXIT_STORAGE_LOST
    finally:
        stopper.acknowledge()


_RUN_WORKER = run_worker.__code__
