"""Step-size adaptation towards a target acceptance rate by dual averaging (Nesterov 2009, as in
Hoffman & Gelman 2014, Algorithm 5), run per chain during burn-in and frozen afterwards."""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor


class DualAveragingState(NamedTuple):
    """Per chain (N, 1): the running mean statistic H_bar, log eps_t and its average log eps_bar."""

    error_avg: Tensor
    log_step: Tensor
    log_step_avg: Tensor
    mu: float  # log(10 * eps_0): the point the iterates shrink towards
    count: int


def dual_averaging_init(step_size: float, rows: int, device: torch.device, dtype: torch.dtype) -> DualAveragingState:
    zeros = torch.zeros(rows, 1, device=device, dtype=dtype)
    return DualAveragingState(zeros, zeros + math.log(step_size), zeros + math.log(step_size), math.log(10 * step_size), 0)


def dual_averaging_update(state: DualAveragingState, accept: Tensor, target: float, gamma: float = 0.05,
                          t0: float = 10.0, kappa: float = 0.75) -> DualAveragingState:
    """With alpha_t the acceptance probability of step t (per chain):

        H_bar_t       = (1 - 1 / (t + t0)) H_bar_{t-1} + (target - alpha_t) / (t + t0)
        log eps_t     = mu - sqrt(t) / gamma * H_bar_t
        log eps_bar_t = t^-kappa log eps_t + (1 - t^-kappa) log eps_bar_{t-1}
    """
    t = state.count + 1
    weight = 1.0 / (t + t0)
    error_avg = (1 - weight) * state.error_avg + weight * (target - accept[:, None])
    log_step = state.mu - math.sqrt(t) / gamma * error_avg
    decay = t ** -kappa
    log_step_avg = decay * log_step + (1 - decay) * state.log_step_avg
    return DualAveragingState(error_avg, log_step, log_step_avg, state.mu, t)
