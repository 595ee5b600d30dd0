"""The like-for-like baseline: a VAE trained with the reparameterisation ELBO."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lpc.methods.base import (
    GenerativeModule,
    OptimizerFactory,
    Stopwatch,
    repeat_batch,
    require_module,
)
from lpc.model.gaussian import diagonal_normal_log_prob, reparameterise
from lpc.model.likelihoods import Likelihood
from lpc.model.priors import GaussianHierarchy


class VAE(GenerativeModule):
    """Variational autoencoder (Kingma & Welling 2014) with the same decoder, likelihood and encoder
    classes as LPC. Per batch, with q(z | x) = N(mean_phi(x), diag sigma_phi(x)^2):

        z    = mean + sigma * eps                                 (one reparameterised draw)
        ELBO = log p(x | z) - KL(q(z | x) || p(z))                (KL in closed form for N(0, I); for a
                                                                   hierarchical prior log q(z|x) - log p(z) at z)

    and one step of a single optimizer on -mean_b ELBO over (theta, phi) jointly.
    Cost per update: 1 decoder and 1 encoder forward+backward.
    """

    objective = "elbo"  # the term of ``elbo_terms`` that is maximised
    num_samples = 1  # decoder evaluations per example and update

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood, optimizer: OptimizerFactory,
                 prior: GaussianHierarchy | None = None):
        super().__init__(decoder, likelihood, optimizer, prior)
        require_module(encoder, "encoder")
        self.encoder = encoder

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory([*self.energy.parameters(), *self.encoder.parameters()])

    def elbo_terms(self, x: Tensor, fit_scale: bool = False) -> dict[str, Tensor]:
        """ELBO per example and its parts (B,), with graphs to theta and phi. With ``fit_scale``
        (training) a learned likelihood scale is first fitted to this batch."""
        mean, log_std = self.encoder(x)
        z = reparameterise(mean, log_std)
        out = self.energy.decode(z)
        if fit_scale:
            self.likelihood.fit_scale(x, out.detach())
        log_lik = self.likelihood.log_prob(x, out)
        kl = self.prior.kl(mean, log_std, z)
        return {
            "elbo": log_lik - kl,
            "recon_log_prob": log_lik,
            "kl": kl,
            "energy": self.energy.from_output(x, z, out),
            "recon_mse": (self.likelihood.mean(out) - x).square().flatten(1).mean(1),
        }

    def update(self, x: Tensor, index: Tensor | None = None) -> Tensor:
        log_now = self.logs_this_step()
        clock = Stopwatch(x.device, enabled=log_now)
        with clock():
            terms = self.elbo_terms(x, fit_scale=True)
            loss = -terms[self.objective].mean()
            self.step_optimizer(self.optimizers(), loss)
        self.count_cost(self.num_samples)
        if not log_now:
            return loss
        self.log_metrics("train", {k: v.detach().mean() for k, v in terms.items()}, x.shape[0])
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log_cost(decoder_evals=self.num_samples, encoder_evals=1, inner_loop_ms=0.0, step_ms=clock.ms)
        return loss

    def validation_step(self, batch: Tensor | tuple, batch_idx: int) -> None:
        x = self.batch_images(batch)
        with torch.no_grad():
            terms = self.elbo_terms(x)
        self.log_metrics("val", {k: v.mean() for k, v in terms.items()}, x.shape[0])

    @property
    def amortised_encoder(self) -> nn.Module:  # type: ignore[override]
        return self.encoder

    def proposals(self, x: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """The encoder's q(z | x)."""
        return {"encoder": self.encoder(x)}

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The likelihood mean at the encoder's mean."""
        return self.likelihood.mean(self.energy.decode(self.encoder(x)[0]))


class IWAE(VAE):
    """Importance-weighted autoencoder (Burda et al. 2016): the VAE with the bound

        IWAE_K = log (1/K) sum_k p(x, z_k) / q(z_k | x),   z_k = mean + sigma * eps_k  (K draws)

    maximised instead of the ELBO (IWAE_1 is the ELBO, in expectation; E[IWAE_K] rises with K
    towards log p(x)). Logged as ``iwae``; ``elbo`` is the K-sample ELBO estimate (1/K) sum_k log w_k.
    Cost per update: K decoder forward+backward passes (one batched pass over K x B) and 1 encoder.
    """

    objective = "iwae"

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood, optimizer: OptimizerFactory,
                 num_samples: int = 5, prior: GaussianHierarchy | None = None):
        super().__init__(encoder, decoder, likelihood, optimizer, prior)
        if num_samples < 1:
            raise ValueError(f"model.num_samples (K) must be >= 1, got {num_samples}")
        self.num_samples = num_samples

    def elbo_terms(self, x: Tensor, fit_scale: bool = False) -> dict[str, Tensor]:
        """IWAE_K, the ELBO estimate and its parts per example (B,), from K draws per example."""
        mean, log_std = self.encoder(x)
        k, batch = self.num_samples, x.shape[0]
        z = mean + log_std.exp() * torch.randn(k, *mean.shape, device=x.device, dtype=mean.dtype)  # (K, B, D)
        xs = repeat_batch(x, k)
        out = self.energy.decode(z.reshape(k * batch, -1))
        if fit_scale:
            self.likelihood.fit_scale(xs, out.detach())
        log_lik = self.likelihood.log_prob(xs, out).view(k, batch)
        log_prior = self.prior.log_prob(z)  # (K, B)
        log_w = log_lik + log_prior - diagonal_normal_log_prob(z, mean, log_std)
        return {
            "iwae": torch.logsumexp(log_w, 0) - math.log(k),
            "elbo": log_w.mean(0),
            "recon_log_prob": log_lik.mean(0),
            "kl": (log_lik - log_w).mean(0),  # log q(z|x) - log p(z), averaged over the draws
            "energy": -(log_lik + log_prior).mean(0),
            "recon_mse": (self.likelihood.mean(out[:batch]) - x).square().flatten(1).mean(1),
        }
