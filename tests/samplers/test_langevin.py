"""The inner loop on targets whose answer is known exactly."""

from __future__ import annotations

import weakref

import pytest
import torch
from torch import Tensor, nn

from lpc.model.energy import Energy
from lpc.model.likelihoods import GaussianLikelihood
from lpc.samplers import (
    AdamPreconditioner,
    IdentityPreconditioner,
    LangevinSampler,
    energy_and_grad,
    gradient_step,
    kept_steps,
    langevin_step,
)


class LinearDecoder(nn.Module):
    """f(z) = W z + b shaped as a (B, 1, 1, P) image."""

    def __init__(self, weight: Tensor, bias: Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight)
        self.bias = nn.Parameter(bias)
        self.latent_dim = weight.shape[1]

    def forward(self, z: Tensor) -> Tensor:
        return (z @ self.weight.T + self.bias)[:, None, None, :]


class FixedPreconditioner:
    """A constant diagonal M, for the exact stationary law of preconditioned ULA."""

    def __init__(self, diag: Tensor):
        self.diag = diag

    def init(self, z: Tensor) -> None:
        return None

    def update(self, state: None, grad: Tensor, active: Tensor | None = None) -> None:
        return None

    def scale(self, state: None) -> Tensor:
        return self.diag


def linear_gaussian(seed: int = 0, dim: int = 2, pixels: int = 5, sigma: float = 0.5):
    """A linear-Gaussian model, one observation x, and its exact posterior (mean, covariance)."""
    g = torch.Generator().manual_seed(seed)
    weight = torch.randn(pixels, dim, generator=g, dtype=torch.float64)
    bias = torch.randn(pixels, generator=g, dtype=torch.float64)
    x = torch.randn(pixels, generator=g, dtype=torch.float64)
    precision = torch.eye(dim, dtype=torch.float64) + weight.T @ weight / sigma**2
    cov = torch.linalg.inv(precision)
    mean = cov @ weight.T @ (x - bias) / sigma**2
    energy = Energy(LinearDecoder(weight, bias), GaussianLikelihood(sigma=sigma, squash="none")).double()
    return energy, x[None, None, None, :], precision, mean, cov


def ula_stationary_cov(precision: Tensor, step_size: float) -> Tensor:
    """Exact stationary covariance of ULA on N(mu, precision^-1): in the eigenbasis of the
    precision, variances 1 / (lambda (1 - eta lambda / 2))."""
    lam, vec = torch.linalg.eigh(precision)
    return vec @ torch.diag(1.0 / (lam * (1.0 - step_size * lam / 2.0))) @ vec.T


def run_chains(energy: Energy, x: Tensor, sampler: LangevinSampler, chains: int) -> Tensor:
    """Final states of ``chains`` independent chains on the same x: (chains, D)."""
    xs = x.expand(chains, *x.shape[1:])
    z0 = torch.randn(chains, energy.decoder.latent_dim, dtype=torch.float64)
    return sampler.run(lambda z: energy(xs, z), z0).samples[-1]


def moments(z: Tensor) -> tuple[Tensor, Tensor]:
    centred = z - z.mean(0)
    return z.mean(0), centred.T @ centred / (len(z) - 1)


def test_step_functions_are_the_equations():
    z, g, xi = torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4)
    m = torch.rand(1, 4) + 0.5
    eta = 0.3
    torch.testing.assert_close(langevin_step(z, g, xi, eta, m), z - eta * m * g + torch.sqrt(2 * eta * m) * xi)
    torch.testing.assert_close(langevin_step(z, g, xi, eta, 1.0), z - eta * g + (2 * eta) ** 0.5 * xi)
    torch.testing.assert_close(gradient_step(z, g, eta, m), z - eta * m * g)


def test_energy_gradient_matches_closed_form():
    energy, x, precision, mean, _ = linear_gaussian()
    z = torch.randn(7, 2, dtype=torch.float64)
    e, grad = energy_and_grad(lambda z: energy(x.expand(7, -1, -1, -1), z), z)
    torch.testing.assert_close(grad, (z - mean) @ precision)  # grad E = Lambda (z - mu)
    assert e.shape == (7,) and not e.requires_grad and not grad.requires_grad


def test_ula_matches_its_exact_stationary_law():
    torch.manual_seed(0)
    energy, x, precision, mean, _ = linear_gaussian()
    lam_max = torch.linalg.eigvalsh(precision).max().item()
    eta = 0.8 / lam_max  # large enough that the discretisation inflates the variance visibly
    sampler = LangevinSampler(step_size=eta, num_steps=300, burn_in=0)
    got_mean, got_cov = moments(run_chains(energy, x, sampler, chains=20000))
    want_cov = ula_stationary_cov(precision, eta)
    torch.testing.assert_close(got_mean, mean, atol=4 * want_cov.diagonal().max().sqrt().item() / 141, rtol=0)
    torch.testing.assert_close(got_cov, want_cov, rtol=0.05, atol=0.05 * want_cov.abs().max().item())
    # and the inflation is real: the largest-eigenvalue direction is visibly wider than the posterior's
    assert want_cov.diagonal().sum() > 1.1 * torch.linalg.inv(precision).diagonal().sum()


def test_small_step_ula_matches_the_analytic_posterior():
    torch.manual_seed(1)
    energy, x, precision, mean, cov = linear_gaussian(seed=3)
    lam_max = torch.linalg.eigvalsh(precision).max().item()
    sampler = LangevinSampler(step_size=0.05 / lam_max, num_steps=1500, burn_in=0)
    got_mean, got_cov = moments(run_chains(energy, x, sampler, chains=8000))
    torch.testing.assert_close(got_mean, mean, atol=0.03 * cov.diagonal().max().sqrt().item() + 1e-3, rtol=0)
    torch.testing.assert_close(got_cov, cov, rtol=0.08, atol=0.08 * cov.abs().max().item())


def test_fixed_diagonal_preconditioner_rescales_the_step():
    """With constant M, the 1-D stationary variance is 1 / (lambda (1 - eta M lambda / 2))."""
    torch.manual_seed(2)
    lam = torch.tensor([4.0, 25.0], dtype=torch.float64)
    m = torch.tensor([0.5, 0.06], dtype=torch.float64)
    eta = 0.5
    sampler = LangevinSampler(eta, num_steps=400, burn_in=0, preconditioner=FixedPreconditioner(m))
    z = sampler.run(lambda z: 0.5 * (lam * z.square()).sum(-1), torch.randn(40000, 2, dtype=torch.float64)).samples[-1]
    want = 1.0 / (lam * (1.0 - eta * m * lam / 2.0))
    torch.testing.assert_close(z.var(0), want, rtol=0.04, atol=0)


def test_adam_preconditioned_chain_samples_ula_with_its_frozen_scale():
    """M adapts during burn-in, then stays fixed: each chain is then ULA with its own constant
    diagonal M_i, so the pooled variance of the kept states in dimension d is the average over
    chains of 1 / (lambda_d (1 - eta M_id lambda_d / 2)) (a ~1% check on 20,000 chains)."""
    torch.manual_seed(3)
    lam = torch.tensor([1.0, 25.0, 400.0], dtype=torch.float64)
    eta = 0.1
    # eta * sqrt(400) = 2 sits at the stability edge, where beta=0.9's noisier M would push a few of
    # the 20,000 chains over it; beta=0.99 averages enough gradients for all to stay stable
    sampler = LangevinSampler(eta, num_steps=400, burn_in=100, preconditioner=AdamPreconditioner(beta=0.99))
    result = sampler.run(lambda z: 0.5 * (lam * z.square()).sum(-1), torch.randn(20000, 3, dtype=torch.float64))
    m = result.scale  # (B, D), frozen since step 100
    assert m.shape == (20000, 3) and m.max() <= 1.0
    want = (1.0 / (lam * (1.0 - eta * m * lam / 2.0))).mean(0)
    torch.testing.assert_close(result.samples[-1].var(0), want, rtol=0.04, atol=0)
    # and the law is not the posterior's 1 / lambda at this step size: the check can tell them apart
    assert (want * lam).max() > 1.3


def test_noise_free_chain_reaches_the_map():
    energy, x, precision, mean, _ = linear_gaussian(seed=5)
    lam_max = torch.linalg.eigvalsh(precision).max().item()
    sampler = LangevinSampler(1.0 / lam_max, num_steps=2000, noise=False)
    z = sampler.run(lambda z: energy(x, z), torch.zeros(1, 2, dtype=torch.float64)).samples[-1, 0]
    torch.testing.assert_close(z, mean, atol=1e-6, rtol=0)


def test_kept_steps_and_sample_count():
    assert kept_steps(10, burn_in=4, thin=3) == [7, 10]
    assert kept_steps(5, burn_in=0, thin=1) == [1, 2, 3, 4, 5]
    sampler = LangevinSampler(0.1, num_steps=50, burn_in=25, thin=5)
    result = sampler.run(lambda z: 0.5 * z.square().sum(-1), torch.zeros(3, 2))
    assert sampler.num_samples == 5
    assert result.samples.shape == (5, 3, 2) and result.energies.shape == (50, 3)


@pytest.mark.parametrize("kwargs", [
    {"step_size": 0.0, "num_steps": 5}, {"step_size": -1.0, "num_steps": 5}, {"step_size": 0.1, "num_steps": 0},
    {"step_size": 0.1, "num_steps": 5, "burn_in": 5}, {"step_size": 0.1, "num_steps": 5, "thin": 0},
])
def test_invalid_sampler_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        LangevinSampler(**kwargs)


def test_no_graph_survives_a_step_and_weights_are_untouched():
    """The autograd tensors alive during step t do not depend on t, outputs carry no graph, and the
    decoder's .grad stays empty, for T = 5 and T = 200 alike."""
    energy, x, *_ = linear_gaussian()
    alive: weakref.WeakSet = weakref.WeakSet()
    counts: list[int] = []

    class Saved:  # a weak-referenceable box around every tensor autograd saves for backward
        def __init__(self, t: Tensor):
            self.t = t

    def pack(t: Tensor) -> Saved:
        box = Saved(t)
        alive.add(box)
        return box

    def counted_energy(z: Tensor) -> Tensor:
        counts.append(len(alive))  # saved tensors still alive from earlier steps
        return energy(x.expand(len(z), -1, -1, -1), z)

    for steps in (5, 200):
        counts.clear()
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda box: box.t):
            result = LangevinSampler(0.01, num_steps=steps).run(counted_energy, torch.zeros(4, 2, dtype=torch.float64))
        assert max(counts) == 0, f"saved tensors accumulate across steps: {counts[:5]} ... {counts[-5:]}"
        assert not result.samples.requires_grad and result.samples.grad_fn is None
    assert all(p.grad is None for p in energy.parameters())


def test_identity_preconditioner_scale_is_one():
    pre = IdentityPreconditioner()
    assert pre.scale(pre.update(pre.init(torch.zeros(2, 3)), torch.ones(2, 3))) == 1.0


def reference_loop(energy_fn, z0: Tensor, sampler: LangevinSampler) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The inner loop as the docstrings state it, one plain operation per equation: check E and
    grad E; during burn-in M from the running chains' gradients (the Adam-style average
    v = beta v + (1 - beta) g^2, v_hat = v / (1 - beta^t), M = min(1 / (sqrt(v_hat) + eps), M_max),
    or M = 1); z <- z - eta M grad + sqrt(2 eta M) xi; a chain that turns non-finite or too large is
    put back to z0 and held. Kept samples, energies, the final M and the diverged rows, as
    ``ChainSampler.loop`` returns them."""
    adam, eta = sampler.preconditioner, sampler.step_size
    shared = getattr(adam, "shared_over_batch", False)
    z, v, scale, diverged = z0, torch.zeros_like(z0[:1] if shared else z0), torch.tensor(1.0, dtype=z0.dtype), torch.zeros(len(z0), dtype=torch.bool)
    kept, samples, energies = set(kept_steps(sampler.num_steps, sampler.burn_in, sampler.thin)), [], []
    for t in range(1, sampler.num_steps + 1):
        energy, grad = energy_and_grad(energy_fn, z)
        diverged = diverged | ~(torch.isfinite(energy) & torch.isfinite(grad).all(-1))
        grad = torch.where(diverged[:, None], 0.0, grad)
        if isinstance(adam, AdamPreconditioner) and t <= max(sampler.burn_in, 1):
            grad_sq = (grad**2)[~diverged].mean(0, keepdim=True) if shared else grad**2
            v = adam.beta * v + (1 - adam.beta) * grad_sq
            scale = (1 / (torch.sqrt(v / (1 - adam.beta**t)) + adam.eps)).clamp_max(adam.max_scale)
        energies.append(energy)
        z = z - eta * scale * grad + torch.sqrt(2 * eta * scale) * torch.randn_like(z)
        diverged = diverged | ~(z.norm(dim=-1) <= sampler.max_latent_norm * z.shape[-1] ** 0.5)
        z = torch.where(diverged[:, None], z0, z)
        if t in kept:
            samples.append(z)
    return torch.stack(samples), torch.stack(energies), scale, diverged


@pytest.mark.parametrize("precond", [IdentityPreconditioner(), AdamPreconditioner(max_scale=10.0),
                                     AdamPreconditioner(max_scale=10.0, shared_over_batch=True)],
                         ids=["none", "adam", "adam_shared"])
def test_the_loop_gives_the_reference_chain_for_the_same_noise(precond):
    """The optimised loop (fused steps, cheap divergence checks, the bias-corrected average kept
    directly) draws the reference loop's chain from the same noise: the same kept states, energies
    and diverged rows, with one chain started at NaN, chains running past a small size limit and
    chains reaching a region of infinite energy (whose gradient is finite); M agrees on the chains
    still running (a held chain's M is not used)."""
    weight = torch.randn(12, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(40, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def energy(z: Tensor) -> Tensor:  # a nonlinear decoder under a standard-normal prior
        wall = torch.where(z[:, 0] > 1.0, torch.inf, 0.0)  # E = inf there, its gradient finite (0)
        return 0.5 * (x - torch.tanh(z @ weight.T)).square().sum(-1) + 0.5 * z.square().sum(-1) + wall

    z0 = torch.randn(40, 3, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    z0[3] = float("nan")
    sampler = LangevinSampler(step_size=0.05, num_steps=30, burn_in=10, thin=4, preconditioner=precond, max_latent_norm=1.5)
    torch.manual_seed(5)
    want = reference_loop(energy, z0, sampler)
    torch.manual_seed(5)
    samples, energies, scale, diverged, accept, _ = sampler.loop(energy, z0)
    assert 2 < int(want[3].sum()) < 30 and diverged[3]  # some chains diverged, most did not
    torch.testing.assert_close(diverged, want[3])
    torch.testing.assert_close(samples, want[0], equal_nan=True)
    torch.testing.assert_close(energies, want[1], equal_nan=True)
    if isinstance(precond, AdamPreconditioner):
        running = slice(None) if precond.shared_over_batch else ~diverged
        torch.testing.assert_close(scale[running], want[2][running])
    else:
        assert scale == 1.0
    assert accept is None
