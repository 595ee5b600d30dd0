"""What every method shares: the generative model (decoder, likelihood, prior), its optimizer, the
common metric names, and generation from the prior."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, nullcontext

import lightning as L
import torch
from lightning.pytorch.core.optimizer import LightningOptimizer
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor, nn

from lpc.errors import DivergenceError
from lpc.methods.distributed import average_gradients
from lpc.model.energy import Energy
from lpc.model.likelihoods import Likelihood
from lpc.model.priors import GaussianHierarchy

OptimizerFactory = Callable[..., torch.optim.Optimizer]  # params -> optimizer (a Hydra _partial_)


def repeat_batch(x: Tensor, times: int) -> Tensor:
    """(B, ...) -> (times * B, ...), the batch tiled ``times`` times (matches samples.reshape(S * B, D))."""
    return x.expand(times, *x.shape).reshape(times * x.shape[0], *x.shape[1:])


def require_module(net: object, role: str) -> None:
    """Refuse a network (``role``: decoder or encoder) that is not a ``torch.nn.Module``: its parameters
    are what the optimizers train and the checkpoints hold."""
    if not isinstance(net, nn.Module):
        raise TypeError(f"the {role} must be a torch.nn.Module (its parameters are what is trained), got a "
                        f"{type(net).__name__}: subclass torch.nn.Module (docs/networks.md)")


class Stopwatch:
    """Wall-clock milliseconds of a block; synchronises CUDA first so queued kernels count.
    Disabled (``enabled=False``: a step whose metrics are not logged) it neither times nor synchronises."""

    def __init__(self, device: torch.device, enabled: bool = True):
        self.device = device
        self.enabled = enabled
        self.ms = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @contextmanager
    def __call__(self) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        self._sync()
        start = time.perf_counter()
        yield
        self._sync()
        self.ms = 1e3 * (time.perf_counter() - start)


class GenerativeModule(L.LightningModule):
    """Base LightningModule: p(z) = the prior (N(0, I), or a Gaussian hierarchy: ``lpc.model.priors``),
    p(x | z) = likelihood(decoder(z_1)).

    Subclasses implement ``update`` (one training step), ``validation_step`` and ``reconstruct``; all log the
    shared metric names (``train/loss``, ``train/energy``, ``train/recon_mse``, ``train/elbo``,
    ``val/...``, ``cost/...``) so that dashboards compare methods directly.

    Randomness: training steps draw from the module's own stream (``training_randomness``), kept
    in checkpoints, and each validation from a stream seeded by the step; so a resumed run draws
    what an uninterrupted one would, whatever callbacks or validation draw in between. Under DDP,
    gradients are averaged over ranks explicitly after every backward (``step_optimizer``).
    """

    def __init__(self, decoder: nn.Module, likelihood: Likelihood, optimizer: OptimizerFactory,
                 prior: GaussianHierarchy | None = None):
        super().__init__()
        require_module(decoder, "decoder")
        self.energy = Energy(decoder, likelihood, prior)
        self.optimizer_factory = optimizer
        self.automatic_optimization = False
        self.validated_at = -1  # global_step of the last validation
        self.train_rng: dict[str, Tensor | None] | None = None  # the training stream's state
        self.skipped_steps = 0  # this rank's training steps with nothing to learn from (kept in checkpoints)
        self.update_counts = {"updates": 0, "skipped_updates": 0}  # the run's, over all ranks (``on_train_end``)
        self.decoder_evals_total = 0  # this rank's decoder passes over its batch, over the run (kept in checkpoints)
        self.last_update_evals = 0  # ... of the last update: what the next one will cost (``lpc.callbacks.Budget``)
        self._validation_rng = ExitStack()

    def rng_devices(self) -> list[torch.device]:
        return [self.device] if self.device.type == "cuda" else []

    @contextmanager
    def training_randomness(self) -> Iterator[None]:
        """Run a training step on the module's own random stream: it starts from the run's seed
        (plus the rank) and continues from where the previous step left it, also across a resume."""
        with torch.random.fork_rng(devices=self.rng_devices()):
            if self.train_rng is None:
                torch.manual_seed(torch.initial_seed() + self.global_rank)
            else:
                torch.set_rng_state(self.train_rng["cpu"])
                if self.device.type == "cuda" and self.train_rng["cuda"] is not None:
                    torch.cuda.set_rng_state(self.train_rng["cuda"], self.device)
            yield
            cuda = torch.cuda.get_rng_state(self.device) if self.device.type == "cuda" else None
            self.train_rng = {"cpu": torch.get_rng_state(), "cuda": cuda}

    def on_validation_epoch_start(self) -> None:
        """Validation draws from a stream seeded by (seed, step, rank): the same numbers for every
        method and run at a given step."""
        self._validation_rng.enter_context(torch.random.fork_rng(devices=self.rng_devices()))
        torch.manual_seed(torch.initial_seed() + 1_000_003 * (self.global_step + 1) + self.global_rank)

    def on_validation_epoch_end(self) -> None:
        self._validation_rng.close()
        self.validated_at = self.global_step

    def on_train_end(self) -> None:
        """Count the run's updates, summed over ranks: ``updates``, the steps on which a rank's batch
        taught the weights, and ``skipped_updates``, those on which every chain of it diverged (in
        one process, steps). Every rank takes part, so all of them see the same counts."""
        counts = torch.tensor([self.global_step - self.skipped_steps, self.skipped_steps], device=self.device)
        updates, skipped = self.trainer.strategy.reduce(counts, reduce_op="sum").tolist()
        self.update_counts = {"updates": int(updates), "skipped_updates": int(skipped)}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["train_rng"] = self.train_rng
        checkpoint["skipped_steps"] = self.skipped_steps
        checkpoint["decoder_evals_total"] = self.decoder_evals_total
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                checkpoint["wandb_run_id"] = logger.version  # a resumed run logs to the same W&B run

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.train_rng = checkpoint.get("train_rng")
        self.skipped_steps = checkpoint.get("skipped_steps", 0)
        self.decoder_evals_total = checkpoint.get("decoder_evals_total", 0)

    @property
    def decoder(self) -> nn.Module:
        return self.energy.decoder

    @property
    def likelihood(self) -> Likelihood:
        return self.energy.likelihood

    @property
    def prior(self) -> GaussianHierarchy:
        return self.energy.prior

    @property
    def latent_dim(self) -> int:
        """D, the dimension of the sampler's state z (every latent layer)."""
        return self.prior.state_dim

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return self.optimizer_factory(self.energy.parameters())

    @torch.no_grad()
    def generate(self, n: int) -> Tensor:
        """Image-space means of n ancestral draws: E[x | z], z ~ p(z)."""
        return self.likelihood.mean(self.energy.decode(self.prior.sample(n, self.device)))

    needs_example_index = False  # True: training batches must carry each example's index (``update``'s index)

    def training_step(self, batch: Tensor | tuple, batch_idx: int) -> Tensor | None:
        index = batch[2] if isinstance(batch, (tuple, list)) and len(batch) == 3 else None
        with self.training_randomness():
            return self.update(self.batch_images(batch), index)

    def update(self, x: Tensor, index: Tensor | None = None) -> Tensor | None:
        """One outer step on the images x (B, C, H, W) whose positions in the training set are
        ``index`` (B,) when the model asks for them: step the optimizers, log; returns the loss."""
        raise NotImplementedError

    def reconstruct(self, x: Tensor) -> Tensor:
        """Image-space mean E[x | z] at the method's inferred z for x."""
        raise NotImplementedError

    def proposals(self, x: Tensor) -> dict[str, tuple[Tensor, Tensor]]:
        """The diagonal-Gaussian proposals q(z | x) the method offers for likelihood bounds, by name,
        as (mean, log_std), each (B, D)."""
        raise NotImplementedError

    @property
    def amortised_encoder(self) -> nn.Module | None:
        """The method's encoder x -> (mean, log_std) of q(z | x), each (B, D); None without one."""
        return None

    @property
    def has_chain_proposal(self) -> bool:
        """Whether ``proposals`` offers ``chain`` (a Gaussian fitted to the method's chain for x)."""
        return False

    def step_optimizer(
        self, optimizer: LightningOptimizer, loss: Tensor, counts_as_step: bool = True,
        hint: str = "nothing was applied to the weights; lower the learning rate (model.optimizer.lr) or the step size",
    ) -> None:
        """zero_grad, backward and step, through Lightning (for precision and strategy plugins).

        ``trainer.global_step`` (hence ``max_steps``, logging and validation intervals) counts one
        step per batch for every method: an auxiliary optimizer (the warm-start encoder's) steps
        with ``counts_as_step=False``, straight through the strategy, which Lightning does not count
        (otherwise each optimizer would advance global_step; Lightning issue #17958).

        Under DDP the backward runs without DDP's own gradient hooks and the gradients are then
        averaged over ranks here: a step may take several backward passes (decoder, then encoder)
        and a rank whose chains all diverged still takes part with zero gradients. Every rank must
        call this for the same optimizers in the same order.
        """
        optimizer.zero_grad()
        distributed = self.trainer.world_size > 1
        with self.trainer.strategy.block_backward_sync() if distributed else nullcontext():
            self.manual_backward(loss)
        if distributed:
            loss = average_gradients(optimizer.param_groups, loss)
        self.check_finite(loss, optimizer, hint)
        if counts_as_step:
            optimizer.step()
        else:
            self.trainer.strategy.optimizer_step(optimizer.optimizer, closure=lambda: None, model=self)

    def skip_update(self, optimizers: list[LightningOptimizer]) -> None:
        """A step with nothing to learn from (every chain diverged): nothing is applied and the step
        still counts; under DDP this rank adds zero gradients to the others' average instead."""
        self.skipped_steps += 1
        if self.trainer.world_size == 1:
            optimizers[0].zero_grad()
            optimizers[0].step()
            return
        for i, optimizer in enumerate(optimizers):
            self.step_optimizer(optimizer, torch.zeros((), device=self.device, requires_grad=True), counts_as_step=i == 0)

    def check_finite(self, loss: Tensor, optimizer: LightningOptimizer, hint: str) -> None:
        """Stop before a non-finite loss or gradient reaches the weights (the last checkpoint, written
        before this step, stays the last good one)."""
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        finite = torch.stack([torch.isfinite(loss).all(), *(torch.isfinite(g).all() for g in grads)]).all()
        if not finite:
            raise DivergenceError(
                f"non-finite training loss or gradient at step {self.global_step} (loss={loss.item():g}); {hint}. "
                f"The last checkpoint is the last good one"
            )

    def logs_this_step(self) -> bool:
        """Whether this training step's metrics reach the loggers. Lightning writes step metrics on
        every ``trainer.log_every_n_steps``-th step (step % n == 0, counting from 1) and drops the rest,
        so the other steps skip computing and logging them (``self.log`` costs 0.5-1 ms of host time
        per value, and the chain ELBO a decoder pass). The run's last step (``max_steps``, or the last
        batch of ``max_epochs``) and ``fast_dev_run`` steps always log, so the final metrics
        (``metrics.json``) are the last step's. Call before the step's optimizer step."""
        trainer = self.trainer
        step = self.global_step + 1
        every = trainer.log_every_n_steps
        last_step = 0 < trainer.max_steps <= step
        last_epoch = trainer.max_epochs is not None and 0 < trainer.max_epochs <= trainer.current_epoch + 1
        return (bool(trainer.fast_dev_run) or trainer.should_stop or (every > 0 and step % every == 0)
                or last_step or (last_epoch and trainer.is_last_batch))

    def log_metrics(self, stage: str, metrics: dict[str, Tensor | float], batch_size: int) -> None:
        """Log ``metrics`` as ``<stage>/<name>``, and the likelihood's current scale as ``<stage>/sigma``."""
        sigma = getattr(self.likelihood, "sigma", None)
        if sigma is not None:
            metrics = {**metrics, "sigma": sigma.detach()}
        # validation metrics are averaged over ranks (equal shards: EpochSampler), training ones are rank 0's
        self.log_dict({f"{stage}/{k}": v for k, v in metrics.items()}, batch_size=batch_size, sync_dist=stage != "train")

    def count_cost(self, decoder_evals: int) -> None:
        """Add an update's decoder forward+backward passes (over a batch) to the run's total, on every
        update, logged or not: what a budget of decoder evaluations (``lpc.callbacks.Budget``) spends."""
        self.decoder_evals_total += decoder_evals
        self.last_update_evals = decoder_evals

    def log_cost(self, decoder_evals: int, encoder_evals: int, inner_loop_ms: float, step_ms: float) -> None:
        """The cost of one update, under the names every method shares, and the run's total so far."""
        self.log_dict({
            "cost/decoder_evals": float(decoder_evals),
            "cost/decoder_evals_total": float(self.decoder_evals_total),
            "cost/encoder_evals": float(encoder_evals),
            "cost/inner_loop_ms": inner_loop_ms,
            "cost/step_ms": step_ms,
        })

    @staticmethod
    def batch_images(batch: Tensor | tuple | list) -> Tensor:
        """The images of a batch that may also carry labels."""
        return batch[0] if isinstance(batch, (tuple, list)) else batch
