"""Diagonal preconditioners M for the Langevin inner loop.

A preconditioner is a pure state machine over the chain: ``init(z0) -> state``,
``update(state, grad, active) -> state`` after every energy gradient (``active``: the chains not
diverged), and ``scale(state) -> M`` with M broadcastable to z (shape (B, D) per example, (1, D)
when shared over the batch, or a scalar). The sampler applies
``z <- z - eta * M * grad + sqrt(2 * eta * M) * xi``.

As in preconditioned SGLD (Li et al. 2016) the position-dependent correction term
Gamma(z) = sum_j d M_ij / d z_j is dropped. While M adapts the chain is a heuristic; the sampler
therefore adapts M during burn-in only (by default) and holds it fixed afterwards, so the kept
samples come from Langevin dynamics with a constant diagonal M, whose stationary law is the
posterior up to the usual discretisation error.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor


class RMSState(NamedTuple):
    """Bias-corrected running average of squared gradients and the number of averaged gradients."""

    square_avg: Tensor  # v_hat (B, D), or (1, D) when shared over the batch
    count: int


def corrected_ema_square(square_avg_hat: Tensor, grad_sq: Tensor, beta: float, count: int) -> Tensor:
    """Adam's bias-corrected average v_hat_t = v_t / (1 - beta^t) of v_t = beta v_{t-1} + (1 - beta) g_t^2
    (v_0 = 0), kept directly as one ``lerp`` (t = ``count``):

        v_hat_t = v_hat_{t-1} + w_t (g_t^2 - v_hat_{t-1}),   w_t = (1 - beta) / (1 - beta^t)   (w_1 = 1).
    """
    return torch.lerp(square_avg_hat, grad_sq, (1.0 - beta) / (1.0 - beta**count))


def inverse_sqrt_scale(square_avg_hat: Tensor, eps: float, max_scale: float) -> Tensor:
    """M = min(1 / (sqrt(v_hat) + eps), M_max), the diagonal of the Adam/RMSprop preconditioner
    (in place on the fresh square root: one tensor, four cheap operations)."""
    return square_avg_hat.sqrt().add_(eps).reciprocal_().clamp_max_(max_scale)


class Preconditioner(Protocol):
    """What the sampler needs of a preconditioner (see the module docstring)."""

    def init(self, z: Tensor) -> Any: ...

    def update(self, state: Any, grad: Tensor, active: Tensor | None = None) -> Any: ...

    def scale(self, state: Any) -> Tensor | float: ...


class IdentityPreconditioner:
    """M = 1: plain (unpreconditioned) Langevin dynamics."""

    def init(self, z: Tensor) -> None:
        return None

    def update(self, state: None, grad: Tensor, active: Tensor | None = None) -> None:
        return None

    def scale(self, state: None) -> float:
        return 1.0


class AdamPreconditioner:
    """Adam/RMSprop-style diagonal preconditioner from squared energy gradients w.r.t. z.

    With g_t = grad_z E(x, z_t) of the current step (t = 1, 2, ...):

        v_t     = beta * v_{t-1} + (1 - beta) * g_t^2          v_0 = 0
        v_hat_t = v_t / (1 - beta^t)                           (bias correction, as Adam; kept directly)
        M_t     = min(1 / (sqrt(v_hat_t) + eps), max_scale)

    and step t uses M_t, i.e. the average already includes g_t (as Adam's update does).
    The cap matters for a sampler, unlike for Adam: the noise sqrt(2 eta M) grows without bound as a
    gradient approaches 0 (E[1 / |g|] is infinite for a gradient that is Gaussian around 0), so a
    chain would take huge random kicks. ``max_scale=1`` never steps further than plain Langevin; it
    is also where M settles on its own, since M ~ 1 / sqrt(lambda) and the posterior precision
    lambda >= 1 when the prior is N(0, I) and the likelihood's curvature is positive.
    The average is taken per element, i.e. per example and per latent dimension (shape (B, D)),
    so each example's chain is preconditioned independently; with ``shared_over_batch=True``
    g_t^2 is first averaged over the batch, giving one scale per latent dimension (1, D).
    State starts afresh with every chain (it is not carried across batches).
    """

    def __init__(self, beta: float = 0.9, eps: float = 1e-8, max_scale: float = 1.0, shared_over_batch: bool = False):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"precond.beta must be in [0, 1), got {beta}")
        if eps < 0.0:
            raise ValueError(f"precond.eps must be >= 0, got {eps}")
        if not max_scale > 0.0:
            raise ValueError(f"precond.max_scale must be > 0, got {max_scale}")
        self.beta = beta
        self.eps = eps
        self.max_scale = max_scale
        self.shared_over_batch = shared_over_batch

    def init(self, z: Tensor) -> RMSState:
        shape = (1, *z.shape[1:]) if self.shared_over_batch else z.shape
        return RMSState(torch.zeros(shape, dtype=z.dtype, device=z.device), 0)

    def update(self, state: RMSState, grad: Tensor, active: Tensor | None = None) -> RMSState:
        """``active`` (B,) marks the chains still running. A shared average is taken over them only,
        leaving out a row with any non-finite entry (a chain diverging at this step, which the sampler
        flags after its transition); per chain, a non-finite entry counts as 0 (that chain is held
        from this step on, its M unused)."""
        grad_sq = grad.square()
        if not self.shared_over_batch:
            return self.averaged(state, grad_sq.nan_to_num_(0.0, 0.0, 0.0))
        live = torch.isfinite(grad_sq.sum(-1, keepdim=True))  # (B, 1)
        if active is not None:
            live &= active.unsqueeze(-1)
        return self.averaged(state, torch.where(live, grad_sq, 0.0).sum(0, keepdim=True) / live.sum().clamp_min(1))

    def averaged(self, state: RMSState, grad_sq: Tensor) -> RMSState:
        """The state with g^2 (as M's shape) averaged in."""
        count = state.count + 1
        return RMSState(corrected_ema_square(state.square_avg, grad_sq, self.beta, count), count)

    def scale(self, state: RMSState) -> Tensor:
        return inverse_sqrt_scale(state.square_avg, self.eps, self.max_scale)
