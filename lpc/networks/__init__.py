"""Encoders and decoders: plain nn.Modules, no Lightning.

Decoders map z (B, D) to the likelihood's parameters (B, C, H, W); encoders map x to the (mean,
log_std) of q(z | x). That is all a network of one's own must do (docs/networks.md; ``lpc.config.build``
tries each on a batch before training). lpc's own also expose ``latent_dim`` and ``out_shape`` (decoders)
and ``in_shape`` (encoders), so that a size mismatch names the presets that fit.
"""

from lpc.networks.conv import ConvDecoder, ConvEncoder
from lpc.networks.mlp import MLPDecoder, MLPEncoder

__all__ = ["ConvDecoder", "ConvEncoder", "MLPDecoder", "MLPEncoder"]
