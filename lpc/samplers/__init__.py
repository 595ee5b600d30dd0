"""Inner-loop samplers and their preconditioners (plain PyTorch)."""

from lpc.samplers.langevin import ChainResult, LangevinSampler, energy_and_grad, gradient_step, langevin_step
from lpc.samplers.preconditioners import AdamPreconditioner, IdentityPreconditioner, Preconditioner

__all__ = [
    "AdamPreconditioner",
    "ChainResult",
    "IdentityPreconditioner",
    "LangevinSampler",
    "Preconditioner",
    "energy_and_grad",
    "gradient_step",
    "langevin_step",
]
