"""LightningModules, one per method; each composes samplers, energies and metrics."""

from lpc.methods.base import GenerativeModule
from lpc.methods.lpc import LangevinPC

__all__ = ["GenerativeModule", "LangevinPC"]
