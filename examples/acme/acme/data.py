"""acme's own Dataset: Fashion-MNIST read from its IDX files with numpy (no torchvision)."""

from __future__ import annotations

import functools
import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

FASHION_MNIST = "/usr/share/datasets/fashion-mnist"  # Debian's dataset-fashion-mnist
MEAN, STD = 0.286, 0.353


@functools.lru_cache(maxsize=4)
def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


class FashionImages(Dataset):
    """`(image 1x28x28 float, label int)` pairs, normalised; `indices` picks a subset."""

    def __init__(self, folder: str, split: str, indices: np.ndarray | None = None) -> None:
        prefix = "train" if split == "train" else "t10k"
        images = _read_idx(str(Path(folder) / f"{prefix}-images-idx3-ubyte.gz"))
        labels = _read_idx(str(Path(folder) / f"{prefix}-labels-idx1-ubyte.gz"))
        if indices is not None:
            images, labels = images[indices], labels[indices]
        self.images = (torch.from_numpy(images.copy()).float().div_(255) - MEAN) / STD
        self.images = self.images.unsqueeze(1)
        self.labels = torch.from_numpy(labels.astype(np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.images[i], int(self.labels[i])


def splits(
    folder: str, train_size: int, val_size: int, test_size: int, data_seed: int = 0
) -> tuple[FashionImages, FashionImages, FashionImages]:
    """Training and validation images drawn from the training file by `data_seed` (never the
    training seed: every run is scored on the same images), and the first test images."""
    order = np.random.default_rng(data_seed).permutation(60_000)
    train = FashionImages(folder, "train", order[:train_size])
    val = FashionImages(folder, "train", order[train_size : train_size + val_size])
    test = FashionImages(folder, "test", np.arange(test_size))
    return train, val, test
