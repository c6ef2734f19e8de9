"""What one training run is asked for (`TrainConfig`) and what it measured (`TrainResult`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import pydantic
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from objectives._data import check_dataset_name
from objectives._errors import (
    ConfigError,
    describe_validation_error,
    load_yaml_file,
)
from objectives._imports import is_import_path
from objectives._models import check_model_name
from objectives._schedule import Schedule


class TrainConfig(BaseModel):
    """Everything one training run needs. Units are in the comments."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model: str = "resnet20"  # resnet20/32/56 or a torchvision classification model
    # See `dikd datasets`, e.g. cifar10, openclipart, imagefolder:<path>; or your own data as
    # an import path package.module:callable (docs/your-own-data.md).
    data: str = "fashion-mnist"
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
    # Your own Datasets (`data` an import path): true, their items are the same on every read
    # (read once into the image cache); false, they change (random transforms), read every
    # epoch; auto, read a sample twice and compare.
    data_fixed: bool | Literal["auto"] = "auto"
    epochs: int = Field(10, gt=0)
    # Train only this fraction of the planned steps (epochs x steps per epoch), with the
    # learning-rate schedule fitted to the shorter run: the plain model at any budget, not only
    # at whole epochs (a confirmation's plain run placed where its statistic reads the curve).
    step_fraction: float = Field(1.0, gt=0, le=1)
    batch_size: int = Field(128, gt=0)
    lr: float = Field(0.1, gt=0)  # peak learning rate
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    weight_decay: float = Field(5e-4, ge=0)
    label_smoothing: float = Field(0.0, ge=0, lt=1)
    lr_schedule: Literal["cosine", "onecycle"] = "cosine"  # the learning rate's, not `schedule`
    warmup_epochs: float = Field(0.0, ge=0)  # linear warm-up before the cosine decay
    schedule: Schedule = Schedule()  # the reduction schedule: which steps are reduced
    # Fixes initialisation, data order, augmentation and the training subset (and, without
    # val_size, the validation images too).
    seed: int = Field(0, ge=0, lt=2**32)  # numpy's generators take seeds in [0, 2**32)
    device: str = "auto"  # auto (CUDA when there is one), cpu, cuda, cuda:N
    bf16: bool = True  # bf16 autocast on CUDA (ignored on the CPU)
    # NHWC: on the CPU (oneDNN) every step of ResNet-20 ran 1.15-1.25x faster, and on CUDA
    # it is what tensor cores want (benchmarks/README.md).
    channels_last: bool = True
    compile: bool = False  # torch.compile the full and the reduced step (once each, in warm-up)
    # torch.compile's mode; "reduce-overhead" replays each step as a CUDA graph, which is what
    # small models on a fast GPU need: their eager steps are bound by kernel launches.
    compile_mode: Literal["default", "reduce-overhead", "max-autotune"] = "default"
    num_workers: int = Field(2, ge=0)  # threads decoding image files into the image cache
    # An image file that cannot be decoded: false, a one-line error naming it; true, the
    # file is left out and counted in a warning.
    skip_bad_images: bool = False
    eval_batch_size: int = Field(512, gt=0)
    # Score the validation split after every epoch (the history, and early stopping, read it);
    # false: after the last epoch only. Untimed either way, but 5,000 images an epoch add up.
    eval_every_epoch: bool = True
    # Your own training loop, `package.module:function`, called as `function(ctx)` with a
    # `RunContext` instead of dikd's loop (objectives/_loop.py); None: dikd's own loop.
    loop: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)  # handed to the loop as `ctx.params`

    _known_model = field_validator("model")(classmethod(lambda cls, v: check_model_name(v)))
    _known_data = field_validator("data")(classmethod(lambda cls, v: check_dataset_name(v)))

    @field_validator("data_fixed", mode="before")
    @classmethod
    def _fixed_or_auto(cls, value: Any) -> Any:
        if isinstance(value, bool) or value == "auto":
            return value
        raise ValueError(f"must be true, false or auto, got {value!r}")

    @field_validator("loop")
    @classmethod
    def _loop_is_an_import_path(cls, loop: str | None) -> str | None:
        if loop is not None and not is_import_path(loop):
            raise ValueError(f"{loop!r} is not an import path; write package.module:function")
        return loop

    @model_validator(mode="after")
    def _loop_owns_its_recipe(self) -> TrainConfig:
        if self.loop is None:
            if self.params:
                raise ValueError(
                    "train.params are handed to train.loop; set train.loop, or drop train.params"
                )
            return self
        # Set with a value of its own: a default written out (a stored or exported config)
        # says nothing the loop would ignore.
        ignored = [
            name
            for name in sorted(self.model_fields_set - LOOP_FIELDS)
            if getattr(self, name)
            != type(self).model_fields[name].get_default(call_default_factory=True)
        ]
        if ignored:
            raise ValueError(
                f"train.loop is set, so dikd's own training recipe is not used: move "
                f"{', '.join(f'train.{n}' for n in ignored)} under train.params, where your "
                "loop reads them"
            )
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        try:
            return cls.model_validate(data)
        except pydantic.ValidationError as e:
            raise ConfigError(describe_validation_error(e)) from None

    def to_dict(self) -> dict[str, Any]:
        """All fields; with a loop, only those a loop uses."""
        out = self.model_dump()
        out["schedule"] = self.schedule.to_dict()
        if self.loop is not None:
            out = {k: v for k, v in out.items() if k in LOOP_FIELDS}
        return out


# What a training loop of the user's own takes from its TrainConfig (through `RunContext`);
# every other field belongs to dikd's own loop.
LOOP_FIELDS = frozenset(
    {"loop", "params", "epochs", "schedule", "seed", "device", "test", "eval_every_epoch"}
)


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
    loss: float | None  # mean training loss; None: a loop of your own did not report it
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
    planned_steps: int  # the run's plan: epochs x steps per epoch x step_fraction
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
