"""Timing and memory of a call on a CPU or a GPU, as the benchmarks measure them: the median over
repeats after warm-up calls, calls interleaved so a slow spell of the machine falls on all alike,
and a Lightning training step."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch.utils.data import DataLoader, TensorDataset


def clock(device: torch.device) -> Callable[[], Callable[[], float]]:
    """start() -> stop(), where stop() gives the milliseconds since start (CUDA events on a GPU)."""
    def start() -> Callable[[], float]:
        if device.type == "cuda":
            begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            begin.record()
            return lambda: (end.record(), end.synchronize(), begin.elapsed_time(end))[-1]
        t0 = time.perf_counter()
        return lambda: 1e3 * (time.perf_counter() - t0)
    return start


def interleaved_ms(fns: dict[str, Callable[[], object]], device: torch.device, repeats: int,
                   warmup: int) -> dict[str, list[float]]:
    """The ms of each of ``fns``, called in turn ``repeats`` times (after ``warmup`` calls of each),
    so that a slow spell of the machine falls on all of them alike."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    start, times = clock(device), {name: [] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            stop = start()
            fn()
            times[name].append(stop())
    return times


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(first quartile, median, third quartile)."""
    q1, q2, q3 = statistics.quantiles(values, n=4, method="inclusive") if len(values) > 1 else values * 3
    return q1, q2, q3


def median_ms(fn: Callable[[], object], device: torch.device, repeats: int, warmup: int) -> float:
    for _ in range(warmup):
        fn()
    start = clock(device)
    times = []
    for _ in range(repeats):
        stop = start()
        fn()
        times.append(stop())
    return statistics.median(times)


def memory_mib(fn: Callable[[], object], device: torch.device) -> tuple[float | None, float | None]:
    """What ``fn`` costs in device memory, above what was there before (None, None on a CPU): the
    peak allocated while it runs, and the growth of reserved memory it leaves behind (the caching
    allocator's blocks and a captured graph's private pool, which replays reuse and ``allocated``
    does not count)."""
    if device.type != "cuda":
        fn()
        return None, None
    torch.cuda.synchronize(device)
    torch.cuda.empty_cache()
    allocated, reserved = torch.cuda.memory_allocated(device), torch.cuda.memory_reserved(device)
    torch.cuda.reset_peak_memory_stats(device)
    fn()
    torch.cuda.synchronize(device)
    return ((torch.cuda.max_memory_allocated(device) - allocated) / 2**20,
            (torch.cuda.memory_reserved(device) - reserved) / 2**20)


class StepTimer(Callback):
    """The ms of each training batch, from batch start to batch end."""

    def __init__(self, device: torch.device):
        self.start, self.stop, self.times = clock(device), None, []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.stop = self.start()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.times.append(self.stop())


def training_step_ms(model, device: torch.device, batch: int, repeats: int, warmup: int, log_every: int,
                     shape: tuple[int, ...]) -> tuple[float, float]:
    """Median ms of a training step through Lightning's loop after ``warmup`` steps (metrics made and
    logged every ``log_every`` steps) on random images of ``shape``, and the ms of the whole ``fit``
    (which holds every step)."""
    data = TensorDataset(torch.rand(batch * (warmup + repeats), *shape), torch.zeros(batch * (warmup + repeats)))
    timer = StepTimer(device)
    trainer = L.Trainer(accelerator=device.type if device.type == "cuda" else "cpu", devices=1, max_steps=warmup + repeats,
                        logger=False, callbacks=[timer], enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0, log_every_n_steps=log_every)
    fit = clock(device)()
    trainer.fit(model, DataLoader(data, batch_size=batch, drop_last=True))
    return statistics.median(timer.times[warmup:]), fit()
