"""Conditional generation (inpainting): sampling the missing pixels of an image given the observed ones.

With a mask m (1 = observed, 0 = missing, shaped like x) and pixels independent given z,

    E_m(x, z) = -sum_i m_i log p(x_i | z) - log p(z)

is the energy of p(z | x_obs) (the missing pixels are integrated out: each of their factors
integrates to 1). A Langevin chain on E_m gives z ~ p(z | x_obs); then x_miss ~ p(x_miss | z), so
that marginally x_miss ~ p(x_miss | x_obs). Every completion keeps the observed pixels exactly:

    x_out = m * x + (1 - m) * x_completed.

Plain PyTorch: any ``ChainSampler`` and any ``Energy`` (every method's generative model).
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

import torch
from torch import Tensor, nn

from lpc.methods.base import repeat_batch
from lpc.model.energy import Energy
from lpc.model.likelihoods import sum_per_example
from lpc.samplers.chain import ChainSampler

MASKS = ("half", "centre", "random")
Shape = tuple[int, int, int, int]  # (B, C, H, W)


def half_mask(shape: Shape) -> Tensor:
    """The bottom half missing: m_{b,c,h,w} = 1 for h < H // 2.  -> bool (B, C, H, W)."""
    _, _, height, _ = shape
    rows = torch.arange(height) < height // 2  # (H,)
    return rows.view(1, 1, -1, 1).expand(shape).contiguous()


def centre_mask(shape: Shape, size: int | None = None) -> Tensor:
    """A centred square of side ``size`` (default H // 2) missing, the rest observed.  -> bool (B, C, H, W)."""
    _, _, height, width = shape
    size = height // 2 if size is None else size
    if not 1 <= size <= min(height, width):
        raise ValueError(f"the centre square's side must be in [1, {min(height, width)}], got {size}")
    top, left = (height - size) // 2, (width - size) // 2
    mask = torch.ones(height, width, dtype=torch.bool)
    mask[top : top + size, left : left + size] = False
    return mask.expand(shape).contiguous()


def random_mask(shape: Shape, fraction: float = 0.5, generator: torch.Generator | None = None) -> Tensor:
    """Each pixel (all its channels together) missing with probability ``fraction``, independently
    per image: m_{b,c,h,w} = [u_{b,h,w} >= fraction], u ~ U(0, 1).  -> bool (B, C, H, W)."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the missing fraction must be in (0, 1), got {fraction}")
    batch, _, height, width = shape
    u = torch.rand(batch, 1, height, width, generator=generator)  # (B, 1, H, W)
    return (u >= fraction).expand(shape).contiguous()


def paste(x: Tensor, mask: Tensor, filler: Tensor | float) -> Tensor:
    """m * x + (1 - m) * filler: x on the observed pixels, ``filler`` (an image or a value) elsewhere."""
    return torch.where(mask, x, filler)


class MaskedEnergy(nn.Module):
    """E_m(x, z) = -sum_i m_i log p(x_i | z) - log p(z): the energy of p(z | x_obs).

    x: (N, C, H, W), mask: bool (N, C, H, W), z: (N, D) -> (N,). The missing pixels of x are never
    read (their log-probabilities are replaced by 0, whatever x holds there).
    Arguments in ``ChainSampler.run``'s order: ``sampler.run(masked, z0, x, mask)``.
    """

    def __init__(self, energy: Energy):
        super().__init__()
        self.energy = energy

    def forward(self, x: Tensor, mask: Tensor, z: Tensor) -> Tensor:
        out = self.energy.decode(z)  # (N, C, H, W)
        log_lik = torch.where(mask, self.energy.likelihood.elementwise_log_prob(x, out), 0.0)  # (N, C, H, W)
        return -sum_per_example(log_lik) - self.energy.prior.log_prob(z)


class Completion(NamedTuple):
    """Completions of B images by K chains each; the observed pixels are x's exactly in every image."""

    samples: Tensor  # (K, B, C, H, W) x_miss ~ p(x | z_k), z_k each chain's last state
    means: Tensor  # (K, B, C, H, W) x_miss = E[x | z_k]
    mean: Tensor  # (B, C, H, W) x_miss = E[x_miss | x_obs] ~ mean of E[x | z] over every kept state of every chain
    predicted: Tensor  # (B, C, H, W) that average of E[x | z] on every pixel, observed ones too (not pasted)
    diverged: Tensor  # (B,) bool: an image any of whose chains diverged (held at its start, a prior draw)


def with_chains(sampler: ChainSampler, chains: int) -> ChainSampler:
    """The sampler with ``chains`` chains per example (itself if it has them already)."""
    return sampler if sampler.chains == chains else replace(sampler, chains=chains)


@torch.no_grad()
def complete(masked: MaskedEnergy, sampler: ChainSampler, x: Tensor, mask: Tensor, filler: float = 0.0) -> Completion:
    """Complete the images x (B, C, H, W) where ``mask`` (bool, like x) is False: K = ``sampler.chains``
    chains per image on E_m (``MaskedEnergy``) from prior draws z_0 ~ p(z), x's missing pixels
    replaced by ``filler`` (never read). The K completions come from each chain's last state z_k;
    the completion mean averages E[x | z] over the S kept states of every chain:

        E[x_miss | x_obs] ~ (1 / S K) sum_{s, k} E[x_miss | z_{s,k}].
    """
    chains, batch = sampler.chains, x.shape[0]
    observed = paste(x, mask, filler)  # (B, C, H, W)
    z0 = masked.energy.prior.sample(chains * batch, x.device, x.dtype)  # (K B, D), chain-major
    chain = sampler.run(masked, z0, repeat_batch(observed, chains), repeat_batch(mask, chains))
    steps = chain.samples.view(-1, chains * batch, chain.samples.shape[-1])  # (S, K B, D)
    likelihood = masked.energy.likelihood
    total = torch.zeros_like(x)
    for z in steps:
        out = masked.energy.decode(z)  # (K B, C, H, W); the last step's: each chain's last state
        total += likelihood.mean(out).view(chains, *x.shape).mean(0)
    predicted = total / len(steps)
    return Completion(
        samples=paste(x, mask, likelihood.sample(out).view(chains, *x.shape)),
        means=paste(x, mask, likelihood.mean(out).view(chains, *x.shape)),
        mean=paste(x, mask, predicted),
        predicted=predicted,
        diverged=chain.diverged,
    )


def masked_mse(prediction: Tensor, x: Tensor, where: Tensor) -> Tensor:
    """Per image, the mean squared error over the pixels selected by ``where`` (bool, like x):

        sum_i w_i (prediction_i - x_i)^2 / sum_i w_i.    (B, C, H, W) -> (B,); NaN where no pixel is selected.
    """
    return sum_per_example(where * (prediction - x).square()) / sum_per_example(where.to(x.dtype))


def completion_errors(x: Tensor, mask: Tensor, completion: Completion) -> dict[str, Tensor]:
    """Per image (B,): ``mse_missing``, the completion mean's error on the missing pixels (what
    inpainting is judged by), and ``mse_observed``, the same average's fit of the observed ones
    (the model's reconstruction of what it was given, for reference)."""
    return {
        "mse_missing": masked_mse(completion.predicted, x, ~mask),
        "mse_observed": masked_mse(completion.predicted, x, mask),
    }
