"""Langevin predictive coding (and, with a noise-free sampler, plain predictive coding)."""

from __future__ import annotations

from functools import partial

import torch
from torch import Tensor, nn

from lpc.likelihoods import Likelihood
from lpc.methods.base import GenerativeModule, OptimizerFactory, Stopwatch
from lpc.metrics.elbo import chain_gaussian_elbo
from lpc.samplers.langevin import ChainResult, LangevinSampler


def repeat_batch(x: Tensor, times: int) -> Tensor:
    """(B, ...) -> (times * B, ...), the batch tiled ``times`` times (matches samples.reshape(S * B, D))."""
    return x.expand(times, *x.shape).reshape(times * x.shape[0], *x.shape[1:])


class LangevinPC(GenerativeModule):
    """One outer step per batch x (B examples):

    1. z0 = warmstart(x)                                  (the prior for ``warmstart=none``)
    2. z_1..z_T = Langevin chain on E(x, .), decoder fixed; keep S post-burn-in samples z_s
    3. theta <- optimizer step on grad_theta (1 / S B) sum_{s, b} E(x_b, z_{s, b}),  z detached

    Step 3 is one batched forward+backward over the S x B (sample, example) pairs. With a
    noise-free sampler (``model=pc``) the chain is gradient descent towards the MAP and the
    same update is plain predictive coding.

    Cost per update, in decoder forward+backward passes over a batch of B: T (chain) + S (update),
    logged as ``cost/decoder_evals``.
    """

    def __init__(
        self,
        decoder: nn.Module,
        likelihood: Likelihood,
        sampler: LangevinSampler,
        warmstart: nn.Module,
        optimizer: OptimizerFactory,
    ):
        super().__init__(decoder, likelihood, optimizer)
        self.sampler = sampler
        self.warmstart = warmstart

    def infer(self, x: Tensor) -> ChainResult:
        """Run the inner loop for x from the warm-start."""
        return self.sampler.run(partial(self.energy, x), self.warmstart(x))

    def sample_energies(self, x: Tensor, samples: Tensor) -> tuple[Tensor, Tensor]:
        """E(x_b, z_{s,b}) for every kept sample (S, B), and the decoder output at z_T (B, C, H, W)."""
        num, batch, _ = samples.shape
        z = samples.reshape(num * batch, -1)
        out = self.decoder(z)
        energy = self.energy.from_output(repeat_batch(x, num), z, out)
        return energy.view(num, batch), out[-batch:]

    def chain_metrics(self, x: Tensor, chain: ChainResult, energies: Tensor, out_last: Tensor) -> dict[str, Tensor | float]:
        """The per-step diagnostics every Langevin method logs."""
        metrics: dict[str, Tensor | float] = {
            "energy": energies.mean(),
            "energy_last": energies[-1].mean(),
            "recon_mse": (self.likelihood.mean(out_last) - x).square().mean(),
            "precond_scale": chain.scale_mean,
        }
        if chain.samples.shape[0] >= 2:
            metrics["elbo"] = chain_gaussian_elbo(lambda z: -self.energy(x, z), chain.samples).mean()
        return metrics

    def training_step(self, batch: Tensor | tuple, batch_idx: int) -> Tensor:
        x = self.batch_images(batch)
        opt = self.optimizers()
        step_clock, inner_clock = Stopwatch(x.device), Stopwatch(x.device)
        with step_clock():
            with inner_clock():
                chain = self.infer(x)
            energies, out_last = self.sample_energies(x, chain.samples)
            loss = energies.mean()
            self.check_finite(loss, f"the Langevin chain diverged at step_size={self.sampler.step_size}; "
                              "use precond=adam or a smaller step_size")
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()
        with torch.no_grad():
            metrics = self.chain_metrics(x, chain, energies.detach(), out_last)
        self.log_dict({f"train/{k}": v for k, v in metrics.items()}, prog_bar=False)
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log_dict({
            "cost/decoder_evals": float(self.sampler.num_steps + self.sampler.num_samples),
            "cost/inner_loop_ms": inner_clock.ms,
            "cost/step_ms": step_clock.ms,
        })
        return loss

    def validation_step(self, batch: Tensor | tuple, batch_idx: int) -> None:
        x = self.batch_images(batch)
        chain = self.infer(x)
        with torch.no_grad():
            energies, out_last = self.sample_energies(x, chain.samples)
            metrics = self.chain_metrics(x, chain, energies, out_last)
        self.log_dict({f"val/{k}": v for k, v in metrics.items()}, batch_size=x.shape[0])

    def reconstruct(self, x: Tensor) -> Tensor:
        """The likelihood mean at the chain's last state z_T."""
        chain = self.infer(x)
        with torch.no_grad():
            return self.likelihood.mean(self.decoder(chain.samples[-1]))
