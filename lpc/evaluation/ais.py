"""log p(x) by annealed importance sampling (AIS), and the estimator's error bar by bidirectional
Monte Carlo (BDMC), on the annealed chain of ``lpc.samplers.annealing``.

Rows are n = ``chains`` independent chains per example, chain-major (row c * B + b is chain c of
example b), so ``energy_fn`` and the start density are given over N = n B rows.

- AIS (Neal 2001): log p_hat(x) = log (1/n) sum_i w_i with E[w_i] = p(x), a stochastic lower
  bound (E[log p_hat] <= log p(x)) that tightens as the number of distributions K grows; with
  p_0 the exact posterior every w_i = p(x).
- BDMC (Grosse, Ghahramani & Adams 2015): on x simulated from the model with its latent z*
  (z* ~ p(z), x ~ p(x | z*), so z* is an exact posterior sample), the reverse chain from z* gives
  w with E[w] = 1 / p(x), and -log (1/n) sum_i w_i is a stochastic upper bound. The gap between the
  two bounds bounds the forward estimate's error on such data, for this model and these settings.
- Step sizes (Huang et al. 2020): adapted per chain towards ``target_accept`` in a first pass,
  then frozen and the estimate recomputed from fresh noise, so every transition leaves its
  distribution exactly invariant (``refresh=False``: the adaptive pass's own estimate, as Wu et al.
  2017, at half the cost). The reverse chain uses the forward pass's step sizes, reversed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import NamedTuple

import torch
from torch import Tensor

from lpc.evaluation.elbo import iwae_bound
from lpc.samplers.annealing import (
    Adaptation,
    AnnealResult,
    StartDensity,
    anneal,
    anneal_stretch,
    annealed_state,
    sigmoid_schedule,
)
from lpc.samplers.chain import EnergyFn
from lpc.samplers.compiled import CompiledAdvance

MASS_MATRICES = ("identity", "start")


def log_mean_exp(log_weights: Tensor) -> Tensor:
    """log (1/n) sum_i exp(log w_i) over the chains, (n, B) -> (B,)."""
    return iwae_bound(log_weights, log_weights.shape[0])


def weights_ess(log_weights: Tensor) -> Tensor:
    """The effective number of chains (sum_i w_i)^2 / sum_i w_i^2 in [1, n], (n, B) -> (B,): near 1
    when one chain carries the estimate (too few distributions for the data); 0 if every w_i = 0."""
    ess = torch.exp(2 * torch.logsumexp(log_weights, 0) - torch.logsumexp(2 * log_weights, 0))
    return torch.nan_to_num(ess, nan=0.0)  # every weight 0: no effective chain


class AISEstimate(NamedTuple):
    log_px: Tensor  # (B,) log p_hat(x)
    log_weights: Tensor  # (n, B)
    accept_rate: Tensor  # (n, B) per chain, over the transitions of the estimating pass
    step_sizes: Tensor  # (K - 1, N) of the estimating pass

    @property
    def ess(self) -> Tensor:
        return weights_ess(self.log_weights)


class BDMCBounds(NamedTuple):
    lower: Tensor  # (B,) forward AIS: a stochastic lower bound on log p(x)
    upper: Tensor  # (B,) reverse AIS from the exact latent: a stochastic upper bound

    @property
    def gap(self) -> Tensor:
        return self.upper - self.lower


@cache
def compiled_annealing() -> CompiledAdvance:
    """The annealing loop compiled, one per process: every AIS shares its graphs (compiled once per
    batch shape and stretch length, whichever estimate, check or BDMC pass asks first)."""
    return CompiledAdvance(anneal_stretch, {}, annealed_state)


@dataclass
class AIS:
    """AIS from a start density to the posterior with HMC transitions.

    Args:
        num_distributions: K, the annealing distributions (sigmoid schedule, ``schedule_delta``).
        chains: n independent chains per example.
        num_leapfrog: L leapfrog steps per HMC transition (L energy gradients).
        step_size: the leapfrog step size every chain starts the adaptation from.
        target_accept: the acceptance probability the step-size adaptation aims at (Wu et al. 2017: 0.65).
        adapt_factor: after each transition a chain's step size is multiplied by it if its acceptance
            probability exceeds ``target_accept``, divided by it otherwise (1.02).
        min_step_size: the smallest step size the adaptation gives (1e-4).
        max_step_size: the largest (0.5).
        refresh: adapt in a first pass, then freeze the step sizes and recompute (True), or use the
            adaptive pass's estimate (False).
        compile: ``eager`` (the reference), or ``torch_compile``: ``compile_chunk`` transitions per
            compiled call (``lpc.samplers.annealing.anneal_stretch``; the same weights from the same
            noise, to rounding; falls back to eager with the reason where it cannot compile).
        mass_matrix: ``identity``, or ``start``: the ``scale`` M of ``lpc.samplers.hmc`` (the inverse
            of HMC's mass matrix) is the start density's diagonal variance s^2 (momenta ~ N(0, diag
            s^-2)), i.e. leapfrog in the start's whitened coordinates; the same as identity from the
            prior N(0, I) and from a hierarchical prior (not a diagonal Gaussian).
    Cost per example: n (1 + (K - 1) L) energy gradients per pass (two passes with ``refresh``).
    """

    num_distributions: int = 1000
    chains: int = 16
    num_leapfrog: int = 2
    step_size: float = 0.05
    target_accept: float = 0.65
    adapt_factor: float = 1.02
    min_step_size: float = 1e-4
    max_step_size: float = 0.5
    refresh: bool = True
    mass_matrix: str = "identity"
    schedule_delta: float = 4.0
    compile: str = "eager"
    compile_chunk: int = 5

    def __post_init__(self) -> None:
        if self.compile not in ("eager", "torch_compile"):
            raise ValueError(f"eval.ais.compile must be eager or torch_compile, got {self.compile!r}")
        if self.compile_chunk < 1:
            raise ValueError(f"eval.ais.compile_chunk must be >= 1, got {self.compile_chunk}")
        self._compiled = compiled_annealing() if self.compile == "torch_compile" else None
        for name in ("num_distributions", "chains", "num_leapfrog"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not 0 < self.min_step_size <= self.step_size <= self.max_step_size:
            raise ValueError(f"need 0 < min_step_size <= step_size <= max_step_size, got {self.min_step_size}, "
                             f"{self.step_size}, {self.max_step_size}")
        if not 0.0 < self.target_accept < 1.0:
            raise ValueError(f"target_accept must be in (0, 1), got {self.target_accept}")
        if not self.adapt_factor >= 1.0:
            raise ValueError(f"adapt_factor must be >= 1, got {self.adapt_factor}")
        if self.mass_matrix not in MASS_MATRICES:
            raise ValueError(f"mass_matrix must be one of {list(MASS_MATRICES)}, got {self.mass_matrix!r}")
        if not self.schedule_delta > 0:
            raise ValueError(f"schedule_delta must be > 0, got {self.schedule_delta}")

    @property
    def passes(self) -> int:
        """Passes over the schedule per forward estimate."""
        return 2 if self.refresh else 1

    @property
    def grad_evals(self) -> int:
        """Energy gradients per chain of one pass: one at the start, L per transition."""
        return 1 + (self.num_distributions - 1) * self.num_leapfrog

    def betas(self) -> list[float]:
        return sigmoid_schedule(self.num_distributions, self.schedule_delta)

    def scale(self, start: StartDensity) -> Tensor | float:
        return start.variance if self.mass_matrix == "start" else 1.0

    def run(self, energy_fn: EnergyFn, start: StartDensity, z0: Tensor, betas: list[float],
            step_sizes: Tensor | None, progress: Callable[[int], None] | None) -> AnnealResult:
        """One pass: with ``step_sizes`` (K - 1, N) frozen, else adapted from ``step_size``."""
        adaptation = None
        if step_sizes is None:
            adaptation = Adaptation(self.target_accept, self.adapt_factor, self.min_step_size, self.max_step_size)
            step_sizes = z0.new_full((z0.shape[0],), self.step_size)
        return anneal(energy_fn, start, z0, betas, step_sizes, self.num_leapfrog, self.scale(start), adaptation, progress,
                      self._compiled, self.compile_chunk)

    def estimate(self, energy_fn: EnergyFn, start: StartDensity,
                 progress: Callable[[int], None] | None = None) -> AISEstimate:
        """Forward AIS from p_0 = ``start`` (N rows): log p_hat(x) per example."""
        betas = self.betas()
        result = self.run(energy_fn, start, start.sample(), betas, None, progress)
        if self.refresh:
            result = self.run(energy_fn, start, start.sample(), betas, result.step_sizes, progress)
        n = self.chains
        log_w = result.log_weights.view(n, -1)
        return AISEstimate(log_mean_exp(log_w), log_w, result.accept_rate.view(n, -1), result.step_sizes)

    def reverse(self, energy_fn: EnergyFn, start: StartDensity, z_exact: Tensor, step_sizes: Tensor,
                progress: Callable[[int], None] | None = None) -> Tensor:
        """Reverse AIS from exact posterior samples ``z_exact`` (N, D) back to p_0, with the forward
        pass's step sizes (K - 1, N): the stochastic upper bound -log (1/n) sum_i w_i per example (B,)."""
        result = self.run(energy_fn, start, z_exact, self.betas()[::-1], step_sizes.flip(0), progress)
        return -log_mean_exp(result.log_weights.view(self.chains, -1))

    def bdmc(self, energy_fn: EnergyFn, start: StartDensity, z_exact: Tensor,
             progress: Callable[[int], None] | None = None) -> BDMCBounds:
        """Both bounds for data simulated with latents ``z_exact`` (N, D; each example's latent in all its rows)."""
        forward = self.estimate(energy_fn, start, progress)
        return BDMCBounds(forward.log_px, self.reverse(energy_fn, start, z_exact, forward.step_sizes, progress))
