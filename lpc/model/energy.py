"""The energy of the generative model, E(x, z) = -log p(x | z) - log p(z), per example."""

from __future__ import annotations

from torch import Tensor, nn

from lpc.model.likelihoods import Likelihood
from lpc.model.priors import GaussianHierarchy


class Energy(nn.Module):
    """E(x, z) = -log p(x | f_theta(z_1)) - log p(z).  x: (B, C, H, W), z: (B, D) -> (B,).

    p(z) is the prior (``lpc.model.priors``: N(0, I) by default, or a Gaussian hierarchy whose bottom
    layer z_1 the decoder reads). Holds the decoder, the likelihood and the prior, so
    ``Energy.parameters()`` are exactly the generative model's parameters theta.
    """

    def __init__(self, decoder: nn.Module, likelihood: Likelihood, prior: GaussianHierarchy | None = None):
        super().__init__()
        declared = getattr(decoder, "latent_dim", None)  # a decoder of one's own need not declare its input size
        if prior is None and declared is None:
            raise ValueError(f"{type(decoder).__name__} has no latent_dim attribute: pass the prior, whose bottom "
                             f"layer is the decoder's input")
        prior = GaussianHierarchy([declared]) if prior is None else prior
        if declared is not None and prior.data_dim != declared:
            raise ValueError(f"the prior's bottom layer has {prior.data_dim} dimensions but the decoder reads "
                             f"{declared}: set latent_dim to the last of prior.sizes")
        self.decoder = decoder
        self.likelihood = likelihood
        self.prior = prior

    def forward(self, x: Tensor, z: Tensor) -> Tensor:
        return self.from_output(x, z, self.decode(z))

    def decode(self, z: Tensor) -> Tensor:
        """f_theta(z_1), the likelihood's parameters at the state z (N, D)."""
        return self.decoder(self.prior.bottom(z))

    def from_output(self, x: Tensor, z: Tensor, out: Tensor) -> Tensor:
        """E(x, z) given the decoder output out = f_theta(z_1) already computed."""
        return -self.likelihood.log_prob(x, out) - self.prior.log_prob(z)

    def log_likelihood(self, x: Tensor, z: Tensor) -> Tensor:
        """log p(x | z) = likelihood(x; f_theta(z_1)), per example (B,)."""
        return self.likelihood.log_prob(x, self.decode(z))
