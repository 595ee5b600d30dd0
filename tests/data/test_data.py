"""Data modules: the embedded digits, folders and zips of images, missing datasets."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import SHARED_CIFAR, SHARED_MNIST_T10K
from PIL import Image

from lpc.data import (
    CelebADataModule,
    CIFAR10DataModule,
    DatasetNotFoundError,
    DigitsDataModule,
    FolderDataModule,
    MNISTDataModule,
    MNISTTestSplitDataModule,
    SVHNDataModule,
)
from lpc.errors import ConfigError


def write_images(root: Path, layout: dict[str, int], size: int = 12) -> None:
    """PNG images: layout maps 'train/cat' -> count."""
    rng = np.random.default_rng(0)
    for folder, count in layout.items():
        (root / folder).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(root / folder / f"{i}.png")


def zip_folder(src: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(src.rglob("*")):
            zf.write(p, prefix + p.relative_to(src).as_posix())
    return dest


def write_idx(folder: Path, count: int) -> Path:
    """MNIST's two gzipped IDX files of ``count`` distinct random 28x28 images."""
    import gzip

    folder.mkdir(parents=True, exist_ok=True)
    images = np.random.default_rng(0).integers(0, 256, (count, 28, 28), dtype=np.uint8)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f:
        f.write(bytes(16) + images.tobytes())
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f:
        f.write(bytes(8) + (np.arange(count) % 10).astype(np.uint8).tobytes())
    return folder


def every_data_module(kind: str, root: Path, **kwargs):
    """A data module of each kind lpc has, on data made here (a train/ and test/ folder of distinct
    images for the torchvision sets and folders, IDX files for mnist_t10k)."""
    if kind == "digits":
        return DigitsDataModule(**kwargs)
    if kind == "mnist_t10k":
        return MNISTTestSplitDataModule(root=write_idx(root / "t10k", 10_000), **kwargs)
    write_images(root / "src", {"train/a": 24, "train/b": 16, "test/a": 5, "test/b": 5}, size=8)
    modules = {"folder": FolderDataModule, "mnist": MNISTDataModule, "cifar10": CIFAR10DataModule,
               "svhn": SVHNDataModule, "celeba": CelebADataModule}
    extra = {"download": False} if kind != "folder" else {}
    return modules[kind](root=root / "src", image_size=8, channels=1, **extra, **kwargs)


def image_keys(dataset) -> list[bytes]:
    return [dataset[i][0].numpy().tobytes() for i in range(len(dataset))]


@pytest.mark.parametrize("kind", ["digits", "mnist_t10k", "folder", "mnist", "cifar10", "svhn", "celeba"])
def test_train_validation_and_test_splits_are_disjoint_for_every_data_module(tmp_path, kind):
    dm = every_data_module(kind, tmp_path, batch_size=4)
    dm.setup()
    train, val, test = (image_keys(dm.split(name)) for name in ("train", "val", "test"))
    assert len(set(train)) == len(train)  # distinct images, so a shared one would be a shared image
    assert not set(train) & set(val) and not set(train) & set(test) and not set(val) & set(test)
    assert len(val) == round(0.1 * (len(train) + len(val)))  # the default val_size: a tenth of the training split
    # the loaders read the split of their name
    assert next(iter(dm.val_dataloader()))[0].numpy().tobytes()[:64] == val[0][:64]
    assert next(iter(dm.test_dataloader()))[0].numpy().tobytes()[:64] == test[0][:64]
    # the split is fixed by split_seed, not by the run's seed; a count works as well as a fraction
    reseeded = every_data_module(kind, tmp_path, seed=7, batch_size=4)
    reseeded.setup()
    assert image_keys(reseeded.val_set) == val
    counted = every_data_module(kind, tmp_path, val_size=3, split_seed=1, batch_size=4)
    counted.setup()
    assert len(counted.val_set) == 3 and image_keys(counted.val_set) != val[:3]


def test_val_size_is_a_fraction_or_a_count_that_leaves_images_to_train_on():
    for bad in (0, -1, 1.5, "a tenth"):
        with pytest.raises(ConfigError, match="data.val_size must be a fraction"):
            DigitsDataModule(val_size=bad)
    with pytest.raises(ConfigError, match="leaving none to train on"):
        DigitsDataModule(val_size=1500).setup()


def test_digits_is_embedded_split_and_scaled():
    dm = DigitsDataModule(batch_size=32)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (1350, 150, 297)
    x, y = dm.train_set[0]
    assert x.shape == (1, 8, 8) and 0.0 <= x.min() and x.max() <= 1.0 and x.max() > 0.5
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape == (32, 1, 8, 8)


def test_digits_upsampled_symmetric_and_binarised():
    up = DigitsDataModule(image_size=32, channels=3, pixel_range=[-1.0, 1.0])
    up.setup()
    x, _ = up.test_set[3]
    assert x.shape == (3, 32, 32) and x.min() >= -1.0 and x.max() <= 1.0 and x.min() < -0.9
    fixed = DigitsDataModule(binarize="fixed")
    fixed.setup()
    a, b = fixed.train_set[5][0], fixed.train_set[5][0]
    assert set(a.unique().tolist()) <= {0.0, 1.0} and torch.equal(a, b)
    dynamic = DigitsDataModule(binarize="dynamic")
    dynamic.setup()
    draws = torch.stack([dynamic.train_set[5][0] for _ in range(20)])
    assert set(draws.unique().tolist()) <= {0.0, 1.0} and not all(torch.equal(draws[0], d) for d in draws)
    with pytest.raises(ValueError, match="pixel_range"):
        DigitsDataModule(binarize="dynamic", pixel_range=[-1.0, 1.0])


@pytest.mark.parametrize("as_zip,prefix", [(False, ""), (True, ""), (True, "mydata/")])
def test_folder_reads_class_folders_from_directory_or_zip(tmp_path, as_zip, prefix):
    src = tmp_path / "src"
    write_images(src, {"train/cat": 3, "train/dog": 2, "test/cat": 1, "test/dog": 2})
    root = zip_folder(src, tmp_path / "d.zip", prefix) if as_zip else src
    dm = FolderDataModule(root=root, image_size=8, channels=1, batch_size=2)
    dm.setup()
    assert dm.classes == ["cat", "dog"]
    assert sorted(dm.train_set.base.labels) == [0, 0, 0, 1, 1] and len(dm.train_set) + len(dm.val_set) == 5
    assert len(dm.test_set) == 3
    x, _ = dm.train_set[0]
    assert x.shape == (1, 8, 8)
    batch = next(iter(dm.train_dataloader()))
    assert batch[0].shape == (2, 1, 8, 8)


def test_folder_labels_agree_across_splits_and_ignore_mac_metadata(tmp_path):
    src = tmp_path / "src"
    write_images(src, {"train/cat": 1, "train/dog": 1, "train/fox": 1, "test/cat": 1, "test/fox": 2})
    (src / "__MACOSX" / "train" / "cat").mkdir(parents=True)
    (src / "__MACOSX" / "train" / "cat" / "._0.png").write_bytes(b"resource fork")
    (src / "train" / "cat" / "._1.png").write_bytes(b"resource fork")
    dm = FolderDataModule(root=zip_folder(src, tmp_path / "mac.zip"), image_size=8, channels=3, batch_size=1)
    dm.setup()
    fox = dm.classes.index("fox")
    assert dm.classes == ["cat", "dog", "fox"] and len(dm.train_set) + len(dm.val_set) == 3
    assert sorted(dm.test_set.base.labels) == [0, fox, fox]
    assert all(dm.train_set[i][0].shape == (3, 8, 8) for i in range(len(dm.train_set)))


def test_folder_errors_name_the_path_and_layout(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        FolderDataModule(root=tmp_path / "nowhere").setup()
    write_images(tmp_path / "flat", {"images": 2})
    with pytest.raises(DatasetNotFoundError, match="no images in a train/ folder.*expected layout"):
        FolderDataModule(root=tmp_path / "flat").setup()
    (tmp_path / "bad.zip").write_bytes(b"not a zip")
    with pytest.raises(DatasetNotFoundError, match="neither a directory nor a readable zip"):
        FolderDataModule(root=tmp_path / "bad.zip").setup()


def test_named_dataset_reads_a_folder_or_zip_root(tmp_path):
    """data=mnist (any torchvision dataset) also takes a folder/zip of train/ and test/ images."""
    src = tmp_path / "src"
    write_images(src, {"train/0": 2, "train/1": 2, "test/0": 1, "test/1": 1}, size=28)
    dm = MNISTDataModule(root=zip_folder(src, tmp_path / "mnist.zip"), image_size=28, channels=1, download=False, batch_size=2)
    dm.setup()
    assert (len(dm.train_set) + len(dm.val_set), len(dm.test_set)) == (4, 2) and dm.train_set[0][0].shape == (1, 28, 28)


def test_pixels_are_on_the_8bit_levels():
    dm = DigitsDataModule(image_size=32, pixel_range=[-1.0, 1.0])  # upsampled: interpolated, then rounded
    dm.setup()
    x = dm.train_set[0][0]
    levels = (x + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4)


def test_missing_torchvision_dataset_says_where_and_how(tmp_path):
    dm = MNISTDataModule(root=tmp_path, image_size=28, channels=1, download=False)
    with pytest.raises(DatasetNotFoundError) as err:
        dm.prepare_data()
    msg = str(err.value)
    assert str(tmp_path) in msg and "MNIST/raw" in msg and "data.root" in msg and "LPC_DATA_DIR" in msg


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="needs ../shared/data/cifar10/cifar10_jpeg.zip")
def test_folder_reads_the_shared_cifar10_zip():
    dm = FolderDataModule(root=SHARED_CIFAR, image_size=32, channels=3, batch_size=16, num_workers=1)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (45000, 5000, 10000)
    assert dm.classes[:3] == ["airplane", "automobile", "bird"] and len(dm.classes) == 10
    x, y = next(iter(dm.train_dataloader()))  # through a worker process: the zip handle is reopened there
    assert x.shape == (16, 3, 32, 32) and 0.0 <= x.min() and x.max() <= 1.0 and y.max() < 10


@pytest.mark.skipif(not SHARED_MNIST_T10K.exists(), reason="needs ../shared/data/mnist-t10k")
def test_mnist_test_split_is_cut_into_disjoint_train_and_test_images():
    dm = MNISTTestSplitDataModule(root=SHARED_MNIST_T10K, batch_size=64)
    dm.setup()
    assert (len(dm.train_set), len(dm.val_set), len(dm.test_set)) == (8100, 900, 1000)
    train = torch.stack([dm.train_set[i][0] for i in range(len(dm.train_set))])
    test = torch.stack([dm.test_set[i][0] for i in range(len(dm.test_set))])
    assert train.shape[1:] == (1, 28, 28) and 0.0 <= float(train.min()) and float(train.max()) == 1.0
    assert torch.equal((train * 255).round() / 255, train)  # 8-bit levels
    # the 10,000 images are all there once: none of the test images is among the training ones
    keys = {hash(t.numpy().tobytes()) for t in train}
    assert not any(hash(t.numpy().tobytes()) in keys for t in test[:200])
    assert sorted({dm.test_set[i][1] for i in range(len(dm.test_set))}) == list(range(10))


def test_mnist_test_split_names_the_files_it_needs(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz not found"):
        MNISTTestSplitDataModule(root=tmp_path).setup()
