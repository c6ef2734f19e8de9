"""Image folders (train/, val/, test/ with one sub-folder per class), decoded once into the
machine's image cache and then trained from like the small data sets: on the device when the
images fit there, else streamed from host memory (see `_tensor_data.py`).

Augmentation is the small data sets' random crop with padding and flips, on the device; the
cached images are the files' shorter side scaled to `image_size` and centre-cropped.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import torch

from objectives._data import LoadRequest, Split, TrainingData, register_dataset
from objectives._errors import ConfigError
from objectives._image_cache import Fit, decoded_images
from objectives._tensor_data import requested_split, split_tensor_data

DEFAULT_FOLDER_SIZE = 224


def _image_folder(path: Path):
    import torchvision

    try:
        return torchvision.datasets.ImageFolder(str(path))
    except FileNotFoundError as e:  # its messages for empty folders span lines
        raise FileNotFoundError(
            f"no images found in the class subfolders of {path}: put them in {path}/<class>/"
        ) from e


def decoded_split(
    files: list[Path], labels: list[int], request: LoadRequest, size: int, fit: Fit, what: str
) -> tuple[np.ndarray, torch.Tensor, int]:
    """The files' images from the cache (memory-mapped uint8 NCHW), their labels and how many
    files were skipped as undecodable (only with `skip_bad_images`); a skipped file's image and
    label are left out."""
    decoded = decoded_images(
        files,
        size,
        fit=fit,
        skip_bad=request.skip_bad_images,
        threads=request.num_workers,
        what=what,
    )
    images, label_tensor = decoded.images, torch.tensor(labels, dtype=torch.int64)
    if decoded.skipped:
        path, reason = decoded.skipped[0]
        logging.getLogger(__name__).warning(
            "skipped %d %s that could not be decoded (the first: %s: %s)",
            len(decoded.skipped), what, path, reason,
        )  # fmt: skip
        keep = np.flatnonzero(decoded.usable)
        images, label_tensor = images[keep], label_tensor[torch.from_numpy(keep)]
    return images, label_tensor, len(decoded.skipped)


def rows(images: np.ndarray, labels: torch.Tensor, index: torch.Tensor | np.ndarray) -> Split:
    """Rows `index` of a memory-mapped split as tensors in memory."""
    index = np.asarray(index)
    return torch.from_numpy(np.ascontiguousarray(images[index])), labels[torch.from_numpy(index)]


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
    size = request.image_size or DEFAULT_FOLDER_SIZE
    train_folder = _image_folder(path / "train")

    def decoded(split: str):
        folder = train_folder if split == "train" else _image_folder(path / split)
        if folder.classes != train_folder.classes:
            raise ConfigError(
                f"the class folders of {path / 'train'} and {path / split} differ: "
                "give both the same class subfolders"
            )
        files = [Path(file) for file, _ in folder.samples]
        labels = [label for _, label in folder.samples]
        return decoded_split(files, labels, request, size, "crop", f"{split}/ images")

    train_images, train_labels, _ = decoded("train")
    # With val_fraction 0 and no val_size this only chooses the training subset.
    train_index, val_index = requested_split(request, len(train_images), val_fraction=0.0)
    train = rows(train_images, train_labels, train_index)
    if request.val_size is None:
        val_images, val_labels, _ = decoded("val")
        val = rows(val_images, val_labels, np.arange(len(val_images)))
    else:
        val = rows(train_images, train_labels, val_index)
    test = None
    if request.test:
        test_images, test_labels, _ = decoded("test" if (path / "test").is_dir() else "val")
        test = rows(test_images, test_labels, np.arange(len(test_images)))
    return split_tensor_data(request, train, val, test, len(train_folder.classes))
