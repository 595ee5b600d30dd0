"""Precision, recall, density and coverage of generated samples (Naeem et al. 2020), in any
feature space, following the reference implementation (clovaai/generative-evaluation-prdc)."""

from __future__ import annotations

import torch
from torch import Tensor


def knn_radii(features: Tensor, k: int, chunk: int = 1024) -> Tensor:
    """Distance from each point to its k-th nearest neighbour in the same set, itself excluded. (N,)."""
    radii = [torch.cdist(block, features).kthvalue(k + 1, dim=1).values for block in features.split(chunk)]
    return torch.cat(radii)


def prdc(real: Tensor, fake: Tensor, k: int = 5, chunk: int = 1024) -> dict[str, float]:
    """With r_i the k-NN radius of real point R_i and f_j that of fake point F_j (N real, M fake):

        precision = (1/M) sum_j 1[exists i: d(F_j, R_i) < r_i]
        recall    = (1/N) sum_i 1[exists j: d(R_i, F_j) < f_j]
        density   = (1/(k M)) sum_j sum_i 1[d(F_j, R_i) < r_i]
        coverage  = (1/N) sum_i 1[min_j d(R_i, F_j) < r_i]

    Computed in chunks of fake points, so memory is O(chunk * N).
    """
    real, fake = real.double(), fake.double()
    real_radii, fake_radii = knn_radii(real, k, chunk), knn_radii(fake, k, chunk)
    precise, inside = 0, 0
    recalled = torch.zeros(len(real), dtype=torch.bool, device=real.device)
    nearest_fake = torch.full((len(real),), torch.inf, dtype=real.dtype, device=real.device)
    for fake_block, radii_block in zip(fake.split(chunk), fake_radii.split(chunk)):
        dist = torch.cdist(fake_block, real)  # (chunk, N)
        within_real = dist < real_radii[None, :]
        precise += int(within_real.any(dim=1).sum())
        inside += int(within_real.sum())
        recalled |= (dist < radii_block[:, None]).any(dim=0)
        nearest_fake = torch.minimum(nearest_fake, dist.min(dim=0).values)
    return {
        "precision": precise / len(fake),
        "recall": float(recalled.double().mean()),
        "density": inside / (k * len(fake)),
        "coverage": float((nearest_fake < real_radii).double().mean()),
    }
