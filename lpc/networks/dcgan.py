"""DCGAN-style convolutional decoder and mirrored encoder (Radford et al. 2016) for 28x28, 32x32 and 64x64 images."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lpc.networks.layers import activation, norm2d

# image size -> side of the smallest feature map (each decoder layer doubles it)
BASE_SIZE = {28: 7, 32: 4, 64: 4}


def feature_channels(image_size: int, width: int) -> tuple[int, list[int]]:
    """The smallest map's side and the channels from it up to the image, e.g. 32 -> (4, [4w, 2w, w])."""
    if image_size not in BASE_SIZE:
        raise ValueError(f"DCGAN networks need image_size in {sorted(BASE_SIZE)}, got {image_size}")
    base = BASE_SIZE[image_size]
    n_up = (image_size // base).bit_length() - 1
    return base, [width * 2**i for i in reversed(range(n_up))]


class DCGANDecoder(nn.Module):
    """z -> ConvTranspose(base x base) -> [ConvTranspose 4x4 stride 2, norm, act] * (n-1) -> ConvTranspose to image.

    Feature maps (``width`` w, n upsamplings): w*2^(n-1) channels at base x base, halving the channels
    and doubling the side each layer, then ``channels`` at image_size. 28x28: 7 -> 14 -> 28;
    32x32: 4 -> 8 -> 16 -> 32; 64x64: 4 -> ... -> 64. The last layer has no activation: the
    likelihood maps the output to its parameters.
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        width: int = 64,
        act: str = "relu",
        norm: str = "none",
    ):
        super().__init__()
        base, chans = feature_channels(image_size, width)  # e.g. 4, [4w, 2w, w]
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, chans[0], base, 1, 0), norm2d(norm, chans[0]), activation(act)]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), norm2d(norm, c_out), activation(act)]
        layers.append(nn.ConvTranspose2d(chans[-1], channels, 4, 2, 1))
        self.latent_dim = latent_dim
        self.out_shape = (channels, image_size, image_size)
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])


class DCGANEncoder(nn.Module):
    """The decoder mirrored: [Conv 4x4 stride 2, norm, act] down to base x base, then a linear head
    to (mean, log_std) of q(z | x), each (B, latent_dim). 32x32: 32 -> 16 -> 8 -> 4 with w, 2w, 4w channels.
    """

    def __init__(
        self,
        latent_dim: int,
        channels: int,
        image_size: int,
        width: int = 64,
        act: str = "leaky_relu",
        norm: str = "none",
    ):
        super().__init__()
        base, chans = feature_channels(image_size, width)
        chans = chans[::-1]  # e.g. [w, 2w, 4w]
        layers: list[nn.Module] = []
        for c_in, c_out in zip([channels, *chans[:-1]], chans):
            layers += [nn.Conv2d(c_in, c_out, 4, 2, 1), norm2d(norm, c_out), activation(act)]
        self.latent_dim = latent_dim
        self.in_shape = (channels, image_size, image_size)
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(chans[-1] * base * base, 2 * latent_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, log_std = torch.chunk(self.net(x), 2, dim=-1)
        return mean, log_std
