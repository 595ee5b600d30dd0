"""Standard datasets through torchvision: downloaded when online, a clear error when not."""

from __future__ import annotations

from torch.utils.data import Dataset
from torchvision import datasets, transforms

from lpc.data.base import DATA_DIR_ENV, ImageDataModule
from lpc.data.folder import ImageFolderSplits, is_image_folder
from lpc.errors import DatasetNotFoundError


class TorchvisionDataModule(ImageDataModule):
    """Base for torchvision datasets: tries the files under ``root`` first, then downloads them
    (if ``download``), and otherwise stops with the folder it looked in and how to supply it.
    ``root`` may also be a directory or zip of images in train/ and test/ folders (as for
    ``data=folder``), e.g. a JPEG export of the dataset; it is then read as such."""

    files_hint = ""  # where torchvision expects the files below root, for the error message

    def __init__(self, download: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.download = download
        self._built: dict[str, Dataset] = {}

    def build(self, split: str, download: bool) -> Dataset:
        raise NotImplementedError

    def prepare_data(self) -> None:
        """Find (or download) both splits; what is built here is kept for ``setup``."""
        for split in ("train", "test"):
            self.load_split(split)

    def load_split(self, split: str) -> Dataset:
        if split not in self._built:
            self._built[split] = self.find_or_download(split)
        return self._built[split]

    def find_or_download(self, split: str) -> Dataset:
        if is_image_folder(self.root):
            return ImageFolderSplits(self.root).dataset(split)
        try:
            return self.build(split, download=False)
        except (RuntimeError, FileNotFoundError, OSError) as missing:
            if not self.download:
                raise self.not_found(split, missing) from missing
        try:
            return self.build(split, download=True)
        except Exception as failed:  # noqa: BLE001 - any download failure gets the same advice
            raise self.not_found(split, failed) from failed

    def not_found(self, split: str, cause: BaseException) -> DatasetNotFoundError:
        how = "download=true failed" if self.download else "data.download=false"
        return DatasetNotFoundError(
            f"{self.name} ({split} split) not found under {self.root.resolve()} ({how}: {cause}). "
            f"Either run once with a network (data.download=true), or put the files at "
            f"{self.root / self.files_hint} yourself and point data.root (or ${DATA_DIR_ENV}) at "
            f"{self.root}; or use data=folder with a directory/zip of train/ and test/ images."
        )


class MNISTDataModule(TorchvisionDataModule):
    """MNIST (60,000 train / 10,000 test, 28x28 grayscale)."""

    name = "mnist"
    files_hint = "MNIST/raw/ (train-images-idx3-ubyte.gz, ... as torchvision downloads them)"

    def build(self, split: str, download: bool) -> Dataset:
        return datasets.MNIST(str(self.root), train=split == "train", download=download)


class CIFAR10DataModule(TorchvisionDataModule):
    """CIFAR-10 (50,000 train / 10,000 test, 32x32 RGB)."""

    name = "cifar10"
    files_hint = "cifar-10-batches-py/ (or cifar-10-python.tar.gz)"

    def build(self, split: str, download: bool) -> Dataset:
        return datasets.CIFAR10(str(self.root), train=split == "train", download=download)


class SVHNDataModule(TorchvisionDataModule):
    """SVHN cropped digits (73,257 train / 26,032 test, 32x32 RGB)."""

    name = "svhn"
    files_hint = "train_32x32.mat and test_32x32.mat"

    def build(self, split: str, download: bool) -> Dataset:
        return datasets.SVHN(str(self.root), split=split, download=download)


class CelebADataModule(TorchvisionDataModule):
    """CelebA aligned faces, centre-cropped to ``crop`` pixels then resized (the usual 64x64 setup)."""

    name = "celeba"
    files_hint = "celeba/ (img_align_celeba/, list_eval_partition.txt, ... as torchvision expects)"

    def __init__(self, image_size: int = 64, channels: int = 3, crop: int = 140, **kwargs):
        super().__init__(image_size=image_size, channels=channels, **kwargs)
        self.crop = crop

    def build(self, split: str, download: bool) -> Dataset:
        return datasets.CelebA(
            str(self.root), split=split, target_type="identity", transform=transforms.CenterCrop(self.crop), download=download
        )
