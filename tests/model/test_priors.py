"""Hierarchical priors: the one-layer case is today's N(0, I) exactly; a linear-Gaussian hierarchy
has the exact joint, posterior and ancestral moments; every method trains, evaluates and resumes on
two and three layers."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import lightning as L
import pytest
import torch
from conftest import ROOT, run_train
from torch import Tensor

from lpc.config.build import build
from lpc.evaluation.ais import AIS
from lpc.jobs.train import train
from lpc.methods.warmstart import reverse_kl_loss
from lpc.model.energy import Energy
from lpc.model.gaussian import standard_normal_log_prob
from lpc.model.likelihoods import BernoulliLikelihood, GaussianLikelihood
from lpc.model.priors import GaussianHierarchy
from lpc.networks import MLPDecoder
from lpc.samplers import MALASampler, energy_and_grad
from lpc.samplers.annealing import SampledDensity

FAST = ["num_steps=8", "burn_in=4", "sampler.thin=2", "trainer.max_steps=12", "trainer.val_check_interval=6", "callbacks=none",
        "logger=csv", "seed=2"]
TWO = ["prior=hierarchical", "prior.sizes=[6,16]"]
THREE = ["prior=hierarchical", "prior.sizes=[4,8,16]", "prior.learn_sigma=true", "prior.hidden=[12]"]


def without_clocks(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("_ms")}


# --- one layer: today's prior ----------------------------------------------------------------------

def test_one_layer_energy_and_gradient_are_the_standard_normal_ones():
    torch.manual_seed(0)
    decoder = MLPDecoder(5, channels=1, image_size=4, hidden=[7])
    likelihood = BernoulliLikelihood()
    x = torch.bernoulli(torch.full((9, 1, 4, 4), 0.3))
    z = torch.randn(9, 5)
    energy = Energy(decoder, likelihood, GaussianHierarchy([5]))
    by_hand = lambda z: -likelihood.log_prob(x, decoder(z)) + 0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)  # noqa: E731
    got, got_grad = energy_and_grad(lambda z: energy(x, z), z)
    want, want_grad = energy_and_grad(by_hand, z)
    assert torch.equal(got, want) and torch.equal(got_grad, want_grad)
    assert torch.equal(GaussianHierarchy([5]).log_prob(z), standard_normal_log_prob(z))
    one = GaussianHierarchy([5], learn_sigma=True)
    assert not one.state_dict() and not list(one.parameters())  # no state: checkpoints of N(0, I) models are unchanged


@pytest.mark.parametrize("method", ["lpc", "vae", "lpc_reverse_kl"])
def test_one_layer_hierarchy_trains_exactly_as_the_default_prior(compose_cfg, method):
    """`prior=hierarchical prior.sizes=[16]` is the default run, metric for metric."""
    default = without_clocks(train(compose_cfg(f"method={method}", *FAST)))
    one_layer = without_clocks(train(compose_cfg(f"method={method}", "prior=hierarchical", "prior.sizes=[16]", *FAST)))
    assert one_layer == default and len(default) > 8


# --- a linear-Gaussian hierarchy: exact answers ----------------------------------------------------

def linear_gaussian_hierarchy(seed: int = 0, top: int = 2, bottom: int = 3, sigma: float = 0.6, noise: float = 0.5):
    """z2 ~ N(0, I), z1 = A z2 + a + sigma e1, x = W z1 + b + noise e: the energy, one x, and the
    exact Gaussian of v = [z2, z1, x] (mean, covariance) it implies."""
    g = torch.Generator().manual_seed(seed)
    prior = GaussianHierarchy([top, bottom], act="identity", sigma=sigma).double()
    decoder = MLPDecoder(bottom, channels=1, image_size=2, hidden=[]).double()
    with torch.no_grad():
        for p in [*prior.parameters(), *decoder.parameters()]:
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    (lin,) = [m for m in prior.maps[0] if isinstance(m, torch.nn.Linear)]
    A, a = lin.weight.detach(), lin.bias.detach()
    W, b = decoder.net[0].weight.detach(), decoder.net[0].bias.detach()
    pixels = W.shape[0]
    eye = lambda n: torch.eye(n, dtype=torch.float64)  # noqa: E731
    zero = lambda r, c: torch.zeros(r, c, dtype=torch.float64)  # noqa: E731
    # v = M e + c with e ~ N(0, I): z2 = e2, z1 = A e2 + sigma e1 + a, x = W z1 + noise ex + b
    M = torch.cat([torch.cat([eye(top), zero(top, bottom), zero(top, pixels)], 1),
                   torch.cat([A, sigma * eye(bottom), zero(bottom, pixels)], 1),
                   torch.cat([W @ A, sigma * W, noise * eye(pixels)], 1)])
    mean = torch.cat([torch.zeros(top, dtype=torch.float64), a, W @ a + b])
    energy = Energy(decoder, GaussianLikelihood(sigma=noise), prior).double()
    x = torch.randn(pixels, generator=g, dtype=torch.float64)
    return energy, x.view(1, 1, 2, 2), mean, M @ M.T


def test_linear_gaussian_energy_is_the_exact_negative_log_joint():
    energy, x, mean, cov = linear_gaussian_hierarchy()
    z = torch.randn(11, 5, dtype=torch.float64)
    xs = x.expand(11, -1, -1, -1)
    joint = torch.distributions.MultivariateNormal(mean, cov).log_prob(torch.cat([z, xs.flatten(1)], 1))
    torch.testing.assert_close(energy(xs, z), -joint)


def posterior(mean: Tensor, cov: Tensor, x: Tensor, d: int) -> tuple[Tensor, Tensor]:
    """The exact p(z | x) of the joint Gaussian over [z (d), x]."""
    gain = cov[:d, d:] @ torch.linalg.inv(cov[d:, d:])
    return mean[:d] + gain @ (x.flatten() - mean[d:]), cov[:d, :d] - gain @ cov[d:, :d]


def second_moments(z: Tensor) -> Tensor:
    """Every E[z_i z_j], i <= j, per row: (..., D) -> (..., D (D + 1) / 2)."""
    i, j = torch.triu_indices(z.shape[-1], z.shape[-1])
    return z[..., i] * z[..., j]


def test_sampler_long_run_moments_are_the_exact_posterior_of_both_layers():
    """MALA on E(x, z2, z1): the chains' means and every second moment, within and across the two
    layers, agree with the exact Gaussian posterior to 4.5 standard errors (of the per-chain averages)."""
    torch.manual_seed(0)
    energy, x, mean, cov = linear_gaussian_hierarchy()
    post_mean, post_cov = posterior(mean, cov, x, 5)
    chains = 3000
    xs = x.expand(chains, -1, -1, -1)
    result = MALASampler(step_size=0.05, num_steps=600, burn_in=200, thin=10).run(
        lambda z: energy(xs, z), energy.prior.sample(chains, dtype=torch.float64))
    per_chain = torch.cat([result.samples, second_moments(result.samples)], -1).mean(0)  # (chains, 5 + 15)
    estimate, error = per_chain.mean(0), per_chain.std(0) / chains**0.5
    want = torch.cat([post_mean, second_moments(post_mean) + post_cov[tuple(torch.triu_indices(5, 5))]])
    z_scores = (estimate - want) / error
    assert z_scores.abs().max() < 4.5, z_scores
    assert post_cov[:2, 2:].abs().max() > 0.05  # the layers are correlated a posteriori: the cross terms test something


def test_ancestral_samples_have_the_hierarchy_exact_moments():
    energy, _, mean, cov = linear_gaussian_hierarchy(seed=1)
    torch.manual_seed(0)
    n = 200_000
    z = energy.prior.sample(n, dtype=torch.float64)
    want_cov = cov[:5, :5]
    se_mean = (want_cov.diagonal() / n).sqrt()
    se_cov = ((want_cov.diagonal()[:, None] * want_cov.diagonal()[None, :] + want_cov.square()) / n).sqrt()
    assert ((z.mean(0) - mean[:5]) / se_mean).abs().max() < 4.5
    assert ((torch.cov(z.T) - want_cov) / se_cov).abs().max() < 4.5
    z_mode = energy.prior.sample(3, dtype=torch.float64, scale=0.0)  # the predictions from z2 = 0
    torch.testing.assert_close(z_mode, mean[:5].expand(3, -1))


def test_ais_from_the_ancestral_prior_reaches_the_exact_marginal_and_bdmc_brackets_it():
    """AIS started from ancestral draws of the hierarchy (``SampledDensity``, the evaluation's start
    for prior=hierarchical), on 16 images simulated from the linear-Gaussian model with their latents:
    the BDMC bounds bracket the exact log p(x) (per image on average), within 0.15 nats, and close in
    as the annealing lengthens."""
    energy, _, mean, cov = linear_gaussian_hierarchy()
    chains, examples, d = 16, 16, 5
    torch.manual_seed(0)
    z_star = energy.prior.sample(examples, dtype=torch.float64)
    with torch.no_grad():
        sims = energy.likelihood.sample(energy.decode(z_star))  # (16, 1, 2, 2)
    truth = torch.distributions.MultivariateNormal(mean[d:], cov[d:, d:]).log_prob(sims.flatten(1))
    rows = sims.repeat(chains, 1, 1, 1)  # chain-major, as the evaluation tiles them
    start = SampledDensity(lambda: energy.prior.sample(chains * examples, dtype=torch.float64), energy.prior.log_prob)
    assert isinstance(energy.prior.start_density(4), SampledDensity)  # what the evaluation starts AIS from
    gaps = []
    for length in (50, 500):
        ais = AIS(num_distributions=length, chains=chains, num_leapfrog=2, step_size=0.1)
        bounds = ais.bdmc(lambda z: energy(rows, z), start, z_star.repeat(chains, 1))
        lower, upper = bounds.lower - truth, bounds.upper - truth  # (16,) per image
        gaps.append((upper - lower).mean().item())
    se = lambda t: 3 * t.std().item() / examples**0.5  # noqa: E731 - 3 standard errors over the images
    assert -0.15 < lower.mean() <= se(lower) and -se(upper) <= upper.mean() < 0.15, (lower.mean(), upper.mean())
    assert gaps[1] < 0.5 * gaps[0], gaps


def test_the_vae_kl_of_a_hierarchy_is_unbiased_and_the_encoder_loss_leaves_theta_alone():
    """KL(q || p) for a hierarchy is the one-draw estimate log q(z) - log p(z): its mean over draws is
    the closed-form KL of two Gaussians; and the reverse-KL warm-start's loss sends no gradient to
    the prior's maps and sigmas (part of theta), only to q."""
    energy, _, mean, cov = linear_gaussian_hierarchy()
    q_mean, q_log_std = torch.randn(1, 5, dtype=torch.float64) * 0.3, torch.full((1, 5), -0.5, dtype=torch.float64)
    n = 200_000
    z = q_mean + q_log_std.exp() * torch.randn(n, 5, dtype=torch.float64)
    estimates = energy.prior.kl(q_mean.expand(n, -1), q_log_std.expand(n, -1), z)
    q = torch.distributions.MultivariateNormal(q_mean[0], torch.diag(q_log_std[0].exp() ** 2))
    exact = torch.distributions.kl_divergence(q, torch.distributions.MultivariateNormal(mean[:5], cov[:5, :5]))
    assert abs(estimates.mean() - exact) < 4 * estimates.std() / n**0.5
    learned = Energy(energy.decoder, energy.likelihood, GaussianHierarchy([2, 3], learn_sigma=True).double())
    q_mean.requires_grad_(True)
    x = torch.randn(1, 1, 2, 2, dtype=torch.float64)
    reverse_kl_loss(learned, x, q_mean, q_log_std).sum().backward()
    assert q_mean.grad.abs().sum() > 0 and all(p.grad is None for p in learned.parameters())


def test_hierarchy_settings_are_checked():
    with pytest.raises(ValueError, match="sizes"):
        GaussianHierarchy([])
    with pytest.raises(ValueError, match="sigma"):
        GaussianHierarchy([2, 3, 4], sigma=[1.0])
    with pytest.raises(ValueError, match="set latent_dim to the last of prior.sizes"):
        Energy(MLPDecoder(4, 1, 4), BernoulliLikelihood(), GaussianHierarchy([2, 3]))


# --- every method on two and three layers ----------------------------------------------------------

AIS_EVAL = ["eval=ais", "eval.sample_quality.enabled=false", "eval.ais.num_distributions=20", "eval.ais.check_distributions=[10]", "eval.ais.chains=2",
       "eval.ais.num_examples=8", "eval.likelihood.num_examples=8", "eval.ais.bdmc_examples=4", "eval.ais.batch_size=8",
       "eval.ais.progress=false", "~callbacks.image_grids", "~callbacks.model_checkpoint", "callbacks.evaluation.every_n_steps=0"]


@pytest.mark.parametrize("layers", [TWO, THREE], ids=["L2", "L3"])
@pytest.mark.parametrize("method", ["lpc", "pc", "vae", "iwae", "lpc_jeffreys"])
def test_every_method_trains_and_evaluates_on_a_hierarchy(compose_cfg, method, layers):
    """A few steps on the digits, then the shared evaluation (ELBO, IWAE, AIS from the prior and,
    with an encoder, from q; BDMC) on the hierarchy's density: finite, and the prior's maps learned."""
    cfg = compose_cfg(f"method={method}", *layers, *[o for o in FAST if o != "callbacks=none"], *AIS_EVAL)
    sizes = list(cfg.prior.sizes)
    assert cfg.model.decoder.latent_dim == sizes[-1] and cfg.state_dim == sum(sizes)
    metrics = train(cfg)
    wanted = ["train/loss", "val/energy", "test/elbo_" + ("encoder" if method in ("vae", "iwae", "lpc_jeffreys") else "chain"),
              "test/ais_prior", "test/bdmc_gap_prior", "test/log_likelihood"]
    assert all(math.isfinite(metrics[k]) for k in wanted), {k: metrics.get(k) for k in wanted}
    assert ("test/ais_encoder" in metrics) == (method in ("vae", "iwae", "lpc_jeffreys"))


@pytest.mark.parametrize("method", ["lpc"])
def test_a_hierarchy_learns_its_prior_and_evaluates_from_its_checkpoint(tmp_path, compose_cfg, method):
    """Trained with learned sigmas: the prior's maps and sigmas moved (they are part of theta), and
    scripts/evaluate.py judges the checkpoint by AIS from the hierarchy's own ancestral prior."""
    run_train(tmp_path / "run", f"method={method}", *THREE, *[o for o in FAST if o != "callbacks=none"],
              "eval=fast", "eval.sample_quality.enabled=false")
    ckpt = tmp_path / "run" / "checkpoints" / "last.ckpt"
    state = torch.load(ckpt, weights_only=False)["state_dict"]
    L.seed_everything(2)  # as train() does before it builds the model: the run's initial weights
    _, untrained = build(compose_cfg(f"method={method}", *THREE))
    initial = untrained.prior.state_dict()
    assert state["energy.prior.log_sigma"].shape == (2,) and (state["energy.prior.log_sigma"] != 0).all()
    moved = [k for k, v in initial.items() if k != "log_sigma" and not torch.equal(state[f"energy.prior.{k}"], v)]
    assert len(moved) == len(initial) - 1, moved  # every map's weights and biases were trained
    proc = subprocess.run(
        [sys.executable, "scripts/evaluate.py", f"ckpt_path={ckpt}", "eval=ais", "eval.sample_quality.enabled=false",
         "eval.ais.num_distributions=30", "eval.ais.chains=2", "eval.ais.num_examples=8", "eval.likelihood.num_examples=8",
         "eval.ais.bdmc_examples=4", "eval.ais.batch_size=8", "eval.ais.progress=false", "logger=csv",
         f"hydra.run.dir={tmp_path / 'eval'}"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = json.loads((tmp_path / "eval" / "metrics.json").read_text())["metrics"]
    assert all(math.isfinite(got[k]) for k in ("test/ais_prior", "test/bdmc_gap_prior", "test/iwae10_chain" if method == "lpc"
                                                else "test/iwae10_encoder")), got


@pytest.mark.parametrize("method", ["lpc", "vae"])
def test_a_resumed_hierarchical_run_ends_where_an_uninterrupted_one_does(compose_cfg, tmp_path, method):
    """12 steps, against 6 and a resume from their checkpoint to 12 (learned sigmas, three layers)."""
    args = [f"method={method}", *THREE, *[o for o in FAST if o not in ("callbacks=none", "trainer.max_steps=12")],
            "eval=fast", "eval.sample_quality.enabled=false", "callbacks=model_checkpoint", "trainer.enable_progress_bar=false"]
    whole = train(compose_cfg(*args, "trainer.max_steps=12", f"paths.output_dir={tmp_path / 'whole'}"))
    train(compose_cfg(*args, "trainer.max_steps=6", f"paths.output_dir={tmp_path / 'first'}"))
    ckpt = tmp_path / "first" / "checkpoints" / "last.ckpt"
    resumed = train(compose_cfg(*args, "trainer.max_steps=12", f"ckpt_path={ckpt}", f"paths.output_dir={tmp_path / 'resumed'}"))
    compared = [k for k in whole if k.split("/")[0] in ("train", "val", "eval")]
    assert len(compared) > 10
    for key in compared:
        assert resumed[key] == pytest.approx(whole[key], rel=1e-5, abs=1e-6), key
