"""Encoders and decoders: plain nn.Modules, no Lightning."""

from lpc.networks.dcgan import DCGANDecoder
from lpc.networks.mlp import MLPDecoder

__all__ = ["DCGANDecoder", "MLPDecoder"]
