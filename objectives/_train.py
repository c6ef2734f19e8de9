"""One real training run: full and reduced steps interleaved by a Schedule.

Read top to bottom: configuration, result, then `train` (set-up, the timed step loop, evaluation).
The step loop reads nothing back from the device: losses accumulate on the device and are read
once per epoch, so the only host synchronisation is the one that stops the epoch's clock.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import importlib.metadata
import math
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import pydantic
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from objectives._data import DataInfo, check_dataset_name, load_data
from objectives._errors import (
    ConfigError,
    NonFiniteLossError,
    describe_validation_error,
    load_yaml_file,
)
from objectives._models import build_model, check_model_name
from objectives._reduce import (
    batch_norms,
    downsample,
    pooled_kernel_size,
    reduced,
    reduced_size,
)
from objectives._schedule import Schedule


class TrainConfig(BaseModel):
    """Everything one training run needs. Units are in the comments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "resnet20"  # resnet20/32/56 or a torchvision classification model
    data: str = "fashion-mnist"  # fashion-mnist, cifar10, cifar100 or imagefolder:<path>
    data_dir: str | None = None  # where the data set lies; None: its default place
    download: bool = False  # allow torchvision to download the data set
    subset: int | None = Field(None, gt=0)  # training images used (seeded choice); None: all
    val_fraction: float = Field(0.1, gt=0, lt=1)  # part of those held out for validation
    # Validation images drawn from the training file's images left outside the training subset,
    # chosen by data_seed: every trial and every training seed is scored on the same images.
    # When set, val_fraction is ignored. Image folders then take them from train/, not val/.
    val_size: int | None = Field(None, gt=0)
    data_seed: int = 0  # fixes which images are validation (with val_size), nothing else
    # After training, also score the final model on the data set's test split, untimed;
    # confirmation runs set it. Training is the same with or without it.
    test: bool = False
    image_size: int | None = Field(None, gt=0)  # resize images to this many pixels a side
    augment: bool = True  # random crop with padding (and flips where they suit the data)
    epochs: int = Field(10, gt=0)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(0.1, gt=0)  # peak learning rate
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    lr_schedule: Literal["cosine", "onecycle"] = "cosine"
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up before the cosine decay
    schedule: Schedule = Schedule()  # which steps are reduced
    # Fixes initialisation, data order, augmentation and the training subset (and, without
    # val_size, the validation images too).
    seed: int = 0
    device: str = "auto"  # auto (CUDA when there is one), cpu, cuda, cuda:N
    bf16: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    # NHWC: on the CPU (oneDNN) every step of ResNet-20 ran 1.15-1.25x faster, and on CUDA
    # it is what tensor cores want (benchmarks/README.md).
    channels_last: bool = True
    compile: bool = False  # torch.compile the full and the reduced step (once each, in warm-up)
    # torch.compile's mode; "reduce-overhead" replays each step as a CUDA graph, which is what
    # small models on a fast GPU need: their eager steps are bound by kernel launches.
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    num_workers: int = Field(2, ge=0)  # DataLoader workers, for data sets too big to hold
    eval_batch_size: int = Field(512, gt=0)
    # Score the validation split after every epoch (the history, and early stopping, read it);
    # false: after the last epoch only. Untimed either way, but 5,000 images an epoch add up.
    eval_every_epoch: bool = True

    _known_model = field_validator("model")(classmethod(lambda cls, v: check_model_name(v)))
    _known_data = field_validator("data")(classmethod(lambda cls, v: check_dataset_name(v)))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as e:
            raise ConfigError(describe_validation_error(e)) from None

    def to_dict(self) -> dict[str, Any]:
        out = self.model_dump()
        out["schedule"] = self.schedule.to_dict()
        return out


def load_train_config(path: str | Path) -> TrainConfig:
    """Read a YAML file holding a TrainConfig (an exported study pick is one too)."""
    data = load_yaml_file(path, "training config file")
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a mapping of TrainConfig fields")
    # An exported pick holds the config under "train" next to its measured numbers.
    return TrainConfig.from_dict(data.get("train", data))


@dataclasses.dataclass
class EpochRecord:
    epoch: int
    time_s: float  # training steps only
    loss: float  # mean training loss
    val_accuracy: float | None  # top-1 in [0, 1]
    reduced_steps: int


@dataclasses.dataclass
class TrainResult:
    train_time_s: float  # wall time of the training steps, device synchronised
    val_accuracy: float  # top-1 in [0, 1], at full resolution
    flops: float  # training FLOPs of the steps run (forward and backward)
    full_step_flops: float
    reduced_step_flops: float  # at the schedule's scale; 0 when no step was reduced
    reduced_steps: int
    total_steps: int  # steps run (fewer than planned when stopped early)
    planned_steps: int
    stopped_early: bool
    history: list[EpochRecord]
    device: str
    versions: dict[str, str]
    val_size: int = 0  # validation images val_accuracy is computed on
    test_accuracy: float | None = None  # top-1 in [0, 1] of the final model; None: not scored
    test_size: int = 0  # test images test_accuracy is computed on

    @property
    def reduced_fraction(self) -> float:
        return self.reduced_steps / self.total_steps if self.total_steps else 0.0

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["reduced_fraction"] = self.reduced_fraction
        return out


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


class _Stepper:
    """Runs one full or reduced forward pass of the model: the method's whole footprint."""

    def __init__(self, model: nn.Module, config: TrainConfig, device: torch.device) -> None:
        self.model = model
        self.schedule = config.schedule
        self.autocast = torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=config.bf16 and device.type == "cuda"
        )
        self.channels_last = config.channels_last
        self.label_smoothing = config.label_smoothing
        # Static shapes: one graph for the full step and one per reduced shape, each compiled
        # once in the warm-up. (Dynamic shapes would merge them into one graph traced with
        # either the full or the pooled convolutions.)
        self.compile_mode = config.compile_mode if config.compile else None
        self.cuda_graphs = self.compile_mode == "reduce-overhead"
        self._compiled: dict[float, nn.Module] = {}  # one compiled model per step shape

    def _model_for(self, scale: float) -> nn.Module:
        if self.compile_mode is None:
            return self.model
        if scale not in self._compiled:
            self._compiled[scale] = torch.compile(self.model, dynamic=False, mode=self.compile_mode)
        return self._compiled[scale]

    def loss(
        self, x: torch.Tensor, y: torch.Tensor, scale: float, *, eager: bool = False
    ) -> torch.Tensor:
        model = self.model if eager else self._model_for(scale)
        if self.cuda_graphs and not eager:
            # A new step: the graphs' outputs of the last one may be overwritten now.
            torch.compiler.cudagraph_mark_step_begin()
        if scale > 1.0:
            x = downsample(x, scale)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast:
            if scale > 1.0:
                with reduced(self.model, scale, self.schedule.kernel_pool, self.schedule.bn):
                    out = model(x)
            else:
                out = model(x)
            return F.cross_entropy(out.float(), y, label_smoothing=self.label_smoothing)


def _equivalent_scales(
    scales: list[float], model: nn.Module, image_size: tuple[int, int]
) -> list[float]:
    """Each scale replaced by the first one that computes exactly the same step (same input
    size, same pooled kernel sizes). A progressive schedule's continuous scales then need one
    warm-up and one FLOP count per distinct step, not per step."""
    kernels = {m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)}
    first: dict[tuple, float] = {}

    def key(scale: float) -> tuple:
        size = tuple(reduced_size(n, scale) for n in image_size)
        return (size, tuple(sorted(pooled_kernel_size(k, scale) for k in kernels)))

    out = []
    for scale in scales:
        if scale == 1.0:
            out.append(1.0)
            continue
        k = key(scale)
        if k[0] == tuple(image_size) and all(
            pooled_kernel_size(kernel, scale) == kernel for kernel in kernels
        ):
            out.append(1.0)  # nothing is reduced at this scale: a full step
            continue
        out.append(first.setdefault(k, scale))
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _step_flops(stepper: _Stepper, x: torch.Tensor, y: torch.Tensor, scale: float) -> float:
    """FLOPs of one training step's forward and backward, counted by torch's FLOP counter."""
    model = stepper.model
    was_training = model.training
    model.eval()  # the same convolutions, and BatchNorm statistics stay untouched
    counter = FlopCounterMode(display=False)
    with counter:
        stepper.loss(x, y, scale, eager=True).backward()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return float(counter.get_total_flops())


def _warm_up(stepper: _Stepper, x: torch.Tensor, y: torch.Tensor, scales: list[float]) -> None:
    """Run each step shape once before the clock starts; the model's state is restored."""
    state = copy.deepcopy(stepper.model.state_dict())
    # CUDA graphs are recorded on a shape's second call (the first one warms up). Gradients
    # are dropped after each call, as in training: a .grad kept from an earlier call lives in
    # the graphs' memory pool, which the next call overwrites.
    for scale in scales:
        for _ in range(2 if stepper.cuda_graphs else 1):
            stepper.loss(x, y, scale).backward()
            stepper.model.zero_grad(set_to_none=True)
    stepper.model.load_state_dict(state)


# BatchNorm running statistics come from full steps only (bn="freeze") or are mixed with
# reduced ones (bn="update"). When under a fifth of the last 100 steps were full, they are
# re-estimated before evaluation (a schedule reducing 99% of its steps scored 9.9%, chance).
MIN_RECENT_FULL_FRACTION = 0.2
RECALIBRATION_BATCHES = 10


def _needs_bn_recalibration(scales: list[float]) -> bool:
    recent = scales[-100:]
    return sum(s == 1.0 for s in recent) < MIN_RECENT_FULL_FRACTION * len(recent)


@torch.no_grad()
def _recalibrate_bn(stepper: _Stepper, data, batch_size: int, seed: int) -> None:
    """Re-estimate BatchNorm running statistics from a few full-resolution training batches
    (forward only, cumulative average). Part of training, so inside the timed region."""
    norms = batch_norms(stepper.model)
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the recalibration batches
    batches = data.train_batches(batch_size, torch.Generator().manual_seed(seed))
    for _, (x, _y) in zip(range(RECALIBRATION_BATCHES), batches):
        if stepper.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with stepper.autocast:
            stepper.model(x)
    for m, momentum in zip(norms, momenta):
        m.momentum = momentum


@contextlib.contextmanager
def _bn_statistics_kept(model: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm layer's running statistics on exit."""
    norms = batch_norms(model)
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]
    try:
        yield
    finally:
        for m, state in zip(norms, saved):
            m.load_state_dict(state)


def _step_with_lr_scale(optimizer: torch.optim.Optimizer, lr_scale: float) -> None:
    """One optimiser step with every group's learning rate multiplied by `lr_scale`."""
    for group in optimizer.param_groups:
        group["lr"] *= lr_scale
    optimizer.step()
    for group in optimizer.param_groups:
        group["lr"] /= lr_scale


@contextlib.contextmanager
def _as_scored(stepper: _Stepper, data, config: TrainConfig, epoch: int, recalibrate: bool):
    """The model as its accuracy after `epoch` is scored: with `recalibrate`, BatchNorm
    statistics re-estimated for the duration only (training goes on with the ones it had)."""
    if not recalibrate:
        yield
        return
    with _bn_statistics_kept(stepper.model):
        _recalibrate_bn(stepper, data, config.batch_size, seed=config.seed + epoch)
        yield


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterator[tuple[torch.Tensor, torch.Tensor]],
    stepper: _Stepper,
    device: torch.device,
) -> float:
    """Top-1 accuracy at full resolution on `batches` (a split's val_batches or test_batches)."""
    model.eval()
    correct = torch.zeros((), dtype=torch.long, device=device)
    seen = 0
    for x, y in batches:
        if stepper.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with stepper.autocast:
            correct += (model(x).argmax(dim=1) == y).sum()
        seen += y.numel()
    model.train()
    return correct.item() / max(seen, 1)


OnEpoch = Callable[[int, TrainResult], bool | None]


def _load_data(config: TrainConfig, device: torch.device, **changes: Any):
    arguments = dict(
        device=device,
        root=config.data_dir,
        download=config.download,
        subset=config.subset,
        val_fraction=config.val_fraction,
        image_size=config.image_size,
        augment=config.augment,
        seed=config.seed,
        num_workers=config.num_workers,
        val_size=config.val_size,
        data_seed=config.data_seed,
        test=config.test,
    )
    return load_data(config.data, **{**arguments, **changes})


def check_data(config: TrainConfig) -> None:
    """Pre-flight: the data set is there and fits the config (splits, batch size), or a
    one-line ConfigError saying how to get it, before any training starts. Loads it on the
    CPU at its own size (a process's later loads of the MNIST-family files are cached)."""
    try:
        data = _load_data(config, torch.device("cpu"), image_size=None)
        data.steps_per_epoch(config.batch_size)
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from None


def train(config: TrainConfig, on_epoch: OnEpoch | None = None) -> TrainResult:
    """Train `config.model` on `config.data` with `config.schedule`; return the measured result.

    `on_epoch(epoch, result_so_far)` is called after each epoch; returning True ends the run.
    Raises NonFiniteLossError when the loss stops being finite.
    """
    device = resolve_device(config.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    torch.manual_seed(config.seed)
    data = _load_data(config, device)
    model = build_model(
        config.model, num_classes=data.info.num_classes, in_channels=data.info.in_channels
    ).to(device)
    stepper = _Stepper(model, config, device)
    if stepper.channels_last:
        model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.SGD(
        model.parameters(),
        lr=config.lr,
        momentum=config.momentum,
        nesterov=config.nesterov and config.momentum > 0,
        weight_decay=config.weight_decay,
    )
    steps_per_epoch = data.steps_per_epoch(config.batch_size)
    planned_steps = steps_per_epoch * config.epochs
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
    for epoch in range(1, config.epochs + 1):
        model.train()
        loss_sum = torch.zeros((), device=device)
        epoch_reduced = 0
        _sync(device)
        start = time.perf_counter()
        for x, y in data.train_batches(config.batch_size, generator):
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
            step += 1
        recalibrate = _needs_bn_recalibration(scales[:step])
        final = epoch == config.epochs
        if recalibrate and final:  # part of making the final model: timed and counted
            _recalibrate_bn(stepper, data, config.batch_size, seed=config.seed + epoch)
            recalibrations += 1
        _sync(device)
        epoch_time = time.perf_counter() - start
        train_time += epoch_time
        mean_loss = loss_sum.item() / steps_per_epoch
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
        if on_epoch is not None and on_epoch(epoch, result) and epoch < config.epochs:
            stopped_early = True
            break

    assert result is not None  # epochs >= 1
    result.stopped_early = stopped_early
    _count_flops(result, stepper, sample, scales[:step], recalibrations)
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


def _count_flops(
    result: TrainResult, stepper: _Stepper, sample, scales: list[float], recalibrations: int
) -> None:
    x, y = sample
    counts: dict[float, int] = {}
    for scale in scales:
        counts[scale] = counts.get(scale, 0) + 1
    per_scale = {scale: _step_flops(stepper, x, y, scale) for scale in counts}
    result.flops = sum(per_scale[s] * n for s, n in counts.items())
    result.full_step_flops = per_scale.get(1.0) or _step_flops(stepper, x, y, 1.0)
    reduced_scales = [s for s in per_scale if s > 1.0]
    if reduced_scales:
        result.reduced_step_flops = per_scale[max(reduced_scales)]
    if recalibrations:
        result.flops += recalibrations * RECALIBRATION_BATCHES * _forward_flops(stepper, x)


@torch.no_grad()
def _forward_flops(stepper: _Stepper, x: torch.Tensor) -> float:
    model = stepper.model
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, stepper.autocast:
        model(x)
    model.train(was_training)
    return float(counter.get_total_flops())
