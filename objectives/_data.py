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
import functools
import gzip
import os
import pickle
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from objectives._errors import ConfigError

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
    num_workers: int
    flip: bool  # horizontal flips suit this data set (a registry flag)
    val_size: int | None = None  # fixed validation images chosen by data_seed; None: val_fraction
    data_seed: int = 0  # chooses the validation images when val_size is set
    test: bool = False  # load the test split too


Loader = Callable[[LoadRequest], TrainingData]


@dataclass(frozen=True)
class _Entry:
    name: str
    loader: Loader
    flip: bool


_REGISTRY: dict[str, _Entry] = {}


def register_dataset(name: str, *, flip: bool = True) -> Callable[[Loader], Loader]:
    """Decorator: register `loader(request) -> TrainingData` under `name`.

    A name like "imagefolder:<path>" takes an argument: "imagefolder:/data/x" reaches the loader
    with `request.arg == "/data/x"`. `flip` says whether random horizontal flips suit the images.
    """
    key = name.partition(":")[0]

    def decorator(loader: Loader) -> Loader:
        if key in _REGISTRY:
            raise ValueError(f"data set {key!r} is already registered")
        _REGISTRY[key] = _Entry(name, loader, flip)
        return loader

    return decorator


def list_datasets() -> list[str]:
    """Registered data set names, e.g. ["fashion-mnist", ..., "imagefolder:<path>"]."""
    return [entry.name for entry in _REGISTRY.values()]


def _lookup(name: str) -> tuple[_Entry, str | None]:
    key, colon, arg = name.partition(":")
    entry = _REGISTRY.get(key)
    takes_arg = entry is not None and ":" in entry.name
    if entry is None or (colon and not takes_arg):
        choices = list_datasets()
        raise ConfigError(
            f"unknown data set {name!r}: choose {', '.join(choices[:-1])} or {choices[-1]}"
        )
    if takes_arg and not arg:
        raise ConfigError(f"data set {name!r} needs an argument: use {entry.name}")
    return entry, arg or None


def check_dataset_name(name: str) -> str:
    """`name` if it names a registered data set, else a one-line ConfigError."""
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
) -> TrainingData:
    """Load data set `name` with its validation split; batches come out on `device`.

    `subset` training images are chosen first (seeded by `seed`), then `val_fraction` of them
    are held out for validation (image folders use their val/ folder instead). With `val_size`,
    that many validation images are chosen first from the whole training file by `data_seed`
    alone, then `subset` training images from the rest by `seed`; `val_fraction` is ignored.
    `test` loads the test split too. `image_size` resizes every split to that many pixels a side.
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
        flip=entry.flip,
        val_size=val_size,
        data_seed=data_seed,
        test=test,
    )
    data = entry.loader(request)
    if test and data.info.test_size == 0:  # fail before training, not after it
        raise _no_test_split(name)
    return data


# --- small data sets, resident on the device -------------------------------------------------


def split_indices(
    n: int,
    *,
    subset: int | None,
    val_fraction: float,
    seed: int,
    name: str,
    val_size: int | None = None,
    data_seed: int = 0,
) -> tuple[Tensor, Tensor]:
    """Seeded (train, val) indices into `n` images.

    Without `val_size`: `subset` of them chosen by `seed`, then a `val_fraction` of those.
    With it: `val_size` images chosen by `data_seed` alone (the same whatever `seed` and
    `subset`), then `subset` of the others (all when None) chosen by `seed`.
    """
    if subset is not None and subset > n:
        raise ConfigError(
            f"subset {subset} is larger than the {n} training images of {name}: "
            "lower subset or leave it unset"
        )
    if val_size is not None:
        return _fixed_val_split(n, subset, val_size, seed, data_seed, name)
    chosen = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: subset or n]
    n_val = int(len(chosen) * val_fraction + 0.5)
    if val_fraction > 0:
        n_val = max(n_val, 1)
    if n_val >= len(chosen):
        raise ConfigError(
            f"val_fraction {val_fraction} of {len(chosen)} images leaves no training images "
            f"for {name}: lower val_fraction or raise subset"
        )
    return chosen[n_val:], chosen[:n_val]


def _fixed_val_split(
    n: int, subset: int | None, val_size: int, seed: int, data_seed: int, name: str
) -> tuple[Tensor, Tensor]:
    if val_size >= n:
        raise ConfigError(
            f"val_size {val_size} leaves none of the {n} training images of {name} for "
            "training: lower val_size"
        )
    if subset is not None and val_size + subset > n:
        raise ConfigError(
            f"val_size {val_size} plus subset {subset} is more than the {n} training images "
            f"of {name}: lower val_size or subset"
        )
    order = torch.randperm(n, generator=torch.Generator().manual_seed(data_seed))
    val, pool = order[:val_size], order[val_size:]
    chosen = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))
    return pool[chosen[: subset or len(pool)]], val


def crop_flip(x: Tensor, pad: int, shifts: Tensor, flips: Tensor | None) -> Tensor:
    """Random crops of a zero-padded batch, mirrored where `flips`, in one gather.

    `shifts` (B, 2) holds each sample's crop offset in [0, 2*pad] (rows, columns); shift (pad,
    pad) and no flip returns the sample unchanged.
    """
    b, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = shifts[:, 0:1] + torch.arange(h, device=x.device)  # (B, H)
    cols = torch.arange(w, device=x.device).expand(b, w)
    if flips is not None:
        cols = torch.where(flips[:, None], w - 1 - cols, cols)
    cols = cols + shifts[:, 1:2]  # (B, W)
    batch = torch.arange(b, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[batch, channel, rows[:, None, :, None], cols[:, None, None, :]]


class TensorData(TrainingData):
    """The splits as uint8 tensors on the device; batches are index slices of a randperm."""

    def __init__(
        self,
        info: DataInfo,
        train: tuple[Tensor, Tensor],
        val: tuple[Tensor, Tensor],
        *,
        augment: bool,
        flip: bool,
        test: Split | None = None,
    ) -> None:
        self.info = info
        self.train_images, self.train_labels = train
        self.val_images, self.val_labels = val
        self.test_images, self.test_labels = test or (None, None)
        self.device = self.train_images.device
        self.augment = augment
        self.flip = flip
        # Pad 4 pixels for 32-pixel images, in proportion for other sizes.
        self.pad = max(1, int(min(info.image_size) / 8 + 0.5))
        mean, std = _channel_stats(self.train_images)
        self.mean = mean
        self.std = std
        self._scale = (1.0 / std).view(1, -1, 1, 1)
        self._shift = (-mean / std).view(1, -1, 1, 1)

    def _normalise(self, x: Tensor) -> Tensor:
        return torch.addcmul(self._shift, x.float(), self._scale)

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        steps = self.steps_per_epoch(batch_size)
        n = self.info.train_size
        # All of the epoch's random draws up front, on the generator's device, then one copy.
        gen_device = generator.device
        order = torch.randperm(n, generator=generator, device=gen_device).to(self.device)
        shifts = flips = None
        if self.augment:
            shifts = torch.randint(
                0, 2 * self.pad + 1, (n, 2), generator=generator, device=gen_device
            ).to(self.device)
            if self.flip:
                flips = torch.randint(0, 2, (n,), generator=generator, device=gen_device)
                flips = flips.to(self.device, dtype=torch.bool)
        for step in range(steps):
            part = slice(step * batch_size, (step + 1) * batch_size)
            index = order[part]
            x = self.train_images[index]
            if shifts is not None:
                x = crop_flip(x, self.pad, shifts[part], None if flips is None else flips[part])
            yield self._normalise(x), self.train_labels[index]

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._in_order(self.val_images, self.val_labels, batch_size)

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if self.test_images is None:
            raise _test_not_loaded(self.info.name)
        return self._in_order(self.test_images, self.test_labels, batch_size)

    def _in_order(
        self, images: Tensor, labels: Tensor, batch_size: int
    ) -> Iterator[tuple[Tensor, Tensor]]:
        _check_batch_size(batch_size)
        for start in range(0, len(images), batch_size):
            part = slice(start, start + batch_size)
            yield self._normalise(images[part]), labels[part]


def _channel_stats(images: Tensor, chunk: int = 4096) -> tuple[Tensor, Tensor]:
    """Per-channel mean and std (0-255 units) of a uint8 NCHW tensor, in chunks to spare memory."""
    c = images.shape[1]
    total = torch.zeros(c, dtype=torch.float64, device=images.device)
    squares = torch.zeros_like(total)
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].to(torch.float64)
        total += x.sum(dim=(0, 2, 3))
        squares += (x * x).sum(dim=(0, 2, 3))
    count = images.numel() // c
    mean = total / count
    std = (squares / count - mean * mean).clamp_min(0).sqrt()
    std = torch.where(std > 1e-3, std, torch.ones_like(std))  # a constant channel stays as is
    return mean.float(), std.float()


def _resize(images: Tensor, size: int, chunk: int = 1024) -> Tensor:
    """Bilinear, antialiased resize of a uint8 NCHW tensor to size x size, done once at load."""
    if images.shape[-2:] == (size, size):
        return images
    parts = []
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        parts.append(x.round_().clamp_(0, 255).to(torch.uint8))
    return torch.cat(parts)


def tensor_data(
    request: LoadRequest,
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    test: Split | None = None,
) -> TensorData:
    """Split uint8 NCHW `images` (on the CPU) and their labels into training and validation,
    and move them and the `test` split (when loaded) to the device."""
    train_index, val_index = split_indices(
        len(images),
        subset=request.subset,
        val_fraction=request.val_fraction,
        seed=request.seed,
        name=request.name,
        val_size=request.val_size,
        data_seed=request.data_seed,
    )
    train_x, train_y = _on_device(request, images[train_index], labels[train_index])
    val = _on_device(request, images[val_index], labels[val_index])
    test = None if test is None else _on_device(request, *test)
    info = DataInfo(
        name=request.name,
        num_classes=num_classes,
        in_channels=train_x.shape[1],
        image_size=(train_x.shape[2], train_x.shape[3]),
        train_size=len(train_x),
        val_size=len(val[0]),
        test_size=0 if test is None else len(test[0]),
    )
    return TensorData(
        info, (train_x, train_y), val, augment=request.augment, flip=request.flip, test=test
    )


def _on_device(request: LoadRequest, images: Tensor, labels: Tensor) -> Split:
    """One split on the device, resized to `request.image_size` when that is set."""
    x = images.to(request.device)
    if request.image_size is not None:
        x = _resize(x, request.image_size)
    return x.contiguous(), labels.to(request.device, torch.int64)


def _data_root(request: LoadRequest) -> Path:
    return Path(os.path.expanduser(request.root or DEFAULT_ROOT))


def _missing_root(root: Path) -> FileNotFoundError:
    return FileNotFoundError(f"data directory {root} not found: {_FIX}")


# --- Fashion-MNIST ----------------------------------------------------------------------------


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip'd or not) as a numpy array: the MNIST family's format (big-endian).
    Decoded once per process and file version: a study's trials share it (1-2 s a load)."""
    stat = path.stat()
    return _read_idx_cached(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=8)
def _read_idx_cached(path: Path, _mtime_ns: int, _size: int) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if raw[:2] != b"\x00\x00" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


def _find_idx(folder: Path, stem: str) -> Path | None:
    # Either the files themselves, or torchvision's layout <root>/FashionMNIST/raw.
    for directory in (folder, folder / "FashionMNIST" / "raw"):
        for name in (stem, stem + ".gz"):
            if (directory / name).is_file():
                return directory / name
    return None


def _fashion_mnist_split(root: Path, request: LoadRequest, *, train: bool) -> Split:
    """The training (train-*) or the test (t10k-*) images and labels, on the CPU."""
    prefix = "train" if train else "t10k"
    stems = (f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte")
    image_file, label_file = (_find_idx(root, stem) for stem in stems)
    if image_file is not None and label_file is not None:
        images = torch.from_numpy(_read_idx(image_file).copy()).unsqueeze(1)
        return images, torch.from_numpy(_read_idx(label_file).astype(np.int64))
    if request.download:
        import torchvision

        dataset = torchvision.datasets.FashionMNIST(root, train=train, download=True)
        return dataset.data.unsqueeze(1), dataset.targets
    missing = [f"{stem}(.gz)" for stem, file in zip(stems, (image_file, label_file)) if not file]
    where = f"in {root}" if root.is_dir() else f"({root} does not exist)"
    raise FileNotFoundError(
        f"Fashion-MNIST file{'s' if len(missing) > 1 else ''} {' and '.join(missing)} "
        f"not found {where}: install Debian's dataset-fashion-mnist (`make data`, or "
        f"apt-get install dataset-fashion-mnist), or {_FIX}"
    )


@register_dataset("fashion-mnist", flip=True)
def _fashion_mnist(request: LoadRequest) -> TrainingData:
    if request.root is None and os.path.isdir(SYSTEM_FASHION_MNIST):
        root = Path(SYSTEM_FASHION_MNIST)
    else:
        root = _data_root(request)
    images, labels = _fashion_mnist_split(root, request, train=True)
    test = _fashion_mnist_split(root, request, train=False) if request.test else None
    return tensor_data(request, images, labels, num_classes=10, test=test)


# --- synthetic: CIFAR-sized images made here, for timing checks where no data set lies ---------

SYNTHETIC_SIZE = 10_000
SYNTHETIC_TEST_SIZE = 2_000


@register_dataset("synthetic", flip=True)
def _synthetic(request: LoadRequest) -> TrainingData:
    """10 classes of 32x32 colour images: a smooth per-class pattern under strong noise, so a
    model learns something and timing matches CIFAR-10's shapes. `subset` sets the count; with
    `val_size` there are SYNTHETIC_SIZE training images and `subset` chooses among them, so the
    validation images do not depend on it. The test split is SYNTHETIC_TEST_SIZE more images of
    the same patterns under noise from another seed: an unseen sample of the same distribution.
    """
    generator = torch.Generator().manual_seed(1234)
    patterns = F.interpolate(torch.randn(10, 3, 4, 4, generator=generator), size=32,
                             mode="bilinear", align_corners=False)  # fmt: skip
    if request.val_size is None:
        count, request = request.subset or SYNTHETIC_SIZE, replace(request, subset=None)
    else:
        count = SYNTHETIC_SIZE
    images, labels = _synthetic_images(patterns, count, generator)
    test = None
    if request.test:
        test_generator = torch.Generator().manual_seed(4321)
        test = _synthetic_images(patterns, SYNTHETIC_TEST_SIZE, test_generator)
    return tensor_data(request, images, labels, num_classes=10, test=test)


def _synthetic_images(patterns: Tensor, count: int, generator: torch.Generator) -> Split:
    labels = torch.randint(0, 10, (count,), generator=generator)
    noise = torch.randn(count, 3, 32, 32, generator=generator)
    images = (128 + 12 * patterns[labels] + 60 * noise).clamp(0, 255).to(torch.uint8)
    return images, labels


# --- CIFAR-10 / CIFAR-100 ---------------------------------------------------------------------


def _cifar(request: LoadRequest, dataset_class_name: str, num_classes: int) -> TrainingData:
    import torchvision

    dataset_class = getattr(torchvision.datasets, dataset_class_name)
    root = _data_root(request)
    if not request.download and not root.is_dir():
        raise _missing_root(root)
    images, labels = _cifar_split(request, root, dataset_class, train=True)
    test = _cifar_split(request, root, dataset_class, train=False) if request.test else None
    return tensor_data(request, images, labels, num_classes, test=test)


def _cifar_split(request: LoadRequest, root: Path, dataset_class, *, train: bool) -> Split:
    """The training (`train_list`) or the test (`test_list`) split, on the CPU."""
    if request.download:
        dataset = dataset_class(root, train=train, download=True)  # verifies the md5 sums
        images = torch.from_numpy(dataset.data).permute(0, 3, 1, 2)
        return images, torch.tensor(dataset.targets, dtype=torch.int64)
    # Read the pickles ourselves rather than through the torchvision class: it checks the md5
    # of every file (train and test) on each load, which costs time and rejects the small files
    # the tests write. The file names come from the torchvision class.
    files = dataset_class.train_list if train else dataset_class.test_list
    return _read_cifar_pickles(request, root / dataset_class.base_folder, files)


def _read_cifar_pickles(request: LoadRequest, folder: Path, files: list[list[str]]) -> Split:
    """Images and labels of CIFAR pickle `files` ([name, md5] pairs) in `folder`, in order."""
    data, labels = [], []
    for file_name, _md5 in files:
        path = folder / file_name
        if not path.is_file():
            raise FileNotFoundError(
                f"{request.name} file {path} not found: pass data_dir=... (the folder that holds "
                f"{folder.name}/) or set download: true"
            )
        with open(path, "rb") as f:
            entry = pickle.load(f, encoding="latin1")
        data.append(entry["data"])
        labels.extend(entry["labels"] if "labels" in entry else entry["fine_labels"])
    images = torch.from_numpy(np.concatenate(data).reshape(-1, 3, 32, 32))
    return images, torch.tensor(labels, dtype=torch.int64)


@register_dataset("cifar10", flip=True)
def _cifar10(request: LoadRequest) -> TrainingData:
    return _cifar(request, "CIFAR10", 10)


@register_dataset("cifar100", flip=True)
def _cifar100(request: LoadRequest) -> TrainingData:
    return _cifar(request, "CIFAR100", 100)


# --- image folders, through a DataLoader ------------------------------------------------------


class _Samples(torch.utils.data.Dataset):
    """`indices` of an ImageFolder, transformed with a random state fixed by (seed, position).

    Seeding each sample makes the augmentation depend only on the epoch's generator, whatever
    the number of workers and whichever worker loads the sample.
    """

    def __init__(self, folder, indices: list[int], transform, seed: int | None) -> None:
        self.folder = folder
        self.indices = indices
        self.transform = transform
        self.seed = seed

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, position: int) -> tuple[Tensor, int]:
        path, label = self.folder.samples[self.indices[position]]
        image = self.folder.loader(path)
        if self.seed is None:
            return self.transform(image), label
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed((self.seed + position) % 2**63)
            return self.transform(image), label


def _image_folder(path: Path):
    import torchvision

    try:
        return torchvision.datasets.ImageFolder(str(path))
    except FileNotFoundError as e:  # its messages for empty folders span lines
        raise FileNotFoundError(
            f"no images found in the class subfolders of {path}: put them in {path}/<class>/"
        ) from e


FolderSplit = tuple[Any, list[int]]  # an ImageFolder and the indices of the split's samples


class FolderData(TrainingData):
    """An ImageFolder tree; decoded and augmented by DataLoader workers.

    Training images come from train/; validation from val/, or with `val_size` from train/
    (chosen by `data_seed`); the test split is test/ when there is one, else val/ (then the
    same images as validation unless `val_size` is set).
    """

    def __init__(self, request: LoadRequest, path: Path) -> None:
        from torchvision.transforms import v2

        self.device = request.device
        self.num_workers = request.num_workers
        self.train_folder = _image_folder(path / "train")
        # With val_fraction 0 and no val_size this only chooses the training subset.
        train_index, val_index = split_indices(
            len(self.train_folder),
            subset=request.subset,
            val_fraction=0.0,
            seed=request.seed,
            name=request.name,
            val_size=request.val_size,
            data_seed=request.data_seed,
        )
        self.train_indices = train_index.tolist()
        folders = {"train": self.train_folder}  # each folder scanned once

        def whole(split: str) -> FolderSplit:
            if split not in folders:
                folders[split] = _image_folder(path / split)
                if folders[split].classes != self.train_folder.classes:
                    raise ConfigError(
                        f"the class folders of {path / 'train'} and {path / split} differ: "
                        "give both the same class subfolders"
                    )
            return folders[split], list(range(len(folders[split])))

        if request.val_size is None:
            self.val: FolderSplit = whole("val")
        else:
            self.val = self.train_folder, val_index.tolist()
        self.test: FolderSplit | None = None
        if request.test:
            self.test = whole("test" if (path / "test").is_dir() else "val")
        size = request.image_size or 224
        finish = [
            v2.ToImage(),
            v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
        self.val_transform = v2.Compose(
            [v2.Resize(int(size * 1.14), antialias=True), v2.CenterCrop(size), *finish]
        )
        if request.augment:
            flip = [v2.RandomHorizontalFlip()] if request.flip else []
            self.train_transform = v2.Compose(
                [v2.RandomResizedCrop(size, antialias=True), *flip, *finish]
            )
        else:
            self.train_transform = self.val_transform
        self.augment = request.augment
        self.info = DataInfo(
            name=request.name,
            num_classes=len(self.train_folder.classes),
            in_channels=3,
            image_size=(size, size),
            train_size=len(self.train_indices),
            val_size=len(self.val[1]),
            test_size=0 if self.test is None else len(self.test[1]),
        )

    def _batches(self, dataset: _Samples, batch_size: int, drop_last: bool):
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=False,  # the order is already shuffled where it should be
            drop_last=drop_last,
            num_workers=self.num_workers,
            pin_memory=self.device.type == "cuda",
            # Only seeds the workers (samples are seeded themselves); keeps the global RNG as is.
            generator=torch.Generator().manual_seed(0),
        )
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        self.steps_per_epoch(batch_size)
        order = torch.randperm(len(self.train_indices), generator=generator, device="cpu")
        seed = None
        if self.augment:
            seed = int(torch.randint(0, 2**62, (1,), generator=generator, device="cpu"))
        indices = [self.train_indices[i] for i in order.tolist()]
        dataset = _Samples(self.train_folder, indices, self.train_transform, seed)
        yield from self._batches(dataset, batch_size, drop_last=True)

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._in_order(self.val, batch_size)

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if self.test is None:
            raise _test_not_loaded(self.info.name)
        return self._in_order(self.test, batch_size)

    def _in_order(self, split: FolderSplit, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        _check_batch_size(batch_size)
        folder, indices = split
        dataset = _Samples(folder, indices, self.val_transform, None)
        yield from self._batches(dataset, batch_size, drop_last=False)


@register_dataset("imagefolder:<path>", flip=True)
def _imagefolder(request: LoadRequest) -> TrainingData:
    if not request.arg:
        raise ConfigError(f"data set {request.name!r} needs a path: use imagefolder:<path>")
    path = Path(os.path.expanduser(request.arg))
    if not path.is_dir():
        raise FileNotFoundError(
            f"image folder {path} not found: use imagefolder:<path> with a folder that holds "
            "train/ and val/"
        )
    # val/ holds the validation images unless val_size carves them from train/; the test
    # split is test/, else val/.
    needs_val = request.val_size is None or (request.test and not (path / "test").is_dir())
    for split in ("train", "val") if needs_val else ("train",):
        if not (path / split).is_dir():
            raise FileNotFoundError(
                f"image folder {path} has no {split}/ subfolder: put the images in "
                f"{path}/train/<class>/ and {path}/val/<class>/"
            )
    return FolderData(request, path)
