"""The embedded default: scikit-learn's 8x8 handwritten digits (1,797 images, no download)."""

from __future__ import annotations

import torch
from torch.utils.data import Dataset, TensorDataset

from lpc.data.base import ImageDataModule


class DigitsDataModule(ImageDataModule):
    """``sklearn.datasets.load_digits``: 8x8 grayscale digits with 17 grey levels, scaled to [0, 1]
    (and, like every data module's pixels, rounded to the 8-bit levels k/255).

    They ship inside scikit-learn's wheel, so this works with no network and no ``root``. A fixed
    permutation (``split_seed``) holds out ``test_size`` images as the test split; ``val_size`` of
    the other 1,500 are the validation split (150 by default), the rest are trained on. Set
    ``image_size`` to 28/32 to upsample for the convolutional decoders.
    """

    name = "digits"

    def __init__(self, test_size: int = 297, image_size: int = 8, channels: int = 1, **kwargs):
        super().__init__(image_size=image_size, channels=channels, **kwargs)
        self.test_size = test_size

    def load_split(self, split: str) -> Dataset:
        from sklearn.datasets import load_digits

        images, labels = load_digits(return_X_y=True)
        x = torch.as_tensor(images, dtype=torch.float32).view(-1, 1, 8, 8) / 16.0
        y = torch.as_tensor(labels)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(self.split_seed))
        idx = order[: self.test_size] if split == "test" else order[self.test_size :]
        return TensorDataset(x[idx], y[idx])
