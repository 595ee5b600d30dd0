"""Frechet distance between two feature sets, computed by torchmetrics' FrechetInceptionDistance."""

from __future__ import annotations

from torch import Tensor, nn
from torchmetrics.image.fid import FrechetInceptionDistance


class PrecomputedFeatures(nn.Module):
    """The identity on (N, dim) features, so that torchmetrics' FID runs on features we extracted
    once (and reuse for precision/recall/density/coverage)."""

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, features: Tensor) -> Tensor:
        return features


def frechet_distance(real: Tensor, fake: Tensor) -> float:
    """||mu_r - mu_f||^2 + tr(S_r + S_f - 2 (S_r S_f)^(1/2)) between the Gaussians fitted to two
    feature sets (N, dim) and (M, dim) (unbiased covariances, float64), via torchmetrics."""
    # sync_on_compute=False: the features are complete on this process (under DDP the evaluation runs on rank 0)
    metric = FrechetInceptionDistance(feature=PrecomputedFeatures(real.shape[1]), sync_on_compute=False).to(real.device)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    return float(metric.compute())
