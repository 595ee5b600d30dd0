"""Fully connected decoder and encoder for small images."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lpc.networks.layers import activation


def mlp(sizes: Sequence[int], act: str) -> nn.Sequential:
    """Linear layers of the given sizes with ``act`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2:
            layers.append(activation(act))
    return nn.Sequential(*layers)


class MLPDecoder(nn.Module):
    """z (B, latent_dim) -> MLP -> output (B, channels, image_size, image_size)."""

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        hidden: Sequence[int] = (256, 256),
        act: str = "relu",
    ):
        super().__init__()
        self.latent_dim = latent_dim
        self.out_shape = (channels, image_size, image_size)
        self.net = mlp([latent_dim, *hidden, math.prod(self.out_shape)], act)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z).view(-1, *self.out_shape)


class MLPEncoder(nn.Module):
    """x (B, channels, image_size, image_size) -> MLP -> (mean, log_std) of q(z | x), each (B, latent_dim)."""

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        hidden: Sequence[int] = (256, 256),
        act: str = "relu",
    ):
        super().__init__()
        self.latent_dim = latent_dim
        self.in_shape = (channels, image_size, image_size)
        self.net = mlp([math.prod(self.in_shape), *hidden, 2 * latent_dim], act)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = torch.chunk(self.net(x.flatten(1)), 2, dim=-1)
        return mean, log_std
