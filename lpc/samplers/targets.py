"""Two-dimensional targets whose moments are known exactly, for testing and comparing samplers:
energies E(z) (N, 2) -> (N,) of unnormalised densities exp(-E)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Banana:
    """z1 ~ N(0, 1), z2 | z1 ~ N(bend (z1^2 - 1), sigma^2): curved and non-Gaussian.

        E(z) = z1^2 / 2 + (z2 - bend (z1^2 - 1))^2 / (2 sigma^2)
        E[z] = 0,   E[z1^2] = 1,   E[z2^2] = sigma^2 + 2 bend^2
    """

    bend: float = 0.5
    sigma: float = 0.5

    def energy(self, z: Tensor) -> Tensor:
        return 0.5 * z[:, 0] ** 2 + (z[:, 1] - self.bend * (z[:, 0] ** 2 - 1)) ** 2 / (2 * self.sigma**2)

    def moments(self) -> Tensor:
        """(2, 2): E[z] and E[z^2] per coordinate."""
        return torch.tensor([[0.0, 0.0], [1.0, self.sigma**2 + 2 * self.bend**2]], dtype=torch.float64)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """n exact draws (n, 2), float64."""
        z1, noise = torch.randn(2, n, generator=generator, dtype=torch.float64)
        return torch.stack([z1, self.bend * (z1**2 - 1) + self.sigma * noise], dim=1)


@dataclass(frozen=True)
class SeparatedModes:
    """An equal mixture of N(+offset, scale^2 I) and N(-offset, scale^2 I) in every coordinate
    independently: modes that a local sampler does not cross when offset >> scale.

        E(z) = -sum_d log(exp(-(z_d - offset)^2 / (2 scale^2)) + exp(-(z_d + offset)^2 / (2 scale^2)))
        E[z] = 0,   E[z_d^2] = offset^2 + scale^2
    """

    offset: float = 4.0
    scale: float = 0.5

    def energy(self, z: Tensor) -> Tensor:
        near = -0.5 * ((z - self.offset) / self.scale).square()
        far = -0.5 * ((z + self.offset) / self.scale).square()
        return -torch.logaddexp(near, far).sum(-1)

    def moments(self) -> Tensor:
        return torch.tensor([[0.0, 0.0], [self.offset**2 + self.scale**2] * 2], dtype=torch.float64)


def moments_with_errors(samples: Tensor) -> tuple[Tensor, Tensor]:
    """E[z] and E[z^2] (2, D) over samples (S, N, D) of N independent chains, and their Monte Carlo
    standard errors from the spread of the per-chain averages (valid however correlated a chain is,
    but only once the chains have converged: a chain stuck far out makes them unreliable)."""
    per_chain = torch.stack([samples.mean(0), samples.square().mean(0)])  # (2, N, D)
    return per_chain.mean(1), per_chain.std(1) / per_chain.shape[1] ** 0.5
