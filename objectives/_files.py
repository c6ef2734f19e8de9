"""The data sets read from files (Fashion-MNIST, CIFAR-10/100) or made here (synthetic)."""

from __future__ import annotations

import functools
import gzip
import os
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from objectives._data import (
    _FIX,
    SYSTEM_FASHION_MNIST,
    LoadRequest,
    Split,
    TrainingData,
    register_dataset,
)
from objectives._tensor_data import _data_root, _missing_root, tensor_data

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
