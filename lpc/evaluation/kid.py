"""Kernel distance (KID, Binkowski et al. 2018) between two feature sets, computed by torchmetrics'
KernelInceptionDistance on features extracted once."""

from __future__ import annotations

import warnings

from torch import Tensor
from torchmetrics.image.kid import KernelInceptionDistance

from lpc.evaluation.frechet import PrecomputedFeatures


def kernel_distance(real: Tensor, fake: Tensor, subsets: int = 100, subset_size: int = 1000) -> tuple[float, float]:
    """The unbiased MMD^2 between real (N, d) and fake (M, d) features under the kernel
    k(x, y) = (x.y / d + 1)^3, estimated on ``subsets`` random subsets of ``subset_size`` (at most
    min(N, M)) from each set; returns its mean and standard deviation over the subsets. Draws
    from the global torch RNG."""
    size = min(subset_size, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features": they are already in memory here
        warnings.simplefilter("ignore", UserWarning)
        metric = KernelInceptionDistance(
            feature=PrecomputedFeatures(real.shape[1]), subsets=subsets, subset_size=size, sync_on_compute=False
        )  # the features are complete on this process (under DDP the evaluation runs on rank 0)
    metric = metric.to(real.device)
    metric.update(real.double(), real=True)
    metric.update(fake.double(), real=False)
    mean, std = metric.compute()
    return float(mean), float(std)
