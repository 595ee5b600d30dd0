"""Convolutional decoder and mirrored encoder built from stride-2 4x4 (transposed) convolutions.

One class each covers the DCGAN-style networks (Radford et al. 2016) and the beta-VAE networks of
Higgins et al. (2017) that the LPC paper adapts; the config presets (``decoder=dcgan32``,
``decoder=higgins64``, ...) only choose the channel widths and the fully connected layers.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lpc.networks.layers import activation, norm2d
from lpc.networks.mlp import mlp


def base_size(image_size: int, num_layers: int) -> int:
    """Side of the smallest feature map: image_size / 2^num_layers, which must be a whole number."""
    base = image_size // 2**num_layers
    if base < 1 or base * 2**num_layers != image_size:
        raise ValueError(
            f"{num_layers} stride-2 layers cannot produce {image_size}x{image_size} images from a whole feature map; "
            f"use as many widths as halvings, e.g. 3 for 32x32 (4x4 base), 2 for 28x28 (7x7), 4 for 64x64"
        )
    return base


class ConvDecoder(nn.Module):
    """z (B, latent_dim) -> [Linear, act] over ``hidden`` -> Linear to a (widths[0], base, base) map,
    norm, act -> [ConvTranspose 4x4 stride 2 to widths[i+1], norm, act] -> ConvTranspose 4x4
    stride 2 to ``channels`` at image_size. len(widths) = number of doublings; no activation at the
    end (the likelihood maps the output to its parameters).
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        widths: Sequence[int] = (256, 128, 64),
        hidden: Sequence[int] = (),
        act: str = "relu",
        norm: str = "none",
    ):
        super().__init__()
        widths = list(widths)
        self.base = base_size(image_size, len(widths))
        self.latent_dim = latent_dim
        self.out_shape = (channels, image_size, image_size)
        self.stem = mlp([latent_dim, *hidden, widths[0] * self.base**2], act)
        layers: list[nn.Module] = [norm2d(norm, widths[0]), activation(act)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), norm2d(norm, c_out), activation(act)]
        layers.append(nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)
        self.widths = widths

    def forward(self, z: Tensor) -> Tensor:
        return self.net(self.stem(z).view(-1, self.widths[0], self.base, self.base))


class ConvEncoder(nn.Module):
    """The decoder mirrored: x -> [Conv 4x4 stride 2, norm, act] through reversed(widths) down to a
    (widths[0], base, base) map -> [Linear, act] over ``hidden`` -> Linear to (mean, log_std) of
    q(z | x), each (B, latent_dim)."""

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        widths: Sequence[int] = (256, 128, 64),
        hidden: Sequence[int] = (),
        act: str = "leaky_relu",
        norm: str = "none",
    ):
        super().__init__()
        chans = [channels, *reversed(list(widths))]
        base = base_size(image_size, len(widths))
        layers: list[nn.Module] = []
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), norm2d(norm, c_out), activation(act)]
        self.latent_dim = latent_dim
        self.in_shape = (channels, image_size, image_size)
        self.net = nn.Sequential(*layers, nn.Flatten(), mlp([chans[-1] * base**2, *hidden, 2 * latent_dim], act))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = torch.chunk(self.net(x), 2, dim=-1)
        return mean, log_std
