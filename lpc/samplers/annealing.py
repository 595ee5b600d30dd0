"""The annealed chain of annealed importance sampling (AIS; Neal 2001), run forwards from a start
density p_0(z) to the posterior p(z | x) ∝ p(x, z) = exp(-E(x, z)), or backwards from an exact
posterior sample (bidirectional Monte Carlo; Grosse, Ghahramani & Adams 2015). The estimators
built on it are in ``lpc.evaluation.ais``.

The distributions lie on the geometric path, 0 = beta_0 < beta_1 < ... < beta_K = 1,

    f_beta(z) = p_0(z)^(1 - beta) p(x, z)^beta,    U_beta(z) = -log f_beta(z) = (1 - beta) U_0(z) + beta E(x, z),

with U_0 = -log p_0. One pass over a schedule b_0 .. b_K (the betas, or the betas reversed):
z ~ f_{b_0} / Z_{b_0}; for k = 1..K

    log w += (b_k - b_{k-1}) l(z),    l(z) = log p(x, z) - log p_0(z) = U_0(z) - E(x, z),

then, for k < K, one HMC transition (L leapfrog steps) that leaves f_{b_k} invariant moves z. Then
E[w] = Z_{b_K} / Z_{b_0}: p(x) forwards (p_0 normalised), 1 / p(x) backwards. The chain state
carries E and U_0 and their gradients separately, so moving to the next beta costs nothing.

No step of the loop waits for the device (no ``.item()``, no boolean indexing): everything is per
row (N = chains x examples), so the loop can be captured or compiled like the inner loop.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import partial
from typing import NamedTuple, Protocol

import torch
from torch import Tensor

from lpc.model.gaussian import diagonal_normal_log_prob
from lpc.samplers.chain import EnergyFn, gradients
from lpc.samplers.compiled import CompiledAdvance
from lpc.samplers.hmc import hmc_transition


class StartDensity(Protocol):
    """A normalised start density p_0 over N rows that can be sampled exactly."""

    def sample(self) -> Tensor:
        """One draw per row (N, D)."""

    def energy_and_grad(self, z: Tensor, functional: bool = False) -> tuple[Tensor, Tensor]:
        """U_0(z) = -log p_0(z) (N,) and its gradient (N, D), detached (``functional``: by ``torch.func``)."""

    def detached(self) -> "StartDensity":
        """The same density with no graph to its parameters (none grows through the K steps)."""

    @property
    def variance(self) -> Tensor | float:
        """Its diagonal variance (N, D), or 1.0 where it is not a diagonal Gaussian (``mass_matrix=start``)."""


class DiagonalGaussian(NamedTuple):
    """N(mean, diag exp(log_std)^2) per row: a start density p_0 (the prior N(0, I): zeros, zeros)."""

    mean: Tensor  # (N, D)
    log_std: Tensor  # (N, D)

    def sample(self) -> Tensor:
        return self.mean + self.log_std.exp() * torch.randn_like(self.mean)

    def energy_and_grad(self, z: Tensor, functional: bool = False) -> tuple[Tensor, Tensor]:
        """U_0(z) = -log N(z; m, diag s^2) (N,) and grad U_0(z) = (z - m) / s^2 (N, D)."""
        return -diagonal_normal_log_prob(z, self.mean, self.log_std), (z - self.mean) * torch.exp(-2 * self.log_std)

    def detached(self) -> "DiagonalGaussian":
        return DiagonalGaussian(self.mean.detach(), self.log_std.detach())

    @property
    def variance(self) -> Tensor:
        return torch.exp(2 * self.log_std)


class SampledDensity(NamedTuple):
    """A start density given by an exact sampler and its log-density (a hierarchical prior: an
    ancestral draw, and log p(z)); U_0's gradient by autograd."""

    draw: Callable[[], Tensor]  # () -> (N, D)
    log_prob: Callable[[Tensor], Tensor]  # (N, D) -> (N,)

    def sample(self) -> Tensor:
        return self.draw()

    def energy_and_grad(self, z: Tensor, functional: bool = False) -> tuple[Tensor, Tensor]:
        return gradients(functional)(lambda v: -self.log_prob(v), z)

    def detached(self) -> "SampledDensity":
        return self  # energy_and_grad's values are detached already

    @property
    def variance(self) -> float:
        return 1.0


class AnnealedState(NamedTuple):
    """A chain on f_beta: z, the target's E(x, z) and the start's U_0(z) with their gradients, and beta."""

    z: Tensor  # (N, D)
    target: Tensor  # E(x, z) = -log p(x, z)  (N,)
    target_grad: Tensor  # (N, D)
    start: Tensor  # U_0(z) = -log p_0(z)  (N,)
    start_grad: Tensor  # (N, D)
    beta: Tensor  # (N,), the same in every row

    @property
    def energy(self) -> Tensor:
        """U_beta(z) = (1 - beta) U_0(z) + beta E(x, z)."""
        return torch.lerp(self.start, self.target, self.beta)

    @property
    def grad(self) -> Tensor:
        """grad U_beta(z) = (1 - beta) grad U_0(z) + beta grad E(x, z)."""
        return torch.lerp(self.start_grad, self.target_grad, self.beta[:, None])

    @property
    def log_ratio(self) -> Tensor:
        """l(z) = d log f_beta(z) / d beta = log p(x, z) - log p_0(z) = U_0(z) - E(x, z)."""
        return self.start - self.target


def annealed_state(energy_fn: EnergyFn, start: StartDensity, beta: Tensor, z: Tensor,
                   functional: bool = False) -> AnnealedState:
    """The state at z on f_beta: one energy gradient (the start's is in closed form); ``functional``:
    gradients by ``torch.func`` (what ``torch.compile`` traces whole)."""
    target = gradients(functional)(energy_fn, z)
    return AnnealedState(z, *target, *start.energy_and_grad(z, functional), beta)


def sigmoid_schedule(num_distributions: int, delta: float = 4.0) -> list[float]:
    """beta_0..beta_K for K = ``num_distributions``: the sigmoid schedule of Grosse et al. (2015),

        beta_k = (s(delta (2k / K - 1)) - s(-delta)) / (s(delta) - s(-delta)),   s the logistic function,

    denser near both ends than a linear one; beta_0 = 0, beta_K = 1."""
    if num_distributions < 1:
        raise ValueError(f"num_distributions must be >= 1, got {num_distributions}")
    s = [1.0 / (1.0 + math.exp(-delta * (2.0 * k / num_distributions - 1.0))) for k in range(num_distributions + 1)]
    return [(v - s[0]) / (s[-1] - s[0]) for v in s]


def adapt_step_size(step_size: Tensor, accept_prob: Tensor, target: float, factor: float,
                    low: float, high: float) -> Tensor:
    """Per chain, towards the target acceptance (Wu et al. 2017):

        eps <- clamp(eps * factor, low, high)   if alpha > target,
        eps <- clamp(eps / factor, low, high)   otherwise.   (N,) -> (N,)"""
    return (step_size * torch.where(accept_prob > target, factor, 1.0 / factor)).clamp(low, high)


class Adaptation(NamedTuple):
    """Step-size adaptation during a pass (``adapt_step_size``'s settings)."""

    target: float = 0.65
    factor: float = 1.02
    low: float = 1e-4
    high: float = 0.5


class AnnealResult(NamedTuple):
    log_weights: Tensor  # (N,) float64, log w of each chain (-inf where the chain produced no finite weight)
    step_sizes: Tensor  # (K - 1, N) the step size of each transition
    accept_rate: Tensor  # (N,) mean acceptance probability over the transitions (1 for K = 1)


class AnnealCarry(NamedTuple):
    """What the annealed chain carries from one distribution to the next."""

    state: AnnealedState
    log_w: Tensor  # (N,) float64, the log weight so far
    accept_sum: Tensor  # (N,) the acceptance probabilities so far, summed
    step_size: Tensor  # (N,) the next transition's leapfrog step size (adapted, or the frozen pass's current one)


def anneal_stretch(energy_fn: EnergyFn, start: StartDensity, carry: AnnealCarry, increments: Tensor, betas: Tensor,
                   frozen: Tensor | None, scale: Tensor | float, num_leapfrog: int, adaptation: Adaptation | None,
                   functional: bool = False) -> tuple[AnnealCarry, Tensor]:
    """Distributions k .. k + c - 1 of a pass (c = len(betas), all with a transition after them): for
    each, log w += (b_k - b_{k-1}) l(z) (``increments`` (c,)), then one HMC transition on f_{b_k}
    (``betas`` (c,)) with the step size ``frozen[i]`` (c, N), or the carry's, adapted after it.
    The carry after them and the step sizes used (c, N)."""
    state, log_w, accept_sum, step_size = carry
    used = []
    for i in range(len(betas)):
        log_w = log_w + increments[i] * state.log_ratio
        beta = betas[i].expand(state.beta.shape)
        eps = step_size if frozen is None else frozen[i]
        evaluate = partial(annealed_state, energy_fn, start, beta, functional=functional)
        state, accept = hmc_transition(evaluate, state._replace(beta=beta), eps[:, None], scale, num_leapfrog)
        accept_sum = accept_sum + accept
        used.append(eps)
        if adaptation is not None:
            step_size = adapt_step_size(eps, accept, *adaptation)
    return AnnealCarry(state, log_w, accept_sum, step_size), torch.stack(used)


def anneal(
    energy_fn: EnergyFn,
    start: StartDensity,
    z0: Tensor,
    betas: list[float],
    step_sizes: Tensor,
    num_leapfrog: int,
    scale: Tensor | float = 1.0,
    adaptation: Adaptation | None = None,
    progress: Callable[[int], None] | None = None,
    compiled: CompiledAdvance | None = None,
    chunk: int = 5,
) -> AnnealResult:
    """One pass of the annealed chain from z0 (N, D) along the schedule ``betas`` (b_0..b_K, see the
    module docstring): z0 must be a draw from f_{b_0} (p_0 forwards, p(z | x) backwards).

    ``step_sizes``: the leapfrog step size of each transition, (K - 1, N); or, with ``adaptation``,
    the first one (N,), adapted per chain after each transition (the used ones are returned).
    ``scale``: the diagonal M of HMC's kinetic energy, as in ``lpc.samplers.hmc``. ``progress(k)``
    is called after each distribution. The transitions run ``chunk`` at a time through
    ``anneal_stretch``, or its ``compiled`` form (which also gives the start state); either way the
    same operations, so the chunk does not change the result.
    """
    num = len(betas) - 1
    rows = z0.shape[0]
    start = start.detached()  # no graph grows through the K steps
    first = z0.new_full((rows,), betas[0])
    state = (compiled.start if compiled else annealed_state)(energy_fn, start, first, z0.detach())
    frozen = None if adaptation is not None else step_sizes
    carry = AnnealCarry(state, torch.zeros_like(state.target, dtype=torch.float64),  # K increments: summed in double precision
                        torch.zeros_like(state.target), step_sizes if adaptation is not None else torch.zeros_like(state.target))
    schedule = z0.new_tensor(betas)
    increments = z0.new_tensor([b - a for a, b in zip(betas, betas[1:])])  # (K,): b_k - b_{k-1} in z's precision
    run = compiled or anneal_stretch
    used = []
    for k in range(1, num, chunk):  # the transitions after distributions 1 .. K - 1, ``chunk`` at a time
        end = min(k + chunk, num)
        carry, eps = run(energy_fn, start, carry, increments[k - 1:end - 1], schedule[k:end],
                         None if frozen is None else frozen[k - 1:end - 1], scale, num_leapfrog, adaptation)
        used.append(eps)
        if progress is not None:
            for i in range(k, end):
                progress(i)
    log_w = carry.log_w + increments[num - 1] * carry.state.log_ratio  # the last distribution: no transition after it
    if progress is not None:
        progress(num)
    log_w = torch.nan_to_num(log_w, nan=-torch.inf, posinf=-torch.inf)  # a chain whose energy broke down weighs 0
    accept_rate = carry.accept_sum / (num - 1) if num > 1 else torch.ones_like(carry.accept_sum)
    if adaptation is None:  # the frozen pass used what it was given
        return AnnealResult(log_w, step_sizes, accept_rate)
    return AnnealResult(log_w, torch.cat(used) if used else z0.new_zeros(0, rows), accept_rate)
