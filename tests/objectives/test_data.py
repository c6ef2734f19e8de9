from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import objectives._data as data_module
from objectives import ConfigError
from objectives._data import (
    SYNTHETIC_TEST_SIZE,
    SYSTEM_FASHION_MNIST,
    DataInfo,
    TensorData,
    TrainingData,
    crop_flip,
    list_datasets,
    load_data,
    split_indices,
)

CPU = torch.device("cpu")
needs_fashion_mnist = pytest.mark.skipif(
    not os.path.isdir(SYSTEM_FASHION_MNIST),
    reason="apt-get install dataset-fashion-mnist",
)


def first_batch(data, seed: int, batch_size: int = 32):
    return next(iter(data.train_batches(batch_size, torch.Generator().manual_seed(seed))))


def all_val(data, batch_size: int, split: str = "val"):
    batches = list(getattr(data, f"{split}_batches")(batch_size))
    return torch.cat([x for x, _ in batches]), torch.cat([y for _, y in batches]), batches


def normalised(data: TensorData, images: torch.Tensor) -> torch.Tensor:
    """Stored uint8 images normalised with the training split's statistics."""
    return (images.float() - data.mean.view(1, -1, 1, 1)) / data.std.view(1, -1, 1, 1)


# --- Fashion-MNIST, the real files -----------------------------------------------------------


@pytest.fixture(scope="module")
def fmnist() -> TensorData:
    if not os.path.isdir(SYSTEM_FASHION_MNIST):
        pytest.skip("apt-get install dataset-fashion-mnist")
    data = load_data("fashion-mnist", device=CPU, subset=600)
    assert isinstance(data, TensorData)
    return data


def test_fashion_mnist_info(fmnist: TensorData) -> None:
    info = fmnist.info
    assert (info.name, info.num_classes, info.in_channels) == ("fashion-mnist", 10, 1)
    assert info.image_size == (28, 28)
    assert (info.train_size, info.val_size) == (540, 60)
    assert fmnist.steps_per_epoch(128) == 4
    assert fmnist.steps_per_epoch(540) == 1
    with pytest.raises(ValueError, match="larger than the 540 training images"):
        fmnist.steps_per_epoch(541)


def test_fashion_mnist_train_batches(fmnist: TensorData) -> None:
    batches = list(fmnist.train_batches(128, torch.Generator().manual_seed(0)))
    assert len(batches) == 4
    for x, y in batches:
        assert x.shape == (128, 1, 28, 28) and x.dtype == torch.float32 and x.device == CPU
        assert y.shape == (128,) and y.dtype == torch.int64
        assert 0 <= y.min() and y.max() <= 9
        assert torch.isfinite(x).all()
        # Normalised pixels lie between (0 - mean) / std and (255 - mean) / std.
        low = float(-fmnist.mean / fmnist.std)
        high = float((255 - fmnist.mean) / fmnist.std)
        assert low - 1e-4 <= x.min() and x.max() <= high + 1e-4


def test_fashion_mnist_normalised_without_augment() -> None:
    data = load_data("fashion-mnist", device=CPU, subset=600, augment=False)
    x = torch.cat([x for x, _ in data.train_batches(1, torch.Generator().manual_seed(0))])
    assert x.shape[0] == 540
    assert abs(float(x.mean())) < 1e-3
    assert abs(float(x.std()) - 1) < 1e-3


def test_fashion_mnist_reproducible(fmnist: TensorData) -> None:
    x1, y1 = first_batch(fmnist, seed=1)
    x2, y2 = first_batch(fmnist, seed=1)
    x3, y3 = first_batch(fmnist, seed=2)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert not torch.equal(x1, x3)


def test_fashion_mnist_augment_changes_images_not_order(fmnist: TensorData) -> None:
    plain = load_data("fashion-mnist", device=CPU, subset=600, augment=False)
    x_aug, y_aug = first_batch(fmnist, seed=5, batch_size=64)
    x_plain, y_plain = first_batch(plain, seed=5, batch_size=64)
    assert torch.equal(y_aug, y_plain)  # the permutation is drawn first
    changed = (x_aug != x_plain).flatten(1).any(dim=1)
    assert changed.float().mean() > 0.5  # 1 in 162 keeps offset (4, 4) and no flip


def test_fashion_mnist_same_split_for_same_seed(fmnist: TensorData) -> None:
    again = load_data("fashion-mnist", device=CPU, subset=600)
    assert torch.equal(again.val_images, fmnist.val_images)
    other = load_data("fashion-mnist", device=CPU, subset=600, seed=1)
    assert not torch.equal(other.val_images, fmnist.val_images)


def test_fashion_mnist_val_covers_split_once(fmnist: TensorData) -> None:
    x7, y7, batches = all_val(fmnist, 7)
    assert len(batches) == 9 and len(batches[-1][1]) == 60 - 8 * 7  # last batch partial
    x_all, y_all, _ = all_val(fmnist, 1000)
    assert x7.shape == (60, 1, 28, 28)
    assert torch.equal(x7, x_all) and torch.equal(y7, y_all)
    assert torch.equal(y7, fmnist.val_labels)
    # Not augmented: exactly the normalised stored images.
    torch.testing.assert_close(x7, normalised(fmnist, fmnist.val_images))


@needs_fashion_mnist
def test_fashion_mnist_test_split_is_the_t10k_file() -> None:
    import gzip

    data = load_data("fashion-mnist", device=CPU, subset=600, test=True)
    assert isinstance(data, TensorData)
    assert data.info.test_size == 10_000 and data.info.train_size == 540
    with gzip.open(Path(SYSTEM_FASHION_MNIST) / "t10k-labels-idx1-ubyte.gz") as f:
        first_labels = list(f.read(8 + 20)[8:])
    with gzip.open(Path(SYSTEM_FASHION_MNIST) / "t10k-images-idx3-ubyte.gz") as f:
        first_image = np.frombuffer(f.read(16 + 784)[16:], dtype=np.uint8).reshape(28, 28)
    x, y, batches = all_val(data, 3000, split="test")
    assert [len(b[1]) for b in batches] == [3000, 3000, 3000, 1000]  # in order, last partial
    assert y[:20].tolist() == first_labels
    assert torch.equal(data.test_images[0, 0], torch.from_numpy(first_image.copy()))
    # Not augmented, normalised with the training split's statistics like the validation split.
    torch.testing.assert_close(x, normalised(data, data.test_images))


def test_test_split_only_when_asked_for(fmnist: TensorData) -> None:
    assert fmnist.info.test_size == 0
    with pytest.raises(ConfigError, match="test split of fashion-mnist was not loaded"):
        fmnist.test_batches(100)
    with_test = load_data("fashion-mnist", device=CPU, subset=600, test=True)
    assert torch.equal(with_test.train_images, fmnist.train_images)  # the same training split
    assert torch.equal(with_test.val_images, fmnist.val_images)


@needs_fashion_mnist
def test_fashion_mnist_val_size_fixed_by_data_seed() -> None:
    def load(seed: int, data_seed: int, **kwargs) -> TensorData:
        kwargs = {"subset": 600, "val_size": 500, **kwargs}
        return load_data("fashion-mnist", device=CPU, seed=seed, data_seed=data_seed, **kwargs)

    a, b, other = load(0, 0), load(1, 0), load(0, 1)
    assert (a.info.train_size, a.info.val_size) == (600, 500)
    assert torch.equal(a.val_images, b.val_images) and torch.equal(a.val_labels, b.val_labels)
    assert not torch.equal(a.train_images, b.train_images)  # seed still picks the subset
    assert not torch.equal(a.val_images, other.val_images)
    # val_fraction is ignored; image_size resizes the validation and the test split too.
    small = load(0, 0, val_fraction=0.5, image_size=14, test=True)
    assert (small.info.train_size, small.info.val_size) == (600, 500)
    assert small.val_images.shape[-2:] == small.test_images.shape[-2:] == (14, 14)


def test_fashion_mnist_test_files_from_root(tmp_path: Path) -> None:
    write_idx(tmp_path, "train")
    data = load_data("fashion-mnist", device=CPU, root=str(tmp_path), val_fraction=0.5)
    assert data.info.test_size == 0  # not asked for: the t10k files need not exist
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte") as info:
        load_data("fashion-mnist", device=CPU, root=str(tmp_path), test=True)
    message = str(info.value)
    assert "t10k-labels-idx1-ubyte(.gz) not found" in message and "\n" not in message
    _, labels = write_idx(tmp_path, "t10k", count=8)
    data = load_data("fashion-mnist", device=CPU, root=str(tmp_path), test=True, image_size=32)
    assert data.info.test_size == 8 and data.test_images.shape == (8, 1, 32, 32)
    assert data.test_labels.tolist() == labels.tolist()


def test_fashion_mnist_resized() -> None:
    data = load_data("fashion-mnist", device=CPU, subset=100, image_size=32)
    x, _ = first_batch(data, seed=0)
    assert data.info.image_size == (32, 32) and x.shape == (32, 1, 32, 32)


def write_idx(folder: Path, prefix: str, count: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Uncompressed IDX files <prefix>-images-idx3-ubyte and <prefix>-labels-idx1-ubyte."""
    images = np.arange(count * 28 * 28, dtype=np.uint8).reshape(count, 28, 28)
    labels = np.arange(count, dtype=np.uint8) % 10
    header = b"\x00\x00\x08\x03" + b"".join(int(n).to_bytes(4, "big") for n in images.shape)
    (folder / f"{prefix}-images-idx3-ubyte").write_bytes(header + images.tobytes())
    header = b"\x00\x00\x08\x01" + count.to_bytes(4, "big")
    (folder / f"{prefix}-labels-idx1-ubyte").write_bytes(header + labels.tobytes())
    return images, labels


def test_fashion_mnist_idx_from_root(tmp_path: Path) -> None:
    # Uncompressed IDX files in data_dir are read as well as gzip'd ones.
    images, labels = write_idx(tmp_path, "train")
    data = load_data("fashion-mnist", device=CPU, root=str(tmp_path), val_fraction=0.5)
    assert (data.info.train_size, data.info.val_size) == (10, 10)
    stored = torch.cat([data.train_images, data.val_images]).squeeze(1)
    order = torch.cat([data.train_labels, data.val_labels])
    assert sorted(order.tolist()) == sorted(labels.tolist())
    assert sorted(stored[:, 0, 0].tolist()) == sorted(images[:, 0, 0].tolist())


# --- augmentation and splitting ------------------------------------------------------------


def test_crop_flip_identity_shift_and_flip() -> None:
    x = torch.randint(0, 256, (3, 2, 5, 7), dtype=torch.uint8)
    centre = torch.full((3, 2), 2)
    assert torch.equal(crop_flip(x, 2, centre, None), x)
    flips = torch.tensor([True, False, True])
    out = crop_flip(x, 2, centre, flips)
    assert torch.equal(out[0], x[0].flip(-1)) and torch.equal(out[1], x[1])
    # Shift (0, 0) takes the top-left corner: two rows and columns of zero padding.
    corner = crop_flip(x, 2, torch.zeros(3, 2, dtype=torch.long), None)
    assert torch.equal(corner[:, :, 2:, 2:], x[:, :, :3, :5])
    assert (corner[:, :, :2] == 0).all() and (corner[:, :, :, :2] == 0).all()


def test_split_indices_disjoint_and_seeded() -> None:
    train, val = split_indices(100, subset=50, val_fraction=0.2, seed=3, name="x")
    assert (len(train), len(val)) == (40, 10)
    assert len(set(train.tolist()) | set(val.tolist())) == 50
    again = split_indices(100, subset=50, val_fraction=0.2, seed=3, name="x")
    assert torch.equal(train, again[0]) and torch.equal(val, again[1])
    # data_seed only counts with val_size.
    other = split_indices(100, subset=50, val_fraction=0.2, seed=3, name="x", data_seed=9)
    assert torch.equal(train, other[0]) and torch.equal(val, other[1])


def test_split_indices_val_size_fixed_by_data_seed() -> None:
    def split(seed: int, data_seed: int, subset: int | None = 30):
        kwargs = {"val_fraction": 0.5, "name": "x", "val_size": 20, "data_seed": data_seed}
        return split_indices(100, subset=subset, seed=seed, **kwargs)

    (train0, val0), (train1, val1) = split(0, 7), split(1, 7)
    assert torch.equal(val0, val1) and len(val0) == 20  # val_fraction is ignored
    assert len(train0) == len(train1) == 30
    assert set(train0.tolist()) != set(train1.tolist())  # the seed chooses the training subset
    for train in (train0, train1):
        assert not set(train.tolist()) & set(val0.tolist())
    assert set(split(0, 8)[1].tolist()) != set(val0.tolist())
    train_all, val = split(0, 7, subset=None)  # all of the images outside validation
    assert torch.equal(val, val0)
    assert sorted(train_all.tolist() + val.tolist()) == list(range(100))


@pytest.mark.parametrize(
    ("subset", "val_size", "message"),
    [
        (30, 80, "val_size 80 plus subset 30 is more than the 100 training images of x: lower"),
        (None, 100, "val_size 100 leaves none of the 100 training images of x for training"),
        (101, 10, "subset 101 is larger than the 100 training images"),
    ],
)
def test_split_indices_val_size_errors(subset: int | None, val_size: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        split_indices(100, subset=subset, val_fraction=0.1, seed=0, name="x", val_size=val_size)
    assert "\n" not in str(info.value)


# --- CIFAR, on small files in CIFAR's pickle format -------------------------------------------


def write_cifar(root: Path, per_file: int = 20, hundred: bool = False) -> None:
    rng = np.random.default_rng(0)
    folder = root / ("cifar-100-python" if hundred else "cifar-10-batches-py")
    folder.mkdir(parents=True)
    names = ["train", "test"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    names += [] if hundred else ["test_batch"]
    key = "fine_labels" if hundred else "labels"
    classes = 100 if hundred else 10
    for name in names:
        entry = {
            "data": rng.integers(0, 256, (per_file, 3072), dtype=np.uint8),
            key: rng.integers(0, classes, per_file).tolist(),
        }
        with open(folder / name, "wb") as f:
            pickle.dump(entry, f)
    meta_name, meta_key = (
        ("meta", "fine_label_names") if hundred else ("batches.meta", "label_names")
    )
    with open(folder / meta_name, "wb") as f:
        pickle.dump({meta_key: [f"c{i}" for i in range(classes)]}, f)


def test_cifar10_fake_files(tmp_path: Path) -> None:
    write_cifar(tmp_path)
    data = load_data("cifar10", device=CPU, root=str(tmp_path), seed=0)
    info = data.info
    assert (info.num_classes, info.in_channels, info.image_size) == (10, 3, (32, 32))
    assert (info.train_size, info.val_size) == (90, 10)  # 5 files of 20, test_batch unused
    assert data.pad == 4
    x, y = first_batch(data, seed=0, batch_size=16)
    assert x.shape == (16, 3, 32, 32) and y.max() < 10
    assert data.steps_per_epoch(16) == 5
    x_val, _, _ = all_val(data, 4)
    assert x_val.shape == (10, 3, 32, 32)


def test_cifar100_fake_files(tmp_path: Path) -> None:
    write_cifar(tmp_path, per_file=50, hundred=True)
    data = load_data("cifar100", device=CPU, root=str(tmp_path), subset=40, val_fraction=0.25)
    assert data.info.num_classes == 100
    assert (data.info.train_size, data.info.val_size) == (30, 10)


@pytest.mark.parametrize(
    ("name", "hundred", "test_file"),
    [
        ("cifar10", False, "cifar-10-batches-py/test_batch"),
        ("cifar100", True, "cifar-100-python/test"),
    ],
)
def test_cifar_test_split(tmp_path: Path, name: str, hundred: bool, test_file: str) -> None:
    write_cifar(tmp_path, per_file=20, hundred=hundred)
    with open(tmp_path / test_file, "rb") as f:
        entry = pickle.load(f)
    data = load_data(name, device=CPU, root=str(tmp_path), test=True, image_size=16)
    assert data.info.test_size == 20
    assert data.test_labels.tolist() == entry["fine_labels" if hundred else "labels"]
    full = load_data(name, device=CPU, root=str(tmp_path), test=True)
    stored = torch.from_numpy(entry["data"]).reshape(20, 3, 32, 32)
    assert torch.equal(full.test_images, stored)  # in the file's order
    assert data.test_images.shape == (20, 3, 16, 16)  # resized like the other splits
    x, _, _ = all_val(data, 6, split="test")
    torch.testing.assert_close(x, normalised(data, data.test_images))
    (tmp_path / test_file).unlink()
    with pytest.raises(FileNotFoundError, match=Path(test_file).name):
        load_data(name, device=CPU, root=str(tmp_path), test=True)


def test_cifar_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match="not found: pass data_dir") as info:
        load_data("cifar10", device=CPU, root=str(missing))
    assert str(missing) in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(FileNotFoundError, match="data_batch_1") as info:
        load_data("cifar10", device=CPU, root=str(tmp_path))  # exists, but holds no CIFAR
    assert "\n" not in str(info.value)


# --- image folders ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def image_folder(make_image_folder) -> Path:
    return make_image_folder(train=6, val=3)


def test_image_folder(image_folder: Path) -> None:
    data = load_data(f"imagefolder:{image_folder}", device=CPU, image_size=16, num_workers=0)
    info = data.info
    assert (info.num_classes, info.in_channels, info.image_size) == (2, 3, (16, 16))
    assert (info.train_size, info.val_size) == (12, 6)
    assert data.steps_per_epoch(5) == 2
    batches = list(data.train_batches(5, torch.Generator().manual_seed(0)))
    assert len(batches) == 2
    x, y = batches[0]
    assert x.shape == (5, 3, 16, 16) and x.dtype == torch.float32 and y.dtype == torch.int64
    x_val, y_val, val = all_val(data, 4)
    assert [len(b[1]) for b in val] == [4, 2]
    assert sorted(y_val.tolist()) == [0, 0, 0, 1, 1, 1]


def test_image_folder_same_whatever_the_decoding_threads(image_folder: Path) -> None:
    name = f"imagefolder:{image_folder}"
    single = load_data(name, device=CPU, image_size=16, num_workers=0, subset=8)
    workers = load_data(name, device=CPU, image_size=16, num_workers=2, subset=8)
    assert single.info.train_size == 8
    x0, y0 = first_batch(single, seed=1, batch_size=4)
    x2, y2 = first_batch(workers, seed=1, batch_size=4)
    assert torch.equal(x0, x2) and torch.equal(y0, y2)
    x3, _ = first_batch(single, seed=2, batch_size=4)
    assert not torch.equal(x0, x3)


def test_image_folder_test_split_prefers_test_folder(make_image_folder, image_folder) -> None:
    with_test = make_image_folder(train=6, val=3, test=2)
    data = load_data(f"imagefolder:{with_test}", device=CPU, image_size=16, test=True)
    assert (data.info.val_size, data.info.test_size) == (6, 4)
    x, y, _ = all_val(data, 3, split="test")
    assert x.shape == (4, 3, 16, 16) and sorted(y.tolist()) == [0, 0, 1, 1]
    # Without test/, the test split is val/.
    data = load_data(f"imagefolder:{image_folder}", device=CPU, image_size=16, test=True)
    assert data.info.test_size == data.info.val_size == 6
    assert torch.equal(all_val(data, 4, split="test")[0], all_val(data, 4)[0])


def test_image_folder_val_size_from_train(make_image_folder, image_folder) -> None:
    name = f"imagefolder:{image_folder}"
    data = load_data(name, device=CPU, image_size=16, val_size=4, subset=5, test=True)
    info = data.info
    assert (info.train_size, info.val_size, info.test_size) == (5, 4, 6)  # test: val/
    other_seed = load_data(name, device=CPU, image_size=16, val_size=4, subset=5, seed=1)
    assert torch.equal(data.val_images, other_seed.val_images)
    train_images = {bytes(x.numpy()) for x in data.train_images}
    assert not train_images & {bytes(x.numpy()) for x in data.val_images}
    # ... and they come from train/ (whose images are all different from val/'s).
    all_train = load_data(name, device=CPU, image_size=16, val_size=1, val_fraction=0.0)
    folder_train = {bytes(x.numpy()) for x in (*all_train.train_images, *all_train.val_images)}
    assert {bytes(x.numpy()) for x in data.val_images} <= folder_train
    # With val_size, validation needs no val/ folder; the test split still needs test/ or val/.
    only_train = make_image_folder(train=4)
    data = load_data(f"imagefolder:{only_train}", device=CPU, image_size=16, val_size=2)
    assert (data.info.train_size, data.info.val_size) == (6, 2)
    with pytest.raises(FileNotFoundError, match="no val/ subfolder"):
        load_data(f"imagefolder:{only_train}", device=CPU, val_size=2, test=True)


def test_image_folder_needs_train_and_val(tmp_path: Path) -> None:
    (tmp_path / "train" / "a").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no val/ subfolder"):
        load_data(f"imagefolder:{tmp_path}", device=CPU)
    with pytest.raises(FileNotFoundError, match="not found"):
        load_data(f"imagefolder:{tmp_path / 'x'}", device=CPU)


# --- the registry and its errors -------------------------------------------------------------


def test_data_set_without_test_split(monkeypatch: pytest.MonkeyPatch) -> None:
    class NoTest(TrainingData):  # a third-party loader's data, written before test splits
        info = DataInfo("plain", 10, 3, (8, 8), train_size=4, val_size=2)

        def train_batches(self, batch_size, generator):
            yield from ()

        def val_batches(self, batch_size):
            yield from ()

    entry = data_module._Entry("plain", lambda request: NoTest(), flip=True)
    monkeypatch.setitem(data_module._REGISTRY, "plain", entry)
    assert load_data("plain", device=CPU).info.test_size == 0
    with pytest.raises(ConfigError, match="data set plain has no test split: set test: false"):
        NoTest().test_batches(8)
    with pytest.raises(ConfigError, match="has no test split") as info:
        load_data("plain", device=CPU, test=True)  # before any training, not after it
    assert "\n" not in str(info.value)


def test_list_datasets() -> None:
    assert list_datasets() == [
        "fashion-mnist", "synthetic", "cifar10", "cifar100", "imagefolder:<path>", "openclipart"
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "mnist"}, "unknown data set 'mnist': choose fashion-mnist, synthetic, cifar10"),
        ({"name": "cifar10:x"}, "unknown data set"),
        ({"name": "imagefolder:"}, "needs an argument"),
        ({"name": "fashion-mnist", "subset": 0}, "subset must be at least 1"),
        ({"name": "fashion-mnist", "val_fraction": 1.0}, r"val_fraction must be in \[0, 1\)"),
        ({"name": "fashion-mnist", "image_size": 0}, "image_size must be at least 1"),
        ({"name": "fashion-mnist", "val_size": 0}, "val_size must be at least 1"),
    ],
)
def test_configuration_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        load_data(device=CPU, **kwargs)
    assert "\n" not in str(info.value)


@needs_fashion_mnist
def test_subset_larger_than_data() -> None:
    with pytest.raises(ValueError, match="subset 70000 is larger than the 60000") as info:
        load_data("fashion-mnist", device=CPU, subset=70_000)
    assert "\n" not in str(info.value)


def test_fashion_mnist_missing_directory(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(FileNotFoundError, match=f"{missing} does not exist") as info:
        load_data("fashion-mnist", device=CPU, root=str(missing))
    assert "dataset-fashion-mnist" in str(info.value) and "make data" in str(info.value)


def test_synthetic_is_cifar_sized_and_learnable_shapes() -> None:
    data = load_data("synthetic", device=torch.device("cpu"), subset=500)
    assert data.info.image_size == (32, 32) and data.info.in_channels == 3
    assert data.info.train_size + data.info.val_size == 500
    x, y = next(iter(data.train_batches(64, torch.Generator().manual_seed(0))))
    assert x.shape == (64, 3, 32, 32) and int(y.max()) < 10


def test_synthetic_test_split_is_unseen_sample() -> None:
    plain = load_data("synthetic", device=CPU, subset=500)
    data = load_data("synthetic", device=CPU, subset=500, test=True)
    assert torch.equal(data.train_images, plain.train_images)  # training data unchanged
    assert data.info.test_size == SYNTHETIC_TEST_SIZE and data.test_images.shape[1:] == (3, 32, 32)
    seen = {bytes(image.numpy()) for image in torch.cat([data.train_images, data.val_images])}
    assert not any(bytes(image.numpy()) in seen for image in data.test_images)
    assert sorted(set(data.test_labels.tolist())) == list(range(10))


def test_synthetic_val_size_independent_of_subset() -> None:
    a = load_data("synthetic", device=CPU, subset=300, val_size=100, seed=0)
    b = load_data("synthetic", device=CPU, subset=500, val_size=100, seed=1)
    assert (a.info.train_size, a.info.val_size, b.info.train_size) == (300, 100, 500)
    assert torch.equal(a.val_images, b.val_images)
