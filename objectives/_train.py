"""One real training run: full and reduced steps interleaved by a Schedule.

The configuration and the result live in `_config.py`, the step engine in `_step.py`; here:
`train` (set-up, the timed step loop, evaluation) and its pre-flight `check_data`.
The step loop reads nothing back from the device: losses accumulate on the device and are read
once per epoch, so the only host synchronisation is the one that stops the epoch's clock.
"""

from __future__ import annotations

import importlib.metadata
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from objectives._config import EpochRecord, TrainConfig, TrainResult, load_train_config
from objectives._data import DataInfo, load_data
from objectives._errors import (
    ConfigError,
    NonFiniteLossError,
)
from objectives._models import build_model, is_user_model
from objectives._reduce import KernelDerivation
from objectives._step import (
    _as_scored,
    _count_flops,
    _equivalent_scales,
    _needs_bn_recalibration,
    _recalibrate_bn,
    _step_with_lr_scale,
    _sync,
    _warm_up,
    evaluate,
    prepared_stepper,
)

# What others import from here: the public API (objectives/__init__.py) and, for the
# benchmarks and tests, the step engine's pieces that train() uses.
__all__ = [
    "EpochRecord", "TrainConfig", "TrainResult", "check_data", "load_train_config",
    "resolve_device", "train",
]  # fmt: skip


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(
            f"field 'device': unknown device {name!r}; use auto, cpu or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"field 'device': {name} asked for but CUDA is not available; use auto or cpu"
        )
    return device


def _versions() -> dict[str, str]:
    try:
        dikd = importlib.metadata.version("dikd")
    except importlib.metadata.PackageNotFoundError:
        dikd = "unknown"
    return {"torch": torch.__version__, "dikd": dikd}


def _device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _lr_lambda(
    config: TrainConfig, total_steps: int, steps_per_epoch: int
) -> Callable[[int], float]:
    warmup = min(int(config.warmup_epochs * steps_per_epoch), total_steps - 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(total_steps - warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _make_lr_scheduler(config, optimizer, total_steps: int, steps_per_epoch: int):
    if config.lr_schedule == "onecycle":
        pct = config.warmup_epochs * steps_per_epoch / total_steps if config.warmup_epochs else 0.25
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=config.lr, total_steps=total_steps, pct_start=min(max(pct, 0.01), 0.9)
        )
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, _lr_lambda(config, total_steps, steps_per_epoch)
    )


# The TrainConfig fields `load_data` takes under the same name (data_dir is its `root`).
_DATA_FIELDS = (
    "download", "subset", "val_fraction", "image_size", "augment", "seed", "num_workers",
    "val_size", "data_seed", "test", "skip_bad_images", "data_fixed",
)  # fmt: skip


def _load_data(config: TrainConfig, device: torch.device, **changes: Any):
    arguments = {name: getattr(config, name) for name in _DATA_FIELDS}
    arguments.update(device=device, root=config.data_dir, **changes)
    return load_data(config.data, **arguments)


def check_data(config: TrainConfig) -> None:
    """Pre-flight: the data set is there and fits the config (splits, batch size), or a
    one-line ConfigError saying how to get it, before any training starts. Loads it on the
    CPU (a process's later loads of the MNIST-family files are cached; image files are decoded
    here into the machine's image cache, once for all trials)."""
    if config.loop is not None:  # the loop brings its own model and data: import it only
        from objectives._loop import import_loop

        import_loop(config.loop)
        return
    try:
        data = _load_data(config, torch.device("cpu"))
        data.steps_per_epoch(config.batch_size)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None
    if is_user_model(config.model):  # imported, called and checked now, not in every trial
        build_model(config.model, num_classes=data.info.num_classes,
                    in_channels=data.info.in_channels)  # fmt: skip


OnEpoch = Callable[[int, TrainResult], bool | None]


def train(
    config: TrainConfig,
    on_epoch: OnEpoch | None = None,
    *,
    derive_kernel: KernelDerivation | None = None,
) -> TrainResult:
    """Train `config.model` on `config.data` with `config.schedule`; return the measured result.

    `on_epoch(epoch, result_so_far)` is called after each epoch; returning True ends the run.
    `derive_kernel` replaces how reduced steps pool a kernel (`pool_kernel`; see `reduced`).
    Raises NonFiniteLossError when the loss stops being finite.
    With `config.loop`, the user's own loop trains instead (objectives/_loop.py).
    """
    if config.loop is not None:
        from objectives._loop import run_loop

        return run_loop(config, on_epoch)
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)
    data = _load_data(config, device)
    info = data.info
    stepper = prepared_stepper(
        config, info.num_classes, info.in_channels, device, derive_kernel=derive_kernel
    )
    model = stepper.model
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = data.steps_per_epoch(config.batch_size)
    planned_steps = max(1, round(steps_per_epoch * config.epochs * config.step_fraction))
    epochs = math.ceil(planned_steps / steps_per_epoch)
    lr_scheduler = _make_lr_scheduler(config, optimizer, planned_steps, steps_per_epoch)
    generator = torch.Generator().manual_seed(config.seed)
    scales = _equivalent_scales(
        [config.schedule.scale_at(step, planned_steps) for step in range(planned_steps)],
        model,
        data.info.image_size,
    )

    # A batch of the training shape for warm-up and FLOP counting, from its own generator.
    sample = next(iter(data.train_batches(config.batch_size, torch.Generator().manual_seed(0))))
    # First calls pay one-time costs (cuDNN autotuning, oneDNN primitives, allocator growth);
    # without a warm-up the first run in a process would look slower than the runs after it.
    _warm_up(stepper, *sample, sorted(set(scales)))

    lr_scale = config.schedule.lr_scale
    recalibrations = 0
    history: list[EpochRecord] = []
    step = 0
    train_time = 0.0
    stopped_early = False
    result: TrainResult | None = None
    step_flops: dict[float, float] = {}  # one training step's FLOPs by scale
    for epoch in range(1, epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        epoch_reduced = 0
        epoch_steps = 0
        _sync(device)
        start = time.perf_counter()
        for x, y in data.train_batches(config.batch_size, generator):
            if step == planned_steps:  # step_fraction < 1: the last epoch ends early
                break
            scale = scales[step]
            loss = stepper.loss(x, y, scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if scale > 1.0 and lr_scale != 1.0:
                _step_with_lr_scale(optimizer, lr_scale)
            else:
                optimizer.step()
            lr_scheduler.step()
            loss_sum += loss.detach()
            epoch_reduced += scale > 1.0
            epoch_steps += 1
            step += 1
        recalibrate = _needs_bn_recalibration(scales[:step])
        final = epoch == epochs
        if recalibrate and final:  # part of making the final model: timed and counted
            _recalibrate_bn(stepper, data, config.batch_size, seed=config.seed + epoch)
            recalibrations += 1
        _sync(device)
        epoch_time = time.perf_counter() - start
        train_time += epoch_time
        mean_loss = loss_sum.item() / epoch_steps
        if not math.isfinite(mean_loss):
            raise NonFiniteLossError(epoch, mean_loss)
        # Before the final epoch, re-estimated statistics are only so that this epoch's accuracy
        # means something (on_epoch may prune on it): training goes on with the ones it had.
        scored_recalibrated = recalibrate and not final
        accuracy = None
        if final or config.eval_every_epoch:
            with _as_scored(stepper, data, config, epoch, scored_recalibrated):
                batches = data.val_batches(config.eval_batch_size)
                accuracy = evaluate(model, batches, stepper, device)
        history.append(EpochRecord(epoch, epoch_time, mean_loss, accuracy, epoch_reduced))
        result = _result(history, scales[:step], train_time, planned_steps, device, data.info)
        if on_epoch is not None:
            # The FLOPs so far, for a caller that prunes on cost (untimed, after the clock).
            _count_flops(result, stepper, sample, scales[:step], recalibrations, step_flops)
            if on_epoch(epoch, result) and epoch < epochs:
                stopped_early = True
                break

    assert result is not None  # epochs >= 1
    result.stopped_early = stopped_early
    _count_flops(result, stepper, sample, scales[:step], recalibrations, step_flops)
    if config.test:  # untimed, after training: the model scored as its last val_accuracy was
        with _as_scored(stepper, data, config, epoch, scored_recalibrated):
            batches = data.test_batches(config.eval_batch_size)
            result.test_accuracy = evaluate(model, batches, stepper, device)
        result.test_size = data.info.test_size
    return result


def _result(history, scales, train_time, planned_steps, device, info: DataInfo) -> TrainResult:
    return TrainResult(
        train_time_s=train_time,
        val_accuracy=history[-1].val_accuracy,
        flops=0.0,
        full_step_flops=0.0,
        reduced_step_flops=0.0,
        reduced_steps=sum(s > 1.0 for s in scales),
        total_steps=len(scales),
        planned_steps=planned_steps,
        stopped_early=False,
        history=list(history),
        device=_device_name(device),
        versions=_versions(),
        val_size=info.val_size,
    )
