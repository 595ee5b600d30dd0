"""The like-for-like baseline: a VAE trained with the reparameterisation ELBO."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from lpc.gaussian import kl_to_standard_normal, reparameterise
from lpc.likelihoods import Likelihood
from lpc.methods.base import GenerativeModule, OptimizerFactory, Stopwatch


class VAE(GenerativeModule):
    """Variational autoencoder (Kingma & Welling 2014) with the same decoder, likelihood and encoder
    classes as LPC. Per batch, with q(z | x) = N(mean_phi(x), diag sigma_phi(x)^2):

        z    = mean + sigma * eps                                 (one reparameterised draw)
        ELBO = log p(x | z) - KL(q(z | x) || N(0, I))             (KL in closed form)

    and one step of a single optimizer on -mean_b ELBO over (theta, phi) jointly.
    Cost per update: 1 decoder and 1 encoder forward+backward.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, likelihood: Likelihood, optimizer: OptimizerFactory):
        super().__init__(decoder, likelihood, optimizer)
        self.encoder = encoder

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory([*self.energy.parameters(), *self.encoder.parameters()])

    def elbo_terms(self, x: Tensor, fit_scale: bool = False) -> dict[str, Tensor]:
        """ELBO per example and its parts (B,), with graphs to theta and phi. With ``fit_scale``
        (training) a learned likelihood scale is first fitted to this batch."""
        mean, log_std = self.encoder(x)
        z = reparameterise(mean, log_std)
        out = self.decoder(z)
        if fit_scale:
            self.likelihood.fit_scale(x, out.detach())
        log_lik = self.likelihood.log_prob(x, out)
        kl = kl_to_standard_normal(mean, log_std)
        return {
            "elbo": log_lik - kl,
            "log_likelihood": log_lik,
            "kl": kl,
            "energy": self.energy.from_output(x, z, out),
            "recon_mse": (self.likelihood.mean(out) - x).square().flatten(1).mean(1),
        }

    def update(self, x: Tensor) -> Tensor:
        clock = Stopwatch(x.device)
        with clock():
            terms = self.elbo_terms(x, fit_scale=True)
            loss = -terms["elbo"].mean()
            self.step_optimizer(self.optimizers(), loss)
        self.log_metrics("train", {k: v.detach().mean() for k, v in terms.items()}, x.shape[0])
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log_cost(decoder_evals=1, encoder_evals=1, inner_loop_ms=0.0, step_ms=clock.ms)
        return loss

    def validation_step(self, batch: Tensor | tuple, batch_idx: int) -> None:
        x = self.batch_images(batch)
        with torch.no_grad():
            terms = self.elbo_terms(x)
        self.log_metrics("val", {k: v.mean() for k, v in terms.items()}, x.shape[0])

    def proposals(self, x: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """The encoder's q(z | x)."""
        return {"encoder": self.encoder(x)}

    @torch.no_grad()
    def reconstruct(self, x: Tensor) -> Tensor:
        """The likelihood mean at the encoder's mean."""
        return self.likelihood.mean(self.decoder(self.encoder(x)[0]))
