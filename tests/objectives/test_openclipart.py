"""`openclipart` on a small generated folder of drawings with transparency (the real loader,
not the Debian package); one marked test reads the package when it is installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from objectives import ConfigError, TrainConfig, check_data, load_data
from objectives._data import LoadRequest, describe_dataset
from objectives._image_cache import decode_image
from objectives._openclipart import (
    OPENCLIPART_ROOT,
    describe_openclipart,
    openclipart_classes,
    openclipart_root,
    stratified_split,
)

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def clipart(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Categories: animals (16 drawings, half in a sub-folder), boats (10, one more as a link
    to an animal), unsorted (10) and tiny (1, under the share a class needs)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("openclipart")
    rng = np.random.default_rng(0)
    layout = {"animals": 8, "animals/mammals": 8, "boats": 10, "unsorted": 10, "tiny": 1}
    for folder, count in layout.items():
        (root / folder).mkdir(parents=True)
        for i in range(count):
            rgba = rng.integers(0, 256, (rng.integers(8, 30), rng.integers(8, 30), 4))
            Image.fromarray(rgba.astype(np.uint8), "RGBA").save(root / folder / f"{i}.png")
    (root / "boats" / "linked.png").symlink_to(root / "animals" / "0.png")
    return root


def test_classes_are_the_large_categories_each_drawing_once(clipart: Path) -> None:
    classes = openclipart_classes(clipart)
    assert list(classes) == ["animals", "boats"]
    assert [len(files) for files in classes.values()] == [16, 10]
    assert describe_openclipart(str(clipart)) == "2 classes, 26 drawings: animals 16, boats 10"


def test_stratified_splits_fixed_test_and_validation(clipart: Path) -> None:
    def load(**kwargs):
        return load_data(
            "openclipart", device=CPU, root=str(clipart), image_size=16, test=True, **kwargs
        )

    data = load(val_size=7, subset=9)
    info = data.info
    assert (info.num_classes, info.image_size, info.in_channels) == (2, (16, 16), 3)
    assert (info.train_size, info.val_size, info.test_size) == (9, 7, 5)
    assert torch.bincount(data.test_labels).tolist() == [3, 2]  # 20% of each class
    assert torch.bincount(data.val_labels).tolist() == [4, 3]  # 13 and 8 left: in proportion
    assert torch.bincount(data.train_labels).tolist() == [6, 3]
    other_seed = load(val_size=7, subset=9, seed=1)
    assert torch.equal(data.test_images, other_seed.test_images)
    assert torch.equal(data.val_images, other_seed.val_images)
    assert not torch.equal(data.train_images, other_seed.train_images)
    other_data_seed = load(val_size=7, subset=9, data_seed=1)
    assert torch.equal(data.test_images, other_data_seed.test_images)
    assert not torch.equal(data.val_images, other_data_seed.val_images)
    seen = [bytes(x.numpy()) for x in (*data.train_images, *data.val_images, *data.test_images)]
    assert len(set(seen)) == len(seen)  # no drawing in two splits
    # Transparency is white: every drawing here has some fully or partly transparent pixels.
    assert data.train_images.float().mean() > 128


def test_split_sizes_are_checked(clipart: Path) -> None:
    with pytest.raises(ConfigError, match="ask for more than the 21 training images"):
        load_data("openclipart", device=CPU, root=str(clipart), subset=20, val_size=5)
    labels = np.array([0] * 16 + [1] * 10)
    request = LoadRequest(
        name="openclipart", arg=None, device=CPU, root=None, download=False, subset=None,
        val_fraction=0.25, image_size=None, augment=True, seed=0, num_workers=1, flip=True,
    )  # fmt: skip
    train, val, test = stratified_split(labels, request)
    assert (len(train), len(val), len(test)) == (16, 5, 5)
    assert sorted(np.concatenate([train, val, test]).tolist()) == list(range(26))


def test_missing_package_names_it(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="apt-get install openclipart-png"):
        openclipart_root(str(tmp_path / "nothing"))
    config = TrainConfig(data="openclipart", data_dir=str(tmp_path / "nothing"), device="cpu")
    with pytest.raises(ConfigError, match="openclipart-png") as info:
        check_data(config)
    assert "\n" not in str(info.value)


@pytest.mark.skipif(
    not Path(OPENCLIPART_ROOT).is_dir(), reason="Debian's openclipart-png is not installed"
)
def test_the_debian_package() -> None:
    classes = openclipart_classes(Path(OPENCLIPART_ROOT))
    assert len(classes) == 7 and sum(map(len, classes.values())) == 5831
    assert describe_dataset("openclipart").startswith("7 classes, 5831 drawings: animals 286")
    for files in classes.values():
        image = decode_image(files[0], 64, "pad")
        assert image.shape == (3, 64, 64) and image.dtype == np.uint8
