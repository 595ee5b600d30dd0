"""Warm-start objectives: where their gradients go, and what the encoder converges to."""

from __future__ import annotations

import pytest
import torch
from test_langevin import LinearDecoder, ula_stationary_cov
from torch import Tensor, nn

from lpc.methods.warmstart import (
    AmortisedInit,
    PriorInit,
    forward_kl_loss,
    frozen,
    reverse_kl_loss,
)
from lpc.model.energy import Energy
from lpc.model.likelihoods import GaussianLikelihood
from lpc.samplers import LangevinSampler

SIGMA = 0.5
# posterior precision Lambda = I + W^T W / sigma^2 = [[12.5, 7.5], [7.5, 12.5]]: eigenvalues 20 and 5,
# correlation 0.6, so forward KL (variances diag(Sigma) = 0.125) and reverse KL (1 / diag(Lambda) = 0.08)
# have clearly different answers.
PRECISION = torch.tensor([[12.5, 7.5], [7.5, 12.5]], dtype=torch.float64)


class LinearEncoder(nn.Module):
    """mean = A x + c, log_std = a free vector: the family that holds the linear-Gaussian posterior."""

    def __init__(self, pixels: int, dim: int):
        super().__init__()
        self.linear = nn.Linear(pixels, dim).double()
        self.log_std = nn.Parameter(torch.zeros(dim, dtype=torch.float64))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean = self.linear(x.flatten(1))
        return mean, self.log_std.expand_as(mean)


def adam(params):
    return torch.optim.Adam(params, lr=0.02)


def model_and_data(n: int = 256):
    """A linear-Gaussian model with the posterior precision above, n observations of it, and
    their exact posterior means."""
    g = torch.Generator().manual_seed(1)
    gram = SIGMA**2 * (PRECISION - torch.eye(2, dtype=torch.float64))  # W^T W
    w = torch.cat([torch.linalg.cholesky(gram).T, torch.zeros(2, 2, dtype=torch.float64)])  # (4, 2)
    b = torch.randn(4, generator=g, dtype=torch.float64)
    energy = Energy(LinearDecoder(w, b), GaussianLikelihood(sigma=SIGMA, squash="none")).double()
    precision = PRECISION
    z = torch.randn(n, w.shape[1], generator=g, dtype=torch.float64)
    x = (z @ w.T + b + SIGMA * torch.randn(n, w.shape[0], generator=g, dtype=torch.float64))[:, None, None, :]
    cov = torch.linalg.inv(precision)
    post_mean = (x.flatten(1) - b) @ w @ cov / SIGMA**2  # mean_n = cov W^T (x_n - b) / sigma^2
    return energy, x, precision, post_mean


@pytest.mark.parametrize("objective", ["forward_kl", "reverse_kl", "jeffreys"])
def test_gradient_flow(objective):
    energy, x, *_ = model_and_data(8)
    warm = AmortisedInit(LinearEncoder(4, 2), objective, adam)
    proposal = warm(x)
    assert not proposal.z0.requires_grad  # the chain never back-propagates into the encoder
    samples = torch.randn(3, 8, 2, dtype=torch.float64, requires_grad=True)
    terms = warm.loss(energy, x, proposal, samples)
    terms["encoder_loss"].backward()
    assert all(p.grad is None for p in energy.parameters()), "theta must get no gradient from the encoder's loss"
    assert samples.grad is None, "no gradient may flow into the chain's samples"
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in warm.encoder.parameters())
    assert all(p.requires_grad for p in energy.parameters())  # frozen only while the loss was built
    if objective == "jeffreys":
        torch.testing.assert_close(terms["encoder_loss"], terms["forward_kl"] + terms["reverse_kl"])


def test_reverse_kl_passes_gradient_through_the_decoder_output():
    energy, x, *_ = model_and_data(8)
    mean = torch.zeros(8, 2, dtype=torch.float64, requires_grad=True)
    log_std = torch.zeros(8, 2, dtype=torch.float64, requires_grad=True)
    reverse_kl_loss(energy, x, mean, log_std).sum().backward()
    # d/dmean of the KL alone is mean = 0 here, so a non-zero gradient came through log p(x | z)
    assert mean.grad.abs().sum() > 0 and all(p.grad is None for p in energy.parameters())


def test_forward_kl_is_the_negative_log_density_of_the_samples():
    mean, log_std = torch.zeros(2, 3), torch.log(torch.full((2, 3), 2.0))
    samples = torch.ones(4, 2, 3)
    want = -torch.distributions.Normal(0.0, 2.0).log_prob(torch.tensor(1.0)) * 3
    torch.testing.assert_close(forward_kl_loss(mean, log_std, samples), want.expand(2))


def test_frozen_restores_flags():
    net = nn.Linear(2, 2)
    net.bias.requires_grad_(False)
    with frozen(net):
        assert not any(p.requires_grad for p in net.parameters())
    assert net.weight.requires_grad and not net.bias.requires_grad


def train_encoder(objective: str, steps: int = 600):
    """Train only the encoder (decoder fixed) on the linear-Gaussian model; the learning rate drops
    tenfold for the last third so the result is not dominated by gradient noise."""
    torch.manual_seed(0)
    energy, x, precision, post_mean = model_and_data()
    eta = 0.5 / torch.linalg.eigvalsh(precision).max().item()
    sampler = LangevinSampler(eta, num_steps=40, burn_in=20, thin=2)
    warm = AmortisedInit(LinearEncoder(4, 2), objective, adam)
    opt = warm.optimizer_factory(warm.parameters())
    schedule = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[2 * steps // 3], gamma=0.1)
    for _ in range(steps):
        proposal = warm(x)
        chain = sampler.run(lambda z: energy(x, z), proposal.z0)
        opt.zero_grad()
        warm.loss(energy, x, proposal, chain.samples)["encoder_loss"].backward()
        opt.step()
        schedule.step()
    mean, log_std = warm.encoder(x)
    return mean.detach(), torch.exp(2 * log_std[0]).detach(), precision, post_mean, eta


def assert_means_close(mean: Tensor, post_mean: Tensor, precision: Tensor) -> None:
    """Amortised means within a small fraction of the posterior's standard deviation (0.35)."""
    std = torch.linalg.inv(precision).diagonal().sqrt()
    err = (mean - post_mean).abs() / std
    assert err.mean() < 0.05 and err.max() < 0.15, (err.mean().item(), err.max().item())


def test_forward_kl_encoder_converges_to_the_posterior_moments():
    """Forward KL with a diagonal Gaussian matches the posterior's marginal variances diag(Sigma)
    (here of the ULA chain's exact stationary law, which the samples follow)."""
    mean, var, precision, post_mean, eta = train_encoder("forward_kl")
    target_var = ula_stationary_cov(precision, eta).diagonal()  # 0.140; the exact posterior's is 0.125
    assert_means_close(mean, post_mean, precision)
    torch.testing.assert_close(var, target_var, rtol=0.03, atol=0)
    # and it is not the reverse-KL answer 1 / diag(Lambda), which is narrower for this correlated posterior
    assert (var / (1 / precision.diagonal())).max() > 1.3


def test_reverse_kl_encoder_converges_to_the_mean_field_optimum():
    """Reverse KL with a diagonal Gaussian gives the posterior mean and variances 1 / diag(Lambda)."""
    mean, var, precision, post_mean, _ = train_encoder("reverse_kl")
    assert_means_close(mean, post_mean, precision)
    torch.testing.assert_close(var, 1 / precision.diagonal(), rtol=0.03, atol=0)


def test_prior_init_and_settings():
    proposal = PriorInit(latent_dim=5)(torch.zeros(3, 1, 2, 2))
    assert proposal.z0.shape == (3, 5) and proposal.mean is None
    with pytest.raises(ValueError, match="objective must be one of"):
        AmortisedInit(LinearEncoder(4, 2), "kl", adam)
    with pytest.raises(ValueError, match="init must be"):
        AmortisedInit(LinearEncoder(4, 2), "jeffreys", adam, init="mode")
    assert AmortisedInit(LinearEncoder(4, 2), "forward_kl", adam).decoder_evals == 0
    assert AmortisedInit(LinearEncoder(4, 2), "jeffreys", adam).decoder_evals == 1
