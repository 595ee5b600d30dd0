"""lpc.samplers.gemm_layout: the compiled loop's products rewritten, with the same values."""

import torch
import torch.nn.functional as F

from lpc.samplers.gemm_layout import GemmLayout, aten


class Recording(GemmLayout):
    """GemmLayout that keeps the targets of the graph it leaves."""

    def __call__(self, graph):
        super().__call__(graph)
        self.targets = [n.target for n in graph.nodes if n.op == "call_function"]


def compiled_gradient(layout: GemmLayout):
    def grad(z, w1, b1, w2, b2):
        energy = lambda v: (F.linear(torch.tanh(F.linear(v, w1, b1)), w2, b2) ** 2).sum() + 0.5 * (v * v).sum()
        return torch.func.grad(energy)(z)
    return grad, torch.compile(grad, fullgraph=True, options={"post_grad_custom_post_pass": layout, "fx_graph_cache": False})


def recorded(z, *weights, transpose: bool) -> tuple[torch.Tensor, list]:
    """The compiled gradient, and its graph's ops, with the product for grad_z (64 x 512 x 8)
    transposed or not."""
    layout = Recording()
    layout.decisions = {(64, 512, 8, torch.float32): transpose}
    layout.decisions.update({s: False for s in [(64, 8, 512, torch.float32), (64, 512, 16, torch.float32),
                                                (64, 16, 512, torch.float32)]})
    _, compiled = compiled_gradient(layout)
    with torch.no_grad():
        return compiled(z, *weights), layout.targets


def test_addmm_becomes_mm_and_add_and_a_narrow_product_can_be_transposed_with_the_same_values():
    torch.manual_seed(0)
    z, w1, b1, w2, b2 = torch.randn(64, 8), torch.randn(512, 8) / 8**0.5, torch.randn(512), torch.randn(16, 512) / 512**0.5, torch.randn(16)
    eager, _ = compiled_gradient(GemmLayout())
    expected = eager(z, w1, b1, w2, b2)
    for transpose in (False, True):
        grad, targets = recorded(z, w1, b1, w2, b2, transpose=transpose)
        torch.testing.assert_close(grad, expected, rtol=1e-5, atol=1e-4)
        assert aten.addmm.default not in targets and targets.count(aten.mm.default) == 4
        permutes = targets.count(aten.permute.default)
        if transpose:
            assert permutes == plain + 3  # b^T, a^T and the product's transpose
        else:
            plain = permutes


def test_the_layout_is_chosen_by_timing_once_per_shape():
    layout = GemmLayout()
    first = layout.transposed_is_faster((32, 64, 4, torch.float32))
    assert isinstance(first, bool) and list(layout.decisions) == [(32, 64, 4, torch.float32)]
    layout.decisions[(32, 64, 4, torch.float32)] = not first  # a cached decision is not re-timed
    assert layout.transposed_is_faster((32, 64, 4, torch.float32)) is (not first)
    assert GemmLayout(speedup=0.0).transposed_is_faster((32, 64, 4, torch.float32)) is False
