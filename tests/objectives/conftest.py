"""Fixtures shared by the tests of objectives/."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

MakeImageFolder = Callable[..., Path]


@pytest.fixture(scope="session")
def make_image_folder(tmp_path_factory: pytest.TempPathFactory) -> MakeImageFolder:
    """`make(train=6, val=3, test=2)`: an ImageFolder tree of random 20x24 PNGs with that many
    images per class (cat, dog) in each named split; a split given 0 is left out."""
    from PIL import Image

    def make(**counts: int) -> Path:
        root = tmp_path_factory.mktemp("folder")
        rng = np.random.default_rng(0)
        for split, count in counts.items():
            for label in ("cat", "dog") if count else ():
                folder = root / split / label
                folder.mkdir(parents=True)
                for i in range(count):
                    pixels = rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)
                    Image.fromarray(pixels).save(folder / f"{i}.png")
        return root

    return make
