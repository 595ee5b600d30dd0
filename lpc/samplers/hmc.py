"""Hamiltonian Monte Carlo with a diagonal mass matrix: L leapfrog steps per transition and a
Metropolis accept/reject per chain. From an encoder's proposal this is Hoffman's (2017) method."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import torch
from torch import Tensor

from lpc.samplers.chain import ChainState, Evaluate, State, StepSize
from lpc.samplers.mala import (
    MetropolisSampler,
    metropolis_accept_prob,
    metropolis_select,
)


def kinetic_energy(momentum: Tensor, scale: Tensor | float) -> Tensor:
    """K(p) = p^T M p / 2 with M the preconditioner's diagonal, i.e. mass matrix M^-1 and
    p ~ N(0, M^-1).  (N, D) -> (N,)."""
    return 0.5 * (scale * momentum.square()).sum(-1)


def leapfrog(evaluate: Callable[[Tensor], State], state: State, momentum: Tensor, step_size: StepSize,
             scale: Tensor | float) -> tuple[State, Tensor]:
    """One leapfrog step of Hamilton's equations for H(z, p) = E(z) + K(p):

        p_half = p - (eps / 2) grad E(z)
        z'     = z + eps M p_half
        p'     = p_half - (eps / 2) grad E(z')

    ``evaluate(z')`` gives the state at z' with its energy and gradient (one energy gradient).
    Returns that state and p'.
    """
    half = momentum - 0.5 * step_size * state.grad
    new = evaluate(state.z + step_size * scale * half)
    return new, half - 0.5 * step_size * new.grad


def hmc_transition(evaluate: Callable[[Tensor], State], state: State, step_size: StepSize,
                   scale: Tensor | float, num_leapfrog: int) -> tuple[State, Tensor]:
    """One HMC transition: p ~ N(0, M^-1), ``num_leapfrog`` = L leapfrog steps of size eps, then the
    end point (z', p') is accepted per chain with probability

        alpha = min(1, exp(H(z, p) - H(z', p'))),   H(z, p) = E(z) + K(p),

    which leaves exp(-E) invariant. Returns the next state and alpha (N,).
    """
    momentum = torch.randn_like(state.z) / torch.as_tensor(scale, dtype=state.z.dtype).sqrt()
    start_h = state.energy + kinetic_energy(momentum, scale)
    proposal, p = state, momentum
    for _ in range(num_leapfrog):
        proposal, p = leapfrog(evaluate, proposal, p, step_size, scale)
    accept_prob = metropolis_accept_prob(start_h - (proposal.energy + kinetic_energy(p, scale)))
    return metropolis_select(proposal, state, accept_prob), accept_prob


def chain_state(evaluate: Evaluate, z: Tensor) -> ChainState:
    """The ``ChainState`` at z: E(z) and grad E(z)."""
    return ChainState(z, *evaluate(z))


@dataclass
class HMCSampler(MetropolisSampler):
    """HMC: draw p ~ N(0, M^-1), take ``num_leapfrog`` = L leapfrog steps of size eps
    (``step_size``), accept the end point with probability min(1, exp(H(z, p) - H(z', p'))) per
    chain. L energy gradients per transition; L = 1 with eps = sqrt(2 eta) is MALA with step eta.
    See ``MetropolisSampler`` and ``ChainSampler`` for the other arguments."""

    num_leapfrog: int = 5
    target_accept: float = 0.65

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_leapfrog < 1:
            raise ValueError(f"sampler.num_leapfrog must be >= 1, got {self.num_leapfrog}")

    @property
    def grads_per_step(self) -> int:  # type: ignore[override]
        return self.num_leapfrog

    def transition(self, evaluate: Evaluate, state: ChainState, step_size: StepSize,
                   scale: Tensor | float) -> tuple[ChainState, Tensor]:
        return hmc_transition(partial(chain_state, evaluate), state, step_size, scale, self.num_leapfrog)
