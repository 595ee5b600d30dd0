"""The energy of the generative model, E(x, z) = -log p(x | z) - log p(z), per example."""

from __future__ import annotations

from torch import Tensor, nn

from lpc.gaussian import standard_normal_log_prob
from lpc.likelihoods import Likelihood


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

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) = likelihood(x; f_theta(z)), per example (B,)."""
        return self.likelihood.log_prob(x, self.decoder(z))
