"""Annealed importance sampling and BDMC against exact log-likelihoods: a probabilistic-PCA model
(linear-Gaussian, log p(x) in closed form), a nonlinear toy decoder, and the evaluation's AIS metrics."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch
from conftest import ROOT, NoHostSync
from test_train import FAST
from torch import Tensor
from torch.utils.data import TensorDataset

from lpc.evaluation.ais import AIS, compiled_annealing, log_mean_exp, weights_ess
from lpc.evaluation.elbo import importance_log_weights, iwae_bound
from lpc.evaluation.protocol import (
    AnnealedLikelihood,
    Evaluator,
    LikelihoodBounds,
    SampleQuality,
)
from lpc.jobs.train import train
from lpc.methods.vae import VAE
from lpc.model.energy import Energy
from lpc.model.gaussian import standard_normal_log_prob
from lpc.model.likelihoods import GaussianLikelihood
from lpc.networks.mlp import MLPDecoder, MLPEncoder
from lpc.samplers.annealing import (
    Adaptation,
    AnnealedState,
    DiagonalGaussian,
    adapt_step_size,
    anneal,
    sigmoid_schedule,
)

D, P, SIGMA, B = 2, 6, 0.3, 16  # latent and data dimensions, noise scale, examples


class PPCA:
    """x = W z + b + sigma * noise, z ~ N(0, I): posterior N(C W^T (x - b) / sigma^2, C) with
    C = (I + W^T W / sigma^2)^-1, and log p(x) = log N(x; b, W W^T + sigma^2 I)."""

    def __init__(self, seed: int = 0):
        g = torch.Generator().manual_seed(seed)
        self.w, self.b = torch.randn(P, D, generator=g), 0.1 * torch.randn(P, generator=g)
        self.z = torch.randn(B, D, generator=g)  # the latents the data were simulated from
        self.x = self.z @ self.w.T + self.b + SIGMA * torch.randn(B, P, generator=g)
        self.cov = torch.linalg.inv(torch.eye(D) + self.w.T @ self.w / SIGMA**2)

    def energy(self, x: Tensor, z: Tensor) -> Tensor:
        resid = x - z @ self.w.T - self.b
        return (0.5 * resid.square().sum(-1) / SIGMA**2 + P * math.log(SIGMA) + 0.5 * P * math.log(2 * math.pi)
                - standard_normal_log_prob(z))

    def log_px(self) -> Tensor:
        cov = self.w @ self.w.T + SIGMA**2 * torch.eye(P)
        return torch.distributions.MultivariateNormal(self.b, cov).log_prob(self.x)

    def posterior(self) -> DiagonalGaussian:
        """The exact posterior's marginals (diagonal; exact when C is diagonal, see test)."""
        mean = (self.x - self.b) @ self.w @ self.cov / SIGMA**2
        return DiagonalGaussian(mean, 0.5 * torch.diagonal(self.cov).log().expand(B, D))

    def rows(self, chains: int):
        """(energy over chains x B rows, the prior over those rows, the true latents tiled)."""
        xs = self.x.repeat(chains, 1)
        zeros = torch.zeros(chains * B, D)
        return (lambda z: self.energy(xs, z)), DiagonalGaussian(zeros, zeros), self.z.repeat(chains, 1)


def test_sigmoid_schedule_runs_from_0_to_1_increasing():
    betas = sigmoid_schedule(50)
    assert len(betas) == 51 and betas[0] == 0.0 and betas[-1] == pytest.approx(1.0)
    assert all(b < a for b, a in zip(betas, betas[1:]))
    steps = [a - b for b, a in zip(betas, betas[1:])]
    assert steps[0] < steps[25] and steps[-1] < steps[25]  # denser near both ends
    assert sigmoid_schedule(1) == [0.0, 1.0]


def test_step_size_adaptation_moves_towards_the_target_and_is_clamped():
    eps = torch.tensor([0.1, 0.1, 0.5, 1e-4])
    out = adapt_step_size(eps, torch.tensor([0.9, 0.1, 0.9, 0.1]), 0.65, 1.02, 1e-4, 0.5)
    assert torch.allclose(out, torch.tensor([0.102, 0.1 / 1.02, 0.5, 1e-4]))


def test_annealed_energy_interpolates_start_and_target():
    z = torch.randn(4, D)
    state = AnnealedState(z, torch.full((4,), 10.0), torch.ones(4, D), torch.full((4,), 2.0), -torch.ones(4, D),
                          torch.full((4,), 0.25))
    assert torch.allclose(state.energy, torch.full((4,), 0.75 * 2 + 0.25 * 10))
    assert torch.allclose(state.grad, torch.full((4, D), -0.75 + 0.25))
    assert torch.allclose(state.log_ratio, torch.full((4,), -8.0))


def test_log_mean_exp_and_weight_ess():
    log_w = torch.log(torch.tensor([[1.0, 1.0], [3.0, 1.0]]))  # (chains, examples)
    assert torch.allclose(log_mean_exp(log_w), torch.log(torch.tensor([2.0, 1.0])))
    assert torch.allclose(weights_ess(log_w), torch.tensor([16 / 10, 2.0]))


def bdmc_errors(model: PPCA, num: int, chains: int = 16) -> tuple[float, float]:
    """The BDMC bounds' mean errors (forward AIS = the lower one, reverse AIS = the upper one) in nats
    per example, on data simulated from the model."""
    torch.manual_seed(0)
    energy_fn, prior, z_true = model.rows(chains)
    bounds = AIS(num_distributions=num, chains=chains).bdmc(energy_fn, prior, z_true)
    exact = model.log_px()
    return (bounds.lower - exact).mean().item(), (bounds.upper - exact).mean().item()


def test_ais_approaches_the_exact_log_likelihood_and_bdmc_brackets_it():
    errors = {num: bdmc_errors(PPCA(), num) for num in (10, 100, 1000)}
    lower = [errors[num][0] for num in (10, 100, 1000)]
    upper = [errors[num][1] for num in (10, 100, 1000)]
    assert lower[0] < lower[1] < lower[2] and abs(lower[2]) < 0.05, errors  # AIS rises to within 0.05 nats
    assert upper[0] > upper[1] > upper[2] > -0.05, errors  # the reverse chain comes down from above
    assert lower[0] < -1.0 and upper[0] > 1.0  # a too short schedule: a wide bracket, not an inverted one


def test_ais_from_the_exact_posterior_gives_log_px_for_every_chain():
    model = PPCA()
    model.w[:, 1] = 0.0  # a diagonal posterior covariance, so the diagonal start is the exact posterior
    model.w[:, 0] = torch.linspace(-1, 1, P)
    model.cov = torch.linalg.inv(torch.eye(D) + model.w.T @ model.w / SIGMA**2)
    model.x = model.z @ model.w.T + model.b + SIGMA * torch.randn(B, P)
    chains = 4
    energy_fn, _, _ = model.rows(chains)
    posterior = model.posterior()
    start = DiagonalGaussian(posterior.mean.repeat(chains, 1), posterior.log_std.repeat(chains, 1))
    estimate = AIS(num_distributions=5, chains=chains).estimate(energy_fn, start)
    assert torch.allclose(estimate.log_weights, model.log_px().double().expand(chains, B), atol=1e-4)
    assert torch.allclose(estimate.ess.float(), torch.full((B,), float(chains)), atol=1e-3)


class ToyDecoder(torch.nn.Module):
    """A fixed nonlinear decoder z (2) -> x (6)."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(3)
        self.w1, self.w2 = torch.randn(D, 16, generator=g), torch.randn(16, P, generator=g) / 2
        self.latent_dim = D

    def forward(self, z: Tensor) -> Tensor:
        return torch.tanh(z @ self.w1) @ self.w2


def test_ais_is_at_or_above_iwae_of_a_poor_proposal_on_a_nonlinear_decoder():
    torch.manual_seed(0)
    decoder = ToyDecoder()
    likelihood = GaussianLikelihood(sigma=0.2, sigma_mode="fixed")
    energy = Energy(decoder, likelihood)
    z = torch.randn(B, D)
    x = likelihood.sample(decoder(z))
    chains = 16
    xs = x.repeat(chains, 1)
    zeros = torch.zeros(chains * B, D)
    ais = AIS(num_distributions=300, chains=chains).estimate(lambda z: energy(xs, z), DiagonalGaussian(zeros, zeros))
    poor = (torch.full((B, D), 0.5), torch.full((B, D), math.log(0.2)))  # too narrow, off centre
    log_w = importance_log_weights(lambda z: -energy(x, z), *poor, 100)
    iwae = iwae_bound(log_w, 100)
    assert ais.log_px.mean() > iwae.mean() + 1.0, (ais.log_px, iwae)  # the mean over test points, as reported


def test_the_frozen_step_pass_reproduces_from_the_same_seed():
    model = PPCA()
    energy_fn, prior, _ = model.rows(4)
    ais = AIS(num_distributions=40, chains=4)
    runs = []
    for _ in range(2):
        torch.manual_seed(7)
        runs.append(ais.estimate(energy_fn, prior))
    assert torch.equal(runs[0].log_weights, runs[1].log_weights) and torch.equal(runs[0].step_sizes, runs[1].step_sizes)
    # the estimating pass ran with the first pass's adapted step sizes, frozen: rerunning it with them from
    # the same noise gives the same weights, and the sizes it reports are the ones it was given
    torch.manual_seed(7)
    first = ais.run(energy_fn, prior, prior.sample(), ais.betas(), None, None)
    frozen = ais.run(energy_fn, prior, prior.sample(), ais.betas(), first.step_sizes, None)
    assert torch.equal(first.step_sizes, runs[0].step_sizes) and torch.equal(frozen.log_weights, runs[0].log_weights.flatten())
    assert first.step_sizes.std(0).max() > 0  # adapted per chain: the chains' sizes differ


@pytest.mark.parametrize("start", ["gaussian", "sampled"])
def test_the_compiled_annealing_gives_the_eager_weights_for_the_same_noise(start):
    """eval.ais.compile=torch_compile: stretches of transitions compiled (chunks of 3 over K - 1 = 9,
    so a shorter last one), both passes; a start density whose gradient is autograd's (sampled) too."""
    from lpc.samplers.annealing import SampledDensity

    torch.manual_seed(0)
    energy = Energy(ToyDecoder(), GaussianLikelihood(sigma=0.2, sigma_mode="fixed"))
    xs = torch.randn(3 * B, P)
    prior = DiagonalGaussian(torch.zeros(3 * B, D), torch.zeros(3 * B, D))
    if start == "sampled":
        prior = SampledDensity(lambda: torch.randn(3 * B, D), standard_normal_log_prob)
    runs, calls = [], compiled_annealing().calls
    for mode in ("eager", "torch_compile"):
        torch.manual_seed(3)
        runs.append(AIS(num_distributions=10, chains=3, compile=mode, compile_chunk=3).estimate(lambda z: energy(xs, z), prior))
    eager, compiled = runs
    assert compiled_annealing().failed is None and compiled_annealing().calls - calls == 2 * 3  # 3 stretches per pass, compiled
    assert AIS(compile="torch_compile")._compiled is compiled_annealing()  # one per process: every AIS shares its graphs
    torch.testing.assert_close(compiled.log_weights, eager.log_weights, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(compiled.step_sizes, eager.step_sizes, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(compiled.accept_rate, eager.accept_rate, rtol=1e-4, atol=1e-4)
    assert eager.step_sizes.shape == (9, 3 * B)


def test_the_annealing_loop_makes_no_host_sync():
    model = PPCA()
    energy_fn, prior, z_true = model.rows(2)
    betas = sigmoid_schedule(6)
    with NoHostSync():
        adapted = anneal(energy_fn, prior, prior.sample(), betas, torch.full((2 * B,), 0.05), 2, adaptation=Adaptation())
        out = anneal(energy_fn, prior, z_true, betas[::-1], adapted.step_sizes.flip(0), 2, scale=torch.ones(2 * B, D))
    assert out.log_weights.shape == (2 * B,)


def test_ais_settings_are_checked():
    with pytest.raises(ValueError, match="mass_matrix"):
        AIS(mass_matrix="full")
    with pytest.raises(ValueError, match="step_size"):
        AIS(step_size=1.0, max_step_size=0.5)
    with pytest.raises(ValueError, match="starts"):
        AnnealedLikelihood(starts=["posterior"])
    with pytest.raises(ValueError, match="eval.ais.compile must be eager or torch_compile"):
        AIS(compile="cuda_graph")


def test_the_evaluation_reports_ais_bdmc_and_names_the_headline_estimator():
    torch.manual_seed(0)
    decoder = MLPDecoder(latent_dim=2, channels=1, image_size=3, hidden=[16])
    model = VAE(MLPEncoder(latent_dim=2, channels=1, image_size=3, hidden=[16]), decoder,
                GaussianLikelihood(sigma=0.2, sigma_mode="fixed"), optimizer=torch.optim.Adam)
    images = torch.rand(12, 1, 3, 3)
    ais = AnnealedLikelihood(enabled=True, num_distributions=30, chains=4, num_examples=10, batch_size=4, bdmc_examples=6)
    evaluator = Evaluator(SampleQuality(enabled=False), LikelihoodBounds(num_examples=10, k=[1, 10]), ais=ais)
    result = evaluator.evaluate(model, TensorDataset(images, images), (0.0, 1.0))
    m = result.metrics
    for start in ("prior", "encoder"):
        assert {f"ais_{start}", f"ais_{start}_ess", f"ais_{start}_accept", f"bdmc_gap_{start}"} <= set(m)
        assert m[f"bdmc_gap_{start}"] == pytest.approx(m[f"bdmc_upper_{start}"] - m[f"bdmc_lower_{start}"])
        assert 1.0 <= m[f"ais_{start}_ess"] <= 4.0 and 0.0 < m[f"ais_{start}_accept"] <= 1.0
    best = result.estimators["log_likelihood"]
    assert m["log_likelihood"] == m[best] == max(m["ais_prior"], m["ais_encoder"], m["iwae10_encoder"])
    best_ais = max(("ais_prior", "ais_encoder"), key=m.__getitem__)
    assert m["bdmc_gap"] == m[f"bdmc_gap_{best_ais.removeprefix('ais_')}"]


def test_the_ais_benchmark_runs_end_to_end(compose_cfg, tmp_path):
    """scripts/ais_benchmark.py at tiny sizes: both tables filled (their numbers are not checked)."""
    train(compose_cfg(*FAST, "callbacks=model_checkpoint"))
    out = tmp_path / "bench"
    cmd = [sys.executable, "scripts/ais_benchmark.py", "--data", "digits", "--examples", "3", "--batch-size", "3",
           "--paper-distributions", "3", "--ais-distributions", "4", "--ckpt-path", str(tmp_path / "checkpoints" / "last.ckpt"),
           "--lengths", "3", "6", "--bdmc-examples", "2", "--overhead-distributions", "3", "--overhead-repeats", "1",
           "--out", str(out)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "ais_benchmark.json").read_text())
    assert [r["estimator"] for r in result["cost"]] == [
        "IWAE_100", "AIS from the prior (eval=ais)", "AIS from the prior (eval=ais_paper)"]
    assert all(r["s_per_example"] > 0 for r in result["cost"])
    assert [r["K"] for r in result["convergence"]] == ["", 3, 6]
    assert all(math.isfinite(r["ais_prior"]) and "bdmc_gap_prior" in r for r in result["convergence"][1:])
    [overhead] = result["overhead"]
    assert overhead["rows"] == 3 * 16 and overhead["minimal_ms"] > 0 and overhead["anneal_ms"] > 0 and overhead["compiled_ms"] > 0
    assert overhead["compiled_ratio_iqr"][0] <= overhead["compiled_ratio"] <= overhead["compiled_ratio_iqr"][1]
    assert "## Convergence" in (out / "ais_benchmark.md").read_text()


def test_the_benchmarks_minimal_ais_is_the_same_algorithm():
    """The AIS benchmark's plain reference loop (lpc.benchmarks.ais_cost) gives anneal's log weights for the same noise, so the
    overhead table compares like with like."""
    from lpc.benchmarks.ais_cost import minimal_ais

    weight = torch.randn(6, 2, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)

    def energy(z: torch.Tensor) -> torch.Tensor:
        return 0.5 * (x - torch.tanh(z @ weight.T)).square().sum(-1) + 0.5 * z.square().sum(-1)

    start = DiagonalGaussian(torch.zeros(8, 2, dtype=torch.float64), torch.zeros(8, 2, dtype=torch.float64))
    z0, betas, eps = start.sample(), sigmoid_schedule(30), torch.full((8,), 0.3, dtype=torch.float64)
    torch.manual_seed(3)
    want = anneal(energy, start, z0, betas, eps, 2, adaptation=Adaptation()).log_weights
    torch.manual_seed(3)
    torch.testing.assert_close(minimal_ais(energy, z0, betas, eps, 2, Adaptation()), want)


def test_ais_and_iwae_must_judge_the_same_test_images(compose_cfg):
    """log_likelihood takes the tightest of both estimates: on other images it would compare other data."""
    assert compose_cfg("eval=ais", "eval.likelihood.num_examples=50").eval.ais.num_examples == 50  # follows by default
    with pytest.raises(ValueError, match="must be equal"):
        Evaluator(SampleQuality(enabled=False), LikelihoodBounds(num_examples=50),
                  ais=AnnealedLikelihood(enabled=True, num_examples=20))
    with pytest.raises(ValueError, match="differ from num_distributions"):
        AnnealedLikelihood(num_distributions=100, check_distributions=[100])
