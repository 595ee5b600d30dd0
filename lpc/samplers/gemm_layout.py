"""A graph pass for ``sampler.compile=torch_compile`` on the CPU: each matrix product of the compiled
inner loop in the layout that runs fastest on this machine's BLAS.

The inner loop's products are small (a batch of 64-256 rows against a layer) and two forms of them
are slow on common CPU BLAS builds (measured on a 2-core AMD EPYC with MKL, docs/benchmarks.md):

- ``addmm(bias, a, b)``: BLAS first copies the broadcast bias into the output, then accumulates into
  it; ``mm(a, b) + bias`` lets inductor fuse the add into the kernel that reads the product next
  (3x faster for the digits decoder's first layer, 64 x 8 x 512).
- a product with few output columns, such as the gradient with respect to an 8-dimensional z
  (64 x 512 x 8): the same numbers as (b^T a^T)^T run 3.6x faster in the transposed layout.

``GemmLayout`` rewrites every CPU ``addmm`` as ``mm`` + ``add`` and computes a product as the
transpose of the transposed product where that measures faster (timed once per shape and dtype,
when the graph is compiled; only a clear win, < 0.8x, is taken). The result is the same product:
each entry is the same dot product, so eager and compiled chains agree to float rounding.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext

import torch
from torch import fx
from torch._guards import detect_fake_mode
from torch._inductor.custom_graph_pass import CustomGraphPass, get_hash_for_files

aten = torch.ops.aten
GemmShape = tuple[int, int, int, torch.dtype]  # (m, k, n, dtype): a (m, k) @ b (k, n)


def best_seconds(fn: Callable[[], object], calls: int = 100, rounds: int = 3) -> float:
    """The fastest of ``rounds`` timings of ``calls`` calls of ``fn`` (after a warm-up)."""
    for _ in range(10):
        fn()
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        best = min(best, time.perf_counter() - start)
    return best


class GemmLayout(CustomGraphPass):
    """Inductor's ``post_grad_custom_post_pass``: CPU ``addmm`` -> ``mm`` + ``add``; a CPU product
    computed transposed where ``transposed_is_faster`` measures so (decisions cached per shape)."""

    def __init__(self, speedup: float = 0.8):
        self.speedup = speedup
        self.decisions: dict[GemmShape, bool] = {}

    def uuid(self) -> bytes:
        return get_hash_for_files((__file__,))

    def transposed_is_faster(self, shape: GemmShape) -> bool:
        """Whether (b^T a^T)^T takes under ``speedup`` times a @ b for this shape, weights b kept as
        a layer stores them ((n, k) row-major, so b^T is contiguous)."""
        if shape not in self.decisions:
            m, k, n, dtype = shape
            a, b_t = torch.randn(m, k, dtype=dtype), torch.randn(n, k, dtype=dtype)
            b = b_t.t().contiguous()
            with torch.no_grad():
                direct = best_seconds(lambda: torch.mm(a, b))
                transposed = best_seconds(lambda: torch.mm(b_t, a.t()))
            self.decisions[shape] = transposed < self.speedup * direct
        return self.decisions[shape]

    def __call__(self, graph: fx.Graph) -> None:
        for node in list(graph.nodes):
            if node.op != "call_function" or node.target not in (aten.mm.default, aten.addmm.default):
                continue
            if node.target is aten.addmm.default:
                if node.kwargs.get("beta", 1) != 1 or node.kwargs.get("alpha", 1) != 1:
                    continue
                bias, a, b = node.args
            else:
                bias, (a, b) = None, node.args
            va, vb = a.meta["val"], b.meta["val"]
            if va.device.type != "cpu" or not all(isinstance(s, int) for s in (*va.shape, *vb.shape)):
                continue
            transpose = self.transposed_is_faster((va.shape[0], va.shape[1], vb.shape[1], va.dtype))
            if bias is None and not transpose:
                continue
            with graph.inserting_before(node), detect_fake_mode([va, vb]) or nullcontext():
                out = self.product(graph, a, b, transpose)
                if bias is not None:
                    out = call(graph, aten.add.Tensor, out, bias)
            node.replace_all_uses_with(out)
            graph.erase_node(node)

    @staticmethod
    def product(graph: fx.Graph, a: fx.Node, b: fx.Node, transpose: bool) -> fx.Node:
        """a @ b, or (b^T a^T)^T."""
        if not transpose:
            return call(graph, aten.mm.default, a, b)
        flipped = call(graph, aten.mm.default, call(graph, aten.permute.default, b, [1, 0]),
                       call(graph, aten.permute.default, a, [1, 0]))
        return call(graph, aten.permute.default, flipped, [1, 0])


def call(graph: fx.Graph, op: Callable, *args) -> fx.Node:
    """A new node ``op(*args)`` with its fake value (what inductor's lowering reads) in ``meta``."""
    node = graph.call_function(op, args)
    node.meta["val"] = op(*(a.meta["val"] if isinstance(a, fx.Node) else a for a in args))
    return node
