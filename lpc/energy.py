"""The energy of the generative model, E(x, z) = -log p(x | z) - log p(z), per example."""

from __future__ import annotations

import math

from torch import Tensor, nn

from lpc.likelihoods import Likelihood


def standard_normal_log_prob(z: Tensor) -> Tensor:
    """log N(z; 0, I) = -sum_d (z_d^2 + log 2 pi) / 2.  z: (B, D) -> (B,)."""
    return -0.5 * (z.square() + math.log(2 * math.pi)).sum(-1)


class Energy(nn.Module):
    """E(x, z) = -log p(x | f_theta(z)) - log N(z; 0, I).  x: (B, C, H, W), z: (B, D) -> (B,).

    Holds the decoder f_theta and the likelihood, so ``Energy.parameters()`` are exactly the
    generative model's parameters theta.
    """

    def __init__(self, decoder: nn.Module, likelihood: Likelihood):
        super().__init__()
        self.decoder = decoder
        self.likelihood = likelihood

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.from_output(x, z, self.decoder(z))

    def from_output(self, x: Tensor, z: Tensor, out: Tensor) -> Tensor:
        """E(x, z) given the decoder output out = f_theta(z) already computed."""
        return -self.likelihood.log_prob(x, out) - standard_normal_log_prob(z)
