"""Data sets by name, and batches on the training device.

Small data sets (Fashion-MNIST, CIFAR-10/100) live on the device as one uint8 tensor per split;
a batch is a slice of a `randperm`, cropped, flipped and normalised on the device in a few
vectorised ops (airbench's recipe). Image folders go through a torch DataLoader.

The validation split is carved from the training split with a seeded permutation, so the test
split is never looked at while searching. With `val_size` the validation images are a fixed
sample (chosen by `data_seed` alone), so every trial and every training seed is scored on the
same images. The test split is loaded only when asked for (`test=True`, confirmation runs) and
is normalised with the training split's statistics, like the validation split.
"""

from __future__ import annotations

import abc
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from objectives._errors import ConfigError
from objectives._imports import DATASET_GROUP, entry_points

DEFAULT_ROOT = "~/.cache/dikd/data"
SYSTEM_FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # apt package dataset-fashion-mnist
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_FIX = "pass data_dir=... or set download: true"

Split = tuple[Tensor, Tensor]  # images (uint8 NCHW) and labels of one split


@dataclass(frozen=True)
class DataInfo:
    """What a model needs to know about a data set; sizes are after subset and split."""

    name: str
    num_classes: int
    in_channels: int
    image_size: tuple[int, int]  # (height, width) of the batches, pixels
    train_size: int  # training images
    val_size: int  # validation images
    test_size: int = 0  # test images; 0 when the test split was not loaded


class TrainingData(abc.ABC):
    """A training, a validation and optionally a test split that yield normalised float32 NCHW
    batches on `device`."""

    info: DataInfo
    device: torch.device

    def steps_per_epoch(self, batch_size: int) -> int:
        """Full batches in one epoch (the last partial batch is dropped)."""
        _check_batch_size(batch_size)
        if batch_size > self.info.train_size:
            raise ConfigError(
                f"batch_size {batch_size} is larger than the {self.info.train_size} training "
                f"images of {self.info.name}: lower batch_size or raise subset"
            )
        return self.info.train_size // batch_size

    @abc.abstractmethod
    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        """One epoch of shuffled, augmented batches; all randomness comes from `generator`."""

    @abc.abstractmethod
    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The whole validation split once, in order, not augmented, last batch partial."""

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        """The whole test split once, like `val_batches`; data sets without one raise."""
        raise _no_test_split(self.info.name)


def _no_test_split(name: str) -> ConfigError:
    return ConfigError(
        f"data set {name} has no test split: set test: false, or give its loader's "
        "TrainingData one (test_batches and DataInfo.test_size)"
    )


def _test_not_loaded(name: str) -> ConfigError:
    return ConfigError(
        f"the test split of {name} was not loaded: pass test=True to load_data "
        "(test: true in a TrainConfig)"
    )


def _check_batch_size(batch_size: int) -> None:
    if batch_size < 1:
        raise ConfigError(f"batch_size must be at least 1, got {batch_size}")


@dataclass(frozen=True)
class LoadRequest:
    """What `load_data` was asked for; a registered loader receives it."""

    name: str  # the full name, e.g. "imagefolder:/data/pets"
    arg: str | None  # the part after ':' for names such as imagefolder:<path>
    device: torch.device
    root: str | None
    download: bool
    subset: int | None
    val_fraction: float
    image_size: int | None
    augment: bool
    seed: int
    num_workers: int  # threads decoding image files into the image cache
    flip: bool  # horizontal flips suit this data set (a registry flag)
    val_size: int | None = None  # fixed validation images chosen by data_seed; None: val_fraction
    data_seed: int = 0  # chooses the validation images when val_size is set
    test: bool = False  # load the test split too
    skip_bad_images: bool = False  # image files that cannot be decoded: skipped, else an error
    # A user's Datasets: True, their items are the same on every read (read once, cached);
    # False, read every epoch; "auto", read a sample twice and compare (`_user_data.py`).
    data_fixed: bool | str = "auto"


Loader = Callable[[LoadRequest], TrainingData]


@dataclass(frozen=True)
class _Entry:
    name: str
    loader: Loader
    flip: bool
    describe: Callable[[], str] | None = None


_REGISTRY: dict[str, _Entry] = {}


def register_dataset(
    name: str, *, flip: bool = True, describe: Callable[[], str] | None = None
) -> Callable[[Loader], Loader]:
    """Decorator: register `loader(request) -> TrainingData` under `name`.

    A name like "imagefolder:<path>" takes an argument: "imagefolder:/data/x" reaches the loader
    with `request.arg == "/data/x"`. `flip` says whether random horizontal flips suit the images.
    `describe()`, when given, says what is installed (classes and their counts) for `dikd
    datasets`; it raises FileNotFoundError, saying how to get it, when the data set is missing.
    """
    key = name.partition(":")[0]

    def decorator(loader: Loader) -> Loader:
        if key in _REGISTRY:
            raise ValueError(f"data set {key!r} is already registered")
        _REGISTRY[key] = _Entry(name, loader, flip, describe)
        return loader

    return decorator


def list_datasets() -> list[str]:
    """Registered data set names, e.g. ["fashion-mnist", ..., "imagefolder:<path>"], then the
    names installed packages publish in the `dikd.datasets` entry-point group."""
    published = sorted(set(entry_points(DATASET_GROUP)) - set(_REGISTRY))
    return [entry.name for entry in _REGISTRY.values()] + published


def describe_dataset(name: str) -> str | None:
    """What the data set `name` holds here (None when its loader says nothing); a missing data
    set is a FileNotFoundError saying how to get it. A published name is described without
    importing it."""
    entry, _ = _lookup(name)
    if entry is None:
        return _user_data.describe_entry_point(name)
    return entry.describe() if entry.describe is not None else None


def _lookup(name: str) -> tuple[_Entry | None, str | None]:
    """The registered data set `name` is and its argument; (None, None) for the user's own data
    (an import path, or a published name). A registered key before ':' always wins."""
    key, colon, arg = name.partition(":")
    entry = _REGISTRY.get(key)
    if entry is None and _user_data.is_user_data(name):
        return None, None
    takes_arg = entry is not None and ":" in entry.name
    if entry is None or (colon and not takes_arg):
        choices = [e.name for e in _REGISTRY.values()]
        raise ConfigError(
            f"unknown data set {name!r}: choose {', '.join(choices)}, a name `dikd datasets` "
            "lists, or your own data as an import path package.module:callable"
        )
    if takes_arg and not arg:
        raise ConfigError(f"data set {name!r} needs an argument: use {entry.name}")
    return entry, arg or None


def is_registered(name: str) -> bool:
    """Whether `name` is one of dikd's registered data sets (its key before ':' wins)."""
    return name.partition(":")[0] in _REGISTRY


def check_dataset_name(name: str) -> str:
    """`name` if it names a registered or published data set or is written as an import path
    (imported only when loaded), else a one-line ConfigError."""
    _lookup(name)
    return name


def load_data(
    name: str,
    *,
    device: torch.device | str,
    root: str | None = None,
    download: bool = False,
    subset: int | None = None,
    val_fraction: float = 0.1,
    image_size: int | None = None,
    augment: bool = True,
    seed: int = 0,
    num_workers: int = 2,
    val_size: int | None = None,
    data_seed: int = 0,
    test: bool = False,
    skip_bad_images: bool = False,
    data_fixed: bool | str = "auto",
) -> TrainingData:
    """Load data set `name` with its validation split; batches come out on `device`.

    `subset` training images are chosen first (seeded by `seed`), then `val_fraction` of them
    are held out for validation (image folders use their val/ folder instead). With `val_size`,
    that many validation images are chosen first from the whole training file by `data_seed`
    alone, then `subset` training images from the rest by `seed`; `val_fraction` is ignored.
    `test` loads the test split too. `image_size` resizes every split to that many pixels a side.
    Image files are decoded once per machine into the image cache (`_image_cache.py`), by
    `num_workers` threads; one that cannot be decoded is an error, or with `skip_bad_images`
    is left out and counted in a warning. `name` may also be the user's own data (an import
    path or a published name; `_user_data.py`), whose `data_fixed` says whether its items are
    the same on every read (True, False or "auto": compare two reads of a sample).
    """
    entry, arg = _lookup(name)
    if subset is not None and subset < 1:
        raise ConfigError(f"subset must be at least 1 image, got {subset}")
    if val_size is not None and val_size < 1:
        raise ConfigError(f"val_size must be at least 1 image, got {val_size}")
    if not 0.0 <= val_fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {val_fraction}")
    if image_size is not None and image_size < 1:
        raise ConfigError(f"image_size must be at least 1 pixel, got {image_size}")
    if num_workers < 0:
        raise ConfigError(f"num_workers must be at least 0, got {num_workers}")
    if data_fixed not in (True, False, "auto"):
        raise ConfigError(f"data_fixed must be true, false or auto, got {data_fixed!r}")
    request = LoadRequest(
        name=name,
        arg=arg or None,
        device=torch.device(device),
        root=root,
        download=download,
        subset=subset,
        val_fraction=val_fraction,
        image_size=image_size,
        augment=augment,
        seed=seed,
        num_workers=num_workers,
        flip=True if entry is None else entry.flip,
        val_size=val_size,
        data_seed=data_seed,
        test=test,
        skip_bad_images=skip_bad_images,
        data_fixed=data_fixed,
    )
    data = _user_data.load_user_data(request) if entry is None else entry.loader(request)
    if test and data.info.test_size == 0:  # fail before training, not after it
        raise _no_test_split(name)
    return data


# The data sets register themselves when their modules load, in the order `list_datasets` shows;
# these are the names others use. `_user_data` loads the user's own data (import paths).
from objectives import _files, _folders, _openclipart, _user_data  # noqa: E402, F401
from objectives._files import SYNTHETIC_SIZE, SYNTHETIC_TEST_SIZE  # noqa: E402, F401
from objectives._tensor_data import TensorData, crop_flip, split_indices, tensor_data  # noqa: E402, F401
