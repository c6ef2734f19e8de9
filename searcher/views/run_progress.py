"""`study run` in this process or in local worker processes: progress bars, one worker per
job or GPU, and stopping them on Ctrl-C."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import click
import optuna
from optuna.trial import FrozenTrial, TrialState
from tqdm import tqdm

from objectives import ALLOW_IMPORTS_ENV, allowed_packages
from searcher.study.record import fail_reason, is_stopped_early, searched
from searcher.study.search import default_worker_id
from searcher.study.spec import STORAGE_ENV
from searcher.verdict.front import pareto_front
from searcher.views.pruning import stopped_early
from searcher.views.terminal import describe_schedule

_FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)


class _Progress:
    """Progress bars: trials of the study (with the front's size) and epochs of the trial.
    With stdout not a terminal (a log file, a pipe, CI), where the bars are off, one flushed
    line per finished trial instead."""

    def __init__(self, study: optuna.Study, total: int | None) -> None:
        trials = searched(study.get_trials(deepcopy=False))  # not confirmation runs
        done = sum(t.state == TrialState.COMPLETE for t in trials)
        self.study, self.total = study, total
        self.lines = not sys.stdout.isatty()
        self.reported = {t.number for t in trials if t.state in _FINISHED}
        self.trials = tqdm(
            total=total, initial=done, desc="trials", unit="trial", position=0, disable=None
        )
        self.epochs: tqdm | None = None

    def on_epoch(self, epoch: int, total: int) -> None:
        if self.epochs is None or epoch == 1:
            if self.epochs is not None:
                self.epochs.close()
            self.epochs = tqdm(
                total=total, desc="  epochs", unit="ep", position=1, leave=False, disable=None
            )
        self.epochs.update(1)

    def on_trial(self, _outcome) -> None:
        if self.epochs is not None:
            self.epochs.close()
            self.epochs = None
        self.refresh()

    def refresh(self) -> None:
        trials = searched(self.study.get_trials(deepcopy=False))
        done = [t for t in trials if t.state == TrialState.COMPLETE]
        pruned = len(stopped_early(trials))  # in the trial budget too
        failed = sum(t.state == TrialState.FAIL for t in trials)
        front = len(pareto_front(done))
        self.trials.n = len(done) + pruned
        self.trials.set_postfix(front=front, pruned=pruned, failed=failed)
        if self.lines:
            for t in sorted(trials, key=lambda t: t.number):
                if t.state not in _FINISHED or t.number in self.reported:
                    continue
                self.reported.add(t.number)
                if t.state == TrialState.PRUNED and not is_stopped_early(t):
                    continue  # never ran: the budget was spent
                of = f"/{self.total}" if self.total is not None else ""
                click.echo(
                    f"trial {t.number} ({describe_schedule(t)}): {_outcome(t)}; "
                    f"{len(done) + pruned}{of} done, front {front}, failed {failed}"
                )

    def close(self) -> None:
        if self.epochs is not None:
            self.epochs.close()
        self.trials.close()


def _outcome(t: FrozenTrial) -> str:
    if t.state == TrialState.COMPLETE:
        return f"cost {t.values[0]:.4g}, accuracy {100 * t.values[1]:.2f}%"
    if t.state == TrialState.PRUNED:
        return "stopped early by the pruner"
    return f"failed: {fail_reason(t) or 'no reason recorded'}"


def _worker_env(storage: str, gpu: str | None, workers: int) -> dict[str, str]:
    # The URL travels in the environment, never on a command line others can read.
    env = {**os.environ, STORAGE_ENV: storage}
    allowed = allowed_packages()  # --allow-imports and a spec file's own packages, passed on
    if allowed:
        env[ALLOW_IMPORTS_ENV] = ",".join(sorted(allowed))
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = gpu
    # K workers sharing the cores each get their share of threads: oversubscribed threads
    # would make every trial's time depend on what the other workers happen to run.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // workers)))
    return env


def _run_local_workers(name, storage, count, gpus, n_trials, progress: _Progress) -> int:
    gpu_list = gpus.split(",") if gpus else [None] * count
    procs = []
    for index, gpu in enumerate(gpu_list):
        cmd = [
            sys.executable,
            "-m",
            "searcher",
            "worker",
            name,
            "--quiet",
            "--worker-id",
            f"{default_worker_id()}-{index}",
        ]
        if n_trials is not None:
            share = n_trials // len(gpu_list) + (index < n_trials % len(gpu_list))
            if share == 0:
                continue  # fewer trials asked for than workers
            cmd += ["--n-trials", str(share)]
        # A session of their own: Ctrl-C reaches this process only, which stops each worker once
        # (a second signal would make a worker quit at once, leaving its trial RUNNING).
        procs.append(
            subprocess.Popen(
                cmd, env=_worker_env(storage, gpu, len(gpu_list)), start_new_session=True
            )
        )
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        while any(p.poll() is None for p in procs):
            with contextlib.suppress(Exception):  # a storage hiccup only skips a refresh
                progress.refresh()
            time.sleep(1.0)
    except KeyboardInterrupt:
        _stop_workers(procs)
        raise
    finally:
        signal.signal(signal.SIGTERM, previous)
    progress.refresh()
    return max(p.returncode for p in procs)


def _stop_workers(procs: list[subprocess.Popen]) -> None:
    """SIGTERM each worker once (it fails its running trial and exits); a second Ctrl-C kills."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    try:
        for p in procs:
            p.wait()
    except KeyboardInterrupt:
        for p in procs:
            if p.poll() is None:
                p.kill()
        raise
