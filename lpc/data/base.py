"""The shared image DataModule: pixel transforms, the three splits and their loaders.

Every dataset yields ``(image, label)`` with the image a float tensor (channels, image_size,
image_size) in ``pixel_range`` (default [0, 1]), optionally binarised; the training set yields
``(image, label, index)`` when the model asks for example indices (``with_index``, persistent chains).

Splits: ``train_set`` (what the model learns from), ``val_set`` (held out of the dataset's training
split by ``val_size`` and ``split_seed``: every choice during and after training is made on it) and
``test_set`` (the dataset's test split, scored once at the end).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor
from torch.utils.data import DataLoader, Dataset
from torchvision.transforms.functional import pil_to_tensor

from lpc.data.sampling import EpochSampler
from lpc.errors import ConfigError

BINARIZE = ("none", "dynamic", "fixed")
SPLITS = ("train", "val", "test")
DATA_DIR_ENV = "LPC_DATA_DIR"


def default_root() -> str:
    """``$LPC_DATA_DIR`` if set, else ``./data``."""
    return os.environ.get(DATA_DIR_ENV, "data")


def to_float_image(img: Image.Image | Tensor, channels: int, image_size: int) -> Tensor:
    """A PIL image or a (C, H, W) / (H, W) tensor in [0, 1] -> float (channels, image_size, image_size) in [0, 1].

    PIL images are converted to L (1 channel) or RGB (3) and resized with antialiased bilinear
    interpolation; tensors are repeated from 1 to 3 channels when needed and resized likewise.
    Pixels always end on the 256 levels k/255 of 8-bit images (resized tensors are rounded), which
    discrete likelihoods and bits/dim assume.
    """
    if isinstance(img, Image.Image):
        img = img.convert("L" if channels == 1 else "RGB")
        if img.size != (image_size, image_size):
            img = img.resize((image_size, image_size), Image.Resampling.BILINEAR)
        return pil_to_tensor(img).float().div_(255.0)
    t = img if img.dim() == 3 else img[None]
    if t.shape[0] != channels:
        if t.shape[0] != 1:
            raise ValueError(f"cannot turn a {t.shape[0]}-channel image into {channels} channels")
        t = t.expand(channels, *t.shape[1:])
    if t.shape[-1] != image_size or t.shape[-2] != image_size:
        t = F.interpolate(t[None], size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)[0]
    return (t.float().clamp(0.0, 1.0) * 255).round() / 255


def binarize(x: Tensor, mode: str, index: int) -> Tensor:
    """Binarise pixels in [0, 1]: ``dynamic`` draws x ~ Bernoulli(x) afresh each time the example is
    read; ``fixed`` draws it once per example (seeded by its index, as in Larochelle's binarised
    MNIST); ``none`` leaves x as it is."""
    if mode == "none":
        return x
    gen = torch.Generator().manual_seed(index) if mode == "fixed" else None
    return torch.bernoulli(x, generator=gen)


def validation_count(val_size: int | float, num_train: int) -> int:
    """The number of images ``val_size`` holds out of ``num_train``: a fraction in (0, 1) of them
    (rounded, at least 1) or a count >= 1, leaving at least one image to train on."""
    if isinstance(val_size, bool) or not isinstance(val_size, (int, float)) or val_size <= 0 or (
            val_size >= 1 and not float(val_size).is_integer()):
        raise ConfigError(f"data.val_size must be a fraction in (0, 1) or a whole number of images >= 1, got {val_size!r}")
    count = max(1, round(val_size * num_train)) if val_size < 1 else int(val_size)
    if count >= num_train:
        raise ConfigError(f"data.val_size={val_size} holds out {count} of the {num_train} training images, leaving none "
                          f"to train on; lower data.val_size")
    return count


def split_indices(num_train: int, val_size: int | float, split_seed: int) -> tuple[Tensor, Tensor]:
    """(train, validation) positions in a training split of ``num_train`` images: the validation
    images are the first ``validation_count`` of ``randperm(num_train)`` under ``split_seed``, so
    the split is fixed by (val_size, split_seed) whatever the run's seed."""
    order = torch.randperm(num_train, generator=torch.Generator().manual_seed(split_seed))
    count = validation_count(val_size, num_train)
    return order[count:].sort().values, order[:count].sort().values


def image_and_label(item: object) -> tuple[object, int]:
    """A raw dataset item as (image, label): an ``(image, label)`` pair, an ``(image,)`` tuple (e.g. a
    ``TensorDataset`` of images alone) or a bare image, whose label is then 0."""
    if isinstance(item, (tuple, list)):
        return item[0], (item[1] if len(item) > 1 else 0)
    return item, 0


def check_split(module: ImageDataModule, split: str, dataset: object) -> None:
    """Refuse what ``module.load_split(split)`` returned unless it is a non-empty dataset whose
    first item is an image the pixel pipeline can read (a PIL image, or a float tensor (C, H, W) or
    (H, W) in [0, 1] with 1 or 3 channels), alone or with its label: a ``ConfigError`` that names the
    class and the fix, before anything is trained. Reads the first item only, without randomness."""
    cls = type(module)
    name = cls.__qualname__ if cls.__module__.startswith("lpc.") else f"{cls.__module__}.{cls.__qualname__}"
    where = f"{name}.load_split({split!r})"
    if not (hasattr(dataset, "__getitem__") and hasattr(dataset, "__len__")):
        raise ConfigError(f"{where} returned a {type(dataset).__name__}, not a dataset: return a torch Dataset of "
                          f"(image, label) pairs, e.g. torch.utils.data.TensorDataset(images, labels)")
    if len(dataset) == 0:
        raise ConfigError(f"{where} returned an empty dataset: it must hold the split's images")
    img, _ = image_and_label(dataset[0])
    if isinstance(img, Tensor):
        if not img.is_floating_point():
            raise ConfigError(f"{where} returns {img.dtype} images; they must be float tensors with pixels in [0, 1]: "
                              f"divide 8-bit images by 255 (images.float() / 255), or return PIL images")
        low, high = img.min().item(), img.max().item()
        if low < 0.0 or high > 1.0:
            raise ConfigError(f"{where} returns pixels in [{low:g}, {high:g}]; they must be in [0, 1] (data.pixel_range "
                              f"maps them afterwards): rescale them, e.g. divide 8-bit values by 255")
    elif not isinstance(img, Image.Image):
        raise ConfigError(f"{where} returns items of type {type(img).__name__}; each item must be an image (a PIL image "
                          f"or a float tensor (channels, height, width) in [0, 1]) or an (image, label) pair")
    try:
        to_float_image(img, module.channels, module.image_size)
    except (ValueError, RuntimeError) as err:
        raise ConfigError(f"{where} returns images of shape {tuple(getattr(img, 'shape', ()))} that cannot become "
                          f"data.channels={module.channels} x {module.image_size} x {module.image_size} images ({err}): "
                          f"return (channels, height, width) tensors with 1 or 3 channels, or set data.channels") from err


class TransformedDataset(Dataset):
    """Applies the DataModule's pixel pipeline to the items ``indices`` (all, if None) of a base
    dataset of ``(image, label)`` pairs; with ``with_index`` each item also carries its position in
    this dataset. ``fixed`` binarisation is seeded by the item's index in the base dataset."""

    def __init__(self, base: Dataset, module: "ImageDataModule", indices: Tensor | None = None, with_index: bool = False):
        self.base = base
        self.indices = indices.tolist() if indices is not None else None
        self.with_index = with_index
        self.channels = module.channels
        self.image_size = module.image_size
        self.binarize = module.binarize
        self.low, self.high = module.pixel_range

    def __len__(self) -> int:
        return len(self.base) if self.indices is None else len(self.indices)

    def __getitem__(self, index: int) -> tuple[Tensor, int] | tuple[Tensor, int, int]:
        source = index if self.indices is None else self.indices[index]
        img, label = image_and_label(self.base[source])
        x = binarize(to_float_image(img, self.channels, self.image_size), self.binarize, source)
        item = (self.low + (self.high - self.low) * x, int(label))
        return (*item, index) if self.with_index else item


class ImageDataModule(L.LightningDataModule):
    """Base DataModule: subclasses implement ``load_split(split)`` for the dataset's own ``train``
    and ``test`` splits; ``setup`` holds ``val_size`` of the training split out as validation.

    Args:
        root: where the dataset lives (a folder; for ``folder`` also a zip file).
        image_size: side of the square images the model sees (resized if needed).
        channels: 1 (grayscale) or 3 (RGB); images are converted.
        batch_size: training and validation batch size.
        num_workers: DataLoader worker processes.
        binarize: ``none``, ``dynamic`` or ``fixed`` (see ``binarize``); needs pixel_range [0, 1].
        pixel_range: (low, high) the pixels are mapped to, e.g. [0, 1] or [-1, 1].
        drop_last: drop the last incomplete training batch (static shapes for the inner loop).
        seed: the training order of epoch e is a permutation under ``seed + e`` (``EpochSampler``);
            ``None``: ``torch.initial_seed()``, i.e. the run's ``seed``.
        val_size: the validation images held out of the training split: a fraction in (0, 1) or a
            count (``split_indices``); never trained on.
        split_seed: the permutation that picks them (and, for datasets without a test split of
            their own, the test images): fixed, whatever the run's ``seed``.

    Under DDP each rank reads its shard of that order (``EpochSampler``), so Lightning's own
    distributed sampler is off (``trainer.use_distributed_sampler=false``). The read position is
    kept in checkpoints, so a run resumed mid-epoch reads on from where it stopped.
    """

    name = "images"

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        image_size: int = 32,
        channels: int = 3,
        batch_size: int = 64,
        num_workers: int = 0,
        binarize: str = "none",
        pixel_range: Sequence[float] = (0.0, 1.0),
        drop_last: bool = True,
        seed: int | None = None,
        val_size: int | float = 0.1,
        split_seed: int = 0,
    ):
        super().__init__()
        if binarize not in BINARIZE:
            raise ValueError(f"data.binarize must be one of {list(BINARIZE)}, got {binarize!r}")
        if binarize != "none" and tuple(pixel_range) != (0.0, 1.0):
            raise ValueError(f"data.binarize={binarize} needs data.pixel_range=[0, 1], got {list(pixel_range)}")
        if channels not in (1, 3):
            raise ValueError(f"data.channels must be 1 or 3, got {channels}")
        if batch_size < 1:
            raise ValueError(f"data.batch_size must be >= 1, got {batch_size}")
        self.root = Path(root if root is not None else default_root()).expanduser()
        self.image_size = image_size
        self.channels = channels
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.binarize = binarize
        self.pixel_range = (float(pixel_range[0]), float(pixel_range[1]))
        self.drop_last = drop_last
        self.seed = int(seed if seed is not None else torch.initial_seed() % 2**31)
        validation_count(val_size, 2**31)  # a malformed val_size fails here, before any data is read
        self.val_size = val_size
        self.split_seed = split_seed
        self._resume: tuple[int, int] | None = None  # (epoch, batches read), from a checkpoint
        self.with_index = False  # training items carry their index (set by lpc.config.build for persistent chains)
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None

    @property
    def dataset_id(self) -> str:
        """The dataset's name, as feature-network cards record it."""
        return self.name

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.image_size, self.image_size)

    def load_split(self, split: str) -> Dataset:
        """The raw dataset of ``split`` (``train`` or ``test``): items ``(image, label)`` (or images
        alone), each image a PIL image or a float tensor (channels, height, width) in [0, 1]; the
        base class resizes, converts channels, binarises, maps to ``pixel_range`` and holds out the
        validation images. A subclass must implement it (docs/networks.md)."""
        raise ConfigError(f"{type(self).__qualname__} does not implement load_split(split): a data module subclasses "
                          f"lpc.data.ImageDataModule and defines load_split(self, split) returning the 'train' or 'test' "
                          f"split as a dataset of (image, label) pairs (docs/networks.md)")

    def setup(self, stage: str | None = None) -> None:
        """Load the three splits once (idempotent, so it can run before the Trainer to fail early)."""
        if self.train_set is None:
            train = self.load_split("train")
            check_split(self, "train", train)
            train_idx, val_idx = split_indices(len(train), self.val_size, self.split_seed)
            self.train_set = TransformedDataset(train, self, train_idx, with_index=self.with_index)
            self.val_set = TransformedDataset(train, self, val_idx)
            test = self.load_split("test")
            check_split(self, "test", test)
            self.test_set = TransformedDataset(test, self)
            if len(self.train_set) < self.batch_size and self.drop_last:
                raise ConfigError(
                    f"{self.name}: {len(self.train_set)} training images is fewer than data.batch_size="
                    f"{self.batch_size}; lower the batch size or set data.drop_last=false"
                )

    def _loader(self, dataset: Dataset | None, train: bool) -> DataLoader:
        trainer = self.trainer
        replicas, rank = (trainer.world_size, trainer.global_rank) if trainer is not None else (1, 0)
        sampler = EpochSampler(len(dataset), shuffle=train, seed=self.seed, num_replicas=replicas, rank=rank)
        if train and self._resume is not None:
            epoch, batches_read = self._resume
            sampler.resume_at(epoch, batches_read * self.batch_size)
            self._resume = None
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            drop_last=train and self.drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
        )

    def state_dict(self) -> dict:
        """Where the training order stands (saved in checkpoints): the seed, the epoch and the
        batches of it read so far."""
        trainer = self.trainer
        if trainer is None:
            return {"seed": self.seed}
        read = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"seed": self.seed, "epoch": trainer.current_epoch, "batches_read": read}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state.get("seed", self.seed)
        if "epoch" in state:
            self._resume = (state["epoch"], state["batches_read"])

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, train=False)

    def split(self, name: str) -> Dataset:
        """The set up split ``train``, ``val`` or ``test``."""
        if name not in SPLITS:
            raise ConfigError(f"split must be one of {list(SPLITS)}, got {name!r}")
        return getattr(self, f"{name}_set")


def stack_images(dataset: Dataset, start: int, stop: int) -> Tensor:
    """Images start..stop-1 of a dataset of (image, label) pairs, stacked."""
    return torch.stack([dataset[i][0] for i in range(start, stop)])
