"""The Adam/RMSprop-style preconditioner's update, against a hand computation."""

from __future__ import annotations

import pytest
import torch

from lpc.samplers import AdamPreconditioner


def test_update_matches_hand_computation():
    beta, eps = 0.9, 1e-3
    pre = AdamPreconditioner(beta=beta, eps=eps)
    grads = [torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 0.5]]), torch.tensor([[-1.0, 4.0]])]
    state = pre.init(torch.zeros(1, 2))
    v = torch.zeros(1, 2)
    for t, g in enumerate(grads, start=1):
        state = pre.update(state, g)
        v = beta * v + (1 - beta) * g**2
        want = (1.0 / (torch.sqrt(v / (1 - beta**t)) + eps)).clamp_max(1.0)
        torch.testing.assert_close(pre.scale(state), want)
        assert state.count == t


def test_constant_gradient_gives_inverse_magnitude_from_the_first_step():
    """Bias correction makes v_hat = g^2 exactly for a constant g, so M = 1 / (|g| + eps) at every t."""
    pre = AdamPreconditioner(beta=0.99, eps=0.0, max_scale=float("inf"))
    g = torch.tensor([[0.5, -4.0, 10.0]])
    state = pre.init(g)
    for _ in range(5):
        state = pre.update(state, g)
        torch.testing.assert_close(pre.scale(state), 1.0 / g.abs())


def test_per_example_and_shared_scales():
    g = torch.tensor([[1.0, 2.0], [3.0, 4.0]])
    own = AdamPreconditioner(beta=0.5, eps=0.0, max_scale=10.0)
    shared = AdamPreconditioner(beta=0.5, eps=0.0, max_scale=10.0, shared_over_batch=True)
    m_own = own.scale(own.update(own.init(g), g))
    m_shared = shared.scale(shared.update(shared.init(g), g))
    torch.testing.assert_close(m_own, 1.0 / g)
    assert m_shared.shape == (1, 2)
    torch.testing.assert_close(m_shared, 1.0 / g.square().mean(0, keepdim=True).sqrt())


def test_scale_is_capped_so_tiny_gradients_cannot_kick_the_chain():
    """Uncapped, M = 1 / |g| at the first step, so the noise sqrt(2 eta M) of a chain whose first
    gradient is near 0 is unbounded; with the cap, M <= max_scale."""
    g = torch.tensor([[1e-6, 0.01, 0.5, 4.0]])
    capped = AdamPreconditioner(max_scale=1.0)
    m = capped.scale(capped.update(capped.init(g), g))
    torch.testing.assert_close(m, torch.tensor([[1.0, 1.0, 1.0, 0.25]]))
    uncapped = AdamPreconditioner(max_scale=float("inf"))
    assert uncapped.scale(uncapped.update(uncapped.init(g), g))[0, 0] > 1e5


@pytest.mark.parametrize("kwargs", [{"beta": 1.0}, {"beta": -0.1}, {"eps": -1.0}, {"max_scale": 0.0}])
def test_invalid_settings_are_refused(kwargs):
    with pytest.raises(ValueError):
        AdamPreconditioner(**kwargs)
