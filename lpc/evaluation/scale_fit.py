"""The likelihood's scale sigma fitted on held-out images the same way for every method: the sigma
that maximises their marginal log-likelihood with the decoder fixed, by Monte Carlo EM.

A trained model's sigma is whatever its training left (with the sigma-VAE's ``optimal`` mode: the
reconstruction error of its last batch, from the method's own chain or encoder samples), so two
methods' likelihoods would otherwise be judged at scales chosen by different rules. Here

    sigma* = argmax_sigma sum_i log p(x_i; sigma),   p(x; sigma) = int p(x | f_theta(z), sigma) p(z) dz,

over validation images x_i, found by EM (Dempster et al. 1977; with Monte Carlo E-steps, Wei &
Tanner 1990), iterated to a fixed point, which is a stationary point of the marginal likelihood,
then ``polish`` more iterations whose geometric mean is the estimate (the E-steps' Monte Carlo
noise averaged down):

    E-step:  z_is ~ p(z | x_i; sigma_k)        MALA chains at sigma_k, from the prior, then continued
    M-step:  sigma_{k+1} = argmax_sigma sum_{i, s} log p(x_i | f_theta(z_is), sigma)
                                                (``LocationScaleLikelihood.best_scale``: closed form
                                                 for a Gaussian, a 1-D search for the discretised one)

Nothing of the method enters (no encoder, no training chain, no training sigma beyond the first
E-step's scale), so the same decoder weights give the same sigma whichever method trained them.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor

from lpc.model.energy import Energy
from lpc.model.likelihoods import LocationScaleLikelihood
from lpc.samplers.mala import MALASampler

log = logging.getLogger(__name__)


def tiled(x: Tensor, times: int) -> Tensor:
    """(B, ...) -> (times * B, ...), the batch tiled: row k * B + b is x_b (the samplers' chain-major rows)."""
    return torch.cat([x] * times)


class ScaleFitResult(NamedTuple):
    sigma: float  # the fitted scale
    iterations: int  # EM iterations taken
    converged: bool  # |log sigma_{k+1} - log sigma_k| < tolerance before max_iterations
    trace: list[float]  # sigma after each iteration


def fits_scale(energy: Energy) -> bool:
    """Whether the model's likelihood has a scale to fit: a location-scale likelihood whose sigma is
    not ``fixed`` (the user chose it)."""
    likelihood = energy.likelihood
    return isinstance(likelihood, LocationScaleLikelihood) and likelihood.sigma_mode != "fixed"


@dataclass
class ScaleFit:
    """Settings of the sigma fit (see the module docstring).

    Args:
        enabled: fit sigma (for likelihoods that have one to fit, ``fits_scale``); false: every
            likelihood is evaluated at the training sigma.
        num_examples: the first validation images the fit uses.
        chains: MALA chains per image; each E-step keeps ``num_samples`` states of each.
        burn_in: MALA steps of the first E-step before its samples are kept (from the prior).
        num_steps: MALA steps of every later E-step (continuing the chains), the last
            ``num_samples`` of them kept; the step size adapts during the others.
        num_samples: states kept per chain and E-step.
        step_size: MALA's initial step size, adapted (dual averaging) towards ``target_accept``.
        max_iterations, tolerance: EM has settled when |log sigma_{k+1} - log sigma_k| < tolerance
            (it says so if that takes more than ``max_iterations``).
        polish: iterations after that, whose geometric mean is the fitted sigma.
        batch_size: images whose chains run at once.
        report_trained: at the final (test) evaluation also report every likelihood at the
            training sigma, beside the fitted one (``trained_sigma/<name>``).
    """

    enabled: bool = True
    num_examples: int = 200
    chains: int = 2
    burn_in: int = 200
    num_steps: int = 20
    num_samples: int = 5
    step_size: float = 0.01
    target_accept: float = 0.574
    max_iterations: int = 50
    tolerance: float = 5e-3
    polish: int = 5
    batch_size: int = 200
    report_trained: bool = True

    def __post_init__(self) -> None:
        for name in ("num_examples", "chains", "num_steps", "num_samples", "max_iterations", "polish", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"eval.sigma_fit.{name} must be >= 1, got {getattr(self, name)}")
        if self.num_samples > self.num_steps:
            raise ValueError(f"eval.sigma_fit.num_samples={self.num_samples} must be <= num_steps={self.num_steps}")
        if self.burn_in < 1:
            raise ValueError(f"eval.sigma_fit.burn_in must be >= 1 (the first E-step adapts its step size), got {self.burn_in}")
        if not self.step_size > 0 or not self.tolerance > 0:
            raise ValueError("eval.sigma_fit.step_size and tolerance must be > 0")

    def e_step_sampler(self, first: bool, step_size: float) -> MALASampler:
        """MALA for one E-step: a long burn-in the first time, then ``num_steps`` from where the chains are."""
        burn_in = self.burn_in if first else self.num_steps - self.num_samples
        return MALASampler(step_size=step_size, num_steps=burn_in + self.num_samples if first else self.num_steps,
                           burn_in=burn_in, adapt_step_size=burn_in > 0, target_accept=self.target_accept, chains=self.chains)

    def fit(self, energy: Energy, images: Tensor) -> ScaleFitResult:
        """sigma* on ``images`` (N, C, H, W) by Monte Carlo EM, started from the likelihood's current
        sigma (the fixed point does not depend on it); the likelihood's sigma is left as it was."""
        likelihood: LocationScaleLikelihood = energy.likelihood  # type: ignore[assignment]
        batches = [images[i:i + self.batch_size] for i in range(0, len(images), self.batch_size)]
        states = [energy.prior.sample(self.chains * len(x), images.device) for x in batches]  # (C B, D) each
        sigma, step_size, trace = float(likelihood.sigma), self.step_size, []
        settled_at, converged = 0, False  # the iteration EM settled at, and whether within the tolerance
        while not settled_at or len(trace) < settled_at + self.polish:
            with likelihood.scale_at(sigma):
                sampler = self.e_step_sampler(not trace, step_size)
                chains = [sampler.run(energy, z0, tiled(x, self.chains)) for x, z0 in zip(batches, states)]
            states = [c.samples[-self.chains:].reshape(-1, c.samples.shape[-1]) for c in chains]
            step_size = float(torch.cat([torch.as_tensor(c.step_size).flatten() for c in chains]).median())
            new = float(self.m_step(energy, batches, chains))
            moved, sigma = abs(math.log(new / sigma)), new
            trace.append(sigma)
            if not settled_at and (moved < self.tolerance or len(trace) == self.max_iterations):
                settled_at, converged = len(trace), moved < self.tolerance
                if not converged:
                    log.warning("the sigma fit did not settle in %d EM iterations (last move %.2g in log sigma, tolerance "
                                "%g): sigma=%.4g; raise eval.sigma_fit.max_iterations", len(trace), moved, self.tolerance, sigma)
        fitted = math.exp(sum(math.log(s) for s in trace[settled_at:]) / self.polish)
        return ScaleFitResult(fitted, len(trace), converged, trace)

    @torch.no_grad()
    def m_step(self, energy: Energy, batches: list[Tensor], chains: list) -> Tensor:
        """argmax_sigma of sum log p(x_i | f_theta(z_is), sigma) over the E-step's kept samples."""
        xs, means = [], []
        for x, chain in zip(batches, chains):
            samples = chain.samples  # (S C, B, D)
            xs.append(tiled(x, samples.shape[0]))
            means.append(energy.likelihood.mean(energy.decode(samples.reshape(-1, samples.shape[-1]))))
        return energy.likelihood.best_scale(torch.cat(xs), torch.cat(means))
