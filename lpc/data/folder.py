"""Any directory or zip file of images laid out as ``train/<class>/*`` and ``test/<class>/*``."""

from __future__ import annotations

import io
import os
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from PIL import Image
from torch.utils.data import Dataset

from lpc.data.base import ImageDataModule
from lpc.errors import CorruptDataError, DatasetNotFoundError

# what reading a damaged file or zip member raises: bad zip structure or CRC, broken deflate data,
# unsupported compression or encryption, truncated or undecodable images
UNREADABLE = (OSError, EOFError, SyntaxError, ValueError, zipfile.BadZipFile, zlib.error, NotImplementedError, RuntimeError)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
LAYOUT = (
    "expected layout: <root>/train/<class>/<image> and <root>/test/<class>/<image> (class folders "
    "optional; one top-level folder around train/ and test/ is allowed), as a directory or a .zip"
)


class ImageFiles(Dataset):
    """Images at the given relative paths of a directory or zip, with integer labels.

    A zip is opened lazily once per process, so DataLoader workers each get their own handle.
    """

    def __init__(self, root: Path, paths: list[str], labels: list[int]):
        self.root = root
        self.paths = paths
        self.labels = labels
        self._zip: tuple[int, zipfile.ZipFile] | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def _read(self, path: str) -> bytes:
        if self.root.is_dir():
            return (self.root / path).read_bytes()
        if self._zip is None or self._zip[0] != os.getpid():
            self._zip = (os.getpid(), zipfile.ZipFile(self.root))
        return self._zip[1].read(path)

    def __getitem__(self, index: int) -> tuple[Image.Image, int]:
        path = self.paths[index]
        try:
            img = Image.open(io.BytesIO(self._read(path)))
            img.load()
        except UNREADABLE as err:
            raise CorruptDataError(
                f"cannot read image {path} in {self.root} ({type(err).__name__}: {err}); replace the file or "
                f"re-extract the dataset (images are never skipped silently, which would change the data)"
            ) from err
        return img, self.labels[index]

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_zip": None}  # zip handles do not cross process boundaries


def list_files(root: Path) -> list[str]:
    """Every file below ``root`` (a directory or a zip), as POSIX paths relative to it. A zip's
    members are checked against their CRCs first (about 1.5 s for CIFAR-10), so a damaged archive
    fails here, with the member's name, rather than halfway through training."""
    if root.is_dir():
        return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    if zipfile.is_zipfile(root):
        try:
            with zipfile.ZipFile(root) as zf:
                bad = zf.testzip()
                names = zf.namelist()
        except UNREADABLE as err:
            raise CorruptDataError(f"data.root={root} is a damaged zip file ({err}); download or copy it again") from err
        if bad is not None:
            raise CorruptDataError(f"data.root={root} is a damaged zip file: member {bad} fails its CRC check; download or copy it again")
        return sorted(n for n in names if not n.endswith("/"))
    if root.exists():
        raise DatasetNotFoundError(f"data.root={root} is neither a directory nor a readable zip file; {LAYOUT}")
    raise DatasetNotFoundError(f"data.root={root.resolve()} does not exist; {LAYOUT}")


def is_image(path: str) -> bool:
    """An image file, not macOS metadata (``__MACOSX/``, ``._name``) that zips made on a Mac carry."""
    parts = PurePosixPath(path).parts
    return PurePosixPath(path).suffix.lower() in IMAGE_SUFFIXES and parts[0] != "__MACOSX" and not parts[-1].startswith("._")


def split_files(files: list[str], split: str) -> tuple[list[str], list[str]]:
    """The image paths of ``split`` and the class name of each.

    The split folder is ``split/`` at the top, or else one level down. The class of an image is the
    first folder below the split folder; images directly in it belong to the class ``""``.
    """
    images = [f for f in files if is_image(f)]
    for prefix in [""] + sorted({f.split("/")[0] + "/" for f in images if f.count("/") >= 2}):
        chosen = [f for f in images if f.startswith(prefix + split + "/")]
        if chosen:
            rel = [f[len(prefix + split + "/") :] for f in chosen]
            return chosen, [r.split("/")[0] if "/" in r else "" for r in rel]
    return [], []


def is_image_folder(root: Path) -> bool:
    """A zip file, or a directory with a train/ folder: data readable by ``ImageFolderSplits``."""
    return (root.is_file() and zipfile.is_zipfile(root)) or (root / "train").is_dir()


class ImageFolderSplits:
    """The train and test splits of a directory or zip, listed once, with class labels numbered over
    both splits (sorted names), so a class has the same label in train and test."""

    def __init__(self, root: Path):
        self.root = root
        files = list_files(root)
        self.splits = {split: split_files(files, split) for split in ("train", "test")}
        for split, (paths, _) in self.splits.items():
            if not paths:
                raise DatasetNotFoundError(f"no images in a {split}/ folder of {root}; {LAYOUT}")
        self.classes = sorted({c for _, names in self.splits.values() for c in names})

    def dataset(self, split: str) -> ImageFiles:
        paths, names = self.splits[split]
        index = {c: i for i, c in enumerate(self.classes)}
        return ImageFiles(self.root, paths, [index[c] for c in names])


class FolderDataModule(ImageDataModule):
    """Images from a directory or a zip file (``data.root``) with ``train/`` and ``test/`` folders.

    Images are decoded on the fly (converted to ``channels``, resized to ``image_size``), so large
    folders need no preprocessing. Labels come from class sub-folders (sorted names).
    """

    name = "folder"

    def __init__(self, root: str | os.PathLike, **kwargs):
        if root is None:
            raise DatasetNotFoundError(f"data=folder needs data.root=<directory or .zip>; {LAYOUT}")
        super().__init__(root=root, **kwargs)
        self._splits: ImageFolderSplits | None = None

    @property
    def classes(self) -> list[str]:
        return self._splits.classes if self._splits else []

    @property
    def dataset_id(self) -> str:
        """The folder's or zip's name without its suffix, e.g. ``cifar10_jpeg``."""
        return self.root.name.split(".")[0]

    def load_split(self, split: str) -> Dataset:
        if self._splits is None:
            self._splits = ImageFolderSplits(self.root)
        return self._splits.dataset(split)
