"""The step engine: one full or reduced step of the model, its warm-up and FLOP count, BatchNorm
re-estimation after mostly reduced training, and scoring."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterable, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from objectives._config import TrainConfig, TrainResult
from objectives._models import build_model
from objectives._reduce import (
    KernelDerivation,
    batch_norms,
    downsample,
    pooled_kernel_size,
    reduced,
    reduced_size,
)


def _vectorise_inductor_under_scalar_aten() -> None:
    """With ATEN_CPU_CAPABILITY=default, torch's Inductor picks scalar C++ code but still emits
    vector code for BatchNorm's reduction, which then fails to compile (torch 2.14). Its own
    vector width (the CPU's widest) is independent of ATen's kernels, so it is set here."""
    from torch._inductor import config
    from torch._inductor.cpu_vec_isa import valid_vec_isa_list

    if torch.backends.cpu.get_cpu_capability() != "DEFAULT" or config.cpp.simdlen is not None:
        return
    widths = [isa.bit_width() for isa in valid_vec_isa_list()]
    if widths:
        config.cpp.simdlen = widths[0]


class _Stepper:
    """Runs one full or reduced forward pass of the model: the method's whole footprint."""

    def __init__(
        self,
        model: nn.Module,
        config: TrainConfig,
        device: torch.device,
        derive_kernel: KernelDerivation | None = None,
    ) -> None:
        self.model = model
        self.derive_kernel = derive_kernel  # how reduced steps pool kernels; None: pool_kernel
        self.reused = False  # whether the compiled steps come from an earlier run
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
            _vectorise_inductor_under_scalar_aten()
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
                with reduced(
                    self.model,
                    scale,
                    self.schedule.kernel_pool,
                    self.schedule.bn,
                    derive_kernel=self.derive_kernel,
                ):
                    out = model(x)
            else:
                out = model(x)
            return F.cross_entropy(out.float(), y, label_smoothing=self.label_smoothing)


# The compiled stepper of this process's last compiled run, by everything its graphs depend
# on. A worker runs many trials of one model on one data set: the next trial with the same key
# re-initialises the same model object in place and reuses the graphs (CUDA graphs included,
# as the parameters keep their memory), so compilation is paid once per worker, not per trial.
_kept: tuple[tuple, _Stepper] | None = None


def prepared_stepper(
    config: TrainConfig,
    num_classes: int,
    in_channels: int,
    device: torch.device,
    derive_kernel: KernelDerivation | None = None,
) -> _Stepper:
    """A stepper with a new model (drawn from torch's global generator, which `train` seeds);
    with `compile`, the process's compiled one when it fits this config, its parameters and
    buffers set in place to the new model's."""
    global _kept
    model = build_model(config.model, num_classes=num_classes, in_channels=in_channels)
    model = model.to(device)
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    if not config.compile:
        return _Stepper(model, config, device, derive_kernel)
    key = (
        config.model, num_classes, in_channels, str(device), config.channels_last,
        config.bf16, config.compile_mode, config.label_smoothing,
        config.schedule.kernel_pool, config.schedule.bn, derive_kernel,
    )  # fmt: skip
    if _kept is not None and _kept[0] == key:
        stepper = _kept[1]
        with torch.no_grad():  # in place: the graphs hold these very tensors
            stepper.model.load_state_dict(model.state_dict())
        stepper.schedule = config.schedule
        stepper.reused = True
        return stepper
    _kept = None  # the old graphs and their memory go before the new ones are made
    stepper = _Stepper(model, config, device, derive_kernel)
    _kept = (key, stepper)
    return stepper


def conv_kernel_sizes(model: nn.Module) -> set[tuple[int, int]]:
    """The kernel sizes of the model's convolutions."""
    return {m.kernel_size for m in model.modules() if isinstance(m, nn.Conv2d)}


def step_shape(
    scale: float, kernels: set[tuple[int, int]], image_size: tuple[int, int]
) -> tuple | None:
    """What a step at `scale` computes (its input size and pooled kernel sizes); None when
    nothing is reduced at that scale: a full step."""
    if scale == 1.0:
        return None
    size = tuple(reduced_size(n, scale) for n in image_size)
    if size == tuple(image_size) and all(pooled_kernel_size(k, scale) == k for k in kernels):
        return None
    return (size, tuple(sorted(pooled_kernel_size(k, scale) for k in kernels)))


def _equivalent_scales(
    scales: list[float], model: nn.Module, image_size: tuple[int, int]
) -> list[float]:
    """Each scale replaced by the first one that computes exactly the same step (same input
    size, same pooled kernel sizes). A progressive schedule's continuous scales then need one
    warm-up and one FLOP count per distinct step, not per step."""
    kernels = conv_kernel_sizes(model)
    first: dict[tuple, float] = {}
    out = []
    for scale in scales:
        shape = step_shape(scale, kernels, image_size)
        out.append(1.0 if shape is None else first.setdefault(shape, scale))
    return out


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def counted_step_flops(model: nn.Module, step: Callable[[], torch.Tensor]) -> float:
    """FLOPs of `step()`'s forward and of the backward of the loss it returns, counted by
    torch's FLOP counter. The model runs in eval mode (the same convolutions, and BatchNorm
    statistics stay untouched); its parameters' gradients are as they were afterwards."""
    grads = [(p, p.grad) for p in model.parameters()]
    for p, _ in grads:
        p.grad = None
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            loss = step()
            if loss.requires_grad:
                loss.backward()
    finally:
        model.train(was_training)
        for p, grad in grads:
            p.grad = grad
    return float(counter.get_total_flops())


def _step_flops(stepper: _Stepper, x: torch.Tensor, y: torch.Tensor, scale: float) -> float:
    """FLOPs of one training step's forward and backward."""
    return counted_step_flops(stepper.model, lambda: stepper.loss(x, y, scale, eager=True))


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
def reestimate_bn(
    model: nn.Module, inputs: Iterable[torch.Tensor], forward: Callable | None = None
) -> None:
    """Re-estimate the model's BatchNorm running statistics from full-resolution `inputs`
    (forward only, in training mode, cumulative average); `forward(x)` runs the model (default
    `model(x)`)."""
    norms = batch_norms(model)
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average over the recalibration batches
    was_training = model.training
    model.train()
    try:
        for x in inputs:
            (forward or model)(x)
    finally:
        model.train(was_training)
        for m, momentum in zip(norms, momenta):
            m.momentum = momentum


def _recalibrate_bn(stepper: _Stepper, data, batch_size: int, seed: int) -> None:
    """Re-estimate BatchNorm running statistics from a few full-resolution training batches.
    Part of training, so inside the timed region."""
    batches = data.train_batches(batch_size, torch.Generator().manual_seed(seed))
    inputs = (x for _, (x, _y) in zip(range(RECALIBRATION_BATCHES), batches))

    def forward(x: torch.Tensor) -> torch.Tensor:
        if stepper.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with stepper.autocast:
            return stepper.model(x)

    reestimate_bn(stepper.model, inputs, forward)


def saved_bn_statistics(model: nn.Module) -> Callable[[], None]:
    """A copy of every BatchNorm layer's running statistics; call the result to restore it."""
    norms = batch_norms(model)
    saved = [{k: v.clone() for k, v in m.state_dict().items()} for m in norms]

    def restore() -> None:
        for m, state in zip(norms, saved):
            m.load_state_dict(state)

    return restore


@contextlib.contextmanager
def _bn_statistics_kept(model: nn.Module) -> Iterator[None]:
    """Restore every BatchNorm layer's running statistics on exit."""
    restore = saved_bn_statistics(model)
    try:
        yield
    finally:
        restore()


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


def _count_flops(
    result: TrainResult,
    stepper: _Stepper,
    sample,
    scales: list[float],
    recalibrations: int,
    per_scale: dict[float, float] | None = None,
) -> None:
    """`per_scale`: step FLOPs by scale counted so far, filled in here (the training loop
    counts after each epoch for `on_epoch`, and each scale is counted once)."""
    x, y = sample
    counts: dict[float, int] = {}
    for scale in scales:
        counts[scale] = counts.get(scale, 0) + 1
    per_scale = {} if per_scale is None else per_scale
    for scale in counts:
        if scale not in per_scale:
            per_scale[scale] = _step_flops(stepper, x, y, scale)
    result.flops = sum(per_scale[s] * n for s, n in counts.items())
    result.full_step_flops = per_scale.get(1.0) or _step_flops(stepper, x, y, 1.0)
    reduced_scales = [s for s in per_scale if s > 1.0]
    if reduced_scales:
        result.reduced_step_flops = per_scale[max(reduced_scales)]
    if recalibrations:
        result.flops += (
            recalibrations
            * RECALIBRATION_BATCHES
            * forward_flops(stepper.model, x, stepper.autocast)
        )


@torch.no_grad()
def forward_flops(
    model: nn.Module, x: torch.Tensor, autocast: contextlib.AbstractContextManager | None = None
) -> float:
    """FLOPs of one evaluation-mode forward pass of `model` on `x` (under `autocast`)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with counter, autocast or contextlib.nullcontext():
            model(x)
    finally:
        model.train(was_training)
    return float(counter.get_total_flops())
