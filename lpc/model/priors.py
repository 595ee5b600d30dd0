"""The prior p(z) of the generative model: a Gaussian hierarchy, of which today's N(0, I) is the
one-layer case (``prior=standard_normal``, the default; ``prior=hierarchical`` for L > 1).

    z_L ~ N(0, I),    z_l | z_{l+1} ~ N(g_l(z_{l+1}), sigma_l^2 I)   for l = L-1 .. 1,

and the decoder maps z_1 to the likelihood's parameters. The sampler sees one state, the layers
concatenated top-down, z = [z_L, ..., z_1] (N, D) with D = sum of the sizes, so every sampler,
preconditioner (per dimension, hence per layer) and warm-start works on it unchanged. Then

    -log p(z) = -log N(z_L; 0, I) - sum_l log N(z_l; g_l(z_{l+1}), sigma_l^2 I),

the layers' precision-weighted prediction errors (plus log-normalisers): with the likelihood's
term, predictive coding's energy. g_l is PC's prediction W_l act(z_{l+1}) + b_l (``hidden=[]``)
or a deeper MLP act -> Linear -> act -> ... -> Linear; sigma_l fixed or learned (one scalar per layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import Tensor, nn

from lpc.model.gaussian import (
    diagonal_normal_log_prob,
    kl_to_standard_normal,
    standard_normal_log_prob,
)
from lpc.networks.layers import activation
from lpc.networks.mlp import mlp
from lpc.samplers.annealing import DiagonalGaussian, SampledDensity, StartDensity


def prediction(sizes: Sequence[int], act: str) -> nn.Sequential:
    """g: z_{l+1} -> the mean of z_l, act first (PC's W act(z) + b for two sizes)."""
    return nn.Sequential(activation(act), *mlp(sizes, act))


class GaussianHierarchy(nn.Module):
    """The prior over the state z = [z_L, ..., z_1] (see the module docstring).

    Args:
        sizes: the layers' sizes top-down, [dim z_L, ..., dim z_1]; the last is the decoder's input.
            One size: p(z) = N(0, I), exactly today's prior.
        hidden: hidden widths inside each g_l ([] is PC's one-layer prediction W act(z) + b).
        act: the activation of g_l (``identity`` makes the hierarchy linear-Gaussian).
        sigma: sigma_l, one for every layer or one per layer (top-down, L - 1 of them).
        learn_sigma: learn log sigma_l with the generative model's parameters.
    """

    def __init__(self, sizes: Sequence[int], hidden: Sequence[int] = (), act: str = "tanh",
                 sigma: float | Sequence[float] = 1.0, learn_sigma: bool = False):
        super().__init__()
        self.sizes = [int(s) for s in sizes]
        if not self.sizes or min(self.sizes) < 1:
            raise ValueError(f"prior.sizes must be a non-empty list of layer sizes >= 1, got {list(sizes)} (prior="
                             f"standard_normal takes [latent_dim]: latent_dim must be >= 1)")
        maps = len(self.sizes) - 1
        sigmas = [float(sigma)] * maps if isinstance(sigma, (int, float)) else [float(s) for s in sigma]
        if len(sigmas) != maps or any(s <= 0 for s in sigmas):
            raise ValueError(f"prior.sigma must be one number > 0 or {maps} of them (one per layer below the top), got {sigma}")
        self.maps = nn.ModuleList(prediction([n_in, *hidden, n_out], act) for n_in, n_out in zip(self.sizes, self.sizes[1:]))
        log_sigma = torch.tensor([math.log(s) for s in sigmas])
        if learn_sigma and maps:
            self.log_sigma = nn.Parameter(log_sigma)
        else:  # one layer: no state at all, so checkpoints of N(0, I) models stay as they were
            self.register_buffer("log_sigma", log_sigma, persistent=maps > 0)

    @property
    def state_dim(self) -> int:
        """D, the dimension of the sampler's state (every layer)."""
        return sum(self.sizes)

    @property
    def data_dim(self) -> int:
        """The dimension of z_1, the decoder's input."""
        return self.sizes[-1]

    @property
    def num_layers(self) -> int:
        return len(self.sizes)

    def layers(self, z: Tensor) -> tuple[Tensor, ...]:
        """z (..., D) -> (z_L, ..., z_1), views."""
        return z.split(self.sizes, dim=-1)

    def bottom(self, z: Tensor) -> Tensor:
        """z_1 (..., dim z_1), the decoder's input."""
        return z if self.num_layers == 1 else z[..., -self.data_dim:]

    def log_prob(self, z: Tensor) -> Tensor:
        """log p(z) = log N(z_L; 0, I) + sum_l log N(z_l; g_l(z_{l+1}), sigma_l^2 I).  (..., D) -> (...)."""
        if self.num_layers == 1:
            return standard_normal_log_prob(z)
        layers = self.layers(z)
        total = standard_normal_log_prob(layers[0])
        for g, log_sigma, above, below in zip(self.maps, self.log_sigma, layers, layers[1:]):
            total = total + diagonal_normal_log_prob(below, g(above), log_sigma)
        return total

    @torch.no_grad()
    def sample(self, n: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
               scale: float = 1.0) -> Tensor:
        """n ancestral draws (n, D): z_L = scale eps_L, z_l = g_l(z_{l+1}) + scale sigma_l eps_l.
        ``scale=1`` draws from p(z); ``scale=0`` follows the predictions from z_L = 0."""
        if self.num_layers == 1:
            return scale * torch.randn(n, self.state_dim, device=device, dtype=dtype)
        top = scale * torch.randn(n, self.sizes[0], device=device, dtype=dtype)
        layers = [top]
        for g, log_sigma, size in zip(self.maps, self.log_sigma, self.sizes[1:]):
            noise = torch.randn(n, size, device=device, dtype=dtype)
            layers.append(g(layers[-1]) + scale * log_sigma.exp().to(top.dtype) * noise)
        return torch.cat(layers, dim=-1)

    def kl(self, mean: Tensor, log_std: Tensor, z: Tensor) -> Tensor:
        """KL(q || p) for q = N(mean, diag exp(log_std)^2) (B, D) and its draw z (B, D): in closed
        form for one layer, else the one-draw estimate log q(z) - log p(z) (unbiased, not closed-form
        below the top layer). -> (B,)."""
        if self.num_layers == 1:
            return kl_to_standard_normal(mean, log_std)
        return diagonal_normal_log_prob(z, mean, log_std) - self.log_prob(z)

    def start_density(self, rows: int, device: torch.device | str | None = None) -> StartDensity:
        """p(z) over ``rows`` rows as the start of annealed importance sampling: N(0, I) in closed form
        for one layer, else ancestral draws with ``log_prob`` (its gradient by autograd)."""
        if self.num_layers == 1:
            zeros = torch.zeros(rows, self.state_dim, device=device)
            return DiagonalGaussian(zeros, zeros)
        return SampledDensity(lambda: self.sample(rows, device), self.log_prob)
