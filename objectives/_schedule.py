"""Which training steps are reduced, and by how much: the searched hyperparameter."""

from __future__ import annotations

import dataclasses
import math
import random
from typing import Any, Literal

from objectives._reduce import MAX_SCALE

Policy = Literal["none", "stochastic", "deterministic", "progressive"]
POLICIES: tuple[str, ...] = ("none", "stochastic", "deterministic", "progressive")
BN_MODES: tuple[str, ...] = ("freeze", "update")


@dataclasses.dataclass(frozen=True)
class Schedule:
    """Decides, step by step, whether a mini-batch is reduced.

    Args:
        policy: "none" (never: the baseline), "stochastic" (each step in the window is reduced
            with probability `frequency`, from a generator seeded by `seed`), "deterministic"
            (evenly spread: among any n consecutive steps in the window, round(frequency * n)
            within one are reduced; frequency 1/k reduces every k-th step) or "progressive"
            (progressive resizing: every step in the window is reduced, at `scale` for the first
            `frequency` of the window, then at a scale falling linearly to 1 at its end; MosaicML
            Composer's defaults, initial_scale 0.5, delay_fraction 0.5 and finetune_fraction 0.2,
            are `scale=2, end=0.8, frequency=0.625`).
        frequency: fraction of the window's steps that are reduced, in [0, 1] (progressive: the
            fraction of the window held at the full `scale`).
        scale: downsampling factor of reduced steps, in [1, 4] (2 halves height and width).
        kernel_pool: pool each conv's kernel on reduced steps (False: reduce the input only).
        bn: "freeze" (reduced steps leave BatchNorm running statistics alone) or "update".
        start, end: reduction happens only for steps in this fraction [start, end) of training,
            so training can end with a full-resolution phase.
        seed: seed of the stochastic policy.
        lr_scale: learning-rate multiplier on reduced steps, in [0.25, 4] (a reduced step sees
            a coarser, cheaper view of the batch; a larger step can spend its savings).
    """

    policy: Policy = "none"
    frequency: float = 0.5
    scale: float = 2.0
    kernel_pool: bool = True
    bn: Literal["freeze", "update"] = "freeze"
    start: float = 0.0
    end: float = 1.0
    seed: int = 0
    lr_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(
                f"schedule.policy must be one of {', '.join(POLICIES)}, got {self.policy!r}"
            )
        for name in ("frequency", "start", "end"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 1
            ):
                raise ValueError(f"schedule.{name} must be a number in [0, 1], got {value!r}")
        if (
            isinstance(self.scale, bool)
            or not isinstance(self.scale, (int, float))
            or not (1 <= self.scale <= MAX_SCALE)
        ):
            raise ValueError(
                f"schedule.scale must be a number in [1, {MAX_SCALE:g}], got {self.scale!r}"
            )
        if self.start >= self.end:
            raise ValueError(
                f"schedule.start must be below schedule.end, got start={self.start} end={self.end}"
            )
        if self.bn not in BN_MODES:
            raise ValueError(f"schedule.bn must be 'freeze' or 'update', got {self.bn!r}")
        if not isinstance(self.kernel_pool, bool):
            raise ValueError(
                f"schedule.kernel_pool must be true or false, got {self.kernel_pool!r}"
            )
        if (
            isinstance(self.lr_scale, bool)
            or not isinstance(self.lr_scale, (int, float))
            or not (0.25 <= self.lr_scale <= 4)
        ):
            raise ValueError(
                f"schedule.lr_scale must be a number in [0.25, 4], got {self.lr_scale!r}"
            )
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"schedule.seed must be an integer, got {self.seed!r}")

    def _window(self, total_steps: int) -> tuple[int, int]:
        return math.ceil(self.start * total_steps - 1e-9), math.ceil(self.end * total_steps - 1e-9)

    def scale_at(self, step: int, total_steps: int) -> float:
        """The downsampling factor of `step` (0-based) of `total_steps`: 1.0 for a full step."""
        if self.policy == "none" or self.scale == 1:
            return 1.0
        first, stop = self._window(total_steps)
        if not first <= step < stop:
            return 1.0
        i = step - first
        if self.policy == "stochastic":
            # A generator per step keeps the pattern a pure function of (seed, step).
            return (
                self.scale
                if random.Random(f"{self.seed}:{step}").random() < self.frequency
                else 1.0
            )
        if self.policy == "deterministic":
            # Bresenham: step i is reduced when floor((i+1)f) > floor(if), which spreads the
            # reduced steps evenly and reduces every k-th step for f = 1/k.
            eps = 1e-9
            reduced = math.floor((i + 1) * self.frequency + eps) > math.floor(
                i * self.frequency + eps
            )
            return self.scale if reduced else 1.0
        # progressive: `scale` for the first `frequency` of the window, then linearly towards 1.
        length = stop - first
        hold = length * self.frequency
        if i < hold:
            return self.scale
        progress = (i - hold) / max(length - hold, 1)
        scale = self.scale - (self.scale - 1.0) * progress
        return scale if scale > 1.0 + 1e-6 else 1.0

    def is_reduced(self, step: int, total_steps: int) -> bool:
        return self.scale_at(step, total_steps) > 1.0

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Schedule:
        if not isinstance(data, dict):
            raise ValueError(f"a schedule must be a mapping, got {type(data).__name__}")
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - fields)
        if unknown:
            raise ValueError(
                f"unknown schedule field(s) {', '.join(unknown)}; "
                f"allowed: {', '.join(sorted(fields))}"
            )
        return cls(**data)
