"""Convergence diagnostics of several chains per example (Vehtari, Gelman, Simpson, Carpenter &
Buerkner 2021, "Rank-normalization, folding, and localization: an improved R-hat"): rank-normalised
split R-hat and bulk effective sample size, as Stan and ArviZ compute them, vectorised over every
trailing position (example, latent dimension).

All functions take draws (S, C, ...): S draws of each of C chains.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor


def split_chains(draws: Tensor) -> Tensor:
    """(S, C, ...) -> (S // 2, 2C, ...): each chain cut into its first and second half (the middle
    draw dropped when S is odd), so a chain that drifts shows up as two disagreeing chains."""
    half = draws.shape[0] // 2
    return torch.cat([draws[:half], draws[draws.shape[0] - half :]], dim=1)


def rank_normalize(draws: Tensor) -> Tensor:
    """z = Phi^-1((r - 3/8) / (N + 1/4)) with r the rank (1..N) of each draw among all N = S * C
    draws at its position (Blom's normal scores; ties get their average rank)."""
    flat = draws.reshape(draws.shape[0] * draws.shape[1], -1).double().T.contiguous()  # (positions, N)
    ordered = flat.sort(-1).values
    below, up_to = torch.searchsorted(ordered, flat), torch.searchsorted(ordered, flat, right=True)
    ranks = (below + up_to + 1).double() / 2  # tied draws share their average rank
    scores = torch.special.ndtri((ranks - 0.375) / (flat.shape[-1] + 0.25))
    return scores.T.reshape(draws.shape).to(draws.dtype)


def potential_scale_reduction(draws: Tensor) -> Tensor:
    """R-hat of Gelman et al. (BDA3): with n draws per chain, W the mean within-chain variance and
    B / n the variance of the chain means,

        var_plus = (n - 1) / n * W + B / n,    R-hat = sqrt(var_plus / W).
    """
    n = draws.shape[0]
    within = draws.var(0).mean(0)
    between = draws.mean(0).var(0)
    return ((n - 1) / n + between / within).sqrt()


def rhat(draws: Tensor) -> Tensor:
    """Rank-normalised split R-hat: the larger of the bulk R-hat (rank-normalised split chains) and
    the tail R-hat (the same after folding, |x - median|). About 1 when the chains agree; > 1.01
    suggests they have not mixed. (S, C, ...) -> (...), S >= 4."""
    split = split_chains(draws)
    folded = (split - split.reshape(-1, *split.shape[2:]).quantile(0.5, dim=0)).abs()
    return torch.maximum(potential_scale_reduction(rank_normalize(split)), potential_scale_reduction(rank_normalize(folded)))


def autocovariance(draws: Tensor) -> Tensor:
    """Per-chain autocovariance gamma_t = (1 / n) sum_i (x_i - mean)(x_{i+t} - mean), t = 0..n-1,
    by FFT.  (n, C, ...) -> (n, C, ...)."""
    n = draws.shape[0]
    centred = draws - draws.mean(0)
    size = 2 ** math.ceil(math.log2(2 * n))
    spectrum = torch.fft.rfft(centred, n=size, dim=0)
    return torch.fft.irfft(spectrum * spectrum.conj(), n=size, dim=0)[:n] / n


def effective_sample_size(draws: Tensor) -> Tensor:
    """ESS = N / tau with N = n * C draws and the integrated autocorrelation time

        tau = -1 + 2 sum_{k < K} P_k + rho_{2K}^+,   P_k = rho_{2k} + rho_{2k+1},

    where rho_t = 1 - (W - mean_c gamma_{t,c}) / var_plus (t >= 1, rho_0 = 1) combines the chains, the sum runs over
    Geyer's initial positive sequence (K: the first pair with P_K < 0), made monotone
    (P_k <- min_{j <= k} P_j), and rho_{2K}^+ is the first dropped pair's even term if positive
    (when none is dropped, the last pair is counted by its even term only);
    tau >= 1 / log10(N) as in ArviZ.  (n, C, ...) -> (...), float64 inside.
    """
    x = draws.double()
    n, chains = x.shape[:2]
    acov = autocovariance(x)
    within = acov[0].mean(0) * n / (n - 1)
    var_plus = within * (n - 1) / n + (x.mean(0).var(0) if chains > 1 else 0.0)
    rho = 1.0 - (within - acov.mean(1)) / var_plus  # (n, ...)
    rho[0] = 1.0
    pairs = max((n - 1) // 2, 1)
    sums = rho[0 : 2 * pairs : 2] + rho[1 : 2 * pairs : 2]  # P_k, (K_max, ...)
    positive = torch.cumprod((sums >= 0).double(), 0)
    positive[0] = 1.0
    monotone = torch.cummin(sums, 0).values
    num_kept = positive.sum(0).long()  # K per position
    even = rho[0 : 2 * pairs : 2].gather(0, num_kept.clamp_max(pairs - 1)[None])[0]
    # the first dropped pair's even term if positive; when no pair was dropped, the last pair's (as ArviZ)
    tail = torch.where(num_kept < pairs, even.clamp_min(0.0), even)
    positive[-1] = 0.0
    tau = -1.0 + 2.0 * (monotone * positive).sum(0) + tail
    total = n * chains
    return (total / tau.clamp_min(1.0 / math.log10(total))).to(draws.dtype)


def ess_bulk(draws: Tensor) -> Tensor:
    """Bulk ESS: the ESS of the rank-normalised split chains. (S, C, ...) -> (...), S >= 4."""
    return effective_sample_size(rank_normalize(split_chains(draws)))
