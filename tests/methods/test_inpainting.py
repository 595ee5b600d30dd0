"""Conditional generation (lpc.methods.inpainting, scripts/complete.py): the masks, observed pixels kept and
missing ones never read, the exact conditional of a linear-Gaussian model, the masked energy's
gradient, the sampler defaults, and the script end to end on LPC and VAE checkpoints."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path
from statistics import NormalDist

import pytest
import torch
from conftest import ROOT
from PIL import Image

from lpc.config.build import build
from lpc.config.compose import compose_config
from lpc.errors import ConfigError
from lpc.jobs.complete import complete_checkpoint, completion_sampler
from lpc.jobs.train import train
from lpc.methods.inpainting import (
    MaskedEnergy,
    centre_mask,
    complete,
    half_mask,
    random_mask,
)
from lpc.model.energy import Energy
from lpc.model.likelihoods import (
    BernoulliLikelihood,
    DiscretizedGaussianLikelihood,
    GaussianLikelihood,
)
from lpc.networks import MLPDecoder
from lpc.samplers import AdamPreconditioner, LangevinSampler, MALASampler


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these tests run many small ops, and conftest's two threads on a busy
    two-core machine mostly wait for each other (33 s instead of 1 s for the Gaussian test)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def within_standard_errors(scores: list[torch.Tensor], alpha: float = 1e-3) -> bool:
    """Every |estimate - exact| / standard error (the z-scores in ``scores``) below the two-sided
    normal quantile at level alpha shared over all of them (Bonferroni): a correct sampler fails
    this with probability <= alpha, whatever the dependence between the estimates."""
    z = torch.cat([s.flatten() for s in scores])
    return z.max().item() <= NormalDist().inv_cdf(1 - alpha / (2 * len(z)))


def test_the_masks_hide_what_they_say_and_share_a_pixel_over_its_channels():
    shape = (2, 3, 8, 8)
    half = half_mask(shape)
    assert half.shape == shape and half[:, :, :4].all() and not half[:, :, 4:].any()
    centre = centre_mask(shape)
    assert not centre[:, :, 2:6, 2:6].any() and centre.sum() == 2 * 3 * (64 - 16)
    assert (~centre_mask(shape, size=3)).sum() == 2 * 3 * 9
    with pytest.raises(ValueError, match="side"):
        centre_mask(shape, size=9)
    big = (4, 3, 64, 64)
    rand = random_mask(big, 0.3, torch.Generator().manual_seed(5))
    assert torch.equal(rand, random_mask(big, 0.3, torch.Generator().manual_seed(5)))
    assert (rand == rand[:, :1]).all()  # all channels of a pixel together
    assert not torch.equal(rand[0], rand[1])  # each image its own pixels
    n = 4 * 64 * 64
    missing = (~rand[:, 0]).float().mean().item()
    assert within_standard_errors([torch.tensor(abs(missing - 0.3) / math.sqrt(0.3 * 0.7 / n))])


def tiny_energy(likelihood, side: int = 6) -> Energy:
    torch.manual_seed(0)
    return Energy(MLPDecoder(3, channels=1, image_size=side, hidden=[16], act="tanh"), likelihood)


@pytest.mark.parametrize("likelihood,low", [
    (GaussianLikelihood(sigma=0.1, squash="sigmoid"), 0.0), (BernoulliLikelihood(), 0.0),
    (DiscretizedGaussianLikelihood(sigma=0.3, sigma_mode="fixed"), -1.0),
])
def test_completion_keeps_the_observed_pixels_exactly_and_never_reads_the_missing_ones(likelihood, low):
    masked = MaskedEnergy(tiny_energy(likelihood))
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 256, (5, 1, 6, 6), generator=g) / 255.0
    x = x.round() if likelihood.binary else low + (1 - low) * x  # binary, or on the 8-bit levels of the range
    other = torch.where(torch.rand(x.shape, generator=g) < 0.5, x.new_tensor(low), x.new_tensor(1.0))
    sampler = LangevinSampler(step_size=0.05, num_steps=12, burn_in=6, thin=3, chains=3,
                              preconditioner=AdamPreconditioner())
    for mask in (half_mask(x.shape), centre_mask(x.shape), random_mask(x.shape, 0.5, g)):
        runs = []
        for truth in (x, torch.where(mask, x, other)):  # the same observed pixels, other missing ones
            torch.manual_seed(2)
            runs.append(complete(masked, sampler, truth, mask, filler=(low + 1) / 2))
        a, b = runs
        assert a.samples.shape == a.means.shape == (3, 5, 1, 6, 6) and a.mean.shape == (5, 1, 6, 6)
        for images in (a.samples, a.means, a.mean[None]):
            assert torch.equal(images[:, mask], x[mask].expand(len(images), -1))
        assert not torch.equal(a.means[:, ~mask], x[~mask].expand(3, -1))  # completed, not copied
        for got, again in zip(a, b):  # nothing depends on the missing pixels' values
            assert torch.equal(got, again)


def linear_gaussian(sigma: float, dim: int = 3, side: int = 4) -> tuple[Energy, torch.Tensor, torch.Tensor]:
    """p(z) = N(0, I), x = W z + b + sigma eps: the energy (float64), W (P, D) and b (P,)."""
    torch.manual_seed(3)
    decoder = MLPDecoder(dim, channels=1, image_size=side, hidden=[], act="relu")
    layer = decoder.net[0]
    with torch.no_grad():
        layer.weight.normal_()
        layer.bias.normal_(0.0, 0.5)
    energy = Energy(decoder, GaussianLikelihood(sigma=sigma, sigma_mode="fixed")).double()
    energy.likelihood.log_sigma.fill_(math.log(sigma))  # exact in float64 (it was built in float32)
    return energy, layer.weight.detach().double(), layer.bias.detach().double()


def gaussian_conditional(w: torch.Tensor, b: torch.Tensor, sigma: float, x: torch.Tensor,
                         observed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x ~ N(b, C), C = W W^T + sigma^2 I: the mean and covariance of x_m | x_o,

        mu_m + C_mo C_oo^-1 (x_o - mu_o),    C_mm - C_mo C_oo^-1 C_om."""
    cov = w @ w.T + sigma**2 * torch.eye(len(b), dtype=w.dtype)
    o, m = observed, ~observed
    gain = torch.linalg.solve(cov[o][:, o], cov[o][:, m]).T  # C_mo C_oo^-1
    return b[m] + gain @ (x[o] - b[o]), cov[m][:, m] - gain @ cov[o][:, m]


def test_drawn_missing_pixels_follow_the_exact_gaussian_conditional():
    """MALA (exact for any step) run far past convergence (its slowest direction contracts by
    1 - eta * lambda_min(posterior precision) <= 0.85 a step); K independent chains per image, each
    giving one draw from its last state, so the draws are i.i.d. and each estimate's standard error
    is sqrt(S_jj / K) for a mean, sqrt((S_jj S_kk + S_jk^2) / K) for a covariance (Gaussian draws)."""
    sigma, chains = 0.5, 1500
    energy, w, b = linear_gaussian(sigma)
    torch.manual_seed(4)
    x = (w @ torch.randn(3, dtype=w.dtype) + b + sigma * torch.randn(16, dtype=w.dtype)).view(1, 1, 4, 4).repeat(2, 1, 1, 1)
    mask = torch.cat([half_mask((1, 1, 4, 4)), random_mask((1, 1, 4, 4), 0.5, torch.Generator().manual_seed(0))])
    sampler = MALASampler(step_size=0.02, num_steps=120, burn_in=119, chains=chains)
    torch.manual_seed(5)
    result = complete(MaskedEnergy(energy), sampler, x, mask)
    assert not result.diverged.any()
    scores = []
    for i in range(2):
        observed = mask[i].flatten()
        mean, cov = gaussian_conditional(w, b, sigma, x[i].flatten(), observed)
        noise_free = cov - sigma**2 * torch.eye(len(cov), dtype=cov.dtype)  # of E[x_m | z] = W_m z + b_m
        for draws, want in ((result.samples, cov), (result.means, noise_free)):
            got = draws[:, i].reshape(chains, -1)[:, ~observed]  # (K, missing)
            sd = want.diagonal().sqrt()
            upper = torch.triu_indices(len(want), len(want))
            scores.append((got.mean(0) - mean).abs() / (sd / math.sqrt(chains)))
            se = ((sd[:, None] * sd[None]) ** 2 + want**2).sqrt() / math.sqrt(chains)
            scores.append(((got.T.cov() - want).abs() / se)[upper[0], upper[1]])
        # one kept state per chain: the completion mean is the mean of the K noise-free completions
        got_mean = result.mean[i].flatten()[~observed]
        scores.append((got_mean - mean).abs() / (noise_free.diagonal().sqrt() / math.sqrt(chains)))
    assert within_standard_errors(scores)


def test_the_masked_energy_is_the_energy_of_the_observed_pixels_only():
    """E_m and its gradient against the closed form on the observed pixels O only:
    E_m = sum_{i in O} [(x_i - (W z + b)_i)^2 / (2 sigma^2) + log sigma + log(2 pi)/2] + |z|^2/2 + D log(2 pi)/2,
    grad_z E_m = -W_O^T (x_O - W_O z - b_O) / sigma^2 + z."""
    sigma = 0.3
    energy, w, b = linear_gaussian(sigma)
    torch.manual_seed(6)
    x, z = torch.randn(5, 1, 4, 4, dtype=w.dtype), torch.randn(5, 3, dtype=w.dtype, requires_grad=True)
    mask = random_mask(x.shape, 0.4, torch.Generator().manual_seed(1))
    value = MaskedEnergy(energy)(x, mask, z)
    (grad,) = torch.autograd.grad(value.sum(), z)
    for n in range(5):
        o = mask[n].flatten()
        resid = x[n].flatten()[o] - (w[o] @ z[n] + b[o])  # (|O|,)
        want = (resid.square().sum() / (2 * sigma**2) + int(o.sum()) * (math.log(sigma) + 0.5 * math.log(2 * math.pi))
                + z[n].square().sum() / 2 + 1.5 * math.log(2 * math.pi))
        assert value[n].item() == pytest.approx(want.item(), rel=1e-12)
        assert torch.allclose(grad[n], -w[o].T @ resid / sigma**2 + z[n], rtol=1e-12, atol=1e-12)
    full = torch.autograd.grad(energy(x, z).sum(), z)[0]
    assert not torch.allclose(grad, full)  # the missing pixels would pull z elsewhere


def test_the_default_sampler_of_each_method_and_the_overrides(tmp_path):
    """auto: LPC's own sampler, PC's gradient descent with noise, the VAE's run config's ULA + Adam;
    config: this command's groups; complete.* on top; num_draws chains."""
    def sampler_for(method: list[str], *overrides: str):
        run = compose_config([*method, "num_steps=10", "burn_in=4"], tmp_path)
        _, model = build(run)
        cfg = compose_config(["ckpt_path=x", "num_draws=3", *overrides], tmp_path, config_name="complete")
        return completion_sampler(cfg, run, model)

    lpc = sampler_for([])
    assert (type(lpc), lpc.noise, lpc.num_steps, lpc.burn_in, lpc.chains) == (LangevinSampler, True, 10, 4, 3)
    pc = sampler_for(["model=pc"], "complete.step_size=0.05")
    assert (type(pc), pc.noise, pc.step_size, type(pc.preconditioner)) == (LangevinSampler, True, 0.05, AdamPreconditioner)
    vae = sampler_for(["model=vae"], "complete.num_steps=20", "complete.thin=1")
    assert (type(vae), vae.noise, vae.num_steps, vae.burn_in, vae.num_samples) == (LangevinSampler, True, 20, 4, 16)
    assert type(vae.preconditioner) is AdamPreconditioner and vae.step_size == 0.2
    mala = sampler_for(["model=vae"], "complete.sampler=config", "sampler=mala", "step_size=0.01")
    assert (type(mala), mala.step_size, mala.num_steps) == (MALASampler, 0.01, 50)
    with pytest.raises(ConfigError, match="complete.step_size.num_steps.burn_in.thin: burn_in must be"):
        sampler_for([], "complete.num_steps=3")


def complete_cmd(ckpt: Path, out: Path, *overrides: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "scripts/complete.py", f"ckpt_path={ckpt}", *overrides, f"hydra.run.dir={out}"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


TINY = ["trainer.max_steps=5", "num_steps=5", "burn_in=2", "callbacks=model_checkpoint", "logger=csv"]
SETTINGS = ["mask=[half,centre,random]", "num_images=10", "num_draws=3", "grid_images=4", "complete.batch_size=4"]


def check_outputs(out: Path, report: dict) -> None:
    """The three grids (rows: masked, 3 completions, mean, truth; 4 columns of 8x8 digits shown at 32x32)
    and finite errors for each mask."""
    assert report == json.loads((out / "metrics.json").read_text())
    m = report["metrics"]
    for name, missing in (("half", 0.5), ("centre", 0.25), ("random", None)):
        with Image.open(out / "images" / f"complete_{name}.png") as grid:
            assert grid.size == (4 * 33 + 1, 6 * 33 + 1)
        assert 0 < m[f"complete/{name}/mse_missing"] < 1 and 0 < m[f"complete/{name}/mse_observed"] < 1
        assert all(math.isfinite(v) for k, v in m.items() if k.startswith(f"complete/{name}/"))
        assert m[f"complete/{name}/diverged_frac"] == 0.0
        if missing is not None:
            assert m[f"complete/{name}/missing_frac"] == missing
    assert 0.3 < m["complete/random/missing_frac"] < 0.7


def test_complete_py_on_an_lpc_checkpoint_and_a_wrong_mask(tmp_path):
    train(compose_config(TINY, tmp_path / "train"))
    ckpt = tmp_path / "train" / "checkpoints" / "last.ckpt"
    proc = complete_cmd(ckpt, tmp_path / "complete", *SETTINGS)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads((tmp_path / "complete" / "metrics.json").read_text())
    check_outputs(tmp_path / "complete", report)
    assert report["method"] == "lpc.methods.LangevinPC" and report["global_step"] == 5
    assert report["sampler"] == {"source": "auto", "class": "LangevinSampler", "preconditioner": "AdamPreconditioner",
                                 "step_size": 0.2, "num_steps": 5, "burn_in": 2, "thin": 5, "kept_per_chain": 1,
                                 "start": "prior"}
    bad = complete_cmd(ckpt, tmp_path / "bad", "mask=[half,bottom]")
    assert bad.returncode == 2
    assert "mask=['bottom']: choose from ['half', 'centre', 'random']" in bad.stdout + bad.stderr


def test_completion_of_a_vae_checkpoint(tmp_path):
    """The same entry point as scripts/complete.py, in process (the script's Hydra wrapper is tested above)."""
    train(compose_config(["model=vae", *TINY], tmp_path / "train"))
    out = tmp_path / "complete"
    cfg = compose_config([f"ckpt_path={tmp_path / 'train' / 'checkpoints' / 'last.ckpt'}", *SETTINGS,
                          "complete.num_steps=8", "complete.burn_in=3", "complete.thin=1"], out, config_name="complete")
    report = complete_checkpoint(cfg)
    check_outputs(out, report)
    assert report["method"] == "lpc.methods.VAE"
    assert {k: report["sampler"][k] for k in ("class", "preconditioner", "num_steps", "kept_per_chain")} == {
        "class": "LangevinSampler", "preconditioner": "AdamPreconditioner", "num_steps": 8, "kept_per_chain": 5}
