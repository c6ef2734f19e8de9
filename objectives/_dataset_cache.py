"""A user's `torch.utils.data.Dataset` read once into the machine's image cache.

Each item must be `(image tensor C x H x W, int label)`. One pass over a split stores its labels,
its images' shape, whether they are 8-bit and their per-channel sums (`<key>.labels.npy` and the
JSON index), and, for a split whose items do not change from one read to the next, the images
themselves as one (N, C, H, W) array (`<key>.npy`): uint8 where every image is 8-bit (uint8, or
floats in [0, 1] that are exactly k/255: `ToTensor()` of 8-bit pixels), float32 otherwise (a
uint8 image among floats as k/255). Images are resized to `image_size` as they are read.

The key hashes what the user's code is (the import path, the keywords passed, the source files
of the callable and of the Dataset's class: path, size and modification time), the split's
length and either the Dataset's own `dikd_cache_key` or a sample of its items (`SAMPLE_ITEMS`
evenly spaced: their bytes and labels; only the labels for a split read every epoch, whose
pixels differ between reads). The sample cannot see a change to an item outside it that leaves
the length and the source files alone (data files edited in place): such a Dataset should give
`dikd_cache_key` (a version, or a hash of its files).
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from objectives._errors import ConfigError
from objectives._image_cache import built_once

if TYPE_CHECKING:
    from objectives._data import LoadRequest

FIELD = "field 'train.data'"
SAMPLE_ITEMS = 16
_FORMAT = 1  # bump when what is stored below changes, so that old caches are not reused
_ITEM_FORM = (
    "each item must be (image tensor C x H x W, int label): e.g. end the Dataset's transforms "
    "with transforms.ToTensor() or PILToTensor()"
)


def describe(value: Any) -> str:
    """A short description of a value a Dataset returned, for error messages."""
    if isinstance(value, Tensor):
        return f"a {value.dtype} tensor of shape {tuple(value.shape)}"
    if isinstance(value, (tuple, list)) and len(value) <= 4:
        inner = ", ".join(describe(v) for v in value)
        return f"a {type(value).__name__} ({inner})"
    return f"a {type(value).__module__}.{type(value).__name__}".replace("a builtins.", "a ")


def checked_item(item: Any, where: str) -> tuple[Tensor, int]:
    """A Dataset's item as (image, label), or a one-line ConfigError saying what is wrong."""
    if not (isinstance(item, (tuple, list)) and len(item) == 2):
        raise ConfigError(f"{FIELD}: {where} is {describe(item)}; {_ITEM_FORM}")
    image, label = item
    if not isinstance(image, Tensor) or image.ndim != 3:
        raise ConfigError(f"{FIELD}: the image of {where} is {describe(image)}; {_ITEM_FORM}")
    if not (image.dtype == torch.uint8 or image.is_floating_point()):
        raise ConfigError(
            f"{FIELD}: the image of {where} is a {image.dtype} tensor; images must be uint8 "
            "or floating-point tensors"
        )
    if isinstance(label, Tensor) and label.numel() == 1 and not label.is_floating_point():
        label = label.item()
    if isinstance(label, bool) or not isinstance(label, (int, np.integer)):
        raise ConfigError(f"{FIELD}: the label of {where} is {describe(label)}; {_ITEM_FORM}")
    if label < 0:
        raise ConfigError(f"{FIELD}: the label of {where} is {label}; labels are 0, 1, 2, ...")
    return image, int(label)


def is_8bit(image: Tensor) -> bool:
    """uint8, or floats in [0, 1] that are exactly k/255 (to float32 precision)."""
    if image.dtype == torch.uint8:
        return True
    if image.numel() == 0 or image.min() < 0 or image.max() > 1:
        return False
    scaled = image.double() * 255
    return bool((scaled - scaled.round()).abs().max() < 1e-3)


def pixels(image: Tensor, size: int | None, eight_bit: bool) -> Tensor:
    """An image as float32 in storage units: 0-255 when `eight_bit`, else floats as given (a
    uint8 image among them as k/255), resized to size x size (bilinear, antialiased) when `size`
    is set and differs."""
    x = image.float()
    if eight_bit and image.is_floating_point():
        x = x * 255
    elif not eight_bit and image.dtype == torch.uint8:
        x = x / 255
    if size is not None and tuple(x.shape[-2:]) != (size, size):
        x = F.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True)[0]
    return x


def sample_indices(n: int, count: int = SAMPLE_ITEMS) -> list[int]:
    """`count` evenly spaced indices into `n` items (all of them when fewer)."""
    if n <= count:
        return list(range(n))
    return sorted({round(i * (n - 1) / (count - 1)) for i in range(count)})


def source_stamp(obj: Any) -> list[Any]:
    """The source file defining `obj` (path, size, modification time), or [] when unknown."""
    try:
        path = inspect.getsourcefile(obj if inspect.isclass(obj) or callable(obj) else type(obj))
    except TypeError:
        return []
    if not path or not os.path.exists(path):
        return []
    stat = os.stat(path)
    return [os.path.abspath(path), stat.st_size, stat.st_mtime_ns]


def split_key(dataset: Any, parts: dict[str, Any], sample: list[tuple[Tensor, int]] | None) -> str:
    """The cache key of one split (see the module's docstring). `sample` is None when the
    Dataset gives its own `dikd_cache_key`; pixels are hashed only where `parts["pixels"]`."""
    own = getattr(dataset, "dikd_cache_key", None)
    head = [_FORMAT, parts, len(dataset), source_stamp(type(dataset)), own]
    digest = hashlib.sha256(json.dumps(head, sort_keys=True, default=str).encode())
    for image, label in sample if own is None and sample is not None else ():
        digest.update(f"\0{label}\0{tuple(image.shape)}\0{image.dtype}\0".encode())
        if parts["pixels"]:
            digest.update(image.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:24]


@dataclass(frozen=True)
class CachedSplit:
    """One split as the cache holds it."""

    labels: np.ndarray  # int64 (N,)
    shape: tuple[int, int, int]  # (C, H, W) of every image
    eight_bit: bool  # every image 8-bit: stored (and read every epoch) in 0-255 units
    mean: tuple[float, ...]  # per channel, in storage units
    std: tuple[float, ...]
    images: np.ndarray | None  # (N, C, H, W) uint8 or float32, memory-mapped; None: not stored


def cached_split(
    dataset: Any,
    key: str,
    *,
    store_pixels: bool,
    image_size: int | None,
    num_workers: int,
    what: str,
) -> CachedSplit:
    """`dataset` from the machine's cache under `key`, read here first if needed (see the
    module's docstring); `what` names the split in messages ("the training Dataset")."""

    def build(prefix: Path) -> dict[str, Any]:
        return _read(dataset, prefix, store_pixels, image_size, num_workers, what)

    prefix, index = built_once(key, build)
    labels = np.load(f"{prefix}.labels.npy")
    images = np.load(f"{prefix}.npy", mmap_mode="r") if index["pixels"] else None
    shape = tuple(index["shape"])
    if len(labels) != len(dataset) or (images is not None and images.shape[1:] != shape):
        raise ConfigError(
            f"the image cache {prefix}.* is damaged (or the Dataset's length changed): delete "
            "it and run again"
        )
    count = len(labels) * shape[1] * shape[2]
    mean = np.asarray(index["sums"]) / count
    std = np.sqrt(np.maximum(np.asarray(index["squares"]) / count - mean * mean, 0))
    return CachedSplit(
        labels=labels,
        shape=shape,  # type: ignore[arg-type]
        eight_bit=index["eight_bit"],
        mean=tuple(mean.tolist()),
        std=tuple(std.tolist()),
        images=images,
    )


def _unchanged(item: Any) -> Any:
    return item


def _read(
    dataset: Any,
    prefix: Path,
    store_pixels: bool,
    image_size: int | None,
    num_workers: int,
    what: str,
) -> dict[str, Any]:
    """One pass over `dataset` (through a DataLoader, so its workers are the user's usual ones):
    labels, shape, 8-bitness and channel sums, and the images where `store_pixels`."""
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    n = len(dataset)
    loader = DataLoader(dataset, batch_size=None, num_workers=num_workers, collate_fn=_unchanged)
    labels = np.empty(n, dtype=np.int64)
    partial = Path(f"{prefix}.partial-{os.getpid()}.npy")
    array: np.ndarray | None = None
    shape: tuple[int, ...] = ()
    eight_bit = True
    sums = squares = None
    desc = f"reading {n} items of {what} (once; cached in {prefix.parent})"
    try:
        items = enumerate(tqdm(loader, total=n, desc=desc, unit="img", disable=None, leave=False))
        for i, item in _reraised(items, what):
            image, labels[i] = checked_item(item, f"item {i} of {what}")
            if i == 0:
                eight_bit = is_8bit(image)
            elif eight_bit and not is_8bit(image):
                eight_bit = False  # from now on floats; the rows so far become k/255
                if array is not None:
                    array = _as_float(array, partial, i)
            x = pixels(image, image_size, eight_bit)
            if i == 0:
                shape = tuple(x.shape)
                sums = torch.zeros(shape[0], dtype=torch.float64)
                squares = torch.zeros_like(sums)
                if store_pixels:
                    dtype = np.uint8 if eight_bit else np.float32
                    array = np.lib.format.open_memmap(partial, "w+", dtype, (n, *shape))
            elif tuple(x.shape) != shape:
                raise _differing(what, i, tuple(x.shape), shape)
            x = x.round().clamp(0, 255) if eight_bit else x
            # Channel sums are only read for 8-bit data (a float data set is not normalised),
            # so those of the items before a switch to floats need no fixing.
            sums += x.double().sum(dim=(1, 2))
            squares += (x.double() ** 2).sum(dim=(1, 2))
            if array is not None:
                array[i] = x.numpy().astype(array.dtype)
        if array is not None:
            array.flush()
            os.replace(partial, f"{prefix}.npy")
    finally:
        partial.unlink(missing_ok=True)
    np.save(f"{prefix}.labels.npy", labels)
    return {
        "shape": list(shape),
        "eight_bit": eight_bit,
        "pixels": array is not None,
        "sums": sums.tolist() if sums is not None else [],
        "squares": squares.tolist() if squares is not None else [],
        "items": n,
    }


def _reraised(items, what: str):
    """The loader's items; an exception the user's code raised becomes one line naming it."""
    iterator = iter(items)
    while True:
        try:
            yield next(iterator)
        except StopIteration:
            return
        except ConfigError:
            raise
        except Exception as e:
            # A DataLoader worker's exception carries the worker's traceback: keep its last line.
            lines = [line for line in str(e).splitlines() if line.strip()]
            reason = lines[-1].strip() if lines else type(e).__name__
            if len(lines) <= 1:
                reason = f"{type(e).__name__}: {reason}"
            raise ConfigError(
                f"{FIELD}: reading {what} raised {reason}; fix the Dataset's __getitem__"
            ) from None


def _as_float(array: np.ndarray, partial: Path, filled: int) -> np.ndarray:
    """The uint8 array rewritten as float32 (k/255 in [0, 1]) in place of `partial`."""
    floats = np.lib.format.open_memmap(
        partial.with_suffix(".float.npy"), "w+", np.float32, array.shape
    )
    for start in range(0, filled, 4096):
        floats[start : min(start + 4096, filled)] = array[start : min(start + 4096, filled)] / 255
    del array
    os.replace(partial.with_suffix(".float.npy"), partial)
    return floats


def _differing(what: str, i: int, shape: tuple[int, ...], first: tuple[int, ...]) -> ConfigError:
    if shape[0] != first[0]:
        fix = "make the Dataset return one number of channels"
    else:
        fix = "set image_size: N (resizes every image to N x N) or make the Dataset return one size"
    size = "x".join(map(str, shape))
    return ConfigError(
        f"{FIELD}: item {i} of {what} is {size} (C x H x W) but item 0 is "
        f"{'x'.join(map(str, first))}; {fix}"
    )


# --- reading the user's Datasets, shared by the cached and the read-every-epoch path ---

_NAMES = {
    "train": "the training Dataset", "val": "the validation Dataset", "test": "the test Dataset"
}  # fmt: skip


def _item(dataset: Any, index: int, what: str) -> tuple[Tensor, int]:
    try:
        item = dataset[index]
    except Exception as e:
        reason = " ".join(str(e).split()) or "no message"
        raise ConfigError(
            f"{FIELD}: reading item {index} of {_NAMES[what]} raised {type(e).__name__}: "
            f"{reason}; fix the Dataset's __getitem__"
        ) from None
    return checked_item(item, f"item {index} of {_NAMES[what]}")


def _same(a: tuple[Tensor, int], b: tuple[Tensor, int]) -> bool:
    return a[1] == b[1] and a[0].shape == b[0].shape and bool(torch.equal(a[0], b[0]))


def _own_val(request: LoadRequest, datasets: Mapping[str, Any]) -> bool:
    """Whether the validation split is the user's val Dataset: given, and no `val_size` asks for
    a fixed sample of the training images (as image folders' val/)."""
    return "val" in datasets and request.val_size is None


def _train_val_index(request: LoadRequest, n: int, own_val: bool) -> tuple[Tensor, Tensor]:
    """Training and validation indices into the training Dataset; with its own val Dataset only
    `subset` chooses."""
    from objectives._tensor_data import requested_split  # which imports the data registry

    return requested_split(request, n, val_fraction=0.0 if own_val else None)


def _in_units(images: Tensor, eight_bit: bool) -> Tensor:
    """A split's stored images in the training split's units: 0-255 (uint8, or float32 for a
    float split next to an 8-bit training split), or floats as given (uint8 as k/255)."""
    if eight_bit:
        return images if images.dtype == torch.uint8 else images * 255
    return images.float() / 255 if images.dtype == torch.uint8 else images
