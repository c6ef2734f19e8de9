"""The image cache: decoded once per machine, reused, rebuilt when a file changes, safe when two
processes build it at once, and a one-line error (or a counted skip) for a broken file."""

from __future__ import annotations

import json
import multiprocessing
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from objectives import ConfigError, TrainConfig, _folders, _image_cache, load_data, train
from objectives._image_cache import DecodedImages, decode_image, decoded_images


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv(_image_cache.CACHE_ENV, str(tmp_path / "cache"))
    return tmp_path / "cache" / "images"


def _pngs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    files = []
    for i in range(count):
        path = folder / f"{i}.png"
        Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(path)
        files.append(path)
    return files


def _counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[Path]:
    decoded: list[Path] = []

    def counted(path, size, fit):
        decoded.append(path)
        return decode_image(path, size, fit)

    monkeypatch.setattr(_image_cache, "decode_image", counted)
    return decoded


def test_decoded_once_then_reused(cache, tmp_path, monkeypatch) -> None:
    files = _pngs(tmp_path / "images", 5)
    decoded = _counting_decodes(monkeypatch)
    first = decoded_images(files, 8, fit="crop", skip_bad=False)
    assert len(decoded) == 5
    again = decoded_images(files, 8, fit="crop", skip_bad=False)
    assert len(decoded) == 5  # from the cache
    assert isinstance(again.images, np.memmap) and again.images.shape == (5, 3, 8, 8)
    assert np.array_equal(first.images, again.images) and again.usable.all()
    for i, path in enumerate(files):
        assert np.array_equal(again.images[i], decode_image(path, 8, "crop"))
    # Another size is another cache; nothing is left half-written.
    decoded_images(files, 6, fit="crop", skip_bad=False)
    assert len(decoded) == 10
    assert sorted(p.suffix for p in cache.iterdir()) == [".json"] * 2 + [".lock"] * 2 + [".npy"] * 2


def test_rebuilt_when_a_file_changes(cache, tmp_path, monkeypatch) -> None:
    files = _pngs(tmp_path / "images", 4)
    before = decoded_images(files, 8, fit="crop", skip_bad=False)
    decoded = _counting_decodes(monkeypatch)
    _pngs(tmp_path / "other", 4, seed=1)[2].replace(files[2])  # new content, size and mtime
    os.utime(files[2], ns=(1, 1))
    after = decoded_images(files, 8, fit="crop", skip_bad=False)
    assert len(decoded) == 4
    assert not np.array_equal(before.images[2], after.images[2])
    assert np.array_equal(before.images[:2], after.images[:2])
    # An added file makes a new cache too.
    added = _pngs(tmp_path / "more", 1, seed=2)
    assert decoded_images(files + added, 8, fit="crop", skip_bad=False).images.shape[0] == 5


def _build_in_child(files: list[Path], queue) -> None:
    decoded: list[Path] = []

    def counted(path, size, fit):
        decoded.append(path)
        return decode_image(path, size, fit)

    _image_cache.decode_image = counted
    result = decoded_images(files, 8, fit="pad", skip_bad=False)
    queue.put((len(decoded), result.images.sum(dtype=np.int64)))


def test_two_processes_building_at_once_make_one_cache(cache, tmp_path) -> None:
    files = _pngs(tmp_path / "images", 40)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    children = [context.Process(target=_build_in_child, args=(files, queue)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        child.join(60)
        assert child.exitcode == 0
    (decoded_a, sum_a), (decoded_b, sum_b) = queue.get(), queue.get()
    assert sorted([decoded_a, decoded_b]) == [0, 40]  # one built it, the other waited for it
    assert sum_a == sum_b
    assert sorted(p.suffix for p in cache.iterdir()) == [".json", ".lock", ".npy"]
    expected = np.stack([decode_image(path, 8, "pad") for path in files])
    assert np.array_equal(decoded_images(files, 8, fit="pad", skip_bad=False).images, expected)


def test_a_truncated_image_is_one_line_naming_it_or_skipped(cache, tmp_path) -> None:
    files = _pngs(tmp_path / "images", 3)
    data = files[1].read_bytes()
    files[1].write_bytes(data[: len(data) // 2])
    with pytest.raises(ConfigError) as info:
        decoded_images(files, 8, fit="crop", skip_bad=False)
    message = str(info.value)
    assert "\n" not in message and str(files[1]) in message and "skip_bad_images: true" in message
    skipped = decoded_images(files, 8, fit="crop", skip_bad=True)
    assert skipped.usable.tolist() == [True, False, True]
    assert [path for path, _ in skipped.skipped] == [str(files[1])]
    index = json.loads(next(cache.glob("*.json")).read_text())
    assert len(index["skipped"]) == 1
    # The error stands on a later run too, read from the cache.
    with pytest.raises(ConfigError, match="cannot decode image"):
        decoded_images(files, 8, fit="crop", skip_bad=False)


def test_transparency_on_white_and_how_shapes_become_square(tmp_path) -> None:
    from PIL import Image

    wide = np.zeros((10, 40, 4), dtype=np.uint8)  # transparent black, with a red opaque bar
    wide[4:6, :, 0], wide[4:6, :, 3] = 255, 255
    Image.fromarray(wide, "RGBA").save(tmp_path / "wide.png")
    padded = decode_image(tmp_path / "wide.png", 40, "pad")  # no scaling: 10 rows in the middle
    assert padded.shape == (3, 40, 40) and padded.dtype == np.uint8
    assert (padded[:, :19] == 255).all() and (padded[:, 21:] == 255).all()  # white around
    assert (padded[0, 19:21] == 255).all() and (padded[1:, 19:21] == 0).all()  # the red bar
    cropped = decode_image(tmp_path / "wide.png", 20, "crop")  # 10 rows scaled to 20
    assert cropped.shape == (3, 20, 20) and (cropped[1:, 9:11] < 40).all()
    assert (cropped[:, :6] == 255).all()  # the transparent rows are white, not black


def test_training_from_the_cache_equals_training_from_decoded_images(
    make_image_folder, cache, monkeypatch
) -> None:
    folder = make_image_folder(train=8, val=3)
    config = TrainConfig(
        model="resnet20", data=f"imagefolder:{folder}", image_size=12, epochs=2, batch_size=4,
        device="cpu", channels_last=False,
    )  # fmt: skip
    cached = train(config)
    assert any(cache.glob("*.npy"))

    def decoded_in_memory(files, size, *, fit, skip_bad, threads=1, what="images"):
        images = np.stack([decode_image(path, size, fit) for path in files])
        return DecodedImages(images, np.ones(len(files), dtype=bool), [])

    monkeypatch.setattr(_folders, "decoded_images", decoded_in_memory)
    direct = train(config)
    assert [e.loss for e in cached.history] == [e.loss for e in direct.history]
    assert cached.val_accuracy == direct.val_accuracy


def test_streamed_from_host_gives_the_device_batches(make_image_folder, monkeypatch) -> None:
    """Splits too big for the device stay in host memory; the batches are the same ones."""
    from objectives import _tensor_data

    folder = make_image_folder(train=6, val=3)
    name = f"imagefolder:{folder}"
    held = load_data(name, device="cpu", image_size=8)
    monkeypatch.setattr(_tensor_data, "_fits", lambda nbytes, device: False)
    streamed = load_data(name, device="cpu", image_size=8)
    streamed.streamed = True  # on the CPU nothing needs copying; force the streaming path
    monkeypatch.setattr(torch.Tensor, "pin_memory", lambda self: self)  # needs CUDA otherwise
    a = list(held.train_batches(4, torch.Generator().manual_seed(3)))
    b = list(streamed.train_batches(4, torch.Generator().manual_seed(3)))
    assert len(a) == len(b) == 3
    assert all(torch.equal(x, u) and torch.equal(y, v) for (x, y), (u, v) in zip(a, b))
    assert all(
        torch.equal(x, u) for (x, _), (u, _) in zip(held.val_batches(4), streamed.val_batches(4))
    )
