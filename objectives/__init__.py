"""The training method of dikd: dynamic input and kernel downsampling (arXiv 1910.06548).

Public API (everything else is private):
- the method: `downsample`, `reduced` (a model whose convolutions run with kernels derived by
  `pool_kernel`, or by a `derive_kernel` of your own), `pooled_kernel_size`;
- which steps are reduced: `Schedule`, its fields' declared bounds and choices
  (`SCHEDULE_FIELDS`, each a `FieldRule`), `POLICIES`, `window_problem`;
- one training run: `TrainConfig` (and `load_train_config`), `train`, `TrainResult`,
  `EpochRecord`, `check_data`, `resolve_device`;
- your own training loop (`TrainConfig.loop`): `RunContext` (what it is given and reports
  through), `LoopError`; the step helper for any loop, `ScheduledSteps` (a `Schedule` or an
  exported pick, step by step), `load_schedule`; `objectives.lightning.ScheduleCallback` (needs
  the `lightning` extra, imported only from there);
- your own code by import path (`package.module:function`), imported only from packages this
  process allows: `allow_imports`, `allowed_packages`, `ALLOW_IMPORTS_ENV`, `user_packages`;
- registries by name: `register_model`, `list_models`, `build_model`; `register_dataset` (a
  loader receives a `LoadRequest` and returns `TrainingData`), `list_datasets`,
  `describe_dataset` (what of it is installed), `load_data` (also the user's own data: an
  import path `package.module:callable` or a name published in the `dikd.datasets` entry-point
  group, returning `TrainingData` or Datasets; docs/your-own-data.md);
- errors: `ConfigError` (a user's input, one line naming the field and the fix),
  `NonFiniteLossError`, and the helpers that make one-line errors: `describe_validation_error`
  (a pydantic error) and `load_yaml_file` (a YAML file, every way reading it can fail).
"""

from objectives._data import (
    LoadRequest,
    TrainingData,
    describe_dataset,
    list_datasets,
    load_data,
    register_dataset,
)
from objectives._errors import (
    ConfigError,
    NonFiniteLossError,
    describe_validation_error,
    load_yaml_file,
)
from objectives._imports import ALLOW_ENV as ALLOW_IMPORTS_ENV
from objectives._imports import allow_imports, allowed_packages, user_packages
from objectives._loop import LoopError, RunContext
from objectives._models import build_model, list_models, register_model
from objectives._reduce import downsample, pool_kernel, pooled_kernel_size, reduced
from objectives._schedule import POLICIES, SCHEDULE_FIELDS, FieldRule, Schedule, window_problem
from objectives._scheduled_steps import ScheduledSteps, load_schedule
from objectives._train import (
    EpochRecord,
    TrainConfig,
    TrainResult,
    check_data,
    load_train_config,
    resolve_device,
    train,
)

__all__ = [
    "ALLOW_IMPORTS_ENV",
    "POLICIES",
    "SCHEDULE_FIELDS",
    "ConfigError",
    "EpochRecord",
    "FieldRule",
    "LoadRequest",
    "LoopError",
    "NonFiniteLossError",
    "RunContext",
    "Schedule",
    "ScheduledSteps",
    "TrainConfig",
    "TrainResult",
    "TrainingData",
    "allow_imports",
    "allowed_packages",
    "build_model",
    "check_data",
    "describe_dataset",
    "describe_validation_error",
    "downsample",
    "list_datasets",
    "list_models",
    "load_data",
    "load_schedule",
    "load_train_config",
    "load_yaml_file",
    "pool_kernel",
    "pooled_kernel_size",
    "reduced",
    "register_dataset",
    "register_model",
    "resolve_device",
    "train",
    "user_packages",
    "window_problem",
]
