"""Unadjusted Langevin dynamics on the latents z (the paper's inner loop), and its noise-free
limit, gradient descent (plain predictive coding's inference)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lpc.samplers.chain import ChainSampler, ChainState, EnergyFn, StepSize


def langevin_step(z: Tensor, grad: Tensor, noise: Tensor, step_size: StepSize, scale: Tensor | float) -> Tensor:
    """Preconditioned overdamped Langevin step (unadjusted Langevin algorithm).

        z_{t+1} = z_t - eta * M * grad_z E(z_t) + sqrt(2 * eta * M) * xi_t,   xi_t ~ N(0, I)

    z, grad, noise: (B, D); eta: scalar or (B, 1); M: scalar, (1, D) or (B, D).
    """
    drift = step_size * scale
    return z - drift * grad + (2.0 * drift) ** 0.5 * noise


def gradient_step(z: Tensor, grad: Tensor, step_size: StepSize, scale: Tensor | float) -> Tensor:
    """Preconditioned gradient descent on the energy (predictive coding's inference):

    z_{t+1} = z_t - eta * M * grad_z E(z_t).
    """
    return z - step_size * scale * grad


@dataclass
class LangevinSampler(ChainSampler):
    """ULA: T preconditioned Langevin steps (``langevin_step``), one energy gradient each; with
    ``noise=False``, T steps of gradient descent on E (``gradient_step``). Biased by the
    discretisation (the bias vanishes as eta -> 0); ``MALASampler`` removes it.
    See ``ChainSampler`` for the other arguments."""

    noise: bool = True

    def transition(self, energy_fn: EnergyFn, state: ChainState, step_size: StepSize,
                   scale: Tensor | float) -> tuple[ChainState, None]:
        if self.noise:
            z = langevin_step(state.z, state.grad, torch.randn_like(state.z), step_size, scale)
        else:
            z = gradient_step(state.z, state.grad, step_size, scale)
        return ChainState(z), None
