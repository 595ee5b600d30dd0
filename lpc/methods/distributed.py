"""Gradient averaging over the ranks of a multi-process (DDP) run."""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def average_gradients(param_groups: list[dict], loss: Tensor) -> Tensor:
    """Replace every parameter's gradient by its mean over the ranks (a parameter without one
    counts as zero), in one all-reduce; return the mean of ``loss`` over the ranks.

    With equal per-rank batches this is the gradient of the mean loss over the global batch,
    what a single process with the whole batch computes. A non-finite value on any rank reaches
    every rank, so all of them stop together.
    """
    params = [p for group in param_groups for p in group["params"] if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    flat = torch.cat([loss.detach().reshape(1).to(params[0].grad)] + [p.grad.reshape(-1) for p in params])
    dist.all_reduce(flat)
    flat /= dist.get_world_size()
    offset = 1
    for p in params:
        p.grad.copy_(flat[offset : offset + p.numel()].view_as(p.grad))
        offset += p.numel()
    return flat[0]


def gather_rows(*tensors: Tensor) -> tuple[Tensor, ...]:
    """Concatenate each tensor's rows over the ranks (every rank passes the same shapes); as they
    are outside a multi-process run."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensors
    gathered = []
    for t in tensors:
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t.contiguous())
        gathered.append(torch.cat(parts))
    return tuple(gathered)
