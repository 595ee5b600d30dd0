"""Inner-loop samplers, their preconditioners and chain diagnostics (plain PyTorch)."""

from lpc.samplers.chain import ChainResult, ChainSampler, energy_and_grad, kept_steps
from lpc.samplers.hmc import HMCSampler
from lpc.samplers.langevin import LangevinSampler, gradient_step, langevin_step
from lpc.samplers.mala import MALASampler
from lpc.samplers.preconditioners import (
    AdamPreconditioner,
    IdentityPreconditioner,
    Preconditioner,
)

__all__ = [
    "AdamPreconditioner",
    "ChainResult",
    "ChainSampler",
    "HMCSampler",
    "IdentityPreconditioner",
    "LangevinSampler",
    "MALASampler",
    "Preconditioner",
    "energy_and_grad",
    "gradient_step",
    "kept_steps",
    "langevin_step",
]
