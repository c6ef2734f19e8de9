"""Image files decoded once per (file list, size) into a memory-mapped uint8 cache.

A trial's time must measure training, not decoding: the first load of a folder at a size
decodes every image (transparency composited on white) into `<cache>/images/<key>.npy`, an
(N, 3, size, size) uint8 array, and every later load, by any trial or worker on the machine,
maps that file. The key hashes the files' paths, sizes and modification times, so a changed,
added or removed file makes a new cache. Two processes that start at once take a file lock:
one decodes, the other waits and maps the result. A `<key>.json` written last marks the cache
complete and lists the files that could not be decoded. A user's own `Dataset` is read once
into the same cache by the same rule (`built_once`; `_dataset_cache.py`).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from objectives._errors import ConfigError

CACHE_ENV = "DIKD_CACHE_DIR"
DEFAULT_CACHE = "~/.cache/dikd"
_FORMAT = 1  # bump when the decoding below changes, so that old caches are not reused

Fit = Literal["crop", "pad"]  # how a non-square image becomes square
# Larger images are not decoded (counted as undecodable): one costs seconds and gigabytes to
# decode, to end up at a few hundred pixels a side.
MAX_PIXELS = 40_000_000


def cache_root() -> Path:
    """Where dikd keeps what it computes once per machine: $DIKD_CACHE_DIR or ~/.cache/dikd."""
    return Path(os.path.expanduser(os.environ.get(CACHE_ENV) or DEFAULT_CACHE))


def built_once(key: str, build: Callable[[Path], dict[str, Any]]) -> tuple[Path, dict[str, Any]]:
    """What `build(prefix)` writes under `<cache>/images/<key>.*`, built once per machine.

    `build` writes its files (each complete before it is renamed into place) and returns the
    index, which is written last as `<key>.json`: its presence marks the cache complete. A file
    lock makes a second process that asks at the same time wait for the first one's result.
    Returns the prefix (`<cache>/images/<key>`) and the index.
    """
    folder = cache_root() / "images"
    folder.mkdir(parents=True, exist_ok=True)
    prefix, index_path = folder / key, folder / f"{key}.json"
    if not index_path.exists():
        with open(folder / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building this very cache
            if not index_path.exists():
                index = build(prefix)
                partial = folder / f"{key}.partial-{os.getpid()}.json"
                partial.write_text(json.dumps(index))
                os.replace(partial, index_path)  # written last: the cache is complete
    return prefix, json.loads(index_path.read_text())


@dataclass(frozen=True)
class DecodedImages:
    images: np.ndarray  # uint8 (N, 3, size, size), memory-mapped read-only; N = len(files)
    usable: np.ndarray  # bool (N,): False where the file could not be decoded (then skipped)
    skipped: list[tuple[str, str]]  # (file, reason) of each file that could not be decoded


def decode_image(path: Path, size: int, fit: Fit) -> np.ndarray:
    """One image as uint8 (3, size, size): transparency on white, then `crop` (shorter side
    to `size`, centre crop: photographs) or `pad` (longer side to `size`, centred on white,
    aspect kept: drawings, whose edges matter)."""
    from PIL import Image

    with Image.open(path) as image:
        if image.width * image.height > MAX_PIXELS:
            raise ValueError(
                f"{image.width}x{image.height} pixels, more than the {MAX_PIXELS:,} dikd decodes"
            )
        image.load()  # a truncated or corrupt file raises here
        rgba = image.convert("RGBA")
    canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    rgb = Image.alpha_composite(canvas, rgba).convert("RGB")
    w, h = rgb.size
    factor = size / (min(w, h) if fit == "crop" else max(w, h))
    new_w, new_h = max(1, round(w * factor)), max(1, round(h * factor))
    rgb = rgb.resize((new_w, new_h), Image.Resampling.BILINEAR)
    if fit == "crop":
        left, top = (new_w - size) // 2, (new_h - size) // 2
        rgb = rgb.crop((left, top, left + size, top + size))
    else:
        square = Image.new("RGB", (size, size), (255, 255, 255))
        square.paste(rgb, ((size - new_w) // 2, (size - new_h) // 2))
        rgb = square
    return np.asarray(rgb, dtype=np.uint8).transpose(2, 0, 1)


def _key(files: Sequence[Path], size: int, fit: Fit) -> str:
    digest = hashlib.sha256(json.dumps([_FORMAT, size, fit]).encode())
    for path in files:
        stat = path.stat()
        digest.update(f"\0{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:24]


def decoded_images(
    files: Sequence[Path],
    size: int,
    *,
    fit: Fit,
    skip_bad: bool,
    threads: int = 1,
    what: str = "images",
) -> DecodedImages:
    """The files decoded at `size` (see `decode_image`), from the machine's cache, built here
    first if needed. A file that cannot be decoded is a one-line ConfigError naming it, or with
    `skip_bad` is skipped (`usable` False) and counted. `threads` decode at once."""
    key = _key(files, size, fit)

    def build(prefix: Path) -> dict[str, Any]:
        return _build(files, size, fit, prefix.with_suffix(".npy"), threads, what)

    prefix, index = built_once(key, build)
    array_path = prefix.with_suffix(".npy")
    skipped = [tuple(entry) for entry in index["skipped"]]
    if skipped and not skip_bad:
        path, reason = skipped[0]
        raise _bad_image(path, reason, len(skipped))
    images = np.load(array_path, mmap_mode="r")
    if images.shape != (len(files), 3, size, size):
        raise ConfigError(
            f"the image cache {array_path} is damaged (shape {images.shape}): delete it and "
            "run again"
        )
    usable = np.ones(len(files), dtype=bool)
    bad = {path for path, _ in skipped}
    usable[[i for i, path in enumerate(files) if str(path) in bad]] = False
    return DecodedImages(images, usable, skipped)


def _bad_image(path: str, reason: str, count: int) -> ConfigError:
    more = f" ({count - 1} more)" if count > 1 else ""
    return ConfigError(
        f"cannot decode image {path}{more}: {reason}; replace or delete the file, or set "
        "skip_bad_images: true to train without it"
    )


def _build(files, size: int, fit: Fit, array_path: Path, threads: int, what: str) -> dict[str, Any]:
    from PIL import Image
    from tqdm import tqdm

    partial = array_path.with_suffix(f".partial-{os.getpid()}.npy")
    array = np.lib.format.open_memmap(
        partial, mode="w+", dtype=np.uint8, shape=(len(files), 3, size, size)
    )
    skipped: list[tuple[str, str]] = []

    def decode(index: int) -> None:
        try:
            array[index] = decode_image(files[index], size, fit)
        except Exception as e:  # PIL raises many kinds for corrupt, truncated or odd files
            array[index] = 255
            reason = " ".join(str(e).split()) or type(e).__name__
            skipped.append((str(files[index]), reason))

    desc = f"decoding {len(files)} {what} at {size}px (once; cached in {array_path.parent})"
    with (
        tqdm(total=len(files), desc=desc, unit="img", disable=None, leave=False) as bar,
        ThreadPoolExecutor(max(1, threads)) as pool,
        warnings.catch_warnings(),  # large images are refused above, not warned about
    ):
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        for _ in pool.map(decode, range(len(files))):
            bar.update()
    array.flush()
    os.replace(partial, array_path)
    return {"size": size, "fit": fit, "files": len(files), "skipped": sorted(skipped)}
