"""The order in which examples are read: a pure function of (seed, epoch), sharded over ranks,
and resumable in the middle of an epoch."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    """One rank's indices for one epoch.

    The epoch's order is ``randperm(num_examples)`` under the seed ``seed + epoch`` (``shuffle``) or
    ``0, 1, ..., num_examples - 1``, cut to a multiple of ``num_replicas``; rank r reads the
    positions r, r + R, r + 2R, ... of it (R = ``num_replicas``). So batch j of the R ranks together
    holds exactly batch j of a single process with an R times larger batch, and a multi-process run
    sees the data a single-process run does.

    ``resume_at(epoch, num_read)`` makes the next pass over ``epoch`` start after the ``num_read``
    indices that were read before a checkpoint, so a resumed run reads what an uninterrupted one
    would. Lightning calls ``set_epoch`` at the start of every epoch.
    """

    def __init__(self, num_examples: int, shuffle: bool = True, seed: int = 0, num_replicas: int = 1, rank: int = 0):
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in [0, {num_replicas}), got {rank}")
        self.num_examples = num_examples
        self.shuffle = shuffle
        self.seed = seed
        self.num_replicas = num_replicas
        self.rank = rank
        self.epoch = 0
        self._resume: tuple[int, int] | None = None

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def resume_at(self, epoch: int, num_read: int) -> None:
        self._resume = (epoch, num_read)

    def __len__(self) -> int:
        return self.num_examples // self.num_replicas

    def order(self) -> torch.Tensor:
        """The whole epoch's order, before sharding: (num_examples,)."""
        if not self.shuffle:
            return torch.arange(self.num_examples)
        return torch.randperm(self.num_examples, generator=torch.Generator().manual_seed(self.seed + self.epoch))

    def __iter__(self) -> Iterator[int]:
        shard = self.order()[: len(self) * self.num_replicas][self.rank :: self.num_replicas]
        start = self._resume[1] if self._resume is not None and self._resume[0] == self.epoch else 0
        self._resume = None  # only the first pass after a checkpoint resumes
        return iter(shard[start:].tolist())
