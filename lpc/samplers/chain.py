"""The driver every inner-loop sampler shares: energy gradients, the preconditioner's schedule,
divergence, kept samples, several chains per example and their diagnostics.

A sampler is a ``ChainSampler`` whose ``transition`` moves the state one step; ``run`` is the
loop around it. It knows nothing of Lightning and never touches the decoder's weights: gradients
are taken with respect to z only, every step starts from a detached z, so no autograd graph
survives a step and memory does not grow with the number of steps T.

Layout: with ``chains=C`` the rows of z are C chains per example, chain-major (row c * B + b is
chain c of example b); ``run`` returns them merged per example (``merge_chains``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, ClassVar, NamedTuple, TypeVar

import torch
from torch import Tensor

from lpc.samplers.compiled import CompiledAdvance, LoopRunner
from lpc.samplers.diagnostics import ess_bulk, rhat
from lpc.samplers.preconditioners import IdentityPreconditioner, Preconditioner

EnergyFn = Callable[[Tensor], Tensor]  # z (N, D) -> E(x, z) per row (N,)
DataEnergyFn = Callable[..., Tensor]  # (*data, z) -> E per row (N,): what ``ChainSampler.run`` takes
StepSize = Tensor | float  # a scalar, or (N, 1) per chain when it adapts
State = TypeVar("State")  # a chain's state: per-row tensor fields, z (N, D) first (ChainState, AnnealedState)


def energy_and_grad(energy_fn: EnergyFn, z: Tensor) -> tuple[Tensor, Tensor]:
    """E(z) per example (B,) and grad_z sum_b E_b(z) (B, D), both detached.

    Examples are independent, so the gradient of the summed energy is each example's own gradient.
    """
    with torch.enable_grad():
        z = z.detach().requires_grad_(True)
        energy = energy_fn(z)
        (grad,) = torch.autograd.grad(energy.sum(), z)
    return energy.detach(), grad


def functional_energy_and_grad(energy_fn: EnergyFn, z: Tensor) -> tuple[Tensor, Tensor]:
    """``energy_and_grad`` by ``torch.func.grad_and_value`` of the summed energy: the same values,
    in a form ``torch.compile`` traces whole (no ``autograd.grad`` call, no graph break)."""
    def total(v: Tensor) -> tuple[Tensor, Tensor]:
        energy = energy_fn(v)
        return energy.sum(), energy

    grad, (_, energy) = torch.func.grad_and_value(total, has_aux=True)(z.detach())
    return energy.detach(), grad.detach()


Evaluate = Callable[[Tensor], tuple[Tensor, Tensor]]  # z (N, D) -> E(z) (N,), grad_z E (N, D)


def gradients(functional: bool) -> Callable[[EnergyFn, Tensor], tuple[Tensor, Tensor]]:
    """``energy_and_grad``, or with ``functional`` its ``torch.func`` form (what ``torch.compile`` traces whole)."""
    return functional_energy_and_grad if functional else energy_and_grad


class ChainState(NamedTuple):
    """Where each chain is: z (N, D), and E(z) (N,) and grad_z E(z) (N, D) when already known."""

    z: Tensor
    energy: Tensor | None = None
    grad: Tensor | None = None


def select_rows(mask: Tensor, new: State, old: State) -> State:
    """Row-wise ``new if mask else old`` (mask (N,)) for two states of one type whose fields are
    per-row tensors (``ChainState``, ``lpc.samplers.annealing.AnnealedState``); a field unknown in
    either is unknown."""
    pick = [None if a is None or b is None else torch.where(mask.view(-1, *[1] * (a.dim() - 1)), a, b)
            for a, b in zip(new, old)]
    return type(new)(*pick)


def kept_steps(num_steps: int, burn_in: int, thin: int) -> list[int]:
    """The steps t in 1..T whose result z_t is kept: t > burn_in, every ``thin``-th counted back
    from T, so the last state z_T is always kept."""
    return [t for t in range(1, num_steps + 1) if t > burn_in and (num_steps - t) % thin == 0]


def finite_rows(energy: Tensor, grad: Tensor, zero: Tensor | float = 0.0) -> Tensor:
    """(B,) True where E and every entry of grad_z E are finite, from one sum per row: a non-finite
    term makes E + sum_d grad_d non-finite (finite terms overflow it only near 1e38, a divergence too),
    and t - t is 0 for a finite t but NaN for an infinite or NaN one (a few operations, where
    ``isfinite`` of both tensors takes ten). ``zero``: 0, as a 0-dim tensor in the loop (a Python
    number costs a conversion per call)."""
    total = energy + grad.sum(-1)
    return (total - total) == zero


def bounded_rows(z: Tensor, limit: Tensor | float) -> Tensor:
    """(B,) True where ||z|| <= ``limit`` = max_latent_norm * sqrt(D) (prior draws have ||z|| / sqrt(D)
    about 1), a 0-dim or (B,) limit; False also where z or the limit is not finite (a NaN or inf
    norm fails the test, as does a NaN limit)."""
    return torch.linalg.vector_norm(z, dim=-1) <= limit


class ChainResult(NamedTuple):
    """What one run of the inner loop returns (all detached), per example b = 1..B."""

    samples: Tensor  # (S * C, B, D) kept states, step-major: row s * C + c is chain c's s-th; samples[-C:] are the last states
    energies: Tensor  # (T, B) E(x, z_{t-1}) at the start of each step t = 1..T, averaged over the chains
    scale: Tensor | float  # the preconditioner's M at the last step: scalar, (1, D) or (B, D)
    diverged: Tensor  # (B,) bool: an example any of whose chains diverged; those chains hold their start
    accept_rate: Tensor | None = None  # (B,) mean acceptance probability after burn-in (corrected samplers)
    step_size: StepSize = 0.0  # the step size in use at the end (per example (B, 1) when it adapted)
    diagnostics: dict[str, Tensor] = {}  # with C > 1 chains: "rhat", "ess_bulk", each (B, D)
    chains: int = 1

    @property
    def last(self) -> Tensor:
        """(C, B, D) the final state of each chain."""
        return self.samples[-self.chains :]

    def subset(self, keep: Tensor) -> "ChainResult":
        """The examples selected by the (B,) mask ``keep``."""

        def rows(t: Tensor | float | None) -> Tensor | float | None:
            return t[keep] if isinstance(t, Tensor) and t.dim() > 0 and t.shape[0] == keep.shape[0] else t

        return self._replace(
            samples=self.samples[:, keep], energies=self.energies[:, keep], scale=rows(self.scale),
            diverged=self.diverged[keep], accept_rate=rows(self.accept_rate), step_size=rows(self.step_size),
            diagnostics={k: v[keep] for k, v in self.diagnostics.items()},
        )


def per_example(t: Tensor | float | None, chains: int) -> Tensor | float | None:
    """A per-row quantity (C * B, ...) averaged over each example's chains -> (B, ...); others as they are."""
    if not isinstance(t, Tensor) or t.dim() == 0 or t.shape[0] == 1 or chains == 1:
        return t
    return t.view(chains, -1, *t.shape[1:]).float().mean(0)


def merge_chains(samples: Tensor, energies: Tensor, scale: Tensor | float, diverged: Tensor,
                 accept: Tensor | None, step_size: StepSize, chains: int) -> ChainResult:
    """Per-row results (rows c * B + b) -> a per-example ``ChainResult``, with split R-hat and bulk
    ESS per latent dimension when there are C >= 2 chains of S >= 4 kept samples.
    samples (S, C * B, D), energies (T, C * B), diverged (C * B,)."""
    num, rows, dim = samples.shape
    draws = samples.view(num, chains, rows // chains, dim)  # (S, C, B, D)
    diagnostics = {"rhat": rhat(draws), "ess_bulk": ess_bulk(draws)} if chains >= 2 and num >= 4 else {}
    return ChainResult(
        samples=draws.reshape(num * chains, rows // chains, dim),
        energies=per_example(energies.T, chains).T,
        scale=per_example(scale, chains),
        diverged=diverged.view(chains, -1).any(0),
        accept_rate=per_example(accept, chains),
        step_size=per_example(step_size, chains),
        diagnostics=diagnostics,
        chains=chains,
    )


class Phase(NamedTuple):
    """What a step of the chain does, by where t lies against burn-in and M's adaptation: the same
    for every step of a stretch, so one compiled stretch of steps serves all stretches alike."""

    checked: bool  # E and grad_z E checked finite before the transition (a correction reads E; M adapts)
    adapt_precond: bool  # M updated from this step's gradient
    adapt_step: bool  # the step size adapted from this step's acceptance (``MetropolisSampler``) ...
    freeze_step: bool  # ... and frozen at its average after this step (t = burn-in)
    after_burn_in: bool  # t > burn-in: the acceptance counts towards the rate


class Carry(NamedTuple):
    """What the loop carries from one step to the next."""

    state: ChainState
    precond: Any  # the preconditioner's state
    scale: Tensor | float  # its M
    running: Tensor  # (N,) bool: not diverged
    step_size: StepSize
    adaptation: Any  # the step-size adaptation's state (None before it starts)


class Stretch(NamedTuple):
    """Steps first .. first + length - 1 of the chain, all of one phase."""

    phase: Phase
    first: int
    length: int


@dataclass
class ChainSampler:
    """Runs ``num_steps`` transitions from z0 and keeps the post-burn-in states.

    Args:
        step_size: > 0; its meaning is the sampler's (eta for Langevin, epsilon for leapfrog).
        num_steps: T >= 1 transitions.
        burn_in: the first ``burn_in`` states are discarded (0 <= burn_in < T).
        thin: keep every ``thin``-th state after burn-in (counted back from z_T).
        preconditioner: the diagonal M (identity by default).
        freeze_precond: adapt M during burn-in only (steps t <= max(burn_in, 1)) and hold it
            fixed afterwards, so the kept samples come from a chain with a constant M.
        max_latent_norm: a chain whose state grows beyond ||z|| / sqrt(D) > max_latent_norm (or
            whose energy or gradient turns non-finite) has diverged: it is put back to z0 and
            held there, its example is flagged in ``ChainResult.diverged``, and the others go on.
        chains: C >= 1 chains per example; ``run`` then takes z0 with C * B rows (chain-major,
            each from its own start) and an ``energy_fn`` over those rows, and reports split R-hat
            and bulk ESS across the chains.
        compile: how the loop runs: ``eager`` (the reference), ``torch_compile`` (whole stretches
            of ``compile_chunk`` transitions compiled by ``torch.compile``) or ``cuda_graph`` (the
            whole loop replayed from one CUDA graph); see ``lpc.samplers.compiled``.
        compile_options: keyword arguments of ``torch.compile`` for ``compile=torch_compile``.
        compile_chunk: transitions per compiled call (``compile=torch_compile``): more run faster
            and take longer to compile.
    """

    step_size: float
    num_steps: int
    burn_in: int = 0
    thin: int = 1
    preconditioner: Preconditioner = field(default_factory=IdentityPreconditioner)
    freeze_precond: bool = True
    max_latent_norm: float = 100.0
    chains: int = 1
    compile: str = "eager"
    compile_options: dict[str, Any] = field(default_factory=dict)
    compile_chunk: int = 5

    grads_per_step: ClassVar[int] = 1  # energy gradients one transition costs
    # whether E and its gradient are checked before every transition (Metropolis corrections, which
    # reject a non-finite proposal), or only while M adapts (ULA, gradient descent: their step makes
    # the next state non-finite wherever the gradient is, which the size check after it catches, and
    # a non-finite E fails that check through its limit)
    checks_finite: ClassVar[bool] = True
    noise: ClassVar[bool] = True  # False: an optimiser, not a sampler (its samples approximate no posterior)

    def __post_init__(self) -> None:
        if not self.step_size > 0:
            raise ValueError(f"step_size must be > 0, got {self.step_size}")
        if self.num_steps < 1:
            raise ValueError(f"num_steps (T) must be >= 1, got {self.num_steps}")
        if not 0 <= self.burn_in < self.num_steps:
            raise ValueError(f"burn_in must be in [0, num_steps={self.num_steps}), got {self.burn_in}")
        if self.thin < 1:
            raise ValueError(f"thin must be >= 1, got {self.thin}")
        if not self.max_latent_norm > 0:
            raise ValueError(f"max_latent_norm must be > 0, got {self.max_latent_norm}")
        if self.chains < 1:
            raise ValueError(f"sampler.chains must be >= 1, got {self.chains}")
        if self.compile_chunk < 1:
            raise ValueError(f"sampler.compile_chunk must be >= 1, got {self.compile_chunk}")
        self._kept = set(kept_steps(self.num_steps, self.burn_in, self.thin))
        self._runner = LoopRunner(self.compile, self.compile_options)

    @property
    def num_samples(self) -> int:
        """S, the number of states kept per chain."""
        return len(self._kept)

    @property
    def grad_evals(self) -> int:
        """Energy gradients (decoder forward+backward passes over the C * B rows) per run."""
        return self.num_steps * self.grads_per_step

    def transition(self, evaluate: Evaluate, state: ChainState, step_size: StepSize,
                   scale: Tensor | float) -> tuple[ChainState, Tensor | None]:
        """One step from ``state`` (its energy and gradient known) with the preconditioner's M =
        ``scale`` (``evaluate`` gives E and grad_z E at a new z): the next state and each row's
        acceptance probability (None: no correction)."""
        raise NotImplementedError

    def next_step_size(self, phase: Phase, step_size: StepSize, adaptation: Any, accept: Tensor | None) -> tuple[StepSize, Any]:
        """The step size for the next step and the adaptation's state (constant unless a subclass adapts it)."""
        return step_size, adaptation

    def phase(self, t: int) -> Phase:
        """What step t (1..T) does: M adapts at t <= max(burn_in, 1) (every step without
        ``freeze_precond``); E is checked before M is fixed, or always for a Metropolis correction."""
        adapting = t <= (max(self.burn_in, 1) if self.freeze_precond else self.num_steps)
        adapt_step = getattr(self, "adapt_step_size", False) and t <= self.burn_in
        return Phase(checked=self.checks_finite or adapting, adapt_precond=adapting, adapt_step=adapt_step,
                     freeze_step=adapt_step and t == self.burn_in, after_burn_in=t > self.burn_in)

    def stretches(self, chunk: int) -> list[Stretch]:
        """Steps 1..T cut into stretches of one phase and at most ``chunk`` steps."""
        found: list[Stretch] = []
        for t in range(1, self.num_steps + 1):
            phase = self.phase(t)
            if found and found[-1].phase == phase and found[-1].length < chunk:
                found[-1] = found[-1]._replace(length=found[-1].length + 1)
            else:
                found.append(Stretch(phase, t, 1))
        return found

    def run(self, energy_fn: DataEnergyFn, z0: Tensor, *data: Tensor) -> ChainResult:
        """Run the N = C * B chains in parallel from z0 (N, D) on E(z) = energy_fn(*data, z) (N,),
        e.g. ``run(energy, z0, x)`` with ``energy(x, z)``. The tensors the energy depends on are
        passed as ``data`` (not held by ``energy_fn``), so that a captured loop sees new ones."""
        if z0.shape[0] % self.chains:
            raise ValueError(f"z0 has {z0.shape[0]} rows, not a multiple of sampler.chains={self.chains}")
        outputs = self._runner(self.loop, energy_fn, z0, *data, key=self.step_size, advance=self.advance,
                               start=self.start)
        return merge_chains(*outputs, self.chains)

    def loop(self, energy_fn: DataEnergyFn, z0: Tensor, *data: Tensor, advance: Callable | None = None) -> tuple:
        """The T transitions from z0 without a host synchronisation (so it can be captured as a
        CUDA graph): the kept samples (S, N, D), the energies (T, N), the final M, the diverged
        rows (N,), the acceptance rates (N,) or None and the final step size, per row. Stretches of
        steps of one phase run through ``advance`` (``self.advance``, or its compiled form)."""
        chunk = self.num_steps if advance is None else self.compile_chunk  # eager: whole phases at a time
        advance = advance or self.advance
        z0 = z0.detach()
        start = (advance.start if isinstance(advance, CompiledAdvance) else self.start)(energy_fn, data, z0)
        carry = Carry(start, self.preconditioner.init(z0), 1.0, torch.ones(z0.shape[0], dtype=torch.bool, device=z0.device),
                      self.step_size, None)
        limit = z0.new_tensor(self.max_latent_norm * z0.shape[-1] ** 0.5)
        energies, states, accepts = [], [], []
        for stretch in self.stretches(chunk):
            carry, energy, z, accept = advance(energy_fn, data, start, carry, limit, stretch.phase, stretch.length)
            energies.append(energy)
            states.append(z)
            if accept is not None and stretch.phase.after_burn_in:
                accepts.append(accept)
        states = torch.cat(states)  # (T, N, D): z_1 .. z_T
        samples = torch.stack([states[t - 1] for t in sorted(self._kept)])
        accept_rate = torch.cat(accepts).mean(0) if accepts else None
        return samples, torch.cat(energies), carry.scale, ~carry.running, accept_rate, carry.step_size

    @staticmethod
    def start(energy_fn: DataEnergyFn, data: tuple[Tensor, ...], z0: Tensor, functional: bool = False) -> ChainState:
        """The chains' start: z0 with E(z0) and grad_z E(z0) (``functional``: by ``torch.func``)."""
        return ChainState(z0, *gradients(functional)(partial(energy_fn, *data), z0))

    def advance(self, energy_fn: DataEnergyFn, data: tuple[Tensor, ...], start: ChainState, carry: Carry, limit: Tensor,
                phase: Phase, steps: int, functional: bool = False) -> tuple[Carry, Tensor, Tensor, Tensor | None]:
        """``steps`` transitions of one ``phase`` from ``carry``: the carry after them, and per step
        the energy E(z_{t-1}) (steps, N), the state z_t (steps, N, D) and the acceptance (steps, N;
        0 for a diverged chain) or None. A chain that diverges (non-finite E or gradient where they
        are checked, or ||z|| beyond ``limit``) is put back to ``start`` and held there.
        ``functional``: gradients by ``torch.func`` (what ``torch.compile`` traces whole)."""
        fn = partial(energy_fn, *data)
        evaluate: Evaluate = partial(gradients(functional), fn)
        state, precond, scale, running, step_size, adaptation = carry
        zero = limit.new_zeros(())  # 0 as a tensor: a Python number costs a conversion per call
        energies, states, accepts = [], [], []
        for _ in range(steps):
            if state.grad is None:
                state = ChainState(state.z, *evaluate(state.z))
            if phase.checked:
                running = running & finite_rows(state.energy, state.grad, zero)
            if phase.adapt_precond:
                precond = self.preconditioner.update(precond, state.grad, running)
                scale = self.preconditioner.scale(precond)
            energies.append(state.energy)
            # unchecked: NaN where E is not finite, failing the size check
            row_limit = limit if phase.checked else limit + (state.energy - state.energy)
            state, accept = self.transition(evaluate, state, step_size, scale)
            running = running & bounded_rows(state.z, row_limit)
            state = select_rows(running, state, start)
            step_size, adaptation = self.next_step_size(phase, step_size, adaptation, accept)
            states.append(state.z)
            if accept is not None:
                accepts.append(torch.where(running, accept, zero))
        carry = Carry(state, precond, scale, running, step_size, adaptation)
        return carry, torch.stack(energies), torch.stack(states), torch.stack(accepts) if accepts else None
