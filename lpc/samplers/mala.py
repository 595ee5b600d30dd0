"""Metropolis-adjusted Langevin (MALA): the Langevin step as a proposal, accepted or rejected per
chain so that the chain's stationary law is exactly the posterior, whatever the step size."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from lpc.samplers.adaptation import (
    DualAveragingState,
    dual_averaging_init,
    dual_averaging_update,
)
from lpc.samplers.chain import (
    ChainSampler,
    ChainState,
    Evaluate,
    Phase,
    State,
    StepSize,
    select_rows,
)
from lpc.samplers.langevin import langevin_step


def langevin_log_proposal(z_to: Tensor, z_from: Tensor, grad_from: Tensor, step_size: StepSize, scale: Tensor | float) -> Tensor:
    """log q(z_to | z_from) of the preconditioned Langevin proposal, up to a constant that is the
    same in both directions (eta and M fixed within the step):

        q(z' | z) = N(z'; z - eta M grad E(z), 2 eta M)
        log q(z' | z) = -sum_d (z'_d - z_d + eta M_d grad_d E(z))^2 / (4 eta M_d) + const.

    (N, D) -> (N,).
    """
    drift = step_size * scale
    return -((z_to - z_from + drift * grad_from).square() / (4.0 * drift)).sum(-1)


def metropolis_accept_prob(log_ratio: Tensor) -> Tensor:
    """alpha = min(1, exp(log_ratio)); a non-finite ratio (a proposal with a NaN energy) gives 0."""
    return torch.where(torch.isnan(log_ratio), -torch.inf, log_ratio).clamp_max(0.0).exp()


def metropolis_select(proposal: State, state: State, accept_prob: Tensor) -> State:
    """Move each chain to its proposal with probability alpha (u ~ U(0, 1) < alpha), else stay."""
    return select_rows(torch.rand_like(accept_prob) < accept_prob, proposal, state)


@dataclass
class MetropolisSampler(ChainSampler):
    """What MALA and HMC share: per-chain step-size adaptation during burn-in, and M held fixed
    after it (the correction needs a proposal that does not change with the chain's history).

    Args:
        adapt_step_size: during burn-in, adapt each chain's step size by dual averaging towards
            ``target_accept`` (``lpc.samplers.adaptation``), then freeze it at the averaged value.
        target_accept: the acceptance rate adaptation aims for.
    """

    adapt_step_size: bool = False
    target_accept: float = 0.574

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.freeze_precond:
            raise ValueError("a Metropolis-corrected sampler holds M fixed after burn-in: set sampler.freeze_precond=true")
        if not 0.0 < self.target_accept < 1.0:
            raise ValueError(f"sampler.target_accept must be in (0, 1), got {self.target_accept}")
        if self.adapt_step_size and self.burn_in < 1:
            raise ValueError("sampler.adapt_step_size=true adapts during burn-in: set burn_in >= 1")

    @property
    def grad_evals(self) -> int:
        """The chain's T transitions, plus the gradient at z0 (the first proposal needs it)."""
        return self.num_steps * self.grads_per_step + 1

    def next_step_size(self, phase: Phase, step_size: StepSize, adaptation: DualAveragingState | None,
                       accept: Tensor | None) -> tuple[StepSize, DualAveragingState | None]:
        if not phase.adapt_step:
            return step_size, adaptation
        if adaptation is None:
            adaptation = dual_averaging_init(self.step_size, accept.shape[0], accept.device, accept.dtype)
        adaptation = dual_averaging_update(adaptation, accept, self.target_accept)
        # from the end of burn-in on: the averaged iterate
        return (adaptation.log_step_avg if phase.freeze_step else adaptation.log_step).exp(), adaptation


@dataclass
class MALASampler(MetropolisSampler):
    """MALA: propose z' by one preconditioned Langevin step from z, accept with probability

        alpha = min(1, exp(E(z) - E(z') + log q(z | z') - log q(z' | z)))

    (``langevin_log_proposal``), per chain. One energy gradient per step (at z', which is also the
    next step's gradient when z' is accepted). As eta -> 0, alpha -> 1 and MALA becomes ULA.
    See ``MetropolisSampler`` and ``ChainSampler`` for the arguments."""

    def transition(self, evaluate: Evaluate, state: ChainState, step_size: StepSize,
                   scale: Tensor | float) -> tuple[ChainState, Tensor]:
        z = langevin_step(state.z, state.grad, torch.randn_like(state.z), step_size, scale)
        proposal = ChainState(z, *evaluate(z))
        log_ratio = (state.energy - proposal.energy
                     + langevin_log_proposal(state.z, proposal.z, proposal.grad, step_size, scale)
                     - langevin_log_proposal(proposal.z, state.z, state.grad, step_size, scale))
        accept_prob = metropolis_accept_prob(log_ratio)
        return metropolis_select(proposal, state, accept_prob), accept_prob
