"""LightningDataModules: the embedded digits, torchvision datasets, and any folder/zip of images."""

from lpc.data.base import ImageDataModule
from lpc.data.digits import DigitsDataModule
from lpc.data.folder import FolderDataModule
from lpc.data.mnist_t10k import MNISTTestSplitDataModule
from lpc.data.torchvision_sets import (
    CelebADataModule,
    CIFAR10DataModule,
    MNISTDataModule,
    SVHNDataModule,
)
from lpc.errors import DatasetNotFoundError

__all__ = [
    "CIFAR10DataModule",
    "CelebADataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "FolderDataModule",
    "ImageDataModule",
    "MNISTDataModule",
    "MNISTTestSplitDataModule",
    "SVHNDataModule",
]
