"""The likelihood family: discretised Gaussian, learned scales, data/likelihood agreement."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import norm
from torch.distributions import Bernoulli, Normal

from lpc.evaluation import bits_per_dim
from lpc.model.likelihoods import (
    BernoulliLikelihood,
    DiscretizedGaussianLikelihood,
    GaussianLikelihood,
    discretized_gaussian_log_prob,
    log_ndtr,
)

LEVELS = torch.linspace(-1, 1, 256, dtype=torch.float64)  # the 256 pixel values, k / 127.5 - 1
MEANS = [-1.5, -1.0, -1.0 + 1 / 255, -0.3, 0.0, 0.5004, 1.0 - 1 / 255, 1.0, 2.0]
SIGMAS = [1e-3, 1e-2, 0.1, 1.0, 10.0]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_discretized_bins_sum_to_one(dtype):
    for mean in MEANS:
        for sigma in SIGMAS:
            logp = discretized_gaussian_log_prob(LEVELS.to(dtype), torch.tensor(mean, dtype=dtype), torch.tensor(sigma, dtype=dtype))
            assert torch.isfinite(logp).all() or sigma < 0.1  # far bins may underflow to -inf at tiny sigma
            total = logp.double().exp().sum().item()
            assert total == pytest.approx(1.0, abs=1e-5), (mean, sigma, total)


def reference_log_prob(x: np.ndarray, mean: float, sigma: float) -> np.ndarray:
    """Direct float64 computation with normal CDFs (scipy): Phi(b) - Phi(a), or for intervals right
    of the mean the same mass as sf(a) - sf(b), so that neither form subtracts two numbers near 1."""
    a, b = (x - 1 / 255 - mean) / sigma, (x + 1 / 255 - mean) / sigma
    inner = np.where(a > 0, norm.sf(a) - norm.sf(b), norm.cdf(b) - norm.cdf(a))
    return np.log(np.where(x <= -1 + 1e-9, norm.cdf(b), np.where(x >= 1 - 1e-9, norm.sf(a), inner)))


def test_discretized_log_prob_matches_direct_cdfs_in_float64():
    x = LEVELS.numpy()
    for mean in MEANS:
        for sigma in [0.01, 0.1, 0.5, 2.0]:
            want = reference_log_prob(x, mean, sigma)
            got = discretized_gaussian_log_prob(LEVELS, torch.tensor(mean, dtype=torch.float64), torch.tensor(sigma, dtype=torch.float64)).numpy()
            ok = want > -600  # where the direct computation has not underflowed
            np.testing.assert_allclose(got[ok], want[ok], rtol=1e-6, atol=1e-9)
            assert (got[~ok] < -600).all()  # and beyond, the stable form keeps going (no -inf or nan)


def test_discretized_gradients_are_finite_for_tiny_sigma():
    x = LEVELS[::15].float()
    for sigma in [1e-4, 1e-3, 1e-2]:
        mean = torch.tensor([-1.0, -0.2, 0.0031, 0.9, 1.0]).repeat_interleave(4)[: len(x)].clone().requires_grad_(True)
        s = torch.tensor(sigma, requires_grad=True)
        logp = discretized_gaussian_log_prob(x, mean, s)
        logp.sum().backward()
        assert torch.isfinite(logp).all() and torch.isfinite(mean.grad).all() and torch.isfinite(s.grad).all()


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 2e-6), (torch.float64, 1e-13)])
def test_log_ndtr_matches_torch_across_the_tail_point(dtype, tol):
    """The erfc form and the asymptotic series agree with torch.special.log_ndtr on both sides of
    the dtype's switch point (-10 in float32, -30 in float64), relatively, from -60 to 12."""
    t = torch.linspace(-60, 12, 100_001, dtype=dtype)
    want = torch.special.log_ndtr(t)
    assert torch.isfinite(log_ndtr(t)).all()
    torch.testing.assert_close(log_ndtr(t), want, rtol=tol, atol=tol)


def autograd_reference(x: torch.Tensor, mean: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """The discretised Gaussian through torch's own differentiable log_ndtr (float64), edges apart."""
    half = 1 / 255
    upper, lower = (x - mean + half) / sigma, (x - mean - half) / sigma
    right = lower > 0
    a, b = torch.where(right, -upper, lower), torch.where(right, -lower, upper)
    log_b = torch.special.log_ndtr(b)
    inner = log_b + torch.log(-torch.expm1(torch.special.log_ndtr(a) - log_b))
    edges = torch.where(x < -1 + half, torch.special.log_ndtr(upper), torch.special.log_ndtr(-lower))
    return torch.where((x < -1 + half) | (x > 1 - half), edges, inner)


@pytest.mark.parametrize("sigma", [1e-3, 0.05, 1.0])
def test_discretized_closed_form_gradients_match_autograd(sigma):
    """The hand-written backward gives autograd's gradients for the mean, sigma and x, with x
    broadcast against a batch of means and sigma a scalar (the decoder's use), edge bins included."""
    gen = torch.Generator().manual_seed(0)
    x = LEVELS[torch.randint(0, 256, (12,), generator=gen)].clone()
    x[:2] = torch.tensor([-1.0, 1.0], dtype=torch.float64)
    mean = (x + sigma * torch.randn(5, 12, generator=gen, dtype=torch.float64)).clamp(-1.2, 1.2)
    grads = []
    for f in (discretized_gaussian_log_prob, autograd_reference):
        xs, ms, s = x.clone().requires_grad_(True), mean.clone().requires_grad_(True), torch.tensor(sigma, dtype=torch.float64, requires_grad=True)
        weights = torch.linspace(0.5, 1.5, 60, dtype=torch.float64).view(5, 12)  # a non-uniform upstream gradient
        grads.append(torch.autograd.grad((f(xs, ms, s) * weights).sum(), (xs, ms, s)))
    for got, want in zip(*grads):
        assert got.shape == want.shape
        torch.testing.assert_close(got, want, rtol=1e-7, atol=1e-7)


def test_discretized_likelihood_squashes_with_tanh_and_is_exact_in_bits():
    lik = DiscretizedGaussianLikelihood(sigma=0.05, sigma_mode="fixed")
    out = torch.randn(2, 3, 4, 4)
    x = LEVELS[torch.randint(0, 256, (2, 3, 4, 4))].float()
    want = discretized_gaussian_log_prob(x, torch.tanh(out), torch.tensor(0.05)).sum((1, 2, 3))
    torch.testing.assert_close(lik.log_prob(x, out), want)
    assert lik.discrete and lik.data_range == (-1.0, 1.0)
    sample = lik.sample(out)
    assert torch.allclose((sample + 1) * 127.5, ((sample + 1) * 127.5).round(), atol=1e-4)


def test_uniform_model_is_eight_bits_per_dim():
    """A discrete model giving each of the 256 values probability 1/256 scores exactly 8 bits/dim."""
    d = 3 * 32 * 32
    assert bits_per_dim(torch.tensor(d * math.log(1 / 256)), d).item() == pytest.approx(8.0, abs=1e-9)


def test_optimal_scale_is_the_root_mean_square_error():
    lik = GaussianLikelihood(sigma=1.0, squash="none", sigma_mode="optimal")
    x, out = torch.randn(8, 1, 5, 5), torch.randn(8, 1, 5, 5)
    before = lik.log_prob(x, out)
    lik.fit_scale(x, out)
    torch.testing.assert_close(lik.sigma, (x - out).square().mean().sqrt())
    assert not torch.equal(before, lik.log_prob(x, out))
    # and it maximises the batch's Gaussian log-likelihood over sigma
    rmse = lik.sigma.item()
    total = lambda s: Normal(out, s).log_prob(x).sum().item()  # noqa: E731
    assert total(rmse) > total(1.05 * rmse) and total(rmse) > total(0.95 * rmse)


def test_ema_scale_moves_towards_the_batch_rmse_and_fixed_does_not_move():
    ema = DiscretizedGaussianLikelihood(sigma=1.0, sigma_mode="ema", ema_decay=0.9)
    x, out = torch.zeros(4, 1, 2, 2), torch.zeros(4, 1, 2, 2)  # tanh(0) = 0: rmse 0 -> floored at min_sigma
    ema.fit_scale(x, out)
    assert ema.sigma.item() == pytest.approx(0.9 * 1.0 + 0.1 * 1e-3, rel=1e-5)
    fixed = GaussianLikelihood(sigma=0.3)
    fixed.fit_scale(x, out)
    assert fixed.sigma.item() == pytest.approx(0.3)


def test_param_scale_is_learned_by_gradient():
    lik = GaussianLikelihood(sigma=1.0, squash="none", sigma_mode="param")
    assert [n for n, _ in lik.named_parameters()] == ["log_sigma"]
    x, out = torch.randn(16, 1, 4, 4) * 0.1, torch.zeros(16, 1, 4, 4)
    opt = torch.optim.Adam(lik.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        (-lik.log_prob(x, out).mean()).backward()
        opt.step()
    assert lik.sigma.item() == pytest.approx(x.square().mean().sqrt().item(), rel=0.05)
    assert "log_sigma" not in dict(GaussianLikelihood(sigma_mode="ema").named_parameters())


@pytest.mark.parametrize("kwargs", [{"sigma": 0.0}, {"squash": "relu"}, {"sigma_mode": "learned"}, {"ema_decay": 1.0}])
def test_bad_likelihood_settings_are_refused(kwargs):
    with pytest.raises(ValueError, match="likelihood"):
        GaussianLikelihood(**kwargs)


@pytest.mark.parametrize("squash", ["none", "sigmoid", "tanh"])
def test_gaussian_log_prob_matches_torch(squash):
    out, x = torch.randn(3, 1, 4, 4), torch.rand(3, 1, 4, 4)
    lik = GaussianLikelihood(sigma=0.3, squash=squash)
    mean = {"none": out, "sigmoid": torch.sigmoid(out), "tanh": torch.tanh(out)}[squash]
    want = Normal(mean, 0.3).log_prob(x).sum((1, 2, 3))
    torch.testing.assert_close(lik.log_prob(x, out), want)
    torch.testing.assert_close(lik.mean(out), mean)


def test_bernoulli_log_prob_matches_torch():
    logits, x = torch.randn(2, 3, 5, 5), torch.bernoulli(torch.full((2, 3, 5, 5), 0.4))
    torch.testing.assert_close(BernoulliLikelihood().log_prob(x, logits), Bernoulli(logits=logits).log_prob(x).sum((1, 2, 3)))
