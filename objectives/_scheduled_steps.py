"""The step helper: a schedule applied step by step in any training loop (`ScheduledSteps`),
the mechanism `RunContext.step` (`_loop.py`) and the Lightning callback run on."""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import nn

from objectives._config import load_train_config
from objectives._errors import ConfigError
from objectives._reduce import downsample, reduced
from objectives._schedule import Schedule
from objectives._step import (
    RECALIBRATION_BATCHES,
    _needs_bn_recalibration,
    conv_kernel_sizes,
    reestimate_bn,
    step_shape,
)


class ScheduledSteps:
    """Applies a `Schedule` step by step in any training loop.

        steps = ScheduledSteps.from_file("pick.yaml", total_steps=len(loader) * epochs)
        for x, y in loader:
            with steps.step(model, x, optimizer) as x:   # downsampled on reduced steps
                loss_fn(model(x), y).backward()
            optimizer.step(); optimizer.zero_grad()

    The schedule's windows are fractions of training, so it needs the run's `total_steps`.
    Each `step` is the next step of the run. With `optimizer`, `schedule.lr_scale` multiplies
    every group's learning rate during the `optimizer.step()` that follows a reduced step (a
    learning-rate scheduler stepping afterwards is unaffected); without it, a schedule with an
    lr_scale other than 1 is refused on its first reduced step. When under a fifth of the last
    100 steps are full, the last step ends by re-estimating the model's BatchNorm statistics
    from the last RECALIBRATION_BATCHES inputs, as dikd's own loop does (else a mostly reduced
    end leaves statistics of reduced batches, or none with bn="freeze").
    """

    def __init__(self, schedule: Schedule, total_steps: int, *, reestimate_bn: bool = True):
        if not isinstance(total_steps, int) or total_steps < 1:
            raise ValueError(f"total_steps must be a whole number >= 1, got {total_steps!r}")
        self.schedule = schedule
        self.total_steps = total_steps
        self.reestimate_bn = reestimate_bn  # False: never re-estimate (`model(x)` cannot run)
        self.steps_begun = 0
        # Called at each step's start (index, scale, full-size input, model) and end (index);
        # RunContext measures with them. A step ends when its `with` block has exited and, when
        # an optimiser is given, it has stepped: after the block (a plain loop) or within it
        # (Lightning), whichever comes later, so the model is never reduced at a step's end.
        self.on_begin: Callable[[int, float, torch.Tensor, nn.Module], None] | None = None
        self.on_end: Callable[[int], None] | None = None
        # Each scale replaced by the first that computes the same step (as dikd's own loop
        # does), so a progressive schedule's many scales cost one FLOP count per distinct step.
        self._kernels: set[tuple[int, int]] | None = None
        self._first: dict[tuple, float] = {}
        self._equivalent: dict[float, float] = {}
        self._due: tuple[int, float] | None = None  # the step whose optimiser step is to come
        self._saved_lrs: list[float] | None = None
        self._optimizer_depth = 0
        self._hooked: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._model: nn.Module | None = None
        self._reestimate_at_end: bool | None = None  # decided at the first step
        self._last_inputs: list[torch.Tensor] = []
        self._inside = False  # in a step's block (the model possibly reduced)
        self._stepped_inside = False  # the optimiser stepped within the block: end at its exit
        self.bn_reestimation_batches = 0  # inputs the final re-estimation ran on; 0: none

    @classmethod
    def from_file(cls, path: str | Path, total_steps: int) -> ScheduledSteps:
        """The schedule of a `dikd export` file (or any TrainConfig YAML file)."""
        return cls(load_schedule(path), total_steps)

    def scale_of(self, index: int, model: nn.Module, image_size: tuple[int, int]) -> float:
        """The downsampling factor step `index` runs at (1.0: full)."""
        raw = self.schedule.scale_at(index, self.total_steps)
        if raw == 1.0:
            return 1.0
        if raw not in self._equivalent:
            if self._kernels is None:  # the model's, once: a step must cost microseconds
                self._kernels = conv_kernel_sizes(model)
            shape = step_shape(raw, self._kernels, image_size)
            self._equivalent[raw] = 1.0 if shape is None else self._first.setdefault(shape, raw)
        return self._equivalent[raw]

    @contextlib.contextmanager
    def step(
        self, model: nn.Module, x: torch.Tensor, optimizer: torch.optim.Optimizer | None = None
    ) -> Iterator[torch.Tensor]:
        """The next step: yields `x` (full) or `downsample(x, scale)` with `model` reduced."""
        index = self.steps_begun
        scale = self.scale_of(index, model, tuple(x.shape[-2:]))
        if scale > 1.0 and optimizer is None and self.schedule.lr_scale != 1.0:
            raise ConfigError(
                f"schedule.lr_scale is {self.schedule.lr_scale:g} but the step was given no "
                "optimizer: pass it, as step(model, x, optimizer), or search lr_scale at 1"
            )
        self._model = model
        if self._reestimate_at_end is None:
            size = tuple(x.shape[-2:])
            last = range(max(0, self.total_steps - 100), self.total_steps)
            self._reestimate_at_end = self.reestimate_bn and _needs_bn_recalibration(
                [self.scale_of(i, model, size) for i in last]
            )
        if self._reestimate_at_end and index >= self.total_steps - RECALIBRATION_BATCHES:
            self._last_inputs.append(x.detach())
        if self.on_begin is not None:
            self.on_begin(index, scale, x, model)
        self.steps_begun += 1
        if optimizer is not None:
            # Due from the start: a plain loop steps the optimiser after the block, Lightning
            # inside it (its closure runs the forward and backward within optimizer.step).
            self._hook(optimizer)
            self._due = (index, scale)
        self._inside = True
        try:
            if scale > 1.0:
                with reduced(model, scale, self.schedule.kernel_pool, self.schedule.bn):
                    yield downsample(x, scale)
            else:
                yield x
        finally:
            self._inside = False
        if optimizer is None or self._stepped_inside:
            self._stepped_inside = False
            self._ended(index)

    def _ended(self, index: int) -> None:
        if index == self.total_steps - 1 and self._last_inputs and self._model is not None:
            # Part of making the final model (timed by RunContext: before on_end).
            reestimate_bn(self._model, self._last_inputs)
            self.bn_reestimation_batches = len(self._last_inputs)
            self._last_inputs = []
        if self.on_end is not None:
            self.on_end(index)

    def _hook(self, optimizer: torch.optim.Optimizer) -> None:
        if optimizer in self._hooked:
            return
        self._hooked[optimizer] = (
            optimizer.register_step_pre_hook(self._before_optimizer_step),
            optimizer.register_step_post_hook(self._after_optimizer_step),
        )

    def _before_optimizer_step(self, optimizer, _args, _kwargs) -> None:
        # A subclass whose step calls super().step() runs the hooks twice, nested (torch wraps
        # each class's step): act on the outer call only.
        self._optimizer_depth += 1
        if self._optimizer_depth > 1:
            return
        if self._due is not None and self._due[1] > 1.0 and self.schedule.lr_scale != 1.0:
            self._saved_lrs = [group["lr"] for group in optimizer.param_groups]
            for group in optimizer.param_groups:
                group["lr"] = group["lr"] * self.schedule.lr_scale

    def _after_optimizer_step(self, optimizer, _args, _kwargs) -> None:
        self._optimizer_depth -= 1
        if self._optimizer_depth > 0:
            return
        if self._saved_lrs is not None:
            for group, lr in zip(optimizer.param_groups, self._saved_lrs):
                group["lr"] = lr  # exactly as it was, not divided back
            self._saved_lrs = None
        if self._due is not None:
            index, self._due = self._due[0], None
            if self._inside:
                self._stepped_inside = True
            else:
                self._ended(index)


def load_schedule(path: str | Path) -> Schedule:
    """The schedule of an exported pick (`dikd export`: under `train`) or of any TrainConfig
    YAML file."""
    return load_train_config(path).schedule
