"""The user's own data: `train.data` as an import path `package.module:callable` or a name an
installed package publishes in the `dikd.datasets` entry-point group.

The callable takes no required arguments; of `root` (the config's `data_dir`), `data_seed`,
`image_size`, `download` and `request` (the `LoadRequest`), it receives those it names (all but
`request` when it takes **kwargs), never the training seed. It returns
- `TrainingData` (the registered loaders' fast path), or
- the user's `torch.utils.data.Dataset`s of `(image tensor C x H x W, int label)`: `(train,
  test)`, `(train, val, test)` or a mapping with keys train, val (optional) and test (optional).
  Without val, the validation split is carved from train as for every data set.

Datasets whose items are the same on every read are read once into the image cache
(`_dataset_cache.py`) and trained from as tensors (`TensorData`). If any Dataset's items change
between reads (random transforms in `__getitem__`: two reads of a sample of items differ, or
`data_fixed: false`), every split is read every epoch through a DataLoader (`DatasetData`), and
the timed training includes that reading, as it would in the user's own loop. The training
split decides the units: 8-bit images are normalised by dikd, float ones are passed on as they
are; the other splits are brought to its units. dikd's random crop and flip are added either
way unless `augment: false`; a training Dataset with `dikd_flip = False` is cropped, not
flipped. Training is the same whether or not the test split is loaded.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from objectives._data import LoadRequest, TrainingData
from objectives._dataset_cache import (
    _NAMES,
    FIELD,
    CachedSplit,
    _in_units,
    _item,
    _own_val,
    _same,
    _train_val_index,
    cached_split,
    describe,
    sample_indices,
    source_stamp,
    split_key,
)
from objectives._dataset_data import DatasetData
from objectives._errors import ConfigError
from objectives._folders import rows
from objectives._imports import (
    ALLOW_ENV,
    DATASET_GROUP,
    entry_points,
    import_callable,
    is_import_path,
    load_entry_point,
    top_package,
)
from objectives._tensor_data import split_tensor_data

DATA_KEYWORDS = ("root", "data_seed", "image_size", "download")  # besides `request`
_SPLITS = ("train", "val", "test")
_FORMS = (
    "return TrainingData, a (train, test) or (train, val, test) tuple of Datasets, or a "
    "mapping with keys train, val, test"
)


def is_user_data(name: str) -> bool:
    """Whether `name` is written as an import path or is a published entry-point name (the
    caller has checked it is no registered data set)."""
    return is_import_path(name) or name in entry_points(DATASET_GROUP)


def load_user_data(request: LoadRequest) -> TrainingData:
    """The user's data that `request.name` names, as `TrainingData` (see the module's docstring)."""
    path, make = _imported(request.name)
    value, passed = _called(make, path, request)
    if isinstance(value, TrainingData):
        return value
    datasets = _datasets(value, path)
    if request.test and "test" not in datasets:
        raise ConfigError(
            f"{FIELD}: {path} returned no test split, and test: true asks for one; return "
            "(train, test) Datasets, or set test: false"
        )
    flip = getattr(datasets["train"], "dikd_flip", True)
    request = dataclasses.replace(request, flip=bool(flip) and request.flip)
    parts = {"path": path, "keywords": passed, "source": source_stamp(make)}
    # Training is the same with or without the test split: every split returned decides
    # whether the data is cached, the training split alone its units and the classes.
    fixed, samples = _fixedness(datasets, request.data_fixed)
    store = all(fixed.values())
    if not request.test:
        datasets.pop("test", None)
    splits = {}
    for what, dataset in datasets.items():
        kind = {"split": what, "pixels": fixed[what], "stored": store, "size": request.image_size}
        splits[what] = cached_split(
            dataset,
            split_key(dataset, {**parts, **kind}, samples[what]),
            store_pixels=store,
            image_size=request.image_size,
            num_workers=request.num_workers,
            what=_NAMES[what],
        )
    _check_alike(splits)
    num_classes = _num_classes(datasets, splits)
    if store:
        return _tensor_data(request, splits, num_classes)
    return DatasetData(request, datasets, splits, num_classes)


def describe_entry_point(name: str) -> str:
    """What `dikd datasets` says of an entry-point name, without importing it."""
    value = entry_points(DATASET_GROUP)[name].value
    package = top_package(value)
    return f"published by an installed package: {value} (imported where {ALLOW_ENV} has {package})"


# --- the callable ----------------------------------------------------------------------------


def _imported(name: str) -> tuple[str, Any]:
    """The import path `name` stands for and its callable (import and allow-list checked)."""
    if is_import_path(name):
        return name, import_callable(name, "train.data")
    path = entry_points(DATASET_GROUP)[name].value.split("[")[0].strip()
    return path, load_entry_point(DATASET_GROUP, name, "train.data")


def _offered(request: LoadRequest) -> dict[str, Any]:
    return {
        "root": request.root,
        "data_seed": request.data_seed,
        "image_size": request.image_size,
        "download": request.download,
    }


def _called(make: Any, path: str, request: LoadRequest) -> tuple[Any, dict[str, Any]]:
    """`make` called with the documented keywords it accepts; its value and those passed
    (`request` as True, for the cache key: it holds the training seed)."""
    offered = _offered(request)
    try:
        parameters = inspect.signature(make).parameters
    except (TypeError, ValueError):  # a builtin without a signature: call it bare
        parameters = {}
    passed: dict[str, Any] = {}
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    for name, parameter in parameters.items():
        if parameter.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            continue
        by_keyword = parameter.kind is not inspect.Parameter.POSITIONAL_ONLY
        if by_keyword and name in offered:
            passed[name] = offered[name]
        elif by_keyword and (name == "request" or _is_load_request(parameter.annotation)):
            passed[name] = request
        elif parameter.default is inspect.Parameter.empty:
            raise ConfigError(
                f"{FIELD}: {path} requires the argument {name!r}; a data callable takes no "
                f"required arguments (it may take {', '.join(DATA_KEYWORDS)} or request)"
            )
    if takes_any:
        passed.update({k: v for k, v in offered.items() if k not in passed})
    try:
        value = make(**passed)
    except ConfigError:
        raise
    except Exception as e:
        reason = " ".join(str(e).split()) or "no message"
        raise ConfigError(f"{FIELD}: {path} raised {type(e).__name__}: {reason}") from None
    keywords = {k: (True if v is request else v) for k, v in passed.items()}
    return value, keywords


def _is_load_request(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.rpartition(".")[2] == "LoadRequest"
    return annotation is LoadRequest


def _datasets(value: Any, path: str) -> dict[str, Any]:
    """The Datasets `value` holds by split name, or a one-line ConfigError."""
    if isinstance(value, Mapping):
        unknown = sorted(set(map(str, value)) - set(_SPLITS))
        if unknown or "train" not in value:
            wrong = f"keys {unknown}" if unknown else "no key 'train'"
            raise ConfigError(f"{FIELD}: {path} returned a mapping with {wrong}; {_FORMS}")
        datasets = {k: value[k] for k in _SPLITS if value.get(k) is not None}
    elif isinstance(value, (tuple, list)) and len(value) in (2, 3):
        names = ("train", "test") if len(value) == 2 else _SPLITS
        datasets = dict(zip(names, value))
    else:
        raise ConfigError(f"{FIELD}: {path} returned {describe(value)}; {_FORMS}")
    for what, dataset in datasets.items():
        if isinstance(dataset, Tensor):
            raise ConfigError(
                f"{FIELD}: {path} returned a tensor as {_NAMES[what]}; return Datasets, e.g. "
                "torch.utils.data.TensorDataset(images, labels) for each split"
            )
        if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
            raise ConfigError(
                f"{FIELD}: {path} returned {describe(dataset)} as {_NAMES[what]}; {_FORMS}, "
                "each a map-style Dataset (with __len__ and __getitem__)"
            )
        if len(dataset) == 0:
            raise ConfigError(f"{FIELD}: {_NAMES[what]} of {path} is empty; give it images")
    return datasets


def _fixedness(
    datasets: dict[str, Any], declared: bool | str
) -> tuple[dict[str, bool], dict[str, list[tuple[Tensor, int]] | None]]:
    """Whether each split's items are the same on every read, and the sample its key hashes.

    `declared` True or False is the user's word (`data_fixed`); "auto" reads the sample twice:
    any difference means random transforms, so the split is read every epoch. A split with its
    own `dikd_cache_key` declared fixed is not read at all here."""
    fixed, samples = {}, {}
    for what, dataset in datasets.items():
        if declared is True and getattr(dataset, "dikd_cache_key", None) is not None:
            fixed[what], samples[what] = True, None
            continue
        indices = sample_indices(len(dataset))
        first = [_item(dataset, i, what) for i in indices]
        if declared == "auto":
            again = [_item(dataset, i, what) for i in indices]
            fixed[what] = all(_same(a, b) for a, b in zip(first, again))
        else:
            fixed[what] = bool(declared)
        samples[what] = first
    return fixed, samples


def _check_alike(splits: dict[str, CachedSplit]) -> None:
    """Every split's images have the training split's shape, or a one-line ConfigError."""
    first = splits["train"]
    for what, split in splits.items():
        if split.shape != first.shape:
            size, train_size = ("x".join(map(str, s)) for s in (split.shape, first.shape))
            fix = "give every split as many channels"
            if split.shape[0] == first.shape[0]:
                fix = "set image_size: N (resizes every split to N x N) or make them alike"
            raise ConfigError(
                f"{FIELD}: {_NAMES[what]} holds {size} images (C x H x W) and the training "
                f"Dataset {train_size}; {fix}"
            )


def _num_classes(datasets: dict[str, Any], splits: dict[str, CachedSplit]) -> int:
    """One more than the largest training label, or the training Dataset's `classes` when
    longer; a larger label elsewhere is a one-line ConfigError."""
    classes = getattr(datasets["train"], "classes", None) or ()
    count = max(int(splits["train"].labels.max()) + 1, len(classes))
    for what, split in splits.items():
        if split.labels.max() >= count:
            raise ConfigError(
                f"{FIELD}: {_NAMES[what]} has label {int(split.labels.max())}, and the training "
                f"Dataset's labels stop at {count - 1}; give the training Dataset a `classes` "
                "attribute listing every class"
            )
    return count


# --- read once: tensors ----------------------------------------------------------------------


def _tensor_data(
    request: LoadRequest, splits: dict[str, CachedSplit], num_classes: int
) -> TrainingData:
    """The cached splits as `TensorData`: uint8 when the training split is 8-bit (normalised by
    dikd), else float32 (passed on as it is); other splits in the training split's units."""
    eight_bit = splits["train"].eight_bit

    def part(what: str, index: Tensor | None = None) -> tuple[Tensor, Tensor]:
        split = splits[what]
        assert split.images is not None  # stored: every split is fixed
        everything = np.arange(len(split.labels)) if index is None else index
        images, labels = rows(split.images, torch.from_numpy(split.labels), everything)
        return _in_units(images, eight_bit), labels

    own_val = _own_val(request, splits)
    train_index, val_index = _train_val_index(request, len(splits["train"].labels), own_val)
    val = part("val") if own_val else part("train", val_index)
    test = part("test") if "test" in splits else None
    return split_tensor_data(request, part("train", train_index), val, test, num_classes)
