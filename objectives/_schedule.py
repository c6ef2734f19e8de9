"""Which training steps are reduced, and by how much: the searched hyperparameter.

Each field of `Schedule` declares what a value must be once, in its annotation (the choices of
a `Literal`, bool, int) and its `bounds`; `SCHEDULE_FIELDS` reads them, and both the schedule's
own checks and the study spec's searchable fields (searcher/study/spec.py) are derived from it.
"""

from __future__ import annotations

import dataclasses
import math
import random
import typing
from typing import Any, Literal

from objectives._reduce import MAX_SCALE, BNMode

Policy = Literal["none", "stochastic", "deterministic", "progressive"]
POLICIES: tuple[str, ...] = typing.get_args(Policy)


def _field(default: Any, *, bounds: tuple[float, float] | None = None, searchable: bool = True):
    """A Schedule field: `bounds` (inclusive) for a number; `searchable`: a study may search it."""
    return dataclasses.field(default=default, metadata={"bounds": bounds, "searchable": searchable})


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


@dataclasses.dataclass(frozen=True)
class FieldRule:
    """What a value of one Schedule field must be."""

    name: str
    kind: Any  # the annotation: float, int, bool or a Literal
    default: Any
    bounds: tuple[float, float] | None
    searchable: bool

    @property
    def choices(self) -> tuple[Any, ...] | None:
        if self.kind is bool:
            return (True, False)
        return typing.get_args(self.kind) or None

    def problem(self, value: Any) -> str | None:
        """What is wrong with `value` ("must be ..., got ..."), or None when it is valid."""
        if self.kind is bool:
            return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
        if self.choices is not None:
            if isinstance(value, str) and value in self.choices:
                return None
            return f"must be one of {', '.join(self.choices)}, got {value!r}"
        if self.kind is int:
            return (
                None
                if isinstance(value, int) and _is_number(value)
                else (f"must be an integer, got {value!r}")
            )
        low, high = self.bounds or (-math.inf, math.inf)
        if _is_number(value) and low <= value <= high:
            return None
        return f"must be a number in [{low:g}, {high:g}], got {value!r}"


def window_problem(start: float, end: float, prefix: str = "") -> str | None:
    """What is wrong with the reduction window [start, end), or None when it can hold steps."""
    if start < end:
        return None
    return f"{prefix}start ({start}) must be below {prefix}end ({end})"


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
        frequency: fraction of the window's steps that are reduced (progressive: the fraction
            of the window held at the full `scale`).
        scale: downsampling factor of reduced steps (2 halves height and width).
        kernel_pool: pool each conv's kernel on reduced steps (False: reduce the input only).
        bn: "freeze" (reduced steps leave BatchNorm running statistics alone) or "update".
        start, end: reduction happens only for steps in this fraction [start, end) of training,
            so training can end with a full-resolution phase.
        seed: seed of the stochastic policy.
        lr_scale: learning-rate multiplier on reduced steps (a reduced step sees a coarser,
            cheaper view of the batch; a larger step can spend its savings).

    Each field's bounds and choices are declared below, once.
    """

    policy: Policy = _field("none")
    frequency: float = _field(0.5, bounds=(0.0, 1.0))
    scale: float = _field(2.0, bounds=(1.0, MAX_SCALE))
    kernel_pool: bool = _field(True)
    bn: BNMode = _field("freeze")
    start: float = _field(0.0, bounds=(0.0, 1.0))
    end: float = _field(1.0, bounds=(0.0, 1.0))
    seed: int = _field(0, searchable=False)  # the study's training seed, never searched
    lr_scale: float = _field(1.0, bounds=(0.25, 4.0))

    def __post_init__(self) -> None:
        for rule in SCHEDULE_FIELDS.values():
            problem = rule.problem(getattr(self, rule.name))
            if problem is not None:
                raise ValueError(f"schedule.{rule.name} {problem}")
        problem = window_problem(self.start, self.end, prefix="schedule.")
        if problem is not None:
            raise ValueError(problem)

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


def _rules() -> dict[str, FieldRule]:
    hints = typing.get_type_hints(Schedule)
    return {
        f.name: FieldRule(f.name, hints[f.name], f.default, **f.metadata)
        for f in dataclasses.fields(Schedule)
    }


SCHEDULE_FIELDS: dict[str, FieldRule] = _rules()
