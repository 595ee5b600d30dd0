"""lpc.evaluation.scale_fit: the likelihood's sigma fitted on held-out images by Monte Carlo EM, checked
against the exact maximiser of probabilistic PCA's marginal likelihood (numpy), and the same for
every method that trained the same decoder."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import ROOT
from scipy.optimize import minimize_scalar
from torch import Tensor, nn
from torch.utils.data import TensorDataset

from lpc.evaluation.protocol import (
    AnnealedLikelihood,
    Evaluator,
    LikelihoodBounds,
    SampleQuality,
)
from lpc.evaluation.scale_fit import ScaleFit, fits_scale
from lpc.methods.lpc import LangevinPC
from lpc.methods.vae import VAE
from lpc.methods.warmstart import PriorInit
from lpc.model.energy import Energy
from lpc.model.likelihoods import DiscretizedGaussianLikelihood, GaussianLikelihood
from lpc.networks.mlp import MLPEncoder
from lpc.samplers.langevin import LangevinSampler

LATENT, SIDE, SIGMA, N = 2, 4, 0.3, 300  # latent dimension, image side (16 pixels), true noise scale, images


class Linear(nn.Module):
    """The decoder of probabilistic PCA: z -> W z + b, as a (1, SIDE, SIDE) image."""

    latent_dim = LATENT

    def __init__(self, w: Tensor, b: Tensor):
        super().__init__()
        self.layer = nn.Linear(LATENT, SIDE * SIDE)
        with torch.no_grad():
            self.layer.weight.copy_(w)
            self.layer.bias.copy_(b)

    def forward(self, z: Tensor) -> Tensor:
        return self.layer(z).view(-1, 1, SIDE, SIDE)


def ppca(seed: int = 0) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """W, b and two sets of N images simulated from x = W z + b + SIGMA noise (validation, test)."""
    g = torch.Generator().manual_seed(seed)
    w, b = 0.7 * torch.randn(SIDE * SIDE, LATENT, generator=g), 0.1 * torch.randn(SIDE * SIDE, generator=g)
    simulate = lambda: torch.randn(N, LATENT, generator=g) @ w.T + b + SIGMA * torch.randn(N, SIDE * SIDE, generator=g)  # noqa: E731
    return w, b, simulate().view(N, 1, SIDE, SIDE), simulate().view(N, 1, SIDE, SIDE)


def exact_log_px(w: Tensor, b: Tensor, x: Tensor, sigma: float) -> np.ndarray:
    """log N(x; b, W W^T + sigma^2 I) per image, in numpy (float64)."""
    w, b, x = w.double().numpy(), b.double().numpy(), x.flatten(1).double().numpy()
    eig, basis = np.linalg.eigh(w @ w.T)
    y = (x - b) @ basis  # in the eigenbasis of W W^T
    var = eig + sigma**2
    return -0.5 * (np.log(2 * np.pi * var).sum() + (y**2 / var).sum(1))


def exact_maximiser(w: Tensor, b: Tensor, x: Tensor) -> float:
    """argmax_sigma sum_i log p(x_i; sigma): a 1-D problem, solved to 1e-10 in log sigma."""
    found = minimize_scalar(lambda log_sigma: -exact_log_px(w, b, x, math.exp(log_sigma)).sum(), bounds=(-6, 2),
                            method="bounded", options={"xatol": 1e-10})
    return math.exp(found.x)


def test_the_fitted_sigma_is_the_maximiser_of_the_exact_marginal_likelihood():
    w, b, val, _ = ppca()
    target = exact_maximiser(w, b, val)
    for start in (SIGMA / 3, 3 * SIGMA):  # from below and from above: the same fixed point
        torch.manual_seed(0)
        energy = Energy(Linear(w, b), GaussianLikelihood(sigma=start, sigma_mode="optimal"))
        fit = ScaleFit().fit(energy, val)
        assert fit.converged and fit.sigma == pytest.approx(target, rel=0.02), (start, fit)
        assert float(energy.likelihood.sigma) == pytest.approx(start)  # the model's own sigma is left as it was


def test_a_model_trained_at_three_times_the_scale_recovers_its_exact_log_likelihood_after_the_fit():
    """At the sigma fitted on validation images the test images' exact log p(x) is the maximum's (to
    0.01 nats), and the evaluation's AIS finds it (to AIS's error at K = 1,000), where at the training
    sigma both are far below it."""
    w, b, val, test = ppca()
    target = exact_maximiser(w, b, val)
    torch.manual_seed(0)
    model = VAE(MLPEncoder(latent_dim=LATENT, channels=1, image_size=SIDE, hidden=[8]), Linear(w, b),
                GaussianLikelihood(sigma=3 * target, sigma_mode="optimal"), optimizer=torch.optim.Adam)
    ais = AnnealedLikelihood(enabled=True, num_distributions=1000, chains=8, num_examples=20, batch_size=20,
                             starts=["prior"], bdmc_examples=0, progress=False, refresh=False)
    evaluator = Evaluator(SampleQuality(enabled=False), LikelihoodBounds(enabled=False), ais=ais)
    m = evaluator.evaluate(model, TensorDataset(test, test), (0.0, 1.0), validation=TensorDataset(val, val)).metrics
    exact = exact_log_px(w, b, test[:20], target).mean()
    assert m["sigma_fitted"] == pytest.approx(target, rel=0.02) and m["sigma_trained"] == pytest.approx(3 * target)
    assert exact_log_px(w, b, test[:20], m["sigma_fitted"]).mean() == pytest.approx(exact, abs=0.01)
    assert m["ais_prior"] == pytest.approx(exact, abs=0.2)
    assert m["trained_sigma/ais_prior"] == pytest.approx(exact_log_px(w, b, test[:20], 3 * target).mean(), abs=0.2)
    assert m["trained_sigma/ais_prior"] < exact - 5  # without the fit the model would be judged 5+ nats worse
    assert float(model.likelihood.sigma) == pytest.approx(3 * target)


def test_the_discretised_gaussians_scale_is_the_grid_maximum():
    """The 1-D search of the M-step against a fine grid of sigma on 8-bit data."""
    likelihood = DiscretizedGaussianLikelihood()
    g = torch.Generator().manual_seed(0)
    mean = torch.rand(500, generator=g) * 1.6 - 0.8
    x = ((mean + 0.07 * torch.randn(500, generator=g)).clamp(-1, 1) * 127.5).round() / 127.5
    grid = torch.exp(torch.linspace(math.log(0.02), math.log(0.3), 1501))
    totals = torch.stack([likelihood.pixel_log_prob(x, mean, s).sum() for s in grid])
    assert float(likelihood.best_scale(x, mean)) == pytest.approx(float(grid[totals.argmax()]), rel=3e-3)


def test_only_a_learned_scale_is_fitted():
    decoder = Linear(torch.zeros(SIDE * SIDE, LATENT), torch.zeros(SIDE * SIDE))
    assert fits_scale(Energy(decoder, GaussianLikelihood(sigma_mode="optimal")))
    assert fits_scale(Energy(decoder, GaussianLikelihood(sigma_mode="param")))
    assert not fits_scale(Energy(decoder, GaussianLikelihood(sigma_mode="fixed")))  # the user chose it
    with pytest.raises(ValueError, match="num_samples"):
        ScaleFit(num_steps=4, num_samples=5)


def test_the_fit_is_the_same_for_a_vae_and_an_lpc_model_of_the_same_decoder():
    """Nothing of the method enters the fit: the same decoder weights (and training sigma) give the
    same sigma bit for bit, whichever method holds them; from another training sigma, the same to
    the EM's tolerance."""
    w, b, val, _ = ppca()
    encoder = MLPEncoder(latent_dim=LATENT, channels=1, image_size=SIDE, hidden=[8])
    vae = VAE(encoder, Linear(w, b), GaussianLikelihood(sigma=0.5, sigma_mode="optimal"), optimizer=torch.optim.Adam)
    lpc = LangevinPC(Linear(w, b), GaussianLikelihood(sigma=0.5, sigma_mode="optimal"),
                     LangevinSampler(step_size=0.01, num_steps=4), PriorInit(LATENT), optimizer=torch.optim.Adam)
    evaluator = Evaluator(SampleQuality(enabled=False), LikelihoodBounds(enabled=False))
    fitted = lambda model: evaluator.evaluate(model, TensorDataset(val, val), (0.0, 1.0),  # noqa: E731
                                              validation=TensorDataset(val, val)).metrics["sigma_fitted"]
    assert fitted(vae) == fitted(lpc)
    with torch.no_grad():
        lpc.likelihood.log_sigma.fill_(math.log(0.1))  # LPC's training left another sigma
    assert fitted(lpc) == pytest.approx(fitted(vae), rel=0.01)


def test_the_sigma_scan_script_runs_on_a_checkpoint(compose_cfg, tmp_path):
    """scripts/sigma_scan.py: AIS on validation images at the training sigma and at multiples of the fitted one."""
    from lpc.jobs.train import train

    train(compose_cfg("model=vae", "likelihood=gaussian_learned", "trainer.max_steps=10", "trainer.val_check_interval=10",
                      "logger=csv", "callbacks=model_checkpoint"))
    cmd = [sys.executable, "scripts/sigma_scan.py", str(tmp_path / "checkpoints" / "last.ckpt"), "--factors", "0.5", "1",
           "--examples", "6", "--chains", "2", "--distributions", "20", "--out", str(tmp_path / "scan")]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = json.loads((tmp_path / "scan" / "sigma_scan.json").read_text())["rows"]
    assert [r["which"] for r in rows] == ["trained", "fitted x 0.5", "fitted x 1"]
    assert rows[1]["sigma"] == pytest.approx(rows[2]["sigma"] / 2) and all(math.isfinite(r["ais_prior_val"]) for r in rows)


def test_a_vae_and_an_lpc_checkpoint_of_the_same_decoder_get_the_same_sigma(compose_cfg, tmp_path):
    """scripts/evaluate.py's fit on two checkpoints of different methods holding the same generative
    model (decoder, likelihood and prior weights): the same sigma, bit for bit, and the same test AIS."""
    from lpc.config.compose import compose_config
    from lpc.jobs.evaluate import evaluate_checkpoint
    from lpc.jobs.train import train

    tiny = ["likelihood=gaussian_learned", "trainer.max_steps=4", "trainer.val_check_interval=4", "num_steps=4",
            "burn_in=2", "logger=csv", "callbacks=model_checkpoint"]
    for method in ("vae", "lpc"):
        train(compose_cfg(f"method={method}", *tiny, f"paths.output_dir={tmp_path / method}"))
    vae = torch.load(tmp_path / "vae" / "checkpoints" / "last.ckpt", weights_only=False)
    lpc = torch.load(tmp_path / "lpc" / "checkpoints" / "last.ckpt", weights_only=False)
    shared = {k: v for k, v in vae["state_dict"].items() if k.startswith("energy.")}
    assert shared.keys() == {k for k in lpc["state_dict"] if k.startswith("energy.")}
    lpc["state_dict"].update(shared)
    torch.save(lpc, tmp_path / "lpc_with_the_vaes_decoder.ckpt")
    found = {}
    for name, ckpt in [("vae", tmp_path / "vae" / "checkpoints" / "last.ckpt"), ("lpc", tmp_path / "lpc_with_the_vaes_decoder.ckpt")]:
        cfg = compose_config([f"ckpt_path={ckpt}", "eval=ais", "eval.sample_quality.enabled=false", "eval.likelihood.enabled=false",
                              "eval.ais.num_distributions=20", "eval.ais.chains=2", "eval.ais.num_examples=8",
                              "eval.ais.bdmc_examples=0", "eval.ais.check_distributions=[]", "eval.ais.starts=[prior]",
                              "eval.ais.progress=false", "eval.sigma_fit.num_examples=30", "logger=csv"],
                             tmp_path / f"eval_{name}", config_name="evaluate")
        found[name] = evaluate_checkpoint(cfg)["metrics"]
    assert found["vae"]["test/sigma_fitted"] == found["lpc"]["test/sigma_fitted"]
    assert found["vae"]["test/ais_prior"] == found["lpc"]["test/ais_prior"]
