"""Observation models log p(x | z) given the decoder's output f_theta(z).

Every likelihood maps the decoder output ``out`` (B, C, H, W) to a per-example log-probability
summed over pixels (B,), an image-space mean and a sample, and states the pixel range it expects
(``data_range``), which the data module must produce.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

UNIT = (0.0, 1.0)
SYMMETRIC = (-1.0, 1.0)
_SQUASH = {"none": (lambda t: t, None), "sigmoid": (torch.sigmoid, UNIT), "tanh": (torch.tanh, SYMMETRIC)}


def sum_per_example(t: Tensor) -> Tensor:
    """Sum over every dimension but the first: (B, ...) -> (B,)."""
    return t.flatten(1).sum(1)


class Likelihood(nn.Module):
    """Interface: log_prob(x, out) -> (B,), mean(out), sample(out), data_range."""

    data_range: tuple[float, float] | None = None  # None: any real-valued data
    discrete = False  # True: log_prob is a log-probability of the data, not a density

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        raise NotImplementedError

    def mean(self, out: Tensor) -> Tensor:
        raise NotImplementedError

    def sample(self, out: Tensor) -> Tensor:
        raise NotImplementedError


class GaussianLikelihood(Likelihood):
    """p(x | z) = N(x; mu, sigma^2 I) with a fixed sigma and mu = squash(f_theta(z)).

        log p(x | z) = sum_i [ -(x_i - mu_i)^2 / (2 sigma^2) - log sigma - log(2 pi) / 2 ]

    ``squash`` is ``none`` (mu = f_theta(z), any data range), ``sigmoid`` (data in [0, 1]) or
    ``tanh`` (data in [-1, 1]).
    """

    def __init__(self, sigma: float = 0.1, squash: str = "none"):
        super().__init__()
        if not sigma > 0:
            raise ValueError(f"likelihood.sigma must be > 0, got {sigma}")
        if squash not in _SQUASH:
            raise ValueError(f"likelihood.squash must be one of {sorted(_SQUASH)}, got {squash!r}")
        self.sigma = float(sigma)
        self.squash = squash
        self._squash_fn, self.data_range = _SQUASH[squash]

    def mean(self, out: Tensor) -> Tensor:
        return self._squash_fn(out)

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        z = (x - self.mean(out)) / self.sigma
        return sum_per_example(-0.5 * z.square() - math.log(self.sigma) - 0.5 * math.log(2 * math.pi))

    def sample(self, out: Tensor) -> Tensor:
        return self.mean(out) + self.sigma * torch.randn_like(out)


class BernoulliLikelihood(Likelihood):
    """p(x | z) = prod_i Bernoulli(x_i; sigmoid(l_i)) with logits l = f_theta(z), x in [0, 1]
    (binarised data; a non-binary x in [0, 1] gives the usual cross-entropy, not a normalised density).

        log p(x | z) = sum_i [ x_i * l_i - log(1 + exp(l_i)) ]
    """

    data_range = UNIT
    discrete = True

    def mean(self, out: Tensor) -> Tensor:
        return torch.sigmoid(out)

    def log_prob(self, x: Tensor, out: Tensor) -> Tensor:
        return -sum_per_example(F.binary_cross_entropy_with_logits(out, x, reduction="none"))

    def sample(self, out: Tensor) -> Tensor:
        return torch.bernoulli(self.mean(out))
