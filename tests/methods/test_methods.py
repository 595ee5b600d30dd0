"""The methods: every one trains with the same data, decoder and metric names; the VAE's ELBO by hand."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import SHARED_CIFAR, read_metrics, run_train
from hydra.utils import instantiate
from test_train import FAST
from torch import Tensor, nn

from lpc.jobs.train import train
from lpc.methods import IWAE, VAE
from lpc.model.likelihoods import GaussianLikelihood

T, S = 10, 2  # FAST: num_steps=10, burn_in=4 and the default thin=5 keep steps 5 and 10
SHARED = {"train/loss", "train/energy", "train/recon_mse", "val/energy", "val/recon_mse",
          "cost/decoder_evals", "cost/encoder_evals", "cost/inner_loop_ms", "cost/step_ms"}
METHODS = {
    # overrides -> (decoder evals, encoder evals, method-specific metrics)
    "warmstart=none precond=none": (T + S, 0, {"train/elbo", "train/energy_init", "train/precond_scale"}),
    "warmstart=none precond=adam": (T + S, 0, {"train/elbo", "train/precond_scale"}),
    "warmstart=forward_kl precond=none": (T + S, 1, {"train/elbo", "train/encoder_loss", "train/forward_kl"}),
    "warmstart=forward_kl precond=adam": (T + S, 1, {"train/encoder_loss", "train/forward_kl"}),
    "warmstart=reverse_kl precond=none": (T + S + 1, 1, {"train/encoder_loss", "train/reverse_kl"}),
    "warmstart=reverse_kl precond=adam": (T + S + 1, 1, {"train/encoder_loss", "train/reverse_kl"}),
    "warmstart=jeffreys precond=none": (T + S + 1, 1, {"train/forward_kl", "train/reverse_kl", "val/elbo"}),
    "warmstart=jeffreys precond=adam": (T + S + 1, 1, {"train/forward_kl", "train/reverse_kl"}),
    "model=pc": (T + 1, 0, {"train/energy_init", "train/precond_scale"}),
    "model=vae": (1, 1, {"train/elbo", "train/kl", "train/recon_log_prob", "val/elbo"}),
    "model=iwae": (5, 1, {"train/iwae", "train/elbo", "train/kl", "val/iwae"}),
}


@pytest.mark.parametrize("overrides", list(METHODS))
def test_every_method_trains_and_logs_the_shared_names(compose_cfg, tmp_path, overrides):
    decoder_evals, encoder_evals, specific = METHODS[overrides]
    metrics = train(compose_cfg(*overrides.split(), "step_size=0.02", "callbacks=none", *FAST, "trainer.log_every_n_steps=1"))
    assert SHARED | specific <= set(metrics), sorted(SHARED | specific - set(metrics))
    assert all(math.isfinite(v) for v in metrics.values())
    assert metrics["cost/decoder_evals"] == decoder_evals and metrics["cost/encoder_evals"] == encoder_evals
    energy = read_metrics(tmp_path, "train/energy")
    assert len(energy) == 30 and sum(energy[-3:]) < 0.8 * sum(energy[:3])


def test_pc_is_the_noise_free_chain_learning_from_its_last_state(compose_cfg):
    model = instantiate(compose_cfg("model=pc").model)
    assert model.sampler.noise is False and model.grad_from == "last"


class FixedEncoder(nn.Module):
    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return torch.full((len(x), 1), 0.5), torch.full((len(x), 1), math.log(0.5))


class TwoPixelDecoder(nn.Module):
    latent_dim = 1

    def forward(self, z: Tensor) -> Tensor:
        return torch.cat([2 * z + 0.1, -z + 0.2], dim=1)[:, None, None, :]


def test_vae_elbo_matches_a_hand_computation():
    vae = VAE(FixedEncoder(), TwoPixelDecoder(), GaussianLikelihood(sigma=1.0, squash="none"), torch.optim.Adam)
    x = torch.tensor([[[[1.0, 0.0]]]])
    torch.manual_seed(0)
    eps = torch.randn(1, 1).item()
    torch.manual_seed(0)
    got = vae.elbo_terms(x)
    z = 0.5 + 0.5 * eps
    log_lik = sum(-0.5 * (xi - mi) ** 2 - 0.5 * math.log(2 * math.pi) for xi, mi in [(1.0, 2 * z + 0.1), (0.0, -z + 0.2)])
    kl = 0.5 * (0.5**2 + 0.5**2 - 1 - 2 * math.log(0.5))
    assert got["kl"].item() == pytest.approx(kl, abs=1e-6)
    assert got["recon_log_prob"].item() == pytest.approx(log_lik, abs=1e-6)
    assert got["elbo"].item() == pytest.approx(log_lik - kl, abs=1e-6)


def linear_iwae(k: int) -> IWAE:
    return IWAE(FixedEncoder(), TwoPixelDecoder(), GaussianLikelihood(sigma=1.0, squash="none"), torch.optim.Adam, k)


def test_iwae_with_one_sample_is_the_vae_elbo_and_its_bound_rises_with_k():
    """On x = (1, 0) with decoder (2z + 0.1, -z + 0.2), unit noise and a fixed q: E[IWAE_1] is the
    VAE's ELBO (its closed-form KL), and E[IWAE_K] rises with K towards log p(x), exact here."""
    x = torch.tensor([[[[1.0, 0.0]]]]).expand(20000, 1, 1, 2)
    torch.manual_seed(0)
    vae = VAE(FixedEncoder(), TwoPixelDecoder(), GaussianLikelihood(sigma=1.0, squash="none"), torch.optim.Adam)
    elbo = vae.elbo_terms(x)["elbo"]
    bounds = {k: linear_iwae(k).elbo_terms(x)["iwae"] for k in (1, 5, 25)}
    assert bounds[1].mean().item() == pytest.approx(elbo.mean().item(), abs=4 * bounds[1].std().item() / 20000**0.5)
    # p(x) = N(x; (0.1, 0.2), I + w w^T) with w = (2, -1): log p(x) in closed form
    w, mu = torch.tensor([2.0, -1.0]), torch.tensor([0.1, 0.2])
    cov = torch.eye(2) + torch.outer(w, w)
    log_px = torch.distributions.MultivariateNormal(mu, cov).log_prob(torch.tensor([1.0, 0.0])).item()
    means = [bounds[k].mean().item() for k in (1, 5, 25)]
    assert means[0] < means[1] < means[2] < log_px + 1e-3, (means, log_px)
    assert log_px - means[2] < 0.25 * (log_px - means[0])  # most of the gap closed by K = 25


@pytest.mark.parametrize("overrides", [["model=vae"], ["model=iwae"], ["warmstart=jeffreys", "precond=none", "step_size=0.02"]])
def test_train_py_runs_vae_and_warm_started_lpc(tmp_path, overrides):
    run_train(tmp_path, *overrides, *FAST, "callbacks.image_grids.every_n_steps=15")
    assert read_metrics(tmp_path, "val/recon_mse")
    assert (tmp_path / "images" / "recon_step000030.png").exists()


@pytest.mark.skipif(not SHARED_CIFAR.exists(), reason="needs ../shared/data/cifar10/cifar10_jpeg.zip")
@pytest.mark.parametrize("method", [["model=vae"], ["warmstart=jeffreys"], ["model=pc"]])
def test_methods_on_cifar10_from_the_folder_zip(tmp_path, method):
    run_train(tmp_path, *method, "data=folder", f"data.root={SHARED_CIFAR}", "decoder=dcgan32", "encoder=dcgan32",
              "decoder.widths=[32,16,16]", "encoder.widths=[32,16,16]", "batch_size=16", "latent_dim=32", "trainer.max_steps=3", "trainer.limit_val_batches=2",
              "num_steps=4", "burn_in=1", "logger=csv", "trainer.log_every_n_steps=1",
              "callbacks=none")
    assert len(read_metrics(tmp_path, "train/loss")) == 3
