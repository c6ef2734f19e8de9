"""The training method of dikd: dynamic input and kernel downsampling (arXiv 1910.06548).

Public API: `downsample` and `reduced` (the method), `Schedule` (which steps are reduced),
`TrainConfig`, `train` and `TrainResult` (one real training run).
"""

from objectives._data import list_datasets, load_data
from objectives._errors import ConfigError, NonFiniteLossError
from objectives._models import build_model, list_models
from objectives._reduce import downsample, pool_kernel, pooled_kernel_size, reduced
from objectives._schedule import POLICIES, SCHEDULE_FIELDS, FieldRule, Schedule, window_problem
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
    "POLICIES",
    "SCHEDULE_FIELDS",
    "ConfigError",
    "EpochRecord",
    "FieldRule",
    "NonFiniteLossError",
    "Schedule",
    "TrainConfig",
    "TrainResult",
    "build_model",
    "check_data",
    "downsample",
    "list_datasets",
    "list_models",
    "load_data",
    "load_train_config",
    "pool_kernel",
    "pooled_kernel_size",
    "reduced",
    "resolve_device",
    "train",
    "window_problem",
]
