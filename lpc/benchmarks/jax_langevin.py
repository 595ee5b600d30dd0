"""The benchmark's reference: the same Langevin chain written in JAX, as its users would write it
(one ``jit`` around ``lax.scan`` of ``value_and_grad`` of the summed energy), on the weights and data
of an lpc MLP decoder. Imported by scripts/benchmark.py when JAX is installed (``pip install -e
".[jax]"``); run it pinned to one core with one thread, as the benchmark is."""

from __future__ import annotations

import os
from importlib.metadata import version

# One thread, and on JAX 0.4.32-0.4.x the CPU's previous runtime: its default "thunk" runtime runs
# this loop 1.7-2.2x slower (measured here, docs/benchmarks.md); the reference is JAX at its fastest.
LEGACY_RUNTIME = (0, 4, 32) <= tuple(int(p) for p in version("jax").split(".")[:3]) < (0, 5, 0)
XLA_FLAGS = "--xla_cpu_multi_thread_eigen=false" + (" --xla_cpu_use_thunk_runtime=false" if LEGACY_RUNTIME else "")
os.environ.setdefault("XLA_FLAGS", XLA_FLAGS)

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402

ACTIVATIONS = {nn.ReLU: jax.nn.relu, nn.Tanh: jnp.tanh, nn.SiLU: jax.nn.silu, nn.Identity: lambda h: h}


def mlp_layers(decoder: nn.Module) -> list[tuple[np.ndarray, np.ndarray, object]]:
    """An lpc MLPDecoder as (W^T, b, activation after it) per linear layer, in numpy."""
    modules = list(decoder.net)
    layers = []
    for i, module in enumerate(modules):
        if isinstance(module, nn.Linear):
            after = modules[i + 1] if i + 1 < len(modules) else nn.Identity()
            layers.append((module.weight.detach().numpy().T.copy(), module.bias.detach().numpy().copy(),
                           ACTIVATIONS[type(after)]))
    return layers


def energy_fn(decoder: nn.Module, likelihood: nn.Module, x: torch.Tensor):
    """E(z) summed over the batch for an MLP decoder and a Bernoulli or fixed-sigma Gaussian
    likelihood (sigmoid mean), with the N(0, I) prior, as lpc's ``Energy`` computes it."""
    layers, data = mlp_layers(decoder), jnp.asarray(x.flatten(1).numpy())
    kind = type(likelihood).__name__
    sigma = float(getattr(likelihood, "sigma", 1.0))

    def energy(z):
        h = z
        for w, b, act in layers:
            h = act(h @ w + b)
        if kind == "BernoulliLikelihood":
            nll = -(data * h - jnp.logaddexp(0.0, h))
        else:
            nll = 0.5 * ((data - jax.nn.sigmoid(h)) / sigma) ** 2 + np.log(sigma) + 0.5 * np.log(2 * np.pi)
        return nll.sum() + 0.5 * (z**2).sum()

    return energy


def langevin_loop(decoder: nn.Module, likelihood: nn.Module, x: torch.Tensor, z0: torch.Tensor, step_size: float, steps: int):
    """() -> runs T unadjusted Langevin steps from z0 (precond none) and waits for the result."""
    grad_fn = jax.value_and_grad(energy_fn(decoder, likelihood, x))
    noise_scale = float(np.sqrt(2 * step_size))

    @jax.jit
    def run(z, key):
        def body(z, k):
            _, g = grad_fn(z)
            return z - step_size * g + noise_scale * jax.random.normal(k, z.shape), None

        return jax.lax.scan(body, z, jax.random.split(key, steps))[0]

    start = jnp.asarray(z0.numpy())
    keys = iter(range(10**9))
    run(start, jax.random.PRNGKey(0)).block_until_ready()  # compile
    return lambda: run(start, jax.random.PRNGKey(next(keys))).block_until_ready()
