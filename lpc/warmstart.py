"""Where each Langevin chain starts: z0 for a batch of data x."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PriorInit(nn.Module):
    """Encoder-free start (``warmstart=none``): z0 ~ p(z) = N(0, I), one draw per example."""

    def __init__(self, latent_dim: int):
        super().__init__()
        if latent_dim < 1:
            raise ValueError(f"latent_dim must be >= 1, got {latent_dim}")
        self.latent_dim = latent_dim

    def forward(self, x: Tensor) -> Tensor:
        return torch.randn(x.shape[0], self.latent_dim, device=x.device, dtype=x.dtype)
