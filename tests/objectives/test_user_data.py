"""`train.data` as the user's own code: an import path or a published entry point, returning
TrainingData or Datasets of (image tensor CHW, int label), cached or read every epoch."""

from __future__ import annotations

import importlib
import sys

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner
from tiny import TINY_TRAIN, tiny_spec

from objectives import (
    ConfigError,
    TrainConfig,
    check_data,
    describe_dataset,
    list_datasets,
    load_data,
    train,
)
from objectives._data import TensorData, crop_flip
from objectives._dataset_cache import cached_split, sample_indices
from objectives._dataset_data import DatasetData
from searcher.cli import cli

CPU = torch.device("cpu")
MODULE = "dikd_user_data"

USER_MODULE = '''
import numpy as np
import torch
from torch.utils.data import Dataset

from objectives import load_data

READS = []  # (tag, index) of every __getitem__ call
SHIFT = 0  # added to every pixel: a changed data set
KEYWORDS = []  # the keywords each callable received


class Images(Dataset):
    """n images of `shape`, labels 0..3 in turn; `kind` says what an item's image is."""

    def __init__(self, n, shape=(3, 8, 8), kind="uint8", seed=0, tag="train"):
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randint(0, 256, (n, *shape), generator=g, dtype=torch.uint8)
        self.y = torch.arange(n) % 4
        self.kind, self.tag = kind, tag

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        READS.append((self.tag, i))
        x = self.x[i] + SHIFT
        label = int(self.y[i])
        if self.kind == "float01":
            return x.float() / 255, label
        if self.kind == "normalised":
            return (x.float() - 127.5) / 50, label
        if self.kind == "random":  # a random transform: a shift by 0..7 columns
            return torch.roll(x, int(torch.randint(0, 8, ())), dims=2), label
        return x, label


def uint8_pair():
    return Images(60), Images(20, seed=1, tag="test")


def float01_pair(root=None, data_seed=0):
    KEYWORDS.append({"root": root, "data_seed": data_seed})
    return Images(60, kind="float01"), Images(20, seed=1, kind="float01", tag="test")


def normalised_pair(**keywords):
    KEYWORDS.append(keywords)
    return Images(60, kind="normalised"), Images(20, seed=1, kind="normalised", tag="test")


def gray_wide():
    shape = (1, 6, 10)
    return Images(60, shape, "normalised"), Images(20, shape, "normalised", 1, "test")


def random_pair():
    return Images(60, kind="random"), Images(20, seed=1, tag="test")


def with_val():
    return Images(60), Images(12, seed=2, tag="val"), Images(20, seed=1, tag="test")


def as_mapping():
    return {"train": Images(60), "test": Images(20, seed=1, tag="test")}


def float_test():
    return Images(60), Images(20, seed=1, kind="normalised", tag="test")


def random_test():
    return Images(60), Images(20, seed=1, kind="random", tag="test")


def unseen_label():
    return Images(60), [(torch.zeros(3, 8, 8, dtype=torch.uint8), 7)]


def no_flips():
    train, test = Images(60), Images(20, seed=1, tag="test")
    train.dikd_flip = False
    return train, test


def train_only():
    return {"train": Images(60)}


def keyed():
    train, test = Images(60), Images(20, seed=1, tag="test")
    train.dikd_cache_key, test.dikd_cache_key = "v1", "v1"
    return train, test


def fast(request):
    KEYWORDS.append({"request": request})
    return load_data("synthetic", device=request.device, subset=100, seed=request.seed)


def needs_count(count):
    return Images(count), Images(count)


def wrong_type():
    return 42


def tensors():
    return torch.zeros(4, 3, 8, 8), torch.zeros(4, dtype=torch.int64)


def arrays():
    return [(np.zeros((3, 8, 8)), 0)] * 4, [(np.zeros((3, 8, 8)), 0)] * 4


def flat_images():
    return [(torch.zeros(8, 8), 0)] * 4, [(torch.zeros(8, 8), 0)] * 4


def float_labels():
    return [(torch.zeros(3, 8, 8), 0.5)] * 4, [(torch.zeros(3, 8, 8), 0)] * 4


def triples():
    return [(torch.zeros(3, 8, 8), 0, "x")] * 4, [(torch.zeros(3, 8, 8), 0)] * 4


def sizes(shapes):
    return [(torch.zeros(s, dtype=torch.uint8), i % 2) for i, s in enumerate(shapes)]


def differing():
    return sizes([(3, 8, 8)] * 5 + [(3, 9, 8)] * 5), sizes([(3, 8, 8)] * 4)


def differing_test():
    return sizes([(3, 8, 8)] * 8), sizes([(3, 6, 6)] * 4)


def channels():
    return sizes([(3, 8, 8)] * 5 + [(1, 8, 8)] * 5), sizes([(3, 8, 8)] * 4)


def raises():
    raise RuntimeError("no files in /nowhere")


class Broken(Images):
    dikd_cache_key = "v1"

    def __getitem__(self, i):
        if i == 5:
            raise ValueError("broken file 5.png")
        return super().__getitem__(i)


def broken():
    return Broken(10), Broken(10)


NOT_CALLABLE = 3
'''


@pytest.fixture(autouse=True)
def user_module(tmp_path_factory, monkeypatch):
    """The user's data module on sys.path, its package allowed, a fresh cache, fresh state."""
    folder = tmp_path_factory.getbasetemp() / "user-code"
    if not (folder / f"{MODULE}.py").exists():
        folder.mkdir(exist_ok=True)
        (folder / f"{MODULE}.py").write_text(USER_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("DIKD_ALLOW_IMPORTS", MODULE)
    monkeypatch.setenv("DIKD_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    module = importlib.import_module(MODULE)
    module.READS.clear()
    module.KEYWORDS.clear()
    monkeypatch.setattr(module, "SHIFT", 0)
    return module


def load(name: str, **kwargs):
    return load_data(f"{MODULE}:{name}", device=CPU, **{"num_workers": 0, **kwargs})


def scored_images(data, batch_size: int = 7) -> torch.Tensor:
    return torch.cat([x for x, _ in data.test_batches(batch_size)])


def items(module, name: str, split: int) -> torch.Tensor:
    """The images the user's callable's split yields, read directly."""
    dataset = getattr(module, name)()[split]
    return torch.stack([dataset[i][0] for i in range(len(dataset))])


def one_line_error(name: str, match: str, **kwargs) -> str:
    with pytest.raises(ConfigError, match=match) as info:
        load(name, **kwargs)
    message = str(info.value)
    assert "\n" not in message and "train.data" in message, message
    return message


# --- the forms a callable returns --------------------------------------------------------------


def test_uint8_datasets_cached_as_uint8_and_normalised(user_module) -> None:
    data = load("uint8_pair", test=True)
    assert isinstance(data, TensorData) and data.train_images.dtype == torch.uint8
    info = data.info
    assert (info.num_classes, info.in_channels, info.image_size) == (4, 3, (8, 8))
    assert (info.train_size, info.val_size, info.test_size) == (54, 6, 20)
    expected = (items(user_module, "uint8_pair", 1).float() - data.mean.view(1, -1, 1, 1)) / (
        data.std.view(1, -1, 1, 1)
    )
    assert torch.allclose(scored_images(data), expected, atol=1e-5)
    assert not data.mean.eq(0).all()  # normalised by dikd


def test_float_01_datasets_stored_as_uint8(user_module) -> None:
    data = load("float01_pair", test=True, data_seed=3, root="/data/x")
    assert data.train_images.dtype == torch.uint8  # k/255 floats are 8-bit
    assert torch.equal(data.test_images, items(user_module, "uint8_pair", 1))
    # The documented keywords it names, never the training seed.
    assert user_module.KEYWORDS[0] == {"root": "/data/x", "data_seed": 3}


def test_normalised_float_datasets_stored_as_float_not_renormalised(user_module) -> None:
    data = load("normalised_pair", test=True, augment=False)
    assert data.train_images.dtype == torch.float32
    assert torch.equal(scored_images(data), items(user_module, "normalised_pair", 1))
    # Training batches hold the items as they are, too (no augmentation asked for).
    train_items = items(user_module, "normalised_pair", 0)
    x, _ = next(iter(data.train_batches(54, torch.Generator().manual_seed(0))))
    for image in x:
        assert (train_items == image).flatten(1).all(1).any()
    # A **kwargs callable receives every documented keyword, not the training seed.
    assert set(user_module.KEYWORDS[0]) == {"root", "data_seed", "image_size", "download"}


def test_one_channel_non_square_float_images_train_with_crops_and_flips(user_module) -> None:
    data = load("gray_wide", test=True)
    assert data.info.in_channels == 1 and data.info.image_size == (6, 10)
    assert data.train_images.dtype == torch.float32
    x, y = next(iter(data.train_batches(16, torch.Generator().manual_seed(0))))
    assert x.shape == (16, 1, 6, 10) and y.shape == (16,)
    plain = load("gray_wide", augment=False)
    x_plain, _ = next(iter(plain.train_batches(16, torch.Generator().manual_seed(0))))
    assert not torch.equal(x, x_plain)  # dikd's crops and flips are added
    assert scored_images(data).shape == (20, 1, 6, 10)
    assert data.flip and not load("no_flips").flip  # crops only, when the Dataset says so
    resized = load("gray_wide", image_size=5)
    assert resized.info.image_size == (5, 5) and resized.train_images.dtype == torch.float32


def test_the_training_split_decides_units_and_how_data_is_read(user_module) -> None:
    data, plain = load("float_test", test=True), load("float_test")
    assert data.train_images.dtype == torch.uint8  # the training split is 8-bit
    assert torch.equal(data.train_images, plain.train_images)  # with or without the test split
    # Float test images are brought to the training split's units and normalised alike.
    test = items(user_module, "float_test", 1) * 255
    expected = (test - data.mean.view(1, -1, 1, 1)) / data.std.view(1, -1, 1, 1)
    assert torch.allclose(scored_images(data), expected, atol=1e-4)
    # A test split whose items change makes every split read every epoch, whether or not
    # this run scores it: training is the same with and without the test split.
    assert isinstance(load("random_test", test=True), DatasetData)
    assert isinstance(load("random_test"), DatasetData)


def test_train_val_test_and_a_mapping(user_module) -> None:
    data = load("with_val", test=True)
    assert (data.info.train_size, data.info.val_size, data.info.test_size) == (60, 12, 20)
    val = torch.cat([x for x, _ in data.val_batches(5)])
    assert torch.equal(data.val_images, items(user_module, "with_val", 1))
    assert val.shape == (12, 3, 8, 8)
    # subset still chooses the training images; val_size carves from train as for folders.
    assert load("with_val", subset=30).info.train_size == 30
    assert load("with_val", val_size=10).info.val_size == 10
    mapping = load("as_mapping", val_fraction=0.2)
    assert (mapping.info.train_size, mapping.info.val_size, mapping.info.test_size) == (48, 12, 0)


def test_validation_carved_by_seed_and_data_seed(user_module) -> None:
    a, b = load("uint8_pair", seed=1), load("uint8_pair", seed=2)
    assert not torch.equal(a.val_images, b.val_images)  # without val_size: seed chooses
    c, d = load("uint8_pair", val_size=8, seed=1), load("uint8_pair", val_size=8, seed=2)
    assert torch.equal(c.val_images, d.val_images)  # with it: data_seed alone
    assert not torch.equal(c.val_images, load("uint8_pair", val_size=8, data_seed=5).val_images)


def test_training_data_fast_path(user_module) -> None:
    data = load("fast", seed=4)
    assert data.info.name == "synthetic" and data.info.train_size == 90
    assert user_module.KEYWORDS[0]["request"].seed == 4  # the LoadRequest, as registered loaders


# --- the cache -----------------------------------------------------------------------------------


def test_cache_reused_by_a_second_load_then_rebuilt_when_the_data_changes(user_module) -> None:
    reads = user_module.READS
    first = load("uint8_pair", test=True)
    sample = {"train": set(sample_indices(60)), "test": set(sample_indices(20))}
    sampled = 2 * (len(sample["train"]) + len(sample["test"]))  # read twice: fixed?
    assert len(reads) == sampled + 60 + 20  # then every item once, into the cache
    reads.clear()
    again = load("uint8_pair", test=True)
    assert len(reads) == sampled and all(i in sample[tag] for tag, i in reads)
    assert torch.equal(first.train_images, again.train_images)
    user_module.SHIFT = 1  # the data changed: a new cache
    reads.clear()
    changed = load("uint8_pair", test=True)
    assert len(reads) == sampled + 80
    assert torch.equal(changed.test_images, first.test_images + 1)


def test_own_cache_key_and_declared_fixed_read_nothing_the_second_time(user_module) -> None:
    reads = user_module.READS
    first = load("keyed", test=True, data_fixed=True)
    assert len(reads) == 80  # the one pass; nothing sampled
    reads.clear()
    again = load("keyed", test=True, data_fixed=True)
    assert reads == []
    assert torch.equal(first.train_images, again.train_images)


def test_cache_keyed_by_the_keywords_passed(user_module) -> None:
    reads = user_module.READS
    load("float01_pair", data_seed=1)
    reads.clear()
    load("float01_pair", data_seed=2)  # passed to the callable: another key
    assert len(reads) > 2 * 2 * 16


# --- random transforms: read every epoch -------------------------------------------------------


def test_random_transform_dataset_is_read_every_epoch(user_module) -> None:
    data = load("random_pair", test=True, augment=False)
    assert isinstance(data, DatasetData)
    assert data.eight_bit and data.info.image_size == (8, 8)  # random shifts of uint8 images
    reads = user_module.READS
    reads.clear()
    epochs = [list(data.train_batches(9, torch.Generator().manual_seed(0))) for _ in range(2)]
    assert len(reads) == 2 * 54  # every training item, every epoch
    (x1, y1), (x2, y2) = epochs[0][0], epochs[1][0]
    assert torch.equal(y1, y2) and not torch.equal(x1, x2)  # same order, items changed
    # The test items as read, normalised with the training Dataset's statistics.
    stored = items(user_module, "uint8_pair", 1).float()
    expected = (stored - data.mean.view(1, -1, 1, 1)) / data.std.view(1, -1, 1, 1)
    assert torch.allclose(scored_images(data), expected, atol=1e-5)
    assert load("random_pair", data_fixed=True).__class__ is TensorData  # the user's word


def test_declared_not_fixed_is_read_every_epoch_normalised_with_dikds_augmentation(
    user_module,
) -> None:
    data = load("uint8_pair", data_fixed=False)
    assert isinstance(data, DatasetData) and data.eight_bit
    x, _ = next(iter(data.train_batches(54, torch.Generator().manual_seed(0))))
    cached = load("uint8_pair")
    x_cached, _ = next(iter(cached.train_batches(54, torch.Generator().manual_seed(0))))
    # The same images, crops and flips as the cached data, normalised alike (statistics of
    # the whole training Dataset there, of the training subset here: close, not equal).
    assert x.shape == x_cached.shape
    assert torch.allclose(x * data.std.view(1, -1, 1, 1), x_cached * cached.std.view(1, -1, 1, 1)
                          + (cached.mean - data.mean).view(1, -1, 1, 1), atol=1e-3)  # fmt: skip


def test_read_every_epoch_by_worker_processes(user_module) -> None:
    data = load_data(f"{MODULE}:random_pair", device=CPU, num_workers=1, test=True)
    assert isinstance(data, DatasetData)
    for _ in range(2):  # the worker persists between epochs; the order is set each time
        batches = list(data.train_batches(9, torch.Generator().manual_seed(1)))
        assert len(batches) == 6 and all(x.shape == (9, 3, 8, 8) for x, _ in batches)
    assert sum(len(y) for _, y in data.test_batches(8)) == 20


# --- entry points ------------------------------------------------------------------------------


def test_entry_point_names_a_data_set(tmp_path, monkeypatch, user_module) -> None:
    info = tmp_path / "acme_data-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-data\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[dikd.datasets]\nacme-tiny = {MODULE}:uint8_pair\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert list_datasets()[-1] == "acme-tiny"
    assert f"{MODULE}:uint8_pair" in describe_dataset("acme-tiny")
    assert TrainConfig(data="acme-tiny").data == "acme-tiny"
    listed = CliRunner().invoke(cli, ["datasets"]).output.splitlines()
    assert f"acme-tiny: published by an installed package: {MODULE}:uint8_pair" in listed[-2]
    assert "unless augment: false" in listed[-1]
    data = load_data("acme-tiny", device=CPU, num_workers=0)
    assert data.info.train_size == 54
    monkeypatch.delenv("DIKD_ALLOW_IMPORTS")  # entry points obey the allow-list too
    with pytest.raises(ConfigError, match=f"package '{MODULE}'.*DIKD_ALLOW_IMPORTS"):
        load_data("acme-tiny", device=CPU, num_workers=0)


# --- bad input: one line naming train.data and the fix -----------------------------------------


def test_config_checks_the_form_only() -> None:
    assert TrainConfig(data="not_installed_pkg.mod:make").data == "not_installed_pkg.mod:make"
    assert TrainConfig(data="imagefolder:data").data == "imagefolder:data"  # registered key wins
    with pytest.raises(ConfigError, match="unknown data set 'no-such'.*import path"):
        TrainConfig.from_dict({"data": "no-such"})
    with pytest.raises(ConfigError, match="field 'data_fixed': must be true, false or auto"):
        TrainConfig.from_dict({"data_fixed": "maybe"})


@pytest.mark.parametrize(
    ("name", "match"),
    [
        ("nothing_here", "has no attribute 'nothing_here'"),
        ("NOT_CALLABLE", "not a function or class"),
        ("needs_count", "requires the argument 'count'; a data callable takes no required"),
        ("wrong_type", "returned a int; return TrainingData, a \\(train, test\\)"),
        ("tensors", "returned a tensor as the training Dataset; .*TensorDataset"),
        ("arrays", "item 0 of the training Dataset is a numpy.ndarray"),
        ("flat_images", "of shape \\(8, 8\\); each item must be \\(image tensor C x H x W"),
        ("float_labels", "the label of item 0 of the training Dataset is a float"),
        ("triples", "item 0 of the training Dataset is a tuple .* each item must be"),
        ("differing", "item 5 of the training Dataset is 3x9x8 .* but item 0 is 3x8x8; set "
                      "image_size: N"),
        ("channels", "item 5 .* is 1x8x8 .* make the Dataset return one number of channels"),
        ("raises", "raised RuntimeError: no files in /nowhere"),
    ],
)  # fmt: skip
def test_refusals(name: str, match: str) -> None:
    one_line_error(name, match)


def test_refusals_of_splits() -> None:
    one_line_error("differing_test", "test Dataset holds 3x6x6 .* set image_size", test=True)
    one_line_error("train_only", "returned no test split, and test: true", test=True)
    one_line_error("unseen_label", "test Dataset has label 7, and the training .* stop at 3; "
                   "give the training Dataset a `classes`", test=True)  # fmt: skip
    assert load("differing_test", test=True, image_size=8).info.test_size == 4


def test_refused_imports(monkeypatch) -> None:
    monkeypatch.setenv("DIKD_ALLOW_IMPORTS", "no_such_module_here")
    with pytest.raises(ConfigError, match="does not import") as info:
        load_data("no_such_module_here:make", device=CPU)
    assert "train.data" in str(info.value) and "\n" not in str(info.value)


def test_package_not_allowed(monkeypatch) -> None:
    monkeypatch.delenv("DIKD_ALLOW_IMPORTS")
    sys.modules.pop(MODULE, None)
    message = one_line_error("uint8_pair", f"package '{MODULE}', which this process does not")
    assert f"DIKD_ALLOW_IMPORTS={MODULE}" in message
    assert MODULE not in sys.modules  # refused before importing


def test_cli_refuses_with_exit_2_and_stores_nothing(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"data": f"{MODULE}:wrong_type", "num_workers": 0}))
    run = CliRunner().invoke(cli, ["train", "--config", str(config)])
    assert run.exit_code == 2
    assert run.output.splitlines()[-1].startswith("error: field 'train.data': ")
    url = f"sqlite:///{tmp_path / 'study.db'}"
    train = {**TINY_TRAIN, "data": f"{MODULE}:differing", "num_workers": 0, "image_size": None}
    spec = tiny_spec("bad", storage=url, train=train)
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(spec))
    run = CliRunner().invoke(cli, ["study", "run", str(tmp_path / "spec.yaml")])
    assert run.exit_code == 2 and "item 5 of the training Dataset" in run.output
    assert not (tmp_path / "study.db").exists()


# --- end to end --------------------------------------------------------------------------------


def tiny_config(data: str, **changes) -> TrainConfig:
    return TrainConfig(
        model="resnet20", data=f"{MODULE}:{data}", epochs=2, batch_size=18, num_workers=0,
        device="cpu", test=True, **changes,
    )  # fmt: skip


@pytest.mark.parametrize("data", ["uint8_pair", "random_pair"])
def test_train_end_to_end(data: str) -> None:
    config = tiny_config(data, schedule={"policy": "deterministic", "frequency": 0.5, "scale": 2})
    check_data(config)
    result = train(config)
    assert result.total_steps == result.planned_steps == 2 * 3
    assert result.reduced_steps == 3
    assert result.test_size == 20 and 0.0 <= result.test_accuracy <= 1.0
    assert result.val_size == 6 and len(result.history) == 2


def test_cached_images_match_the_items(user_module) -> None:
    data = load("uint8_pair", augment=False, val_fraction=0.5)
    train_items = items(user_module, "uint8_pair", 0)
    everything = torch.cat([data.train_images, data.val_images])
    assert sorted(map(bytes, everything.numpy())) == sorted(map(bytes, train_items.numpy()))
    labels = torch.cat([data.train_labels, data.val_labels])
    assert sorted(labels.tolist()) == sorted(int(user_module.Images(60).y[i]) for i in range(60))


def test_crop_flip_one_channel_non_square_float() -> None:
    x = torch.randn(2, 1, 5, 9)
    centre = torch.tensor([[2, 2], [2, 2]])
    assert torch.equal(crop_flip(x, 2, centre, None), x)  # shift (pad, pad): unchanged
    flipped = crop_flip(x, 2, centre, torch.tensor([True, False]))
    assert torch.equal(flipped[0], x[0].flip(-1)) and torch.equal(flipped[1], x[1])
    shifted = crop_flip(x, 2, torch.tensor([[0, 0], [4, 4]]), None)
    assert torch.equal(shifted[0, :, 2:, 2:], x[0, :, :3, :7])  # zero-padded top left
    assert shifted[0, :, :2].abs().sum() == 0
    assert torch.equal(shifted[1, :, :3, :7], x[1, :, 2:, 2:])


def test_a_split_turning_float_midway_is_stored_as_float(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("DIKD_CACHE_DIR", str(tmp_path))
    eight = torch.randint(0, 256, (3, 2, 4, 6), dtype=torch.uint8)
    odd = torch.full((2, 4, 6), 0.3)
    items = [(eight[0], 0), (eight[1] / 255, 1), (eight[2], 0), (odd, 1)]
    split = cached_split(items, "k", store_pixels=True, image_size=None, num_workers=0, what="x")
    assert not split.eight_bit and split.images.dtype == np.float32
    assert np.allclose(split.images[:3], eight.numpy() / 255) and np.allclose(split.images[3], 0.3)
    assert split.labels.tolist() == [0, 1, 0, 1] and split.shape == (2, 4, 6)


def test_an_error_in_a_reading_worker_is_one_line() -> None:
    message = one_line_error("broken", "reading the training Dataset raised", data_fixed=True,
                             num_workers=1)  # fmt: skip
    assert "broken file 5.png" in message
