"""Diagonal Gaussian densities: the prior N(0, I) and the encoder's q(z | x) = N(mean, diag exp(log_std)^2)."""

from __future__ import annotations

import math

import torch
from torch import Tensor

LOG_2PI = math.log(2 * math.pi)


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) = -sum_d (z_d^2 + log 2 pi) / 2.  (B, D) -> (B,)."""
    return -0.5 * (z.square() + LOG_2PI).sum(-1)


def diagonal_normal_log_prob(z: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """log N(z; mean, diag sigma^2) = -sum_d [ ((z_d - m_d) / s_d)^2 / 2 + log s_d + log(2 pi) / 2 ].

    z: (..., B, D) broadcast against mean, log_std: (B, D) -> (..., B).
    """
    return -(0.5 * ((z - mean) * torch.exp(-log_std)).square() + log_std + 0.5 * LOG_2PI).sum(-1)


def reparameterise(mean: Tensor, log_std: Tensor) -> Tensor:
    """z = mean + exp(log_std) * eps, eps ~ N(0, I): a draw from q differentiable in (mean, log_std)."""
    return mean + torch.exp(log_std) * torch.randn_like(mean)


def kl_to_standard_normal(mean: Tensor, log_std: Tensor) -> Tensor:
    """KL(N(mean, diag sigma^2) || N(0, I)) = sum_d (m_d^2 + s_d^2 - 1 - 2 log s_d) / 2.  (B, D) -> (B,)."""
    return 0.5 * (mean.square() + torch.exp(2 * log_std) - 1.0 - 2 * log_std).sum(-1)


def fit_diagonal_gaussian(samples: Tensor, min_var: float = 1e-6) -> tuple[Tensor, Tensor]:
    """Moment-match N(mean, diag var) per example to samples (S, B, D), S >= 2: the sample mean and
    the unbiased sample variance floored at ``min_var``. Returns (mean, log_std), each (B, D)."""
    if samples.shape[0] < 2:
        raise ValueError("fitting a Gaussian to a chain needs at least 2 kept samples (lower thin or burn_in)")
    return samples.mean(0), 0.5 * samples.var(0).clamp_min(min_var).log()
