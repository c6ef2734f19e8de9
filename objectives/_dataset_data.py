"""The user's Datasets read every epoch through a DataLoader (`DatasetData`): for items that
change from one read to the next (random transforms), as the user's own loader would read them."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import torch
from torch import Tensor

from objectives._data import DataInfo, LoadRequest, TrainingData, _check_batch_size
from objectives._dataset_cache import (
    FIELD,
    CachedSplit,
    _own_val,
    _train_val_index,
    checked_item,
    pixels,
)
from objectives._errors import ConfigError
from objectives._tensor_data import Normalise, crop_flip, crop_padding, epoch_draws


class _Order(torch.utils.data.Sampler):
    """The indices of the next pass, set before each one (so a loader's workers persist)."""

    def __init__(self) -> None:
        self.indices: list[int] = []

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def _collate(items: list[Any], size: int | None, eight_bit: bool) -> tuple[Tensor, Tensor] | str:
    """A batch in storage units (float32), or the one-line problem (a worker's exception would
    reach the caller with its traceback)."""
    try:
        checked = [checked_item(item, "an item read this epoch") for item in items]
    except ConfigError as e:
        return str(e)
    images = [pixels(image, size, eight_bit) for image, _ in checked]
    shapes = {tuple(x.shape) for x in images}
    if len(shapes) > 1:
        found = ", ".join(sorted("x".join(map(str, s)) for s in shapes))
        return (
            f"{FIELD}: a batch read this epoch holds images of sizes {found} (C x H x W); set "
            "image_size: N (resizes every image to N x N) or make the Dataset return one size"
        )
    labels = torch.tensor([label for _, label in checked], dtype=torch.int64)
    return torch.stack(images), labels


class DatasetData(TrainingData):
    """The user's Datasets read through a DataLoader on every pass (their items change between
    reads); batches are cropped, flipped and normalised on the device as `TensorData`'s are.

    8-bit data is normalised with the training split's channel statistics from its one cached
    pass; float data is passed on as it is. `num_workers` DataLoader processes read, and stay
    between passes."""

    def __init__(
        self,
        request: LoadRequest,
        datasets: dict[str, Any],
        splits: dict[str, CachedSplit],
        num_classes: int,
    ) -> None:
        train = splits["train"]
        n = len(train.labels)
        own_val = _own_val(request, datasets)
        train_index, val_index = _train_val_index(request, n, own_val)
        self.sources: dict[str, tuple[Any, list[int]]] = {
            "train": (datasets["train"], train_index.tolist()),
            "val": (datasets["train"], val_index.tolist()),
        }
        for what in ("val", "test") if own_val else ("test",):
            if what in datasets:
                self.sources[what] = (datasets[what], list(range(len(datasets[what]))))
        size = request.image_size
        height, width = (size, size) if size is not None else train.shape[1:]
        self.info = DataInfo(
            name=request.name,
            num_classes=num_classes,
            in_channels=train.shape[0],
            image_size=(height, width),
            train_size=len(train_index),
            val_size=len(self.sources["val"][1]),
            test_size=len(self.sources["test"][1]) if "test" in self.sources else 0,
        )
        self.device = request.device
        self.augment = request.augment
        self.flip = request.flip
        self.pad = crop_padding((height, width))
        self.eight_bit = train.eight_bit  # every split is read in the training split's units
        self.num_workers = request.num_workers
        self._collate = functools.partial(_collate, size=size, eight_bit=self.eight_bit)
        self._loaders: dict[tuple[str, int], tuple[Any, _Order]] = {}
        channels = self.info.in_channels
        if self.eight_bit:
            mean, std = torch.tensor(train.mean), torch.tensor(train.std)
            std = torch.where(std > 1e-3, std, torch.ones_like(std))
        else:
            mean, std = torch.zeros(channels), torch.ones(channels)
        self.mean, self.std = mean.float(), std.float()
        self._normalise = Normalise(self.mean, self.std, self.device)

    def _batches(
        self, what: str, indices: list[int], batch_size: int, drop_last: bool
    ) -> Iterator[tuple[Tensor, Tensor]]:
        from torch.utils.data import DataLoader

        if (what, batch_size) not in self._loaders:
            order = _Order()
            dataset = self.sources[what][0]
            loader = DataLoader(
                dataset,
                batch_size=batch_size,
                sampler=order,
                drop_last=drop_last,
                num_workers=self.num_workers,
                persistent_workers=self.num_workers > 0,
                collate_fn=self._collate,
                pin_memory=self.device.type == "cuda",
            )
            self._loaders[what, batch_size] = loader, order
        loader, order = self._loaders[what, batch_size]
        order.indices = indices
        for batch in loader:
            if isinstance(batch, str):
                raise ConfigError(batch)
            x, y = batch
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        steps = self.steps_per_epoch(batch_size)
        order, shifts, flips = epoch_draws(self, generator)
        order = order.cpu()
        index = self.sources["train"][1]
        indices = [index[i] for i in order[: steps * batch_size].tolist()]
        batches = self._batches("train", indices, batch_size, drop_last=True)
        for step, (x, y) in enumerate(batches):
            part = slice(step * batch_size, (step + 1) * batch_size)
            if shifts is not None:
                x = crop_flip(x, self.pad, shifts[part], None if flips is None else flips[part])
            yield self._normalise(x), y

    def val_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        return self._in_order("val", batch_size)

    def test_batches(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        if "test" not in self.sources:
            return super().test_batches(batch_size)
        return self._in_order("test", batch_size)

    def _in_order(self, what: str, batch_size: int) -> Iterator[tuple[Tensor, Tensor]]:
        _check_batch_size(batch_size)
        indices = self.sources[what][1]
        for x, y in self._batches(what, indices, batch_size, drop_last=False):
            yield self._normalise(x), y
