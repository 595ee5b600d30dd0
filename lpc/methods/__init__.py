"""LightningModules, one per method; each composes samplers, energies and metrics."""

from lpc.methods.base import GenerativeModule
from lpc.methods.lpc import LangevinPC
from lpc.methods.vae import IWAE, VAE

__all__ = ["GenerativeModule", "IWAE", "LangevinPC", "VAE"]
