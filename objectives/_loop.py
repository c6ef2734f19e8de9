"""Your own training loop as the trial, and the step helper that applies a schedule in any loop.

`ScheduledSteps` is the mechanism: step by step it says whether a batch is reduced, downsamples
it, runs the model inside `reduced(...)`, and (given the optimiser) multiplies the learning rate
by `lr_scale` around the optimiser step that follows a reduced step. `RunContext` is what a
loop named by `train.loop` receives: the run's seed, device, epochs, schedule and params, a
`ScheduledSteps` sized to the run, and what dikd measures around it (training time per epoch,
FLOPs, BatchNorm re-estimation before a score when few recent steps were full).

    def run(ctx):
        model, opt, loader = build(ctx.seed, ctx.params)
        for epoch in ctx.epochs(loader):
            for x, y in loader:
                with ctx.step(model, x, opt) as x:
                    loss_fn(model(x), y).backward()
                opt.step(); opt.zero_grad()
            ctx.report(val_accuracy=evaluate(model, val))
        if ctx.test:
            ctx.report_test(evaluate(model, test))
"""

from __future__ import annotations

import contextlib
import inspect
import math
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch import nn

from objectives._config import EpochRecord, TrainConfig, TrainResult
from objectives._errors import ConfigError
from objectives._imports import import_callable
from objectives._reduce import downsample, reduced
from objectives._schedule import Schedule
from objectives._scheduled_steps import ScheduledSteps
from objectives._step import (
    RECALIBRATION_BATCHES,
    _needs_bn_recalibration,
    counted_step_flops,
    forward_flops,
    reestimate_bn,
    saved_bn_statistics,
)
from objectives._train import _device_name, _versions, resolve_device

LOOP_FIELD = "train.loop"


class LoopError(RuntimeError):
    """A training loop of the user's own broke the `RunContext` contract (one line: what and
    how to fix it); the trial fails with it."""


class _Clock:
    """Training time of one epoch, from the start of its first step to the end of its last:
    CUDA events (read once per epoch, never a synchronisation per step) or perf_counter."""

    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.start: Any = None
        self.end: Any = None

    def mark_start(self) -> None:
        if self.cuda:
            self.start = torch.cuda.Event(enable_timing=True)
            self.start.record()
        else:
            self.start = time.perf_counter()

    def mark_end(self) -> None:
        if self.cuda:
            self.end = self.end or torch.cuda.Event(enable_timing=True)
            self.end.record()  # recorded again at every step's end: the last one counts
        else:
            self.end = time.perf_counter()

    def seconds(self) -> float:
        if self.start is None or self.end is None:
            return 0.0
        if self.cuda:
            self.end.synchronize()
            return self.start.elapsed_time(self.end) / 1000
        return self.end - self.start

    def reset(self) -> None:
        self.start = self.end = None


class RunContext:
    """What a training loop of your own (`train.loop`) is given, and what it reports through.

    Attributes: `seed` (seed everything of yours from it; torch, python and numpy are seeded
    with it before your loop is called), `device` (a torch.device), `params` (`train.params`),
    `schedule`, `epochs_total` (fit your learning-rate schedule to it), `test` (score the test
    split after training and call `report_test`), `total_steps` (after `epochs`).
    """

    def __init__(
        self,
        config: TrainConfig,
        device: torch.device,
        on_epoch: Callable[[int, TrainResult], bool | None] | None = None,
    ) -> None:
        self.seed = config.seed
        self.device = device
        self.params: dict[str, Any] = dict(config.params)
        self.schedule = config.schedule
        self.epochs_total = config.epochs
        self.test = config.test
        self._loop = config.loop or "the loop"
        self._on_epoch = on_epoch
        self._steps: ScheduledSteps | None = None
        self._per_epoch = 0
        self._epoch = 0  # the epoch being run (1-based); 0 before ctx.epochs() starts
        self._stop = False
        self._clock = _Clock(device)
        self._train_time = 0.0
        self._history: list[EpochRecord] = []
        self._val_size = 0
        self._test: tuple[float, int] | None = None
        self._scales: Counter[float] = Counter()  # steps run at each (equivalent) scale
        self._epoch_reduced = 0
        self._model: nn.Module | None = None
        self._sample: torch.Tensor | None = None  # a full-size input, for counting FLOPs
        self._step_flops: dict[float, float] = {}
        self._recalibrate: set[int] | None = None  # epochs whose score needs BN re-estimation
        self._kept: deque[torch.Tensor] = deque(maxlen=RECALIBRATION_BATCHES)
        # Restores the BatchNorm statistics training had, after a score re-estimated them.
        self._restore_bn: Callable[[], None] | None = None

    @property
    def total_steps(self) -> int | None:
        """Steps of the whole run; None before `epochs` was called."""
        return None if self._steps is None else self._steps.total_steps

    def epochs(self, steps_per_epoch: Sized | int) -> Iterator[int]:
        """The epochs to run, 1..epochs_total (fewer when a pruner stops the run).
        `steps_per_epoch`: the training loader (its len() is taken) or the number of steps
        (calls of `step`) in one epoch, so that the schedule knows the run's total steps."""
        per_epoch = len(steps_per_epoch) if isinstance(steps_per_epoch, Sized) else steps_per_epoch
        if not isinstance(per_epoch, int) or per_epoch < 1:
            raise LoopError(
                f"ctx.epochs got {per_epoch!r} steps per epoch; pass the training loader or a "
                "whole number of steps of at least 1"
            )
        if self._steps is not None:
            raise LoopError("ctx.epochs() was called twice; call it once, for the whole run")
        self._per_epoch = per_epoch
        self._steps = ScheduledSteps(self.schedule, per_epoch * self.epochs_total)
        self._steps.on_begin = self._on_step_begin
        self._steps.on_end = self._on_step_end
        return self._run_epochs()

    def _run_epochs(self) -> Iterator[int]:
        for epoch in range(1, self.epochs_total + 1):
            self._epoch = epoch
            self._epoch_reduced = 0
            self._clock.reset()
            yield epoch
            if len(self._history) < epoch:
                raise LoopError(
                    f"epoch {epoch} ended without ctx.report(val_accuracy=...); report each "
                    "epoch's validation accuracy before the next one"
                )
            if self._stop:
                return

    def step(
        self, model: nn.Module, x: torch.Tensor, optimizer: torch.optim.Optimizer | None = None
    ) -> contextlib.AbstractContextManager[torch.Tensor]:
        """One training step: `with ctx.step(model, x, optimizer) as x:` gives `x` or its
        downsampled copy with `model` reduced, as the schedule says. Give the optimizer when
        `lr_scale` is searched; the step then ends with its `optimizer.step()`."""
        if self._steps is None:
            raise LoopError("ctx.step was called before ctx.epochs(loader); iterate over it")
        return self._steps.step(model, x, optimizer)

    def report(
        self, val_accuracy: float, *, loss: float | None = None, val_size: int | None = None
    ) -> None:
        """The epoch's validation accuracy (top-1 in [0, 1]), once per epoch, after its last
        step; `loss` (its mean training loss) and `val_size` (images scored) are kept too."""
        epoch = self._epoch
        if epoch == 0:
            raise LoopError("ctx.report was called outside `for epoch in ctx.epochs(...)`")
        if len(self._history) >= epoch:
            raise LoopError(f"ctx.report was called twice in epoch {epoch}; report once an epoch")
        accuracy = float(val_accuracy)
        if not (math.isfinite(accuracy) and 0.0 <= accuracy <= 1.0):
            raise LoopError(
                f"ctx.report got val_accuracy={accuracy} in epoch {epoch}; report a fraction in "
                "[0, 1] (correct / scored)"
            )
        assert self._steps is not None  # _epoch > 0 only inside ctx.epochs()
        ran = self._steps.steps_begun - (epoch - 1) * self._per_epoch
        if ran == 0 and epoch == 1:
            raise LoopError(
                f"{self._loop} never called ctx.step in its first epoch, so nothing can be "
                "downsampled: wrap each training step in `with ctx.step(model, x) as x:`"
            )
        if ran != self._per_epoch:
            raise LoopError(
                f"epoch {epoch} ran {ran} steps, but ctx.epochs() was told {self._per_epoch} per "
                "epoch; pass the loader you train on (or its number of steps)"
            )
        epoch_time = self._clock.seconds()
        self._train_time += epoch_time
        if val_size is not None:
            self._val_size = int(val_size)
        self._history.append(
            EpochRecord(
                epoch,
                epoch_time,
                None if loss is None else float(loss),
                accuracy,
                self._epoch_reduced,
            )
        )
        if self._on_epoch is not None:
            if self._on_epoch(epoch, self._result(stopped_early=False)):
                self._stop = epoch < self.epochs_total

    def report_test(self, accuracy: float, *, test_size: int | None = None) -> None:
        """The final model's test accuracy (top-1 in [0, 1]), when `ctx.test` is true."""
        value = float(accuracy)
        if not (math.isfinite(value) and 0.0 <= value <= 1.0):
            raise LoopError(
                f"ctx.report_test got {value}; report a fraction in [0, 1] (correct / scored)"
            )
        self._test = (value, int(test_size or 0))

    # --- measuring around the steps ------------------------------------------------------------

    def _plan_recalibration(self, model: nn.Module, image_size: tuple[int, int]) -> set[int]:
        """The epochs before the last after which BatchNorm statistics are re-estimated for the
        score only: those whose last 100 steps were mostly reduced (dikd's own loop's rule)."""
        steps = self._steps
        assert steps is not None
        out = set()
        for epoch in range(1, self.epochs_total):  # the last: ScheduledSteps, as any loop
            stop = epoch * self._per_epoch
            recent = [steps.scale_of(i, model, image_size) for i in range(max(0, stop - 100), stop)]
            if _needs_bn_recalibration(recent):
                out.add(epoch)
        return out

    def _on_step_begin(self, index: int, scale: float, x: torch.Tensor, model: nn.Module) -> None:
        self._restore_training_bn()
        if self._recalibrate is None:
            self._recalibrate = self._plan_recalibration(model, tuple(x.shape[-2:]))
        if self._sample is None:
            self._sample = x.detach()
        self._model = model
        epoch, position = divmod(index, self._per_epoch)
        if position == 0 or self._clock.start is None:
            self._clock.mark_start()
        if epoch + 1 in self._recalibrate and position >= self._per_epoch - RECALIBRATION_BATCHES:
            self._kept.append(x.detach())
        self._scales[scale] += 1
        self._epoch_reduced += scale > 1.0

    def _on_step_end(self, index: int) -> None:
        if (index + 1) % self._per_epoch:
            return  # not the epoch's last step
        self._clock.mark_end()
        epoch = index // self._per_epoch + 1
        if self._recalibrate is None or epoch not in self._recalibrate:
            return
        model = self._model
        assert model is not None
        # Only so that this epoch's score means something: untimed, undone at the next step.
        self._restore_bn = saved_bn_statistics(model)
        reestimate_bn(model, list(self._kept))
        self._kept.clear()

    def _restore_training_bn(self) -> None:
        if self._restore_bn is not None:
            self._restore_bn()
            self._restore_bn = None

    def _count_flops(self) -> tuple[float, float, float]:
        """Training FLOPs so far, a full step's and the largest reduced step's; each distinct
        step is counted once, untimed, on a kept input batch (see `_user_step_flops`)."""
        model, x = self._model, self._sample
        if model is None or x is None:
            return 0.0, 0.0, 0.0
        for scale in [*self._scales, 1.0]:
            if scale not in self._step_flops:
                self._step_flops[scale] = _user_step_flops(model, x, scale, self.schedule)
        flops = sum(self._step_flops[s] * n for s, n in self._scales.items())
        reestimated = self._steps.bn_reestimation_batches if self._steps is not None else 0
        if reestimated:  # the final re-estimation is part of training
            flops += reestimated * forward_flops(model, x)
        reduced_scales = [s for s in self._scales if s > 1.0]
        largest = self._step_flops[max(reduced_scales)] if reduced_scales else 0.0
        return flops, self._step_flops[1.0], largest

    def _result(self, stopped_early: bool) -> TrainResult:
        flops, full, reduced_step = self._count_flops()
        steps = sum(self._scales.values())
        test_accuracy, test_size = self._test if self._test is not None else (None, 0)
        return TrainResult(
            train_time_s=self._train_time,
            val_accuracy=self._history[-1].val_accuracy,
            flops=flops,
            full_step_flops=full,
            reduced_step_flops=reduced_step,
            reduced_steps=sum(n for s, n in self._scales.items() if s > 1.0),
            total_steps=steps,
            planned_steps=self.total_steps or 0,
            stopped_early=stopped_early,
            history=list(self._history),
            device=_device_name(self.device),
            versions=_versions(),
            val_size=self._val_size,
            test_accuracy=test_accuracy,
            test_size=test_size,
        )

    def finish(self) -> TrainResult:
        """The run's result once the loop has returned, or a LoopError saying what it missed."""
        if not self._history:
            raise LoopError(
                f"{self._loop} returned without calling ctx.report(val_accuracy=...); report "
                "each epoch's validation accuracy inside `for epoch in ctx.epochs(loader)`"
            )
        if len(self._history) != self.epochs_total and not self._stop:
            raise LoopError(
                f"{self._loop} reported {len(self._history)} epochs of the {self.epochs_total} "
                "asked; run every epoch of ctx.epochs() and fit the learning-rate schedule to "
                "ctx.epochs_total (a run only cut short makes the budget curve too low)"
            )
        if self.test and self._test is None:
            raise LoopError(
                f"ctx.test was true but {self._loop} did not call ctx.report_test(accuracy); "
                "score the final model on the test split when ctx.test is set"
            )
        self._restore_training_bn()
        return self._result(stopped_early=self._stop)


def _first_tensor(out: Any) -> torch.Tensor:
    """The model's output, or the first tensor of a tuple, list or dict of outputs."""
    if isinstance(out, torch.Tensor):
        return out
    values = out.values() if isinstance(out, dict) else out
    for value in values:
        if isinstance(value, torch.Tensor):
            return value
    raise LoopError(f"the model returned a {type(out).__name__} without a tensor to count FLOPs")


def _user_step_flops(model: nn.Module, x: torch.Tensor, scale: float, schedule: Schedule) -> float:
    """FLOPs of a training step of the user's model at `scale`: its forward and the backward of
    the sum of its output. The user's loss is not run; a loss's FLOPs (a softmax and a sum over
    the logits) are negligible beside a CNN's."""

    def step() -> torch.Tensor:
        if scale == 1.0:
            return _first_tensor(model(x)).float().sum()
        with reduced(model, scale, schedule.kernel_pool, schedule.bn):
            return _first_tensor(model(downsample(x, scale))).float().sum()

    return counted_step_flops(model, step)


def import_loop(path: str) -> Callable[[RunContext], Any]:
    """The loop function `train.loop` names (allowed, importable, callable as fn(ctx)), or a
    one-line ConfigError."""
    fn = import_callable(path, LOOP_FIELD)
    try:
        inspect.signature(fn).bind(object())
    except TypeError:
        raise ConfigError(
            f"field '{LOOP_FIELD}': {path} cannot be called as fn(ctx); give it one parameter, "
            "the RunContext"
        ) from None
    except ValueError:  # no signature to read: calling it will tell
        pass
    return fn


def seed_everything(seed: int) -> None:
    """torch, python's and numpy's (when installed) global generators, as a loop expects."""
    torch.manual_seed(seed)
    random.seed(seed)
    try:
        import numpy
    except ImportError:
        return
    numpy.random.seed(seed % 2**32)


def run_loop(
    config: TrainConfig, on_epoch: Callable[[int, TrainResult], bool | None] | None = None
) -> TrainResult:
    """`train` for a config with `loop`: the user's function trains, dikd measures around it.
    Whatever the function returns is ignored; what counts is what it reported."""
    assert config.loop is not None
    fn = import_loop(config.loop)
    device = resolve_device(config.device)
    seed_everything(config.seed)
    ctx = RunContext(config, device, on_epoch)
    fn(ctx)
    return ctx.finish()
