"""The inner loop: overdamped (unadjusted) Langevin dynamics on the latents z.

Each update is a pure function of (state, gradient, noise); ``LangevinSampler.run`` is the small
driver that evaluates the energy gradient, updates the preconditioner and keeps the post-burn-in
samples. It knows nothing of Lightning and never touches the decoder's weights: gradients are taken
with respect to z only, and every step starts from a detached z, so no autograd graph survives a
step and memory does not grow with the number of steps T.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor

from lpc.samplers.preconditioners import IdentityPreconditioner, Preconditioner

EnergyFn = Callable[[Tensor], Tensor]  # z (B, D) -> E(x, z) per example (B,)


def energy_and_grad(energy_fn: EnergyFn, z: Tensor) -> tuple[Tensor, Tensor]:
    """E(z) per example (B,) and grad_z sum_b E_b(z) (B, D), both detached.

    Examples are independent, so the gradient of the summed energy is each example's own gradient.
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        energy = energy_fn(z)
        (grad,) = torch.autograd.grad(energy.sum(), z)
    return energy.detach(), grad


def langevin_step(z: Tensor, grad: Tensor, noise: Tensor, step_size: float, scale: Tensor | float) -> Tensor:
    """Preconditioned overdamped Langevin step (unadjusted Langevin algorithm).

        z_{t+1} = z_t - eta * M * grad_z E(z_t) + sqrt(2 * eta * M) * xi_t,   xi_t ~ N(0, I)

    z, grad, noise: (B, D); M: scalar, (1, D) or (B, D).
    """
    drift = step_size * scale
    return z - drift * grad + (2.0 * drift) ** 0.5 * noise


def gradient_step(z: Tensor, grad: Tensor, step_size: float, scale: Tensor | float) -> Tensor:
    """Preconditioned gradient descent on the energy (predictive coding's inference):

    z_{t+1} = z_t - eta * M * grad_z E(z_t).
    """
    return z - step_size * scale * grad


def kept_steps(num_steps: int, burn_in: int, thin: int) -> list[int]:
    """The steps t in 1..T whose result z_t is kept: t > burn_in, every ``thin``-th counted back
    from T, so the last state z_T is always kept."""
    return [t for t in range(1, num_steps + 1) if t > burn_in and (num_steps - t) % thin == 0]


def non_finite_rows(energy: Tensor, grad: Tensor) -> Tensor:
    """(B,) True where the energy or its gradient is not finite."""
    return ~(torch.isfinite(energy) & torch.isfinite(grad).all(-1))


def runaway_rows(z: Tensor, max_latent_norm: float) -> Tensor:
    """(B,) True where a state is not finite or its size ||z|| / sqrt(D) exceeds ``max_latent_norm``
    (prior draws have size about 1)."""
    return ~(z.norm(dim=-1) <= max_latent_norm * z.shape[-1] ** 0.5)  # a NaN or inf norm fails the test too


class ChainResult(NamedTuple):
    """What one run of the inner loop returns (all detached)."""

    samples: Tensor  # (S, B, D) kept post-burn-in states, in chain order; samples[-1] is z_T
    energies: Tensor  # (T, B) E(x, z_{t-1}) at the start of each step t = 1..T
    scale: Tensor | float  # the preconditioner's M at the last step: scalar, (1, D) or (B, D)
    diverged: Tensor  # (B,) bool: chains that diverged; their samples are their starting point z0

    def subset(self, keep: Tensor) -> "ChainResult":
        """The chains selected by the (B,) mask ``keep``."""
        scale = self.scale[keep] if isinstance(self.scale, Tensor) and self.scale.shape[0] == keep.shape[0] else self.scale
        return ChainResult(self.samples[:, keep], self.energies[:, keep], scale, self.diverged[keep])


@dataclass
class LangevinSampler:
    """Runs ``num_steps`` preconditioned Langevin steps from z0 and keeps the post-burn-in states.

    Args:
        step_size: eta > 0.
        num_steps: T >= 1, the number of energy gradients (decoder forward+backward passes).
        burn_in: the first ``burn_in`` states are discarded (0 <= burn_in < T).
        thin: keep every ``thin``-th state after burn-in (counted back from z_T).
        noise: False turns the chain into gradient descent (plain predictive coding).
        preconditioner: the diagonal M (identity by default).
        freeze_precond: adapt M during burn-in only (steps t <= max(burn_in, 1)) and hold it
            fixed afterwards, so the kept samples come from Langevin dynamics with a constant M.
        max_latent_norm: a chain whose state grows beyond ||z|| / sqrt(D) > max_latent_norm (or
            turns non-finite) has diverged: it is put back to z0 and held there, flagged in
            ``ChainResult.diverged``, and the other chains go on unaffected.
    """

    step_size: float
    num_steps: int
    burn_in: int = 0
    thin: int = 1
    noise: bool = True
    preconditioner: Preconditioner = field(default_factory=IdentityPreconditioner)
    freeze_precond: bool = True
    max_latent_norm: float = 100.0

    def __post_init__(self) -> None:
        if not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps (T) must be >= 1, got {self.num_steps}")
        if not 0 <= self.burn_in < self.num_steps:
            raise ValueError(f"burn_in must be in [0, num_steps={self.num_steps}), got {self.burn_in}")
        if self.thin < 1:
            raise ValueError(f"thin must be >= 1, got {self.thin}")
        if not self.max_latent_norm > 0:
            raise ValueError(f"max_latent_norm must be > 0, got {self.max_latent_norm}")
        self._kept = set(kept_steps(self.num_steps, self.burn_in, self.thin))

    @property
    def num_samples(self) -> int:
        """S, the number of states kept per chain."""
        return len(self._kept)

    def run(self, energy_fn: EnergyFn, z0: Tensor) -> ChainResult:
        """Run the chain for each of the B examples in parallel. z0: (B, D)."""
        z0 = z0.detach()
        z = z0
        state = self.preconditioner.init(z)
        samples, energies = [], []
        diverged = torch.zeros(z.shape[0], dtype=torch.bool, device=z.device)
        adapt_until = max(self.burn_in, 1) if self.freeze_precond else self.num_steps
        for t in range(1, self.num_steps + 1):
            energy, grad = energy_and_grad(energy_fn, z)
            diverged |= non_finite_rows(energy, grad)
            grad = torch.where(diverged[:, None], 0.0, grad)  # held chains feed nothing to M
            if t <= adapt_until:
                state = self.preconditioner.update(state, grad, ~diverged)
                scale = self.preconditioner.scale(state)
            if self.noise:
                z = langevin_step(z, grad, torch.randn_like(z), self.step_size, scale)
            else:
                z = gradient_step(z, grad, self.step_size, scale)
            diverged |= runaway_rows(z, self.max_latent_norm)
            z = torch.where(diverged[:, None], z0, z)
            energies.append(energy)
            if t in self._kept:
                samples.append(z)
        return ChainResult(torch.stack(samples), torch.stack(energies), scale, diverged)

