"""Where each Langevin chain starts, and how an encoder that proposes the start is trained.

``warmstart=none`` (``PriorInit``): z0 ~ p(z), an ancestral draw from the model's prior (N(0, I)
unless ``prior=hierarchical``), no encoder (encoder-free LPC).

``warmstart=persistent`` (``PersistentInit``): encoder-free persistent chains: each training
example's chain starts where its previous one ended (alternating back-propagation, Han et al. 2017).

``warmstart=forward_kl|reverse_kl|jeffreys`` (``AmortisedInit``): an encoder gives
q_phi(z | x) = N(mean_phi(x), diag sigma_phi(x)^2) and z0 ~ q_phi (detached: the chain never
back-propagates into the encoder). After the decoder's update on the same batch, the encoder takes
one step of its own optimizer on its objective, reusing the forward pass that produced z0 (phi as
it was when z0 was drawn):

- ``forward_kl``: L = -(1/S) sum_s log q_phi(z_s | x) over the chain's kept samples z_s, detached:
  a sample estimate of KL(p(z|x) || q_phi) + H(p(z|x)), i.e. the forward KL up to a constant.
  Gradient: to phi only (not through the samples, and the decoder is not involved).
- ``reverse_kl``: L = -ELBO(q_phi) = -[log p(x | z) - KL(q_phi(z|x) || p(z))] with the
  reparameterised z = mean + sigma * eps (one draw; the KL analytic for N(0, I), else
  log q_phi(z|x) - log p(z) at z) = KL(q_phi || p(z|x)) - log p(x).
  Gradient: to phi through z and the decoder's output; the generative model's parameters theta
  are frozen for this loss (it leaves their .grad untouched) and it sees theta after this batch's
  decoder update. Costs one more decoder forward+backward.
- ``jeffreys``: the sum of the two, L = L_forward + L_reverse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lpc.methods.distributed import gather_rows
from lpc.model.energy import Energy
from lpc.model.gaussian import diagonal_normal_log_prob, reparameterise
from lpc.model.priors import GaussianHierarchy


class Proposal(NamedTuple):
    """Starting points of the chains and, with an encoder, q's parameters (with their graph to phi)."""

    z0: Tensor  # (B, D), detached
    mean: Tensor | None = None  # (B, D)
    log_std: Tensor | None = None  # (B, D)

    def subset(self, keep: Tensor) -> "Proposal":
        """The rows selected by the (B,) mask ``keep``."""
        return Proposal(*(None if t is None else t[keep] for t in self))


@contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Parameters of ``module`` do not require grad inside the block: graphs built there send no
    gradient to them (activations still pass gradients through)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield
    finally:
        for p, flag in zip(module.parameters(), flags):
            p.requires_grad_(flag)


def forward_kl_loss(mean: Tensor, log_std: Tensor, samples: Tensor) -> Tensor:
    """-(1/S) sum_s log q(z_s | x) with the samples detached.  samples (S, B, D) -> (B,)."""
    return -diagonal_normal_log_prob(samples.detach(), mean, log_std).mean(0)


def reverse_kl_loss(energy: Energy, x: Tensor, mean: Tensor, log_std: Tensor) -> Tensor:
    """-[log p(x | z) - KL(q || p(z))], z = mean + sigma * eps, with theta (the prior's too) frozen.  -> (B,)."""
    z = reparameterise(mean, log_std)
    with frozen(energy):
        return -(energy.log_likelihood(x, z) - energy.prior.kl(mean, log_std, z))


class PriorInit(nn.Module):
    """Encoder-free start (``warmstart=none``): one ancestral draw per example from the model's
    prior with its noise scaled by ``scale`` (``GaussianHierarchy.sample``; for N(0, I),
    z0 = scale * eps): ``scale=1`` draws from p(z), ``scale=0`` starts every chain at the prior's
    mean path, 0 for N(0, I) (deterministic plain PC). The method hands over its prior
    (``use_prior``); until then the prior is N(0, I) of ``latent_dim`` dimensions."""

    trainable = False
    decoder_evals = 0

    def __init__(self, latent_dim: int, scale: float = 1.0):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        if scale < 0:
            raise ValueError(f"warmstart.scale must be >= 0, got {scale}")
        self.latent_dim = latent_dim
        self.scale = scale
        self.sample_prior = GaussianHierarchy([latent_dim]).sample  # a bound method: not a submodule

    def use_prior(self, prior: GaussianHierarchy) -> None:
        """Draw the starts from ``prior`` (the method's, whose parameters it trains)."""
        if prior.state_dim != self.latent_dim:
            raise ValueError(f"warmstart.latent_dim={self.latent_dim} but the prior's state has {prior.state_dim} "
                             f"dimensions: leave warmstart.latent_dim at ${{state_dim}}")
        self.sample_prior = prior.sample

    def draw(self, rows: int, like: Tensor) -> Tensor:
        """(rows, D) fresh starts from the prior, noise scaled by ``scale``."""
        return self.sample_prior(rows, like.device, like.dtype, self.scale)

    def forward(self, x: Tensor, index: Tensor | None = None) -> Proposal:
        return Proposal(self.draw(x.shape[0], x))

    def chain_starts(self, proposal: Proposal, chains: int) -> Tensor:
        """(C * B, D) starts of C > 1 chains per example, chain-major: the proposal's z0, then fresh draws."""
        return torch.cat([proposal.z0, self.draw((chains - 1) * len(proposal.z0), proposal.z0)])


class PersistentInit(PriorInit):
    """Persistent chains (``warmstart=persistent``): a buffer holds each training example's last
    latent, indexed by its position in the training set; its next chain starts there, and from a
    prior draw (``PriorInit.draw``) on its first visit (and for validation, which passes no index). The buffer is the
    module's extra state, so it is saved in and restored from checkpoints; under DDP every rank
    holds all of it (``store`` gathers the ranks' rows). One chain per example."""

    needs_example_index = True

    def __init__(self, latent_dim: int, scale: float = 1.0):
        super().__init__(latent_dim, scale)
        self.latents = torch.zeros(0, latent_dim)  # (N, D), sized by ``reserve`` before training
        self.stored = torch.zeros(0, dtype=torch.bool)  # (N,) whether an example has a stored latent

    def forward(self, x: Tensor, index: Tensor | None = None) -> Proposal:
        fresh = self.draw(x.shape[0], x)
        if index is None:
            return Proposal(fresh)
        return Proposal(torch.where(self.stored[index][:, None], self.latents[index].to(x.dtype), fresh))

    def reserve(self, size: int, device: torch.device) -> None:
        """Make room for ``size`` examples (the training set's; ``LangevinPC`` calls this as training
        starts), on ``device``. Sized up front, the buffer is read and written without a host sync."""
        self.latents, self.stored = self.latents.to(device), self.stored.to(device)
        if size > len(self.stored):
            grow = size - len(self.stored)
            self.latents = torch.cat([self.latents, self.latents.new_zeros(grow, self.latent_dim)])
            self.stored = torch.cat([self.stored, self.stored.new_zeros(grow)])

    def store(self, index: Tensor, z: Tensor, keep: Tensor) -> None:
        """Remember z (B, D) as the latent of the examples ``index`` (B,) where ``keep`` (B,); an
        example whose chain is not kept (diverged) starts afresh next time."""
        index, z, keep = gather_rows(index, z.detach(), keep)
        self.latents[index] = torch.where(keep[:, None], z, 0.0).to(self.latents.dtype)
        self.stored[index] = keep

    def get_extra_state(self) -> dict[str, Tensor]:
        return {"latents": self.latents.cpu(), "stored": self.stored.cpu()}

    def set_extra_state(self, state: dict[str, Tensor]) -> None:
        self.latents, self.stored = state["latents"], state["stored"]


OBJECTIVES = ("forward_kl", "reverse_kl", "jeffreys")


class AmortisedInit(nn.Module):
    """An encoder q_phi(z | x) proposes z0 and is trained by ``objective`` (see the module docstring).

    Args:
        encoder: x -> (mean, log_std), each (B, D).
        objective: ``forward_kl``, ``reverse_kl`` or ``jeffreys``.
        optimizer: the encoder's own optimizer, a factory params -> torch.optim.Optimizer.
        init: ``sample`` (z0 ~ q) or ``mean`` (z0 = mean_phi(x)).
    """

    trainable = True

    def __init__(self, encoder: nn.Module, objective: str, optimizer: Callable[..., torch.optim.Optimizer], init: str = "sample"):
        super().__init__()
        if not isinstance(encoder, nn.Module):
            raise TypeError(f"the encoder must be a torch.nn.Module (its parameters are what is trained), got a "
                            f"{type(encoder).__name__}: subclass torch.nn.Module (docs/networks.md)")
        if objective not in OBJECTIVES:
            raise ValueError(f"warmstart objective must be one of {list(OBJECTIVES)}, got {objective!r}")
        if init not in ("sample", "mean"):
            raise ValueError(f"warmstart.init must be 'sample' or 'mean', got {init!r}")
        self.encoder = encoder
        self.objective = objective
        self.optimizer_factory = optimizer
        self.init = init

    @property
    def decoder_evals(self) -> int:
        """Decoder forward+backward passes the objective costs per update."""
        return int(self.objective != "forward_kl")

    def forward(self, x: Tensor, index: Tensor | None = None) -> Proposal:
        mean, log_std = self.encoder(x)
        return Proposal(self.start(mean, log_std).detach(), mean, log_std)

    def start(self, mean: Tensor, log_std: Tensor) -> Tensor:
        """A start from q: a draw (``init=sample``) or its mean (``init=mean``)."""
        return reparameterise(mean, log_std) if self.init == "sample" else mean

    def chain_starts(self, proposal: Proposal, chains: int) -> Tensor:
        """(C * B, D) starts of C > 1 chains per example, chain-major: the proposal's z0, then C - 1
        further starts from q."""
        more = [self.start(proposal.mean, proposal.log_std).detach() for _ in range(chains - 1)]
        return torch.cat([proposal.z0, *more])

    def loss(self, energy: Energy, x: Tensor, proposal: Proposal, samples: Tensor) -> dict[str, Tensor]:
        """The encoder's loss (mean over the batch) under ``encoder_loss``, and its terms."""
        terms: dict[str, Tensor] = {}
        if self.objective in ("forward_kl", "jeffreys"):
            terms["forward_kl"] = forward_kl_loss(proposal.mean, proposal.log_std, samples).mean()
        if self.objective in ("reverse_kl", "jeffreys"):
            terms["reverse_kl"] = reverse_kl_loss(energy, x, proposal.mean, proposal.log_std).mean()
        return {"encoder_loss": sum(terms.values()), **terms}
