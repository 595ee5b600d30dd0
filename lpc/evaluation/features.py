"""Feature networks that sample-quality metrics are computed in.

A feature network maps images in [0, 1], (B, C, H, W), to features (B, dim) and has a ``name``:
metrics in Inception-v3 space are called ``fid``, ``precision``, ...; in any other space
``fd_<name>``, ``precision_<name>``, ..., so that no table mixes them.
"""

from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import torch
from torch import Tensor, nn

from lpc.errors import ConfigError
from lpc.evaluation.domain_classifiers import (
    SHIPPED_DIR,
    card_fits,
    load_feature_net,
    shipped_feature_net,
)

WEIGHTS_ENV = "LPC_INCEPTION_WEIGHTS"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


class FeaturesUnavailableError(RuntimeError):
    """The feature network cannot be built (e.g. its weights are missing and cannot be downloaded)."""


def inception_missing_message(cause: str) -> str:
    return (
        f"FID skipped: the Inception-v3 weights are not available ({cause}). Either (1) download "
        f"{INCEPTION_URL} on a machine with a network and pass eval.sample_quality.weights_path=/path/to/that/file "
        f"(or set ${WEIGHTS_ENV}), or (2) run once with a network and eval.sample_quality.download=true, which caches "
        f"the file under ~/.cache/torch/hub/checkpoints/. Training and the other metrics go on without it."
    )


@contextmanager
def socket_timeout(seconds: float) -> Iterator[None]:
    """A default socket timeout, so a download on a dead network fails instead of hanging."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def to_rgb_uint8(images: Tensor) -> Tensor:
    """[0, 1] float images (B, 1 or 3, H, W) -> uint8 RGB (B, 3, H, W); grayscale is repeated."""
    rgb = images.expand(-1, 3, -1, -1) if images.shape[1] == 1 else images
    return (rgb.clamp(0, 1) * 255).round().to(torch.uint8)


class InceptionFeatures(nn.Module):
    """2048-d pool features of torch-fidelity's Inception-v3, the network of standard FID, through
    torchmetrics (which resizes to 299x299 as the metric expects). Grayscale is repeated to RGB.

    Weights: ``weights_path`` (or ``$LPC_INCEPTION_WEIGHTS``) if given, else a download (cached by
    torch) when ``download``; otherwise, or if the download fails, ``FeaturesUnavailableError``
    with the two ways to fix it.
    """

    name = "inception"

    def __init__(self, weights_path: str | None = None, download: bool = True, timeout: float = 15.0):
        super().__init__()
        weights_path = weights_path or os.environ.get(WEIGHTS_ENV) or None
        if weights_path is not None and not Path(weights_path).is_file():
            raise FeaturesUnavailableError(inception_missing_message(f"no file at eval.sample_quality.weights_path={weights_path}"))
        if weights_path is None and not download:
            raise FeaturesUnavailableError(inception_missing_message("no weights_path and eval.sample_quality.download=false"))
        try:
            from torchmetrics.image.fid import NoTrainInceptionV3

            with socket_timeout(timeout):
                self.net = NoTrainInceptionV3(
                    name="inception-v3-compat", features_list=["2048"], feature_extractor_weights_path=weights_path
                )
        except Exception as err:  # noqa: BLE001 - a failed download or a bad file, reported the same way
            raise FeaturesUnavailableError(inception_missing_message(f"{type(err).__name__}: {err}")) from err

    def forward(self, images: Tensor) -> Tensor:
        return self.net(to_rgb_uint8(images))


class ClassifierFeatures(nn.Module):
    """The features of an in-domain classifier made by ``scripts/train_feature_net.py`` (its
    penultimate layer), for data whose Inception weights are out of reach. Its ``name`` is the
    card's, so metrics read ``fd_<name>``, ``kid_<name>``, ``precision_<name>``, ...

    ``path``: the network's .pt file; ``None`` takes the shipped network whose card fits the data
    (``lpc/assets/feature_nets/``), and ``FeaturesUnavailableError`` if none does. A network whose
    card names other data (dataset or image shape) than ``dataset``/``image_shape`` is refused with
    a ``ConfigError``.
    """

    def __init__(self, path: str | None, dataset: str, image_shape: tuple[int, ...]):
        super().__init__()
        shape = "x".join(map(str, image_shape))
        if path is None:
            path = shipped_feature_net(dataset, image_shape)
            if path is None:
                shipped = ", ".join(p.stem for p in sorted(SHIPPED_DIR.glob("*.pt"))) or "none"
                raise FeaturesUnavailableError(
                    f"classifier features skipped: no shipped feature network fits data {dataset} ({shape}); shipped: "
                    f"{shipped}. Train one: python scripts/train_feature_net.py data=<this data> name=<name>, then pass "
                    f"eval.sample_quality.classifier_path=<its .pt>"
                )
        if not Path(path).is_file():
            raise ConfigError(f"eval.sample_quality.classifier_path={path}: no such file")
        try:
            self.net, self.card = load_feature_net(path)
        except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
            raise ConfigError(
                f"eval.sample_quality.classifier_path={path} is not a feature network written by scripts/train_feature_net.py "
                f"({type(err).__name__}: {err})"
            ) from err
        if not card_fits(self.card, dataset, image_shape):
            trained_on = ", ".join([self.card["dataset"], *self.card.get("aliases", [])])
            raise ConfigError(
                f"eval.sample_quality.classifier_path={path} was trained on {trained_on} "
                f"({'x'.join(map(str, self.card['image_shape']))}), not on the evaluated data {dataset} ({shape}): its "
                f"distances would not mean anything. Use the network made for this data (or train one with "
                f"scripts/train_feature_net.py), or eval.features=inception"
            )
        self.name = self.card["name"]
        self.path = str(path)

    def forward(self, images: Tensor) -> Tensor:
        return self.net.features(images)
