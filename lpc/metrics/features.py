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

WEIGHTS_ENV = "LPC_INCEPTION_WEIGHTS"
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth"


class FeaturesUnavailableError(RuntimeError):
    """The feature network cannot be built (e.g. its weights are missing and cannot be downloaded)."""


def inception_missing_message(cause: str) -> str:
    return (
        f"FID skipped: the Inception-v3 weights are not available ({cause}). Either (1) download "
        f"{INCEPTION_URL} on a machine with a network and pass eval.fid.weights_path=/path/to/that/file "
        f"(or set ${WEIGHTS_ENV}), or (2) run once with a network and eval.fid.download=true, which caches "
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
            raise FeaturesUnavailableError(inception_missing_message(f"no file at eval.fid.weights_path={weights_path}"))
        if weights_path is None and not download:
            raise FeaturesUnavailableError(inception_missing_message("no weights_path and eval.fid.download=false"))
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
