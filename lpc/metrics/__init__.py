"""Metrics and estimators (plain PyTorch and torchmetrics, no Lightning)."""

from lpc.metrics.elbo import bits_per_dim, chain_gaussian_elbo, importance_log_weights, iwae_bound
from lpc.metrics.frechet import frechet_distance
from lpc.metrics.prdc import prdc

__all__ = ["bits_per_dim", "chain_gaussian_elbo", "frechet_distance", "importance_log_weights", "iwae_bound", "prdc"]
