"""Small data sets resident on the device: seeded splits, and batches cropped, flipped and
normalised on the device in a few vectorised ops (airbench's recipe)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from objectives._data import (
    _FIX,
    DEFAULT_ROOT,
    DataInfo,
    LoadRequest,
    Split,
    TrainingData,
    _check_batch_size,
    _test_not_loaded,
)
from objectives._errors import ConfigError

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


def requested_split(
    request: LoadRequest, n: int, val_fraction: float | None = None
) -> tuple[Tensor, Tensor]:
    """`split_indices` of `n` images as `request` asks (`val_fraction` may override it)."""
    return split_indices(
        n,
        subset=request.subset,
        val_fraction=request.val_fraction if val_fraction is None else val_fraction,
        seed=request.seed,
        name=request.name,
        val_size=request.val_size,
        data_seed=request.data_seed,
    )


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


def epoch_draws(
    data: TrainingData, generator: torch.Generator
) -> tuple[Tensor, Tensor | None, Tensor | None]:
    """All of an epoch's random draws up front, on the generator's device: the order of the
    training images, and (with `data.augment`) each one's crop offset and flip on `data.device`,
    None where not drawn. Every data set draws them alike, so a seed means the same epoch."""
    n, gen_device = data.info.train_size, generator.device
    order = torch.randperm(n, generator=generator, device=gen_device)
    shifts = flips = None
    if data.augment:
        shifts = torch.randint(0, 2 * data.pad + 1, (n, 2), generator=generator, device=gen_device)
        shifts = shifts.to(data.device)
        if data.flip:
            flips = torch.randint(0, 2, (n,), generator=generator, device=gen_device)
            flips = flips.to(data.device, dtype=torch.bool)
    return order, shifts, flips


def crop_padding(image_size: tuple[int, int]) -> int:
    """The crop's zero padding: 4 pixels for 32-pixel images, in proportion for other sizes."""
    return max(1, int(min(image_size) / 8 + 0.5))


class Normalise:
    """Per-channel (x - mean) / std on the device, as one fused multiply-add."""

    def __init__(self, mean: Tensor, std: Tensor, device: torch.device) -> None:
        self._scale = (1.0 / std).view(1, -1, 1, 1).to(device)
        self._shift = (-mean / std).view(1, -1, 1, 1).to(device)

    def __call__(self, x: Tensor) -> Tensor:
        return torch.addcmul(self._shift, x.float(), self._scale)


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
    """The splits as tensors on the device; batches are index slices of a randperm.

    Images are uint8 (N, C, H, W), normalised with the training split's per-channel statistics,
    or float32, passed on as they are (a user's data set that is already normalised)."""

    def __init__(
        self,
        info: DataInfo,
        train: tuple[Tensor, Tensor],
        val: tuple[Tensor, Tensor],
        *,
        augment: bool,
        flip: bool,
        test: Split | None = None,
        device: torch.device | None = None,
    ) -> None:
        self.info = info
        self.train_images, self.train_labels = train
        self.val_images, self.val_labels = val
        self.test_images, self.test_labels = test or (None, None)
        self.device = device or self.train_images.device
        # Splits too big for the device stay in host memory: each batch is gathered there,
        # pinned and copied while the previous step runs, then augmented on the device.
        self.streamed = self.train_images.device != self.device
        self.augment = augment
        self.flip = flip
        self.pad = crop_padding(info.image_size)
        if self.train_images.dtype == torch.uint8:
            mean, std = _channel_stats(self.train_images)
        else:
            mean, std = torch.zeros(info.in_channels), torch.ones(info.in_channels)
        self.mean = mean
        self.std = std
        self._normalise = Normalise(mean, std, self.device)

    def train_batches(
        self, batch_size: int, generator: torch.Generator
    ) -> Iterator[tuple[Tensor, Tensor]]:
        steps = self.steps_per_epoch(batch_size)
        order, shifts, flips = epoch_draws(self, generator)
        order = order.to(self.train_images.device)
        parts = [slice(step * batch_size, (step + 1) * batch_size) for step in range(steps)]
        gathered = self._gathered(
            (self.train_images, self.train_labels), (order[part] for part in parts)
        )
        for part, (x, y) in zip(parts, gathered):
            if shifts is not None:
                x = crop_flip(x, self.pad, shifts[part], None if flips is None else flips[part])
            yield self._normalise(x), y

    def _gathered(self, split: Split, indices: Iterator) -> Iterator[Split]:
        """The split's rows at each of `indices` (a tensor or a slice), on the device."""
        images, labels = split
        if not self.streamed:
            for index in indices:
                yield images[index], labels[index]
            return
        # The next batch is gathered and pinned in a thread while the caller's step runs.
        with ThreadPoolExecutor(1) as pool:
            pending = None
            for index in indices:
                following = pool.submit(_pinned_rows, images, labels, index)
                if pending is not None:
                    yield self._copied(pending.result())
                pending = following
            if pending is not None:
                yield self._copied(pending.result())

    def _copied(self, batch: Split) -> Split:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

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
        parts = (slice(start, start + batch_size) for start in range(0, len(images), batch_size))
        for x, y in self._gathered((images, labels), parts):
            yield self._normalise(x), y


def _pinned_rows(images: Tensor, labels: Tensor, index) -> Split:
    return images[index].pin_memory(), labels[index].pin_memory()


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
    """Bilinear, antialiased resize of a uint8 or float NCHW tensor to size x size, done once at
    load."""
    if images.shape[-2:] == (size, size):
        return images
    parts = []
    for start in range(0, len(images), chunk):
        x = images[start : start + chunk].float()
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True)
        if images.dtype == torch.uint8:
            x = x.round_().clamp_(0, 255).to(torch.uint8)
        parts.append(x)
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
    train_index, val_index = requested_split(request, len(images))
    train = images[train_index], labels[train_index]
    return split_tensor_data(
        request, train, (images[val_index], labels[val_index]), test, num_classes
    )


def split_tensor_data(
    request: LoadRequest, train: Split, val: Split, test: Split | None, num_classes: int
) -> TensorData:
    """Splits already chosen (uint8 or float32 NCHW on the CPU), resized to `request.image_size`
    when set, on the device when they fit in half of its free memory, else streamed from host
    memory."""
    splits = [train, val] + ([test] if test is not None else [])
    size = request.image_size
    pixels = sum(len(x) for x, _ in splits) * train[0].shape[1] * (size or 1) ** 2
    nbytes = (pixels if size else sum(x.numel() for x, _ in splits)) * train[0].element_size()
    held = request.device if _fits(nbytes, request.device) else torch.device("cpu")
    moved = [_placed(x, y, held, size) for x, y in splits]
    train_x = moved[0][0]
    info = DataInfo(
        name=request.name,
        num_classes=num_classes,
        in_channels=train_x.shape[1],
        image_size=(train_x.shape[2], train_x.shape[3]),
        train_size=len(train_x),
        val_size=len(moved[1][0]),
        test_size=0 if test is None else len(moved[2][0]),
    )
    return TensorData(
        info,
        moved[0],
        moved[1],
        augment=request.augment,
        flip=request.flip,
        test=moved[2] if test is not None else None,
        device=request.device,
    )


def _fits(nbytes: int, device: torch.device) -> bool:
    if device.type != "cuda":
        return True  # the CPU's memory is where the images are already
    free, _ = torch.cuda.mem_get_info(device)
    return nbytes <= free // 2  # the other half for the model, its activations and graphs


def _placed(images: Tensor, labels: Tensor, device: torch.device, size: int | None) -> Split:
    """One split on `device`, resized to `size` when that is set."""
    x = images.to(device)
    if size is not None:
        x = _resize(x, size)
    return x.contiguous(), labels.to(device, torch.int64)


def _data_root(request: LoadRequest) -> Path:
    return Path(os.path.expanduser(request.root or DEFAULT_ROOT))


def _missing_root(root: Path) -> FileNotFoundError:
    return FileNotFoundError(f"data directory {root} not found: {_FIX}")
