"""Encoders and decoders: plain nn.Modules, no Lightning.

Decoders map z (B, D) to the likelihood's parameters (B, C, H, W) and expose ``latent_dim`` and
``out_shape``; encoders map x to the (mean, log_std) of q(z | x) and expose ``in_shape``.
"""

from lpc.networks.conv import ConvDecoder, ConvEncoder
from lpc.networks.mlp import MLPDecoder, MLPEncoder

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]
