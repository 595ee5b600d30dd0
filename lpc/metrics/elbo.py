"""Evidence lower bounds that need no encoder."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor


def diagonal_normal_log_prob(z: Tensor, mean: Tensor, var: Tensor) -> Tensor:
    """log N(z; mean, diag var) = -sum_d [ (z_d - m_d)^2 / v_d + log v_d + log 2 pi ] / 2.  (B, D) -> (B,)."""
    return -0.5 * ((z - mean).square() / var + var.log() + math.log(2 * math.pi)).sum(-1)


def chain_gaussian_elbo(log_joint: Callable[[Tensor], Tensor], samples: Tensor, min_var: float = 1e-6) -> Tensor:
    """Single-sample ELBO with q fitted to a Langevin chain.

    q(z | x) = N(mean_s z_s, diag var_s z_s) is moment-matched, per example, to the chain's kept
    samples z_1..z_S (S >= 2, unbiased variance, floored at ``min_var``); then with one z' ~ q

        ELBO_hat = log p(x, z') - log q(z' | x),    E_q[ELBO_hat] = ELBO(q) <= log p(x).

    It is an unbiased estimate of a valid lower bound for any q; correlated chain samples make q
    narrower than the posterior, which loosens (never invalidates) the bound.
    samples: (S, B, D); log_joint: z (B, D) -> log p(x, z) (B,). Returns (B,).
    """
    if samples.shape[0] < 2:
        raise ValueError("chain_gaussian_elbo needs at least 2 kept samples per chain (lower thin or burn_in)")
    mean = samples.mean(0)
    var = samples.var(0).clamp_min(min_var)
    z = mean + var.sqrt() * torch.randn_like(mean)
    return log_joint(z) - diagonal_normal_log_prob(z, mean, var)
