"""Energy, networks and the encoder-free ELBO estimator."""

from __future__ import annotations

import math

import pytest
import torch
from test_langevin import linear_gaussian
from torch.distributions import MultivariateNormal, Normal

from lpc.evaluation import chain_gaussian_elbo
from lpc.model.energy import Energy
from lpc.model.gaussian import standard_normal_log_prob
from lpc.model.likelihoods import GaussianLikelihood
from lpc.networks import ConvDecoder, ConvEncoder, MLPDecoder


def test_energy_is_negative_log_joint():
    decoder = MLPDecoder(latent_dim=3, channels=1, image_size=4, hidden=[8])
    lik = GaussianLikelihood(sigma=0.5, squash="none")
    z, x = torch.randn(6, 3), torch.randn(6, 1, 4, 4)
    want = -(Normal(decoder(z), 0.5).log_prob(x).sum((1, 2, 3)) + Normal(0.0, 1.0).log_prob(z).sum(1))
    torch.testing.assert_close(Energy(decoder, lik)(x, z), want)
    torch.testing.assert_close(standard_normal_log_prob(torch.zeros(1, 4)), torch.tensor([-2 * math.log(2 * math.pi)]))


@pytest.mark.parametrize("size,widths", [(28, [16, 8]), (32, [16, 8, 8]), (64, [16, 16, 8, 8]), (48, [8, 8, 8, 8])])
@pytest.mark.parametrize("channels", [1, 3])
def test_conv_network_shapes(size, widths, channels):
    dec = ConvDecoder(latent_dim=8, channels=channels, image_size=size, widths=widths, hidden=[32], norm="group")
    enc = ConvEncoder(latent_dim=8, channels=channels, image_size=size, widths=widths, hidden=[32])
    assert dec(torch.randn(2, 8)).shape == (2, channels, size, size) and dec.out_shape == (channels, size, size)
    mean, log_std = enc(torch.randn(2, channels, size, size))
    assert mean.shape == log_std.shape == (2, 8) and enc.in_shape == (channels, size, size)


def test_networks_refuse_bad_settings():
    with pytest.raises(ValueError, match="3 stride-2 layers cannot produce 28x28"):
        ConvDecoder(latent_dim=8, channels=1, image_size=28, widths=[8, 8, 8])
    with pytest.raises(ValueError, match="activation must be one of"):
        MLPDecoder(latent_dim=8, channels=1, image_size=8, act="swishy")
    with pytest.raises(ValueError, match="norm must be one of"):
        ConvDecoder(latent_dim=8, channels=1, image_size=32, norm="batch")


def test_chain_gaussian_elbo_is_the_moment_matched_bound():
    """With samples from the exact posterior p(z|x) = N(m, Sigma), q is N(m, diag Sigma), whose
    ELBO is log p(x) - KL(q || p(z|x)), KL = (sum_i Lambda_ii Sigma_ii - D + log det Sigma - sum_i log Sigma_ii) / 2."""
    torch.manual_seed(0)
    energy, x, precision, mean, cov = linear_gaussian(seed=7)  # correlation 0.61
    w, b = energy.decoder.weight.detach(), energy.decoder.bias.detach()
    log_px = MultivariateNormal(b, w @ w.T + 0.25 * torch.eye(len(b), dtype=torch.float64)).log_prob(x.flatten())
    log_joint = lambda z: -energy(x.expand(len(z), -1, -1, -1), z)  # noqa: E731
    chains = 4000
    exact = MultivariateNormal(mean, cov).sample((400, chains))  # (S, B, D)
    elbo_exact = chain_gaussian_elbo(log_joint, exact).mean()
    gap = 0.5 * ((precision.diagonal() * cov.diagonal()).sum() - 2 + torch.logdet(cov) - cov.diagonal().log().sum())
    assert gap > 0.1  # the posterior is correlated enough for the gap to be visible
    torch.testing.assert_close(elbo_exact, log_px - gap, atol=0.02, rtol=0)
    # a q far too narrow (correlated chain) gives a strictly looser bound
    narrow = mean + 0.05 * torch.randn(3, chains, 2, dtype=torch.float64)
    assert chain_gaussian_elbo(log_joint, narrow).mean() < elbo_exact - 1.0
    with pytest.raises(ValueError, match="at least 2"):
        chain_gaussian_elbo(log_joint, exact[:1])
