"""Unadjusted Langevin dynamics on the latents z (the paper's inner loop), and its noise-free
limit, gradient descent (plain predictive coding's inference)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import Tensor

from lpc.samplers.chain import ChainSampler, ChainState, Evaluate, StepSize


def fold_step_size(step_size: StepSize, scale: Tensor | float) -> tuple[float, Tensor | float]:
    """(eta, M) as the steps below use it: a per-chain eta (N, 1) folded into M, i.e. (1, eta * M)."""
    return (1.0, step_size * scale) if isinstance(step_size, Tensor) else (step_size, scale)


def gradient_step(z: Tensor, grad: Tensor, step_size: StepSize, scale: Tensor | float) -> Tensor:
    """Preconditioned gradient descent on the energy (predictive coding's inference):

    z_{t+1} = z_t - eta * M * grad_z E(z_t).

    One fused multiply-add (``addcmul``, or ``add`` with a scalar factor).
    """
    step_size, scale = fold_step_size(step_size, scale)
    return torch.addcmul(z, scale, grad, value=-step_size) if isinstance(scale, Tensor) else torch.add(z, grad, alpha=-step_size * scale)


def langevin_step(z: Tensor, grad: Tensor, noise: Tensor, step_size: StepSize, scale: Tensor | float) -> Tensor:
    """Preconditioned overdamped Langevin step (unadjusted Langevin algorithm).

        z_{t+1} = z_t - eta * M * grad_z E(z_t) + sqrt(2 * eta * M) * xi_t,   xi_t ~ N(0, I)

    z, grad, noise: (B, D); eta: scalar or (B, 1); M: scalar, (1, D) or (B, D).
    The gradient step, then the noise added in place by one more fused multiply-add.
    """
    step_size, scale = fold_step_size(step_size, scale)
    moved = gradient_step(z, grad, step_size, scale)
    if isinstance(scale, Tensor):
        return moved.addcmul_(scale.sqrt(), noise, value=(2.0 * step_size) ** 0.5)
    return moved.add_(noise, alpha=(2.0 * step_size * scale) ** 0.5)


@dataclass
class LangevinSampler(ChainSampler):
    """ULA: T preconditioned Langevin steps (``langevin_step``), one energy gradient each; with
    ``noise=False``, T steps of gradient descent on E (``gradient_step``). Biased by the
    discretisation (the bias vanishes as eta -> 0); ``MALASampler`` removes it.
    See ``ChainSampler`` for the other arguments."""

    noise: bool = True
    checks_finite: ClassVar[bool] = False  # once M is fixed: the size check after the step (ChainSampler)

    def transition(self, evaluate: Evaluate, state: ChainState, step_size: StepSize,
                   scale: Tensor | float) -> tuple[ChainState, None]:
        if self.noise:
            z = langevin_step(state.z, state.grad, torch.randn_like(state.z), step_size, scale)
        else:
            z = gradient_step(state.z, state.grad, step_size, scale)
        return ChainState(z), None
