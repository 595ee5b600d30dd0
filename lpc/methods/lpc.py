"""Langevin predictive coding (and, with a noise-free sampler, plain predictive coding)."""

from __future__ import annotations

import logging
from dataclasses import replace

import torch
from torch import Tensor, nn

from lpc.errors import DivergenceError
from lpc.evaluation.elbo import chain_gaussian_elbo
from lpc.jobs.loggers import log_line
from lpc.methods.base import GenerativeModule, OptimizerFactory, Stopwatch, repeat_batch
from lpc.methods.warmstart import AmortisedInit, PersistentInit, PriorInit, Proposal
from lpc.model.gaussian import fit_diagonal_gaussian
from lpc.model.likelihoods import Likelihood
from lpc.model.priors import GaussianHierarchy
from lpc.samplers.chain import ChainResult, ChainSampler

log = logging.getLogger(__name__)
GRAD_FROM = ("chain_mean", "last")
ON_DIVERGENCE = ("raise", "reset", "backoff")


def restore_step_size(sampler: ChainSampler, checkpoint: dict) -> None:
    """Continue with the step size the checkpointed run had reached (``on_divergence=backoff``
    shrinks it), saying so when it differs from the configured one."""
    saved = checkpoint.get("sampler_step_size", sampler.step_size)
    if saved != sampler.step_size:
        log.warning("continuing with the checkpoint's step_size=%g (reduced by on_divergence=backoff), not %g",
                    saved, sampler.step_size)
    sampler.step_size = saved


class LangevinPC(GenerativeModule):
    """One outer step per batch x (B examples):

    1. z0 = warmstart(x)        the prior for ``warmstart=none``, a draw from the encoder's q(z|x),
                                or the example's stored latent for ``warmstart=persistent``
    2. z_1..z_T = the sampler's chain on E(x, .) (``sampler=ula|mala|hmc|gd``), decoder fixed;
       keep S post-burn-in samples z_s (of each of C = ``sampler.chains`` chains per example)
    3. theta <- decoder optimizer step on grad_theta (1 / S C B) sum_{s, c, b} E(x_b, z_{s, c, b}),
       z detached (``grad_from=chain_mean``, the paper's reading), or on the chains' last states
       only (``grad_from=last``, Monte Carlo predictive coding)
    4. with an encoder: phi <- encoder optimizer step on the warm-start objective (``lpc.methods.warmstart``);
       with persistent chains: store each example's z_T for its next visit

    Step 3 is one batched forward+backward over the S x C x B (sample, chain, example) triples.
    With a noise-free sampler and ``grad_from=last`` (``model=pc``) the chain is gradient descent
    towards the MAP and the update is plain predictive coding.

    Cost per update, in decoder forward+backward passes over a batch of B: C x the sampler's
    gradients (T for ULA, T + 1 for MALA, T L + 1 for HMC) + S C (update; C for ``grad_from=last``)
    + 1 for a reverse-KL/Jeffreys encoder objective, logged as ``cost/decoder_evals``.
    """

    def __init__(
        self,
        decoder: nn.Module,
        likelihood: Likelihood,
        sampler: ChainSampler,
        warmstart: PriorInit | PersistentInit | AmortisedInit,
        optimizer: OptimizerFactory,
        grad_from: str = "chain_mean",
        on_divergence: str = "reset",
        backoff_factor: float = 0.5,
        max_all_diverged_steps: int = 50,
        prior: GaussianHierarchy | None = None,
    ):
        super().__init__(decoder, likelihood, optimizer, prior)
        if grad_from not in GRAD_FROM:
            raise ValueError(f"model.grad_from must be one of {list(GRAD_FROM)}, got {grad_from!r}")
        if on_divergence not in ON_DIVERGENCE:
            raise ValueError(f"model.on_divergence must be one of {list(ON_DIVERGENCE)}, got {on_divergence!r}")
        if getattr(warmstart, "needs_example_index", False) and sampler.chains > 1:
            raise ValueError("warmstart=persistent keeps one chain per example: set sampler.chains=1")
        if not 0.0 < backoff_factor < 1.0:
            raise ValueError(f"model.backoff_factor must be in (0, 1), got {backoff_factor}")
        self.sampler = sampler
        self.warmstart = warmstart
        if hasattr(warmstart, "use_prior"):  # encoder-free starts are draws from the prior
            warmstart.use_prior(self.prior)
        self.grad_from = grad_from
        self.on_divergence = on_divergence
        self.backoff_factor = backoff_factor
        self.max_all_diverged_steps = max_all_diverged_steps
        self.all_diverged_run = 0  # consecutive steps on which every chain diverged
        self.diverged_total = 0  # chains diverged over the whole run (kept in checkpoints)
        self.energy_trace: list[float] = []  # the last validation's first batch, per inner step
        self._noisy: ChainSampler | None = None  # ``noisy_sampler``

    @property
    def needs_example_index(self) -> bool:  # type: ignore[override]
        return getattr(self.warmstart, "needs_example_index", False)

    def learning_samples(self, chain: ChainResult) -> Tensor:
        """The states that teach the decoder, (S C, B, D) or (C, B, D) for ``grad_from=last``."""
        return chain.samples if self.grad_from == "chain_mean" else chain.last

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        optimizers = [self.optimizer_factory(self.energy.parameters())]
        if self.warmstart.trainable:
            optimizers.append(self.warmstart.optimizer_factory(self.warmstart.parameters()))
        return optimizers

    def infer(self, x: Tensor, proposal: Proposal | None = None, sampler: ChainSampler | None = None) -> ChainResult:
        """Run the inner loop (``sampler``, else the model's) for x: C chains per example, started
        from the proposal, else from the warm-start."""
        sampler = sampler or self.sampler
        proposal = self.warmstart(x) if proposal is None else proposal
        z0 = proposal.z0 if sampler.chains == 1 else self.warmstart.chain_starts(proposal, sampler.chains)
        return sampler.run(self.energy, z0, repeat_batch(x, sampler.chains))

    def sample_energies(self, x: Tensor, samples: Tensor, fit_scale: bool = False) -> tuple[Tensor, Tensor]:
        """E(x_b, z_{s,b}) for every given sample (S, B), and the decoder output at z_T (B, C, H, W).
        With ``fit_scale`` (training) a learned likelihood scale is first fitted to these outputs."""
        num, batch, _ = samples.shape
        z = samples.reshape(num * batch, -1)
        xs = repeat_batch(x, num)
        out = self.energy.decode(z)
        if fit_scale:
            self.likelihood.fit_scale(xs, out.detach())
        energy = self.energy.from_output(xs, z, out)
        return energy.view(num, batch), out[-batch:]

    def chain_metrics(self, x: Tensor, chain: ChainResult, energies: Tensor, out_last: Tensor) -> dict[str, Tensor | float]:
        """The per-step diagnostics every Langevin method logs."""
        metrics: dict[str, Tensor | float] = {
            "energy": energies.mean(),
            "energy_init": chain.energies[0].mean(),
            "energy_last": energies[-1].mean(),
            "recon_mse": (self.likelihood.mean(out_last) - x).square().mean(),
            "precond_scale": torch.as_tensor(chain.scale).mean(),
        }
        if chain.accept_rate is not None:
            metrics["accept_rate"] = chain.accept_rate.mean()
        if isinstance(chain.step_size, Tensor):
            metrics["adapted_step_size"] = chain.step_size.mean()
        if chain.diagnostics:  # over the (example, latent dimension) pairs
            rhat, ess = chain.diagnostics["rhat"], chain.diagnostics["ess_bulk"]
            metrics.update(rhat_mean=rhat.mean(), rhat_max=rhat.max(), ess_bulk_mean=ess.mean(), ess_bulk_min=ess.min())
        if self.sampler.noise and chain.samples.shape[0] >= 2:
            metrics["elbo"] = chain_gaussian_elbo(lambda z: -self.energy(x, z), chain.samples).mean()
        return metrics

    def drop_diverged(self, x: Tensor, proposal: Proposal, chain: ChainResult) -> tuple[Tensor, Proposal, ChainResult, int]:
        """Apply ``on_divergence`` to the chains that diverged: ``raise`` stops the run; ``reset``
        leaves them out of this update (the sampler has already put them back to z0); ``backoff``
        also halves (``backoff_factor``) the step size for the rest of the run. Returns the batch,
        proposal and chains that remain, and how many diverged."""
        num = int(chain.diverged.sum())
        self.diverged_total += num
        self.all_diverged_run = self.all_diverged_run + 1 if num == len(x) else 0
        if num == 0:
            return x, proposal, chain, 0
        if self.all_diverged_run > self.max_all_diverged_steps:
            raise DivergenceError(
                f"every Langevin chain diverged on {self.all_diverged_run} consecutive steps (step_size="
                f"{self.sampler.step_size:g}): nothing is being learned. Use precond=adam or a smaller step_size, "
                f"or model.on_divergence=backoff"
            )
        if self.on_divergence == "raise":
            raise DivergenceError(
                f"{num} of {len(x)} Langevin chains diverged at step {self.global_step} with "
                f"step_size={self.sampler.step_size:g}: use precond=adam or a smaller step_size, or "
                f"model.on_divergence=reset|backoff to leave diverged chains out and carry on"
            )
        if self.on_divergence == "backoff":
            self.sampler.step_size *= self.backoff_factor
        keep = ~chain.diverged
        return x[keep], proposal.subset(keep), chain.subset(keep), num

    def update(self, x: Tensor, index: Tensor | None = None) -> Tensor | None:
        optimizers = self.optimizers()
        decoder_opt, encoder_opt = (optimizers, None) if not self.warmstart.trainable else optimizers
        log_now = self.logs_this_step()
        step_clock, inner_clock = Stopwatch(x.device, log_now), Stopwatch(x.device, log_now)
        with step_clock():
            proposal = self.warmstart(x, index)
            with inner_clock():
                chain = self.infer(x, proposal)
            if index is not None:  # persistent chains
                self.warmstart.store(index, chain.samples[-1], ~chain.diverged)
            batch_size = len(x)
            x, proposal, chain, diverged = self.drop_diverged(x, proposal, chain)
            if log_now:
                self.log_dict({
                    "train/diverged_frac": diverged / batch_size,
                    "train/diverged_total": float(self.diverged_total),
                    "train/step_size": self.sampler.step_size,
                    "train/updated": float(len(x) > 0),
                })
            chain_evals = self.sampler.chains * self.sampler.grad_evals
            if len(x) == 0:  # every chain diverged: nothing to learn from; the step still counts
                self.count_cost(chain_evals)
                self.skip_update([decoder_opt] if encoder_opt is None else [decoder_opt, encoder_opt])
                return None
            learn_from = self.learning_samples(chain)
            energies, out_last = self.sample_energies(x, learn_from, fit_scale=True)
            loss = energies.mean()
            self.step_optimizer(decoder_opt, loss)
            encoder_terms = {}
            if encoder_opt is not None:
                encoder_terms = self.warmstart.loss(self.energy, x, proposal, chain.samples)
                self.step_optimizer(encoder_opt, encoder_terms["encoder_loss"], counts_as_step=False,
                                    hint="the decoder has already taken this batch's step; lower warmstart.optimizer.lr")
        decoder_evals = chain_evals + len(learn_from) + self.warmstart.decoder_evals
        self.count_cost(decoder_evals)
        if not log_now:
            return loss
        # the metrics draw (the chain ELBO's z') from their own stream: training follows the same
        # path whatever trainer.log_every_n_steps is
        with torch.no_grad(), torch.random.fork_rng(devices=self.rng_devices()):
            metrics = self.chain_metrics(x, chain, energies.detach(), out_last)
        metrics.update({k: v.detach() for k, v in encoder_terms.items()})
        self.log_metrics("train", metrics, x.shape[0])
        self.log("train/loss", loss.detach(), prog_bar=True)
        self.log_cost(
            decoder_evals=decoder_evals,
            encoder_evals=int(self.warmstart.trainable),
            inner_loop_ms=inner_clock.ms,
            step_ms=step_clock.ms,
        )
        return loss

    def validation_step(self, batch: Tensor | tuple, batch_idx: int) -> None:
        x = self.batch_images(batch)
        chain = self.infer(x)
        if batch_idx == 0:
            self.energy_trace = chain.energies.mean(1).tolist()
        keep = ~chain.diverged
        self.log("val/diverged_frac", chain.diverged.float().mean(), batch_size=len(x), sync_dist=True)
        if keep.any():
            x, chain = x[keep], chain.subset(keep)
            with torch.no_grad():
                energies, out_last = self.sample_energies(x, self.learning_samples(chain))
                metrics = self.chain_metrics(x, chain, energies, out_last)
            self.log_metrics("val", metrics, x.shape[0])

    def on_validation_epoch_end(self) -> None:
        """The first validation batch's energy trace, mean E(x, z_{t-1}) over the batch per step t,
        as a W&B line plot (``val/energy_trace``)."""
        super().on_validation_epoch_end()
        if self.energy_trace and self.global_rank == 0 and not self.trainer.sanity_checking:
            log_line(self.trainer.loggers, "val/energy_trace", self.energy_trace, "step", "energy", self.global_step)

    def on_train_start(self) -> None:
        """Persistent chains: a buffer row for every training example (after a checkpoint's is loaded)."""
        if self.needs_example_index:
            self.warmstart.reserve(len(self.trainer.train_dataloader.dataset), self.device)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["sampler_step_size"] = self.sampler.step_size  # changed by on_divergence=backoff
        checkpoint["diverged_total"] = self.diverged_total

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        restore_step_size(self.sampler, checkpoint)
        self.diverged_total = checkpoint.get("diverged_total", 0)

    def reconstruct(self, x: Tensor) -> Tensor:
        """The likelihood mean at the chain's last state z_T."""
        chain = self.infer(x)
        with torch.no_grad():
            return self.likelihood.mean(self.energy.decode(chain.samples[-1]))

    def noisy_sampler(self) -> ChainSampler:
        """The model's sampler, with noise if it has none (plain PC's gradient descent): made once
        per step size, so that what it compiles or captures is kept across evaluation batches."""
        if self.sampler.noise:
            return self.sampler
        if self._noisy is None or self._noisy.step_size != self.sampler.step_size:
            self._noisy = replace(self.sampler, noise=True)
        return self._noisy

    @property
    def amortised_encoder(self) -> nn.Module | None:  # type: ignore[override]
        """The warm-start's encoder (``warmstart=forward_kl|reverse_kl|jeffreys``)."""
        return getattr(self.warmstart, "encoder", None)

    @property
    def has_chain_proposal(self) -> bool:  # type: ignore[override]
        return self.sampler.num_samples >= 2

    def proposals(self, x: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """``chain``: a diagonal Gaussian moment-matched to the kept samples of a Langevin chain from
        the warm-start (for a noise-free sampler, i.e. plain PC, the same sampler with noise; absent
        when the sampler keeps fewer than 2 samples); with an encoder also ``encoder``: its q(z | x)."""
        proposal = self.warmstart(x)
        found = {}
        if self.has_chain_proposal:
            found["chain"] = fit_diagonal_gaussian(self.infer(x, proposal, self.noisy_sampler()).samples)
        if proposal.mean is not None:
            found["encoder"] = (proposal.mean, proposal.log_std)
        return found
