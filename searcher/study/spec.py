"""Study specs (`studies/*.yaml`): validated on load, one-line errors naming the field."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import pydantic
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationInfo,
    field_validator,
    model_validator,
)

from objectives import (
    SCHEDULE_FIELDS,
    ConfigError,
    FieldRule,
    TrainConfig,
    describe_validation_error,
    load_yaml_file,
    window_problem,
)

DEFAULT_STORAGE = "sqlite:///dikd.db"
STORAGE_ENV = "DIKD_STORAGE"


class FloatRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    low: float
    high: float
    step: float | None = Field(None, gt=0)
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> FloatRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


class IntRange(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    low: int = Field(gt=0)
    high: int = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> IntRange:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must not exceed high ({self.high})")
        return self


class Choices(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    choices: list[Any] = Field(min_length=1)


def _kind(value: Any) -> str:
    if isinstance(value, (dict, Choices, FloatRange, IntRange)):
        is_choices = isinstance(value, Choices) or (isinstance(value, dict) and "choices" in value)
        return "<choices>" if is_choices else "<range>"
    return "<fixed>"


class _Searchable:
    """`Searchable[T]`: a fixed T, a range {low, high} or {choices: [...]}. The discriminator
    picks the form from the input, so an error speaks of that form only."""

    def __class_getitem__(cls, kind: Any) -> Any:
        range_type = IntRange if kind is int else FloatRange
        return Annotated[
            Annotated[kind, Tag("<fixed>")]
            | Annotated[range_type, Tag("<range>")]
            | Annotated[Choices, Tag("<choices>")],
            Discriminator(_kind),
        ]


Searchable = _Searchable

# The Schedule fields a spec may search, in Schedule's order, then the training budget.
SEARCHABLE: tuple[str, ...] = (
    *(name for name, rule in SCHEDULE_FIELDS.items() if rule.searchable),
    "epochs",
)
# What the space searches when the spec leaves a field out; any other field is fixed at
# Schedule's default.
_SEARCHED_BY_DEFAULT = {
    "policy": Choices(choices=["stochastic", "deterministic"]),
    "frequency": FloatRange(low=0.1, high=0.9),
    "scale": Choices(choices=[2.0, 4.0]),
}


def _problem(rule: FieldRule, value: Any) -> str | None:
    """What is wrong with a searched Schedule field's value (fixed, range or choices)."""
    if isinstance(value, FloatRange):
        if rule.bounds is None:
            return "takes a value or {choices: [...]}, not a range"
        values = [value.low, value.high]
    else:
        values = value.choices if isinstance(value, Choices) else [value]
    if rule.name == "policy" and "none" in values:
        return "'none' is the baseline, which every study trains; search the other policies"
    return next((p for p in map(rule.problem, values) if p is not None), None)


class _SearchSpaceBase(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*")
    @classmethod
    def _check_values(cls, value: Any, info: ValidationInfo) -> Any:
        rule = SCHEDULE_FIELDS.get(info.field_name)
        problem = None if rule is None else _problem(rule, value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @model_validator(mode="after")
    def _window_can_open(self) -> _SearchSpaceBase:
        problem = window_problem(_ends(self.start)[0], _ends(self.end)[1])
        if problem is not None:
            raise ValueError(f"lowest {problem} at its highest; lower start or raise end")
        return self


SearchSpace = pydantic.create_model(
    "SearchSpace",
    __base__=_SearchSpaceBase,
    __doc__="Each searchable Schedule field is either fixed (a plain value) or searched (a "
    "range or `choices`). `epochs` searched makes the training budget a dimension of the search.",
    **{
        name: (Searchable[rule.kind], _SEARCHED_BY_DEFAULT.get(name, rule.default))
        for name, rule in SCHEDULE_FIELDS.items()
        if rule.searchable
    },
    epochs=(Searchable[int] | None, None),  # None: the budget's epochs
)


def _ends(value: Any) -> tuple[float, float]:
    """The lowest and highest value a fixed value, a range or choices can take."""
    if isinstance(value, FloatRange):
        return value.low, value.high
    values = value.choices if isinstance(value, Choices) else [value]
    return min(values), max(values)


class SamplerSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["tpe", "nsga2", "gp", "random"] = "tpe"
    seed: int = Field(0, ge=0, lt=2**32)  # samplers take seeds in [0, 2**32)


class NoPruner(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["none"] = "none"


class DominancePruner(BaseModel):
    """Stop a trial whose point (cost, accuracy) after an epoch is dominated, by `margin_pp`
    points of accuracy, by the same-epoch points of `min_dominating` completed trials."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["dominance"]
    min_completed: int = Field(5, ge=1)  # warm-up: completed trials before any stop
    min_epoch: int = Field(1, ge=1)  # warm-up: the first epoch a trial may be stopped after
    margin_pp: float = Field(1.0, ge=0)  # accuracy points the dominating trials must lead by
    min_dominating: int = Field(2, ge=1)  # how many completed trials must dominate


class MOASHAPruner(BaseModel):
    """MO-ASHA: at rungs min_epoch * eta^k a trial goes on only if it ranks in the top 1/eta
    of the trials that reached that rung (non-dominated sorting)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: Literal["mo-asha"]
    eta: float = Field(3.0, gt=1)  # reduction factor
    min_epoch: int = Field(1, ge=1)  # the first rung


PrunerSpec = Annotated[NoPruner | DominancePruner | MOASHAPruner, Field(discriminator="name")]


class BaselineSpec(BaseModel):
    """The baseline's budget curve: the plain model at these fractions of the epochs."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    fractions: list[float] = Field(default_factory=lambda: [0.25, 0.5, 0.75, 1.0], min_length=1)

    @model_validator(mode="after")
    def _check(self) -> BaselineSpec:
        if any(not 0 < f <= 1 for f in self.fractions):
            raise ValueError("each fraction must be in (0, 1]")
        if 1.0 not in self.fractions:
            raise ValueError("the fractions must include 1.0, the full-budget baseline")
        return self


class SearchFidelity(BaseModel):
    """A cheaper search: these TrainConfig fields replace `train`'s for the search's trials and
    its baselines; `dikd confirm` trains `train` as it is (full fidelity). Schedules are
    fractions of training, so a pick carries over."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    subset: int | None = Field(None, gt=0)  # training images; None: train.subset
    image_size: int | None = Field(None, gt=0)  # pixels a side; None: train.image_size

    def overrides(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class StudySpec(BaseModel):
    """One study: what to train, what to search, how, and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    storage: str = DEFAULT_STORAGE
    train: TrainConfig
    space: SearchSpace = SearchSpace()
    baseline: BaselineSpec = BaselineSpec()
    sampler: SamplerSpec = SamplerSpec()
    n_trials: int | None = Field(None, gt=0)  # all trials of the study, baselines included
    timeout_s: float | None = Field(None, gt=0)  # wall time of the whole study
    objective: Literal["wall", "flops"] = "wall"
    pruner: PrunerSpec = NoPruner()  # early stopping of search trials (searcher/study/pruning.py)
    search_fidelity: SearchFidelity = SearchFidelity()  # a cheaper search than `train`
    # Schedules the search tries first (each a mapping of the space's searched fields, every
    # one of them): known-good places to start, before the sampler proposes its own.
    enqueue: list[dict[str, Any]] = Field(default_factory=list)

    @model_validator(mode="before")
    @classmethod
    def _pruner_implies_scores_every_epoch(cls, data: Any) -> Any:
        """A pruner decides from the accuracy after each epoch: with one, the study scores every
        epoch whatever train.eval_every_epoch says (`study show` says so)."""
        if not isinstance(data, dict) or not _names_a_pruner(data.get("pruner")):
            return data
        train = data.get("train")
        if isinstance(train, dict):
            return {**data, "train": {**train, "eval_every_epoch": True}}
        if isinstance(train, TrainConfig):
            return {**data, "train": train.model_copy(update={"eval_every_epoch": True})}
        return data

    @model_validator(mode="after")
    def _check(self) -> StudySpec:
        if self.n_trials is None and self.timeout_s is None:
            raise ValueError("set n_trials or timeout_s (or both) to bound the study")
        if self.train.schedule.policy != "none":
            raise ValueError("train.schedule is searched: describe it under `space`, not `train`")
        for index, schedule in enumerate(self.enqueue):
            problem = _enqueue_problem(self.space, schedule)
            if problem is not None:
                raise ValueError(f"enqueue[{index}]: {problem}")
        baselines = len(set(self.baseline.fractions))
        if self.n_trials is not None and self.n_trials <= baselines:
            raise ValueError(
                f"n_trials ({self.n_trials}) must exceed the {baselines} baseline trials"
            )
        return self

    def search_train(self) -> TrainConfig:
        """What the search's trials and baselines train: `train` at the search's fidelity."""
        return self.train.model_copy(update=self.search_fidelity.overrides())

    def stored_form(self) -> dict[str, Any]:
        """What the study keeps, to refuse a resume with a different spec. Storage is left out:
        the same study may be reached by many URLs."""
        return self.model_dump(mode="json", exclude={"storage"})

    def resolve_storage(self, override: str | None = None) -> str:
        return override or os.environ.get(STORAGE_ENV) or self.storage


def _names_a_pruner(pruner: Any) -> bool:
    name = pruner.get("name") if isinstance(pruner, dict) else getattr(pruner, "name", None)
    return name is not None and name != "none"


def searched_fields(space: Any) -> dict[str, Any]:
    """The space's fields that are searched (a range or choices), by name."""
    return {
        name: value
        for name in SEARCHABLE
        if isinstance(value := getattr(space, name), (FloatRange, IntRange, Choices))
    }


def _enqueue_problem(space: Any, schedule: Any) -> str | None:
    """What is wrong with an enqueued schedule: it must give every searched field a value the
    space allows, and nothing else."""
    fields = searched_fields(space)
    if not isinstance(schedule, dict) or set(schedule) != set(fields):
        return f"give exactly the searched fields ({', '.join(fields)}), as a mapping"
    for name, value in schedule.items():
        allowed = fields[name]
        if isinstance(allowed, Choices):
            ok = value in allowed.choices
        else:
            ok = _is_number(value) and allowed.low <= value <= allowed.high
        if not ok:
            return f"{name}={value!r} is outside the space; change it or the space"
    return None


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_spec(data: Any, source: str = "spec") -> StudySpec:
    if not isinstance(data, dict):
        raise ConfigError(f"{source} must be a mapping with name, train, space, ...")
    try:
        return StudySpec.model_validate(data)
    except pydantic.ValidationError as e:
        raise ConfigError(f"{source}: {describe_validation_error(e)}") from None


def load_spec(path: str | Path) -> StudySpec:
    path = Path(path)
    return parse_spec(load_yaml_file(path, "study spec file"), str(path))
