"""Metrics and estimators (plain PyTorch, no Lightning)."""

from lpc.metrics.elbo import chain_gaussian_elbo

__all__ = ["chain_gaussian_elbo"]
