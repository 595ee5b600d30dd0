"""Frechet distance, PRDC, IWAE and bits/dim against closed forms and hand computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg
from test_langevin import linear_gaussian
from torch.distributions import MultivariateNormal

from lpc.evaluation import (
    bits_per_dim,
    frechet_distance,
    importance_log_weights,
    iwae_bound,
    prdc,
)
from lpc.model.gaussian import fit_diagonal_gaussian


def scipy_frechet(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's matrix square root (as pytorch-fid computes it)."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    covmean = linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * covmean))


def test_frechet_distance_of_identical_sets_is_zero():
    x = torch.randn(500, 8, dtype=torch.float64)
    assert abs(frechet_distance(x, x.clone())) < 1e-6


def test_frechet_distance_of_shifted_gaussians_is_the_squared_shift():
    """Shifting a feature set leaves its covariance unchanged, so FD = ||shift||^2 exactly."""
    x = torch.randn(2000, 6, dtype=torch.float64)
    shift = torch.tensor([1.0, -2.0, 0.5, 0.0, 3.0, 1.5], dtype=torch.float64)
    assert frechet_distance(x, x + shift) == pytest.approx(float(shift.square().sum()), rel=1e-6)


def test_frechet_distance_matches_scipy():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(800, 5, generator=g, dtype=torch.float64) @ torch.randn(5, 5, generator=g, dtype=torch.float64)
    b = 0.7 * torch.randn(600, 5, generator=g, dtype=torch.float64) + 0.3
    assert frechet_distance(a, b) == pytest.approx(scipy_frechet(a.numpy(), b.numpy()), rel=1e-5)


def test_prdc_on_a_hand_computed_example():
    """k = 1, real points 0, 1, 2, 3 (radii 1), fakes 0.5 and 10 (radii 9.5):
    precision 1/2 (only 0.5 lies in a real ball), recall 1 (every real point lies within 9.5 of 0.5),
    density 2 / (1 * 2) = 1 (0.5 lies in the balls of 0 and 1), coverage 2/4 (balls of 0 and 1 hold a fake)."""
    real = torch.tensor([[0.0], [1.0], [2.0], [3.0]])
    fake = torch.tensor([[0.5], [10.0]])
    assert prdc(real, fake, k=1) == {"precision": 0.5, "recall": 1.0, "density": 1.0, "coverage": 0.5}


def brute_prdc(real: np.ndarray, fake: np.ndarray, k: int) -> dict[str, float]:
    """The reference implementation's formulas, written out with full distance matrices."""
    d_rr = np.linalg.norm(real[:, None] - real[None], axis=-1)
    d_ff = np.linalg.norm(fake[:, None] - fake[None], axis=-1)
    d_rf = np.linalg.norm(real[:, None] - fake[None], axis=-1)
    r = np.sort(d_rr, axis=1)[:, k]
    f = np.sort(d_ff, axis=1)[:, k]
    return {
        "precision": float((d_rf < r[:, None]).any(axis=0).mean()),
        "recall": float((d_rf < f[None, :]).any(axis=1).mean()),
        "density": float((d_rf < r[:, None]).sum(axis=0).mean() / k),
        "coverage": float((d_rf.min(axis=1) < r).mean()),
    }


def test_prdc_matches_the_reference_formulas_in_chunks():
    g = torch.Generator().manual_seed(3)
    real = torch.randn(300, 4, generator=g)
    fake = 1.3 * torch.randn(250, 4, generator=g) + 0.4
    got = prdc(real, fake, k=5, chunk=37)
    want = brute_prdc(real.double().numpy(), fake.double().numpy(), 5)
    assert got == pytest.approx(want, abs=1e-12)
    assert prdc(real, real, k=5)["precision"] == 1.0


def test_iwae_increases_with_k_and_reaches_the_exact_log_likelihood():
    torch.manual_seed(0)
    energy, x, precision, mean, cov = linear_gaussian(seed=6)
    w, b = energy.decoder.weight.detach(), energy.decoder.bias.detach()
    log_px = MultivariateNormal(b, w @ w.T + 0.25 * torch.eye(len(b), dtype=torch.float64)).log_prob(x.flatten()).item()
    # a deliberately imperfect proposal: the posterior mean, 1.5x the marginal std, no correlation
    reps = 400
    q_mean = mean.expand(reps, -1)
    q_log_std = torch.log(1.5 * cov.diagonal().sqrt()).expand(reps, -1)
    xs = x.expand(reps, -1, -1, -1)
    log_w = importance_log_weights(lambda z: -energy(xs, z), q_mean, q_log_std, 2000)  # (2000, reps)
    bounds = {k: iwae_bound(log_w, k).mean().item() for k in (1, 10, 100, 2000)}
    elbo = log_w.mean().item()
    assert bounds[1] == pytest.approx(elbo, abs=0.05)
    assert elbo < bounds[10] < bounds[100] <= bounds[2000] + 1e-9
    assert bounds[2000] <= log_px + 0.01 and bounds[2000] == pytest.approx(log_px, abs=0.02)
    assert elbo < log_px - 0.1  # the proposal is poor enough for the bounds to differ


def test_fit_diagonal_gaussian():
    samples = torch.tensor([[[0.0, 1.0]], [[2.0, 1.0]]])  # S=2, B=1, D=2
    mean, log_std = fit_diagonal_gaussian(samples, min_var=1e-4)
    torch.testing.assert_close(mean, torch.tensor([[1.0, 1.0]]))
    torch.testing.assert_close(torch.exp(2 * log_std), torch.tensor([[2.0, 1e-4]]))


def test_bits_per_dim():
    d = 3 * 32 * 32
    # a uniform density on [0, 1]^D (log p = 0) and on [-1, 1]^D (log p = -D log 2) are both 8 bits/dim
    assert bits_per_dim(torch.tensor(0.0), d, bin_width=1 / 256).item() == pytest.approx(8.0, abs=1e-9)
    assert bits_per_dim(torch.tensor(-d * math.log(2)), d, bin_width=2 / 256).item() == pytest.approx(8.0, abs=1e-9)
    # a fair coin per binary pixel is 1 bit/dim
    assert bits_per_dim(torch.tensor(-d * math.log(2)), d).item() == pytest.approx(1.0)
