"""The official MNIST test split alone (10,000 digits), split again into training and test images:
MNIST-sized experiments on a machine that has only those two files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, TensorDataset

from lpc.data.base import ImageDataModule
from lpc.errors import DatasetNotFoundError

IMAGES, LABELS = "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"


def read_idx(path: Path, header: int) -> np.ndarray:
    """The payload of a gzipped IDX file (MNIST's format) after its ``header`` bytes."""
    with gzip.open(path, "rb") as f:
        return np.frombuffer(f.read(), dtype=np.uint8, offset=header)


class MNISTTestSplitDataModule(ImageDataModule):
    """MNIST's 10,000 test digits (``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz``,
    as torchvision downloads them, in ``root`` or ``root/MNIST/raw``), cut by a fixed permutation
    (``split_seed``) into ``10,000 - test_size`` training and ``test_size`` test images; ``val_size``
    of the training images (900 by default) are held out as the validation split."""

    name = "mnist_t10k"

    def __init__(self, test_size: int = 1000, image_size: int = 28, channels: int = 1, **kwargs):
        super().__init__(image_size=image_size, channels=channels, **kwargs)
        if not 0 < test_size < 10_000:
            raise ValueError(f"data.test_size must be in (0, 10000), got {test_size}")
        self.test_size = test_size

    def files(self) -> tuple[Path, Path]:
        for folder in (self.root, self.root / "MNIST" / "raw"):
            if (folder / IMAGES).exists() and (folder / LABELS).exists():
                return folder / IMAGES, folder / LABELS
        raise DatasetNotFoundError(
            f"mnist_t10k: {IMAGES} and {LABELS} not found in {self.root.resolve()} or its MNIST/raw/; download them "
            f"from a torchvision MNIST mirror on a machine with a network and point data.root at their folder "
            f"(e.g. data.root=../shared/data/mnist-t10k)"
        )

    def load_split(self, split: str) -> Dataset:
        images_file, labels_file = self.files()
        x = torch.from_numpy(read_idx(images_file, 16).copy()).view(-1, 1, 28, 28).float() / 255.0
        y = torch.from_numpy(read_idx(labels_file, 8).astype(np.int64))
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
        idx = order[: self.test_size] if split == "test" else order[self.test_size :]
        return TensorDataset(x[idx], y[idx])
