"""MALA and HMC on non-Gaussian targets whose moments are known exactly, step-size adaptation,
and the chain diagnostics (split R-hat, bulk ESS) against known answers and ArviZ."""

from __future__ import annotations

import math

import pytest
import torch
from torch import Tensor

from lpc.samplers import HMCSampler, LangevinSampler, MALASampler
from lpc.samplers.diagnostics import ess_bulk, rhat
from lpc.samplers.mala import langevin_log_proposal
from lpc.samplers.targets import Banana, SeparatedModes, moments_with_errors

BANANA = Banana(bend=0.5, sigma=0.5)
banana = BANANA.energy


def z_scores(sampler, seed: int = 0, chains: int = 4000) -> Tensor:
    torch.manual_seed(seed)
    result = sampler.run(banana, torch.randn(chains, 2, dtype=torch.float64))
    estimate, error = moments_with_errors(result.samples)
    return (estimate - BANANA.moments()) / error


def test_ula_is_biased_where_mala_and_hmc_are_exact_on_a_banana():
    ula = z_scores(LangevinSampler(step_size=0.1, num_steps=300, burn_in=100, thin=10))
    mala = z_scores(MALASampler(step_size=0.1, num_steps=800, burn_in=400, thin=10))
    hmc = z_scores(HMCSampler(step_size=0.2, num_steps=60, burn_in=20, thin=2, num_leapfrog=5))
    assert ula.abs().max() > 10  # measurably biased at this step size (E[z2] about -0.13 against 0)
    assert mala.abs().max() < 4 and hmc.abs().max() < 4, (mala, hmc)


def test_mala_and_hmc_leave_the_exact_law_invariant_at_large_steps_where_ula_drifts():
    """Started from 100,000 exact draws, 20 transitions at a large step keep the moments of a
    corrected sampler exact (within 4 standard errors); ULA's move away."""
    z0 = BANANA.sample(100_000, torch.Generator().manual_seed(0))
    errors = {}
    for name, sampler in [("ula", LangevinSampler(step_size=0.3, num_steps=20)), ("mala", MALASampler(step_size=0.3, num_steps=20)),
                          ("hmc", HMCSampler(step_size=0.77, num_steps=10, num_leapfrog=5))]:
        torch.manual_seed(1)
        estimate, error = moments_with_errors(sampler.run(banana, z0).last)  # one state per chain: iid draws
        errors[name] = ((estimate - BANANA.moments()) / error).abs().max().item()
    assert errors["mala"] < 4 and errors["hmc"] < 4 and errors["ula"] > 20, errors


def test_mala_acceptance_tends_to_one_as_the_step_shrinks():
    rates = []
    for step in (0.3, 0.03, 0.003, 0.0003):
        torch.manual_seed(0)
        result = MALASampler(step_size=step, num_steps=20, burn_in=0).run(banana, torch.randn(2000, 2, dtype=torch.float64))
        rates.append(result.accept_rate.mean().item())
    assert rates == sorted(rates) and rates[0] < 0.9 and rates[-1] > 0.999, rates


def test_hmc_with_one_leapfrog_step_is_mala():
    """L = 1, eps = sqrt(2 eta): the same proposal and the same acceptance, draw for draw."""
    z0 = torch.randn(50, 2, dtype=torch.float64)
    torch.manual_seed(3)
    mala = MALASampler(step_size=0.08, num_steps=30, burn_in=10).run(banana, z0)
    torch.manual_seed(3)
    hmc = HMCSampler(step_size=math.sqrt(0.16), num_steps=30, burn_in=10, num_leapfrog=1).run(banana, z0)
    torch.testing.assert_close(hmc.samples, mala.samples)
    torch.testing.assert_close(hmc.accept_rate, mala.accept_rate)


def test_langevin_proposal_density_is_the_gaussian_it_draws_from():
    z, grad, z_to = torch.randn(3, 4, 5, dtype=torch.float64).unbind()
    scale = torch.rand(4, 5, dtype=torch.float64) + 0.5
    step = 0.3
    exact = torch.distributions.Normal(z - step * scale * grad, (2 * step * scale).sqrt()).log_prob(z_to).sum(-1)
    difference = exact - langevin_log_proposal(z_to, z, grad, step, scale)
    # the dropped constant is -(1/2) sum_d log(4 pi eta M_d), the same for both directions of a step
    torch.testing.assert_close(difference, -0.5 * torch.log(4 * math.pi * step * scale).sum(-1))


@pytest.mark.parametrize("sampler_class, target", [(MALASampler, 0.574), (HMCSampler, 0.65)])
def test_dual_averaging_reaches_the_target_acceptance_and_then_freezes(sampler_class, target):
    torch.manual_seed(0)
    sampler = sampler_class(step_size=2.0, num_steps=400, burn_in=300, adapt_step_size=True, target_accept=target)
    result = sampler.run(banana, torch.randn(500, 2, dtype=torch.float64))
    assert result.accept_rate.mean().item() == pytest.approx(target, abs=0.08)
    assert isinstance(result.step_size, Tensor) and result.step_size.shape == (500, 1)
    assert (result.step_size < 2.0).all()  # from a step that accepts almost nothing
    with pytest.raises(ValueError, match="burn_in >= 1"):
        sampler_class(step_size=0.1, num_steps=10, burn_in=0, adapt_step_size=True)
    with pytest.raises(ValueError, match="freeze_precond=true"):
        sampler_class(step_size=0.1, num_steps=10, freeze_precond=False)


def test_rhat_is_one_for_independent_draws_and_large_for_chains_stuck_in_separate_modes():
    torch.manual_seed(0)
    assert rhat(torch.randn(500, 4, 20)).max() < 1.02
    # a well-separated mixture, two chains per example started in each mode: they never cross
    mixture = SeparatedModes(offset=4.0, scale=0.5).energy
    starts = torch.tensor([-4.0, -4.0, 4.0, 4.0]).repeat_interleave(3)[:, None].expand(12, 2)  # C = 4 chains x B = 3
    result = MALASampler(step_size=0.2, num_steps=400, burn_in=100, chains=4).run(mixture, starts.double())
    assert result.samples.shape == (4 * 300, 3, 2) and result.chains == 4
    assert (result.diagnostics["rhat"] > 1.1).all()
    same_mode = MALASampler(step_size=0.2, num_steps=400, burn_in=100, chains=4).run(mixture, starts.abs().double())
    assert (same_mode.diagnostics["rhat"] < 1.1).all()


def test_ess_of_independent_draws_is_their_number_and_shrinks_with_autocorrelation():
    torch.manual_seed(0)
    assert ess_bulk(torch.randn(1000, 4, 20)).mean() == pytest.approx(4000, rel=0.05)
    rho = 0.9
    noise = torch.randn(4000, 4, 20, dtype=torch.float64)
    ar = torch.zeros_like(noise)
    for t in range(1, len(noise)):
        ar[t] = rho * ar[t - 1] + noise[t]
    assert ess_bulk(ar).mean() == pytest.approx(16000 * (1 - rho) / (1 + rho), rel=0.15)


def test_diagnostics_equal_arviz():
    """ArviZ 0.23.4 az.rhat / az.ess(method="bulk") on these draws (rank-normalised split R-hat,
    bulk ESS)."""
    g = torch.Generator().manual_seed(7)
    noise = torch.randn(60, 3, 2, generator=g, dtype=torch.float64)
    draws = torch.zeros_like(noise)
    for t in range(1, 60):
        draws[t] = 0.7 * draws[t - 1] + noise[t]
    draws[..., 1] += torch.tensor([0.0, 0.4, 0.8], dtype=torch.float64)
    torch.testing.assert_close(rhat(draws), torch.tensor([1.0163477793445348, 1.1394577464986075], dtype=torch.float64))
    torch.testing.assert_close(ess_bulk(draws), torch.tensor([46.67903386816446, 20.31912384242117], dtype=torch.float64))


def test_several_chains_per_example_merge_per_example():
    sampler = LangevinSampler(step_size=0.05, num_steps=12, burn_in=4, thin=2, chains=3)
    z0 = torch.randn(3 * 5, 2)
    z0[4] = float("nan")  # chain 0 of example 4 diverges: the example is flagged
    result = sampler.run(lambda z: 0.5 * z.square().sum(-1), z0)
    assert result.samples.shape == (4 * 3, 5, 2) and result.last.shape == (3, 5, 2)
    assert result.diverged.tolist() == [False, False, False, False, True]
    assert result.energies.shape == (12, 5) and set(result.diagnostics) == {"rhat", "ess_bulk"}
    kept = result.subset(~result.diverged)
    assert kept.samples.shape == (12, 4, 2) and kept.diagnostics["rhat"].shape == (4, 2)
    with pytest.raises(ValueError, match="multiple of sampler.chains=3"):
        sampler.run(lambda z: z.sum(-1), torch.zeros(4, 2))
