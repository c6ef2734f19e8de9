"""Image folders (train/, val/, test/) through a torch DataLoader."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from objectives._data import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    DataInfo,
    LoadRequest,
    TrainingData,
    _check_batch_size,
    _test_not_loaded,
    register_dataset,
)
from objectives._errors import ConfigError
from objectives._tensor_data import split_indices

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
