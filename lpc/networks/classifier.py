"""A small convolutional classifier whose penultimate layer is a feature space for sample-quality
metrics on datasets without Inception weights (``lpc.evaluation.features.ClassifierFeatures``)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class ConvClassifier(nn.Module):
    """Stages of two 3x3 conv-BN-ReLU blocks (``widths`` channels), 2x2 max-pooling between stages,
    global average pooling, a linear head.

    Inputs are images in [0, 1], (B, C, H, W), standardised inside with the per-channel
    ``mean``/``std`` of the training images (buffers). ``features(x)`` is the pooled output of the
    last stage, (B, widths[-1]): the feature space of ``fd_<name>``/``kid_<name>``.
    """

    def __init__(self, in_shape: Sequence[int], num_classes: int, widths: Sequence[int] = (32, 64, 128)):
        super().__init__()
        self.in_shape = tuple(in_shape)
        self.num_classes = num_classes
        self.widths = tuple(widths)
        stages, c_in = [], self.in_shape[0]
        for i, width in enumerate(self.widths):
            pool = [nn.MaxPool2d(2)] if i > 0 else []
            stages.append(nn.Sequential(*pool, conv_block(c_in, width), conv_block(width, width)))
            c_in = width
        self.stages = nn.Sequential(*stages)
        self.head = nn.Linear(c_in, num_classes)
        self.register_buffer("mean", torch.zeros(1, self.in_shape[0], 1, 1))
        self.register_buffer("std", torch.ones(1, self.in_shape[0], 1, 1))

    @property
    def feature_dim(self) -> int:
        return self.widths[-1]

    def features(self, x: Tensor) -> Tensor:
        """(B, C, H, W) in [0, 1] -> (B, feature_dim)."""
        return self.stages((x - self.mean) / self.std).mean(dim=(2, 3))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits, (B, num_classes)."""
        return self.head(self.features(x))
