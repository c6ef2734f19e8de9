"""`openclipart`: Debian's openclipart-png (public-domain drawings, a few hundred pixels a side,
in category folders) as an image-classification data set above 32 pixels.

The categories holding at least MIN_CLASS_SHARE of the drawings are the classes (the small
ones and `unsorted` are left out). Each drawing is composited on white and scaled with its
aspect kept onto a white square of `image_size` (64 by default), once per machine (the image
cache); the few drawings over the cache's MAX_PIXELS are left out, with a warning. The splits
are stratified by class: a fixed TEST_FRACTION of each class is the test split whatever the
seeds; the validation images (`val_size`, chosen by `data_seed`, or `val_fraction`) and the
training subset (chosen by `seed`) keep the class proportions.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from objectives._data import LoadRequest, TrainingData, register_dataset
from objectives._errors import ConfigError
from objectives._folders import decoded_split, rows
from objectives._tensor_data import split_tensor_data

OPENCLIPART_ROOT = "/usr/share/openclipart/png"  # Debian's openclipart-png
OPENCLIPART_SIZE = 64
MIN_CLASS_SHARE = 0.035  # of all drawings: 7 of the package's categories, 286 to 1,797 each
TEST_FRACTION = 0.2
_LEFT_OUT = {"unsorted"}


def openclipart_root(root: str | None) -> Path:
    path = Path(os.path.expanduser(root or OPENCLIPART_ROOT))
    if not path.is_dir():
        raise FileNotFoundError(
            f"openclipart drawings not found in {path}: install Debian's openclipart-png "
            "(apt-get install openclipart-png) or set data_dir to a folder of category folders"
        )
    return path


def openclipart_categories(root: Path) -> dict[str, list[Path]]:
    """Every category folder's PNG files (nested folders included), sorted. A drawing listed
    in several categories is a symbolic link in all but one: it counts once, where its file is."""
    return {
        category.name: sorted(
            Path(folder, name)
            for folder, _, names in os.walk(category)
            for name in names
            if name.lower().endswith(".png") and not Path(folder, name).is_symlink()
        )
        for category in sorted(root.iterdir())
        if category.is_dir()
    }


def openclipart_classes(root: Path) -> dict[str, list[Path]]:
    """The categories used as classes, by name, with their files."""
    categories = openclipart_categories(root)
    total = sum(len(files) for files in categories.values())
    return {
        name: files
        for name, files in categories.items()
        if name not in _LEFT_OUT and files and len(files) >= MIN_CLASS_SHARE * total
    }


def describe_openclipart(root: str | None = None) -> str:
    """The classes and their image counts, for `dikd datasets`."""
    classes = openclipart_classes(openclipart_root(root))
    counts = ", ".join(f"{name} {len(files)}" for name, files in classes.items())
    return f"{len(classes)} classes, {sum(map(len, classes.values()))} drawings: {counts}"


def _allocate(total: int, sizes: list[int]) -> list[int]:
    """`total` spread over groups in proportion to `sizes` (largest remainders), each at most
    its size."""
    shares = [total * size / sum(sizes) for size in sizes]
    counts = [min(int(share), size) for share, size in zip(shares, sizes)]
    by_remainder = sorted(range(len(sizes)), key=lambda i: counts[i] - shares[i])
    for i in by_remainder[: total - sum(counts)]:
        counts[i] += 1
    return counts


def stratified_split(labels: np.ndarray, request: LoadRequest) -> tuple[np.ndarray, ...]:
    """(train, val, test) indices, each split keeping the class proportions."""
    classes = [np.flatnonzero(labels == c) for c in range(int(labels.max()) + 1)]
    fixed = np.random.default_rng(0)  # the test split never moves
    tests, pools = [], []
    for members in classes:
        members = fixed.permutation(members)
        n_test = max(1, round(len(members) * TEST_FRACTION))
        tests.append(members[:n_test])
        pools.append(members[n_test:])
    sizes = [len(pool) for pool in pools]
    available = sum(sizes)
    if request.val_size is not None:
        n_val = request.val_size
        n_train = request.subset or available - n_val
    else:
        chosen = request.subset or available
        n_val = max(1, round(chosen * request.val_fraction))
        n_train = chosen - n_val
    if n_train < 1 or n_train + n_val > available:
        raise ConfigError(
            f"subset {request.subset} and val_size {request.val_size} ask for more than the "
            f"{available} training images of {request.name}: lower subset or val_size"
        )
    by_data_seed = np.random.default_rng(request.data_seed)
    by_seed = np.random.default_rng(request.seed)
    val, train = [], []
    for pool, n_v, n_t in zip(pools, _allocate(n_val, sizes), _allocate(n_train, sizes)):
        if request.val_size is not None:  # validation fixed by data_seed, then the subset
            pool = by_data_seed.permutation(pool)
            val.append(pool[:n_v])
            train.append(by_seed.permutation(pool[n_v:])[:n_t])
        else:  # both from the seed's choice
            pool = by_seed.permutation(pool)
            val.append(pool[:n_v])
            train.append(pool[n_v : n_v + n_t])
    return np.concatenate(train), np.concatenate(val), np.concatenate(tests)


@register_dataset("openclipart", flip=True, describe=describe_openclipart)
def _openclipart(request: LoadRequest) -> TrainingData:
    classes = openclipart_classes(openclipart_root(request.root))
    if len(classes) < 2:
        raise ConfigError(
            f"openclipart in {request.root or OPENCLIPART_ROOT} has fewer than 2 categories "
            "with enough drawings: point data_dir at a folder of category folders"
        )
    files = [file for members in classes.values() for file in members]
    labels = [label for label, members in enumerate(classes.values()) for _ in members]
    size = request.image_size or OPENCLIPART_SIZE
    # The package is fixed: its drawings over MAX_PIXELS (15 in these classes) are always
    # left out.
    request = dataclasses.replace(request, skip_bad_images=True)
    images, label_tensor, _ = decoded_split(files, labels, request, size, "pad", "drawings")
    train, val, test = stratified_split(label_tensor.numpy(), request)
    return split_tensor_data(
        request,
        rows(images, label_tensor, train),
        rows(images, label_tensor, val),
        rows(images, label_tensor, test) if request.test else None,
        len(classes),
    )
