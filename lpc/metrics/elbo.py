"""Evidence lower bounds that need no encoder."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor

from lpc.gaussian import diagonal_normal_log_prob, reparameterise


def chain_gaussian_elbo(log_joint: Callable[[Tensor], Tensor], samples: Tensor, min_var: float = 1e-6) -> Tensor:
    """Single-sample ELBO with q fitted to a Langevin chain.

    q(z | x) = N(mean_s z_s, diag var_s z_s) is moment-matched, per example, to the chain's kept
    samples z_1..z_S (S >= 2, unbiased variance, floored at ``min_var``); then with one z' ~ q

        ELBO_hat = log p(x, z') - log q(z' | x),    E_q[ELBO_hat] = ELBO(q) <= log p(x).

    It is an unbiased estimate of a valid lower bound for any q; correlated chain samples make q
    narrower than the posterior, which loosens (never invalidates) the bound.
    samples: (S, B, D); log_joint: z (B, D) -> log p(x, z) (B,). Returns (B,).
    """
    if samples.shape[0] < 2:
        raise ValueError("chain_gaussian_elbo needs at least 2 kept samples per chain (lower thin or burn_in)")
    mean = samples.mean(0)
    log_std = 0.5 * samples.var(0).clamp_min(min_var).log()
    z = reparameterise(mean, log_std)
    return log_joint(z) - diagonal_normal_log_prob(z, mean, log_std)
