"""How a sampler's T-step loop is executed: ``sampler.compile``.

- ``eager``: the reference and the default; every step's kernels are launched from Python.
- ``torch_compile``: whole transitions compiled by ``torch.compile`` (``sampler.compile_options``
  are its keyword arguments, e.g. ``backend`` or ``mode``): the energy's gradient (by
  ``torch.func``), the preconditioner, the step, the divergence checks and the kept states of
  ``sampler.compile_chunk`` steps run as one compiled call (``ChainSampler.advance``), once per
  phase of the chain (burn-in, M adapting or fixed) and input shape, so Python runs a few calls
  per chain instead of thousands of kernels. CPU or GPU. The noise is eager's (inductor's
  ``fallback_random``): from the same generator state the chain is eager's, to rounding (fused
  kernels sum in another order; where the chain's dynamics expand, the two drift apart over the
  steps). Compiling takes seconds to a minute per phase and shape; inductor keeps what it compiled
  on disk, so later runs take a few seconds. Where something cannot be compiled (e.g. an
  ``autograd.Function`` without ``setup_context``, which ``torch.func`` needs), the runner says why
  once and runs eagerly from the same step, with the same noise.
- ``cuda_graph``: the whole loop (T energy gradients, the preconditioner, the transitions, the
  divergence checks and the kept samples) is captured once as one CUDA graph per energy, input
  shapes and step size, and replayed for every batch: one launch instead of thousands, which is
  what the inner loop is bound by on a GPU. The graph runs eager's kernels on eager's inputs;
  its noise is drawn inside the graph from the CUDA generator, whose offset advances on every
  replay, so each batch gets fresh noise and, from the same generator state, the same chain as
  eager. Needs a CUDA device and static shapes (training batches are, with ``data.drop_last=true``;
  other sizes, e.g. a last validation batch, get a graph of their own). The decoder's weights
  are read where they lie, so optimizer steps between replays are seen; weights that moved (the
  model sent to the CPU and back, as Lightning does after ``fit``) are captured anew.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager, nullcontext
from itertools import chain

import torch
from torch import Tensor, nn

from lpc.samplers.gemm_layout import GemmLayout

log = logging.getLogger(__name__)

COMPILE_MODES = ("eager", "torch_compile", "cuda_graph")
Loop = Callable[..., tuple]  # loop(energy_fn, z0, *data) -> tuple of tensors (and fixed Python values)


def clone_outputs(outputs: tuple) -> tuple:
    """A copy of a graph's outputs that the next replay will not overwrite (non-tensors as they are)."""
    return tuple(o.clone() if isinstance(o, Tensor) else o for o in outputs)


class CUDAGraphLoop:
    """``fn(*inputs)`` captured once as a CUDA graph on static copies of the inputs, then replayed.

    Capture follows the CUDA-graph recipe of the PyTorch docs: two warm-up runs on a side stream
    (lazy initialisation of cuBLAS/cuDNN and autograd happens outside the graph), then the capture;
    under autocast, capture with autocast's weight cache off (a cached cast would outlive the graph).
    The warm-ups run under a forked RNG state, so the caller's random stream is as if only the
    replay had run.
    """

    def __init__(self, fn: Callable[..., tuple], inputs: tuple[Tensor, ...]):
        device = inputs[0].device
        if device.type != "cuda":
            raise ValueError(f"sampler.compile=cuda_graph needs a CUDA device, and the chains are on {device}: "
                             "use sampler.compile=eager (or torch_compile) there")
        self.static_inputs = tuple(t.clone() for t in inputs)
        with torch.random.fork_rng(devices=[device]):
            side = torch.cuda.Stream(device)
            side.wait_stream(torch.cuda.current_stream(device))
            with torch.cuda.stream(side):
                for _ in range(2):
                    fn(*self.static_inputs)
            torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), autocast_without_cache(device):
            self.static_outputs = fn(*self.static_inputs)

    def __call__(self, *inputs: Tensor) -> tuple:
        for static, new in zip(self.static_inputs, inputs):
            static.copy_(new.detach())
        self.graph.replay()
        return clone_outputs(self.static_outputs)


def weight_addresses(energy_fn: Callable[..., Tensor]) -> tuple[int, ...]:
    """Where a module's parameters and buffers lie (a graph reads them there); () for a plain function."""
    if not isinstance(energy_fn, nn.Module):
        return ()
    return tuple(t.data_ptr() for t in chain(energy_fn.parameters(), energy_fn.buffers()))


def autocast_state(device: torch.device) -> torch.dtype | None:
    """The autocast dtype in force on ``device``, None without autocast."""
    return torch.get_autocast_dtype(device.type) if torch.is_autocast_enabled(device.type) else None


def autocast_without_cache(device: torch.device) -> AbstractContextManager:
    """The autocast in force on ``device`` (if any), with its weight cache off."""
    dtype = autocast_state(device)
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype, cache_enabled=False)


class CompiledAdvance:
    """A sampler's ``advance`` compiled whole by ``torch.compile`` (``fullgraph``: a graph break is
    an error, not a silent slow path), run without autograd recording (the gradients it takes are
    ``torch.func``'s). If a call cannot be compiled or run, it says why once, restores the random
    stream, and that call and every later one run ``advance`` eagerly (``failed``)."""

    RECOMPILE_LIMIT = 64  # compiled variants per code object: phases x stretch lengths x shapes of every sampler of a run

    def __init__(self, advance: Callable[..., tuple], options: dict, start: Callable[..., tuple]):
        config = torch._dynamo.config
        config.recompile_limit = max(config.recompile_limit, self.RECOMPILE_LIMIT)
        config.accumulated_recompile_limit = max(config.accumulated_recompile_limit, 8 * self.RECOMPILE_LIMIT)
        options = dict(options)
        if options.get("backend", "inductor") == "inductor":  # eager's noise: the same chain from the same seed
            options["options"] = {"fallback_random": True, "post_grad_custom_post_pass": GemmLayout(),
                                  **options.get("options", {})}
        self.advance, self.eager_start = advance, start
        self.name = getattr(advance, "__qualname__", repr(advance))
        self.compiled = torch.compile(self.functional, fullgraph=True, **options)
        self.compiled_start = torch.compile(self.functional_start, fullgraph=True, **options)
        self.failed: str | None = None
        self.calls = 0

    def functional(self, *args) -> tuple:
        return self.advance(*args, functional=True)

    def functional_start(self, *args) -> tuple:
        return self.eager_start(*args, functional=True)

    def start(self, *args) -> tuple:
        """The sampler's ``start`` (E and its gradient at z0), compiled (eager once compiling has failed)."""
        return self.run(self.compiled_start, self.eager_start, args)

    def __call__(self, *args) -> tuple:
        out = self.run(self.compiled, self.advance, args)
        self.calls += self.failed is None
        return out

    def run(self, compiled: Callable[..., tuple], eager: Callable[..., tuple], args: tuple) -> tuple:
        """``compiled(*args)``; if it cannot be compiled or run, say why once, restore the random
        stream, and run ``eager`` now and from then on."""
        if self.failed is None:
            rng = torch.get_rng_state(), [torch.cuda.get_rng_state(d) for d in range(torch.cuda.device_count())]
            start = time.perf_counter()
            try:
                with torch.no_grad():
                    out = compiled(*args)
                if self.calls == 0 and compiled is self.compiled:
                    log.info("torch_compile: the first call of %s took %.1f s (compiling)", self.name, time.perf_counter() - start)
                return out
            except Exception as err:  # noqa: BLE001 - any failure to compile or run falls back, with the reason
                self.failed = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"
                log.warning("torch_compile: %s (the inner loop) cannot be compiled (%s); running it eagerly",
                            self.name, self.failed)
                torch.set_rng_state(rng[0])
                for d, state in enumerate(rng[1]):
                    torch.cuda.set_rng_state(state, d)
        return eager(*args)


class LoopRunner:
    """Runs a sampler's ``loop(energy_fn, z0, *data)`` in one of the ``COMPILE_MODES``, keeping
    what it compiled or captured (compiled stretches per sampler ``advance``; graphs per energy,
    weight addresses, autocast dtype, input shapes, dtypes and devices, and the caller's ``key``:
    the Python values the loop bakes in and the caller may change, i.e. the step size; the
    sampler's other fields are fixed).

    ``graph`` builds a captured loop from (fn, inputs); a stand-in for ``CUDAGraphLoop`` lets the
    tests drive the caching and static-buffer logic on a CPU. At most ``max_graphs`` graphs are
    held (least recently used dropped), each with its own memory pool.
    """

    def __init__(self, mode: str = "eager", compile_options: dict | None = None,
                 graph: Callable[[Callable[..., tuple], tuple[Tensor, ...]], Callable[..., tuple]] = CUDAGraphLoop,
                 max_graphs: int = 8):
        if mode not in COMPILE_MODES:
            raise ValueError(f"sampler.compile must be one of {list(COMPILE_MODES)}, got {mode!r}")
        if compile_options and mode != "torch_compile":
            raise ValueError("sampler.compile_options are torch.compile's arguments: set sampler.compile=torch_compile")
        self.mode = mode
        self.compile_options = dict(compile_options or {})
        self.graph = graph
        self.max_graphs = max_graphs
        self.compiled: CompiledAdvance | None = None
        self.graphs: OrderedDict[Hashable, Callable[..., tuple]] = OrderedDict()

    def __call__(self, loop: Loop, energy_fn: Callable[..., Tensor], z0: Tensor, *data: Tensor, key: Hashable = (),
                 advance: Callable[..., tuple] | None = None, start: Callable[..., tuple] | None = None) -> tuple:
        if self.mode == "eager":
            return loop(energy_fn, z0, *data)
        if self.mode == "torch_compile":
            if self.compiled is None:
                log.info("compiling the inner loop's transitions with torch.compile(%s)", self.compile_options)
                self.compiled = CompiledAdvance(advance, self.compile_options, start)
            return loop(energy_fn, z0, *data, advance=self.compiled)
        return self.replay(loop, energy_fn, (z0, *data), key)

    def replay(self, loop: Loop, energy_fn: Callable[..., Tensor], inputs: tuple[Tensor, ...], key: Hashable) -> tuple:
        """The loop replayed from its graph for these inputs' shapes, captured first if new."""
        device = inputs[0].device
        signature = (energy_fn, weight_addresses(energy_fn), key, autocast_state(device),
                     tuple((t.shape, t.dtype, t.device) for t in inputs))
        if signature not in self.graphs:
            log.info("capturing the inner loop as a CUDA graph for inputs %s", [tuple(t.shape) for t in inputs])
            try:
                self.graphs[signature] = self.graph(lambda *static: loop(energy_fn, *static), inputs)
            except torch.OutOfMemoryError:
                raise
            except RuntimeError as err:
                raise RuntimeError(
                    f"capturing the inner loop as a CUDA graph failed: {err}. Something in the decoder or likelihood "
                    "waits on the GPU (e.g. .item(), a data-dependent shape) or allocates on the CPU; run it with "
                    "sampler.compile=eager or torch_compile"
                ) from err
            while len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)
        self.graphs.move_to_end(signature)
        return self.graphs[signature](*inputs)
