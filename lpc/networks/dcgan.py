"""DCGAN-style convolutional decoder (Radford et al. 2016) for 28x28, 32x32 and 64x64 images."""

from __future__ import annotations

from torch import Tensor, nn

from lpc.networks.layers import activation, norm2d

# image size -> side of the first feature map (each later layer doubles it)
BASE_SIZE = {28: 7, 32: 4, 64: 4}


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
        if image_size not in BASE_SIZE:
            raise ValueError(f"DCGANDecoder image_size must be one of {sorted(BASE_SIZE)}, got {image_size}")
        base = BASE_SIZE[image_size]
        n_up = (image_size // base).bit_length() - 1
        chans = [width * 2**i for i in reversed(range(n_up))]  # e.g. [4w, 2w, w]
        layers: list[nn.Module] = [nn.ConvTranspose2d(latent_dim, chans[0], base, 1, 0), norm2d(norm, chans[0]), activation(act)]
        for c_in, c_out in zip(chans[:-1], chans[1:]):
            layers += [nn.ConvTranspose2d(c_in, c_out, 4, 2, 1), norm2d(norm, c_out), activation(act)]
        layers.append(nn.ConvTranspose2d(chans[-1], channels, 4, 2, 1))
        self.latent_dim = latent_dim
        self.out_shape = (channels, image_size, image_size)
        self.net = nn.Sequential(*layers)

    def forward(self, z: Tensor) -> Tensor:
        return self.net(z[:, :, None, None])
