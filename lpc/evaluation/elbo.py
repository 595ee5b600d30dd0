"""Evidence lower bounds and importance-weighted bounds on log p(x), and bits per dimension.

All take ``log_joint``: z (N, D) -> log p(x, z) (N,) for the N = rows of z, which must match the
examples of x row for row (the caller tiles x), and a diagonal Gaussian proposal q(z | x).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from lpc.model.gaussian import (
    diagonal_normal_log_prob,
    fit_diagonal_gaussian,
    reparameterise,
)

LogJoint = Callable[[Tensor], Tensor]


def chain_gaussian_elbo(log_joint: LogJoint, samples: Tensor, min_var: float = 1e-6) -> Tensor:
    """Single-sample ELBO with q fitted to a Langevin chain.

    q(z | x) = N(mean_s z_s, diag var_s z_s) is moment-matched, per example, to the chain's kept
    samples z_1..z_S (S >= 2, unbiased variance, floored at ``min_var``); then with one z' ~ q

        ELBO_hat = log p(x, z') - log q(z' | x),    E_q[ELBO_hat] = ELBO(q) <= log p(x).

    It is an unbiased estimate of a valid lower bound for any q; correlated chain samples make q
    narrower than the posterior, which loosens (never invalidates) the bound.
    samples: (S, B, D); log_joint: z (B, D) -> log p(x, z) (B,). Returns (B,).
    """
    mean, log_std = fit_diagonal_gaussian(samples, min_var)
    z = reparameterise(mean, log_std)
    return log_joint(z) - diagonal_normal_log_prob(z, mean, log_std)


def importance_log_weights(log_joint: LogJoint, mean: Tensor, log_std: Tensor, num: int) -> Tensor:
    """log w_k = log p(x, z_k) - log q(z_k | x) for num draws z_k ~ q = N(mean, diag sigma^2).

    mean, log_std: (B, D); log_joint evaluates (B, D) rows. Returns (num, B).
    """
    z = mean + torch.exp(log_std) * torch.randn(num, *mean.shape, device=mean.device, dtype=mean.dtype)
    log_p = torch.stack([log_joint(z_k) for z_k in z])
    return log_p - diagonal_normal_log_prob(z, mean, log_std)


def iwae_bound(log_weights: Tensor, k: int) -> Tensor:
    """IWAE_k = log (1/k) sum_{i<=k} w_i from the first k log-weights (K, B) -> (B,).

    E[IWAE_1] = ELBO(q) <= E[IWAE_k] <= E[IWAE_{k+1}] <= log p(x) (Burda et al. 2016), and IWAE_k
    -> log p(x) as k grows, for any proposal q that covers the posterior.
    """
    if not 1 <= k <= log_weights.shape[0]:
        raise ValueError(f"k must be in [1, {log_weights.shape[0]}], got {k}")
    return torch.logsumexp(log_weights[:k], 0) - math.log(k)


def bits_per_dim(log_px: Tensor, num_dims: int, bin_width: float | None = None) -> Tensor:
    """-log2 P(x) / num_dims, with P the probability of the (8-bit) data.

    For a discrete likelihood log_px is already log P(x) (``bin_width=None``). For a density over
    continuous pixels, the 8-bit value's probability is taken as p(x) * bin_width^D with
    bin_width = (pixel range) / 256, i.e.

        bpd = -(log p(x) + D log bin_width) / (D log 2),

    so that a uniform density on the pixel range gives exactly 8 bits per dimension.
    """
    correction = 0.0 if bin_width is None else num_dims * math.log(bin_width)
    return -(log_px + correction) / (num_dims * math.log(2.0))
