"""Evaluation: the shared evaluator of a split, and its metrics and estimators (AIS, ELBO/IWAE, FD,
KID, PRDC, the sigma fit, feature networks). The metrics are plain PyTorch; ``protocol.py`` runs
them on a trained method's module."""

from lpc.evaluation.elbo import (
    bits_per_dim,
    chain_gaussian_elbo,
    importance_log_weights,
    iwae_bound,
)
from lpc.evaluation.frechet import frechet_distance
from lpc.evaluation.prdc import prdc

__all__ = ["bits_per_dim", "chain_gaussian_elbo", "frechet_distance", "importance_log_weights", "iwae_bound", "prdc"]
