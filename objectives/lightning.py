"""A PyTorch Lightning callback that applies a dikd schedule in a `Trainer` (extra `lightning`:
`pip install "dikd[lightning]"`). `import objectives` never imports this module or Lightning.

    from objectives.lightning import ScheduleCallback
    trainer = Trainer(max_epochs=4, callbacks=[ScheduleCallback("pick.yaml")])

It is the same mechanism as `ScheduledSteps` (which it drives): before each training batch it
decides the step's scale, downsamples the input and reduces the LightningModule's convolutions;
after the batch it restores them; `lr_scale` multiplies the learning rate around the optimiser
step of a reduced batch. Validation, testing and prediction run at full resolution.

Assumptions (checked, with a one-line error otherwise):
- the batch is a list or a dict (what a DataLoader's default collate gives for a tuple or a
  mapping) whose first 4-dimensional floating-point tensor is the input images: that element
  is replaced in place, so `training_step` sees the downsampled images however it calls the
  model (`self(x)` or `self.net(x)`);
- one optimiser (automatic optimisation). The run's steps are the Trainer's training batches,
  `trainer.estimated_stepping_batches * accumulate_grad_batches`;
- when the schedule ends mostly reduced, BatchNorm statistics are re-estimated after the last
  batch by calling the module (`pl_module(x)`), which needs its `forward` (else a warning).
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from objectives._errors import ConfigError
from objectives._schedule import Schedule
from objectives._scheduled_steps import ScheduledSteps, load_schedule


def _image_slot(batch: Any) -> Any:
    """The key or index of the batch's input images, or a ConfigError."""
    if isinstance(batch, dict):
        slots = list(batch.items())
    elif isinstance(batch, list):
        slots = list(enumerate(batch))
    else:
        raise ConfigError(
            f"ScheduleCallback needs a batch it can change in place (a list or a dict), got a "
            f"{type(batch).__name__}; return lists from your collate_fn (the default does)"
        )
    for key, value in slots:
        if isinstance(value, torch.Tensor) and value.dim() == 4 and value.is_floating_point():
            return key
    raise ConfigError("ScheduleCallback found no NCHW float image tensor in the training batch")


class ScheduleCallback(pl.Callback):
    """Applies `schedule` (a `Schedule`, or the path of a `dikd export` file) to the training
    batches of a Lightning `Trainer`."""

    def __init__(self, schedule: Schedule | str | Path) -> None:
        super().__init__()
        self.schedule = schedule if isinstance(schedule, Schedule) else load_schedule(schedule)
        self.steps: ScheduledSteps | None = None
        self._active: contextlib.AbstractContextManager | None = None
        self.reduced_batches = 0  # training batches run reduced, for the curious

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise ConfigError(
                f"ScheduleCallback supports one optimizer, the Trainer has "
                f"{len(trainer.optimizers)}"
            )
        batches = int(trainer.estimated_stepping_batches) * trainer.accumulate_grad_batches
        # BatchNorm re-estimation at the end of a mostly reduced run calls the module itself.
        callable_module = type(pl_module).forward is not pl.LightningModule.forward
        if not callable_module:
            warnings.warn(
                f"{type(pl_module).__name__} has no forward(): if the schedule ends mostly "
                "reduced, BatchNorm statistics cannot be re-estimated at the end of training; "
                "define forward(x) to let ScheduleCallback do it",
                stacklevel=2,
            )
        self.steps = ScheduledSteps(self.schedule, max(1, batches), reestimate_bn=callable_module)

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        assert self.steps is not None  # on_train_start came first
        slot = _image_slot(batch)
        self._active = self.steps.step(pl_module, batch[slot], trainer.optimizers[0])
        x = self._active.__enter__()
        self.reduced_batches += x is not batch[slot]
        batch[slot] = x

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._close(None)

    def on_exception(self, trainer, pl_module, exception: BaseException) -> None:
        self._close(exception)  # the model is left exactly as it was

    def _close(self, exception: BaseException | None) -> None:
        if self._active is not None:
            active, self._active = self._active, None
            if exception is None:
                active.__exit__(None, None, None)
            else:
                with contextlib.suppress(BaseException):  # Lightning raises it itself
                    active.__exit__(type(exception), exception, exception.__traceback__)
