"""Progress bars that count training in steps, as lpc bounds it (``trainer.max_steps``, with
``max_epochs=-1``): ``step 340/800`` rather than Lightning's ``Epoch 34/-2``.

``lpc.jobs.train`` adds one (``step_progress_bar``) when ``trainer.enable_progress_bar`` is true and
no progress bar is configured among the callbacks: the rich bar where ``rich`` is installed (what
Lightning itself would pick), else the tqdm one. A run bounded by epochs alone (``max_epochs`` set,
``max_steps=-1``) keeps Lightning's per-epoch bar.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar, TQDMProgressBar
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.utilities.imports import _RICH_AVAILABLE

STEP_LABEL = "step"  # the training bar's description: "step ━━━━━━╺━━━━ 340/800" (rich), "step:  42%|███ | 340/800" (tqdm)


def counts_steps(trainer: L.Trainer) -> bool:
    """Whether the run is bounded by steps (``max_steps``) rather than epochs alone."""
    return trainer.max_steps > 0 or trainer.max_epochs in (None, -1)


def step_total(trainer: L.Trainer) -> int | float:
    """The bar's total: ``max_steps``, or infinite when no step bound is set (a budget or
    ``max_time`` ends the run)."""
    return trainer.max_steps if trainer.max_steps > 0 else math.inf


def train_task(trainer: L.Trainer) -> tuple[str, int, int | float]:
    """(description, completed, total) of the training bar: ``step``, ``global_step`` of ``max_steps``."""
    return STEP_LABEL, trainer.global_step, step_total(trainer)


class StepProgressBar(RichProgressBar):
    """Lightning's rich progress bar with one training task over the whole run, ``global_step`` of
    ``max_steps`` (continued across epochs, and from a checkpoint's step on a resumed run);
    validation bars are Lightning's."""

    def add_train_task(self, trainer: L.Trainer) -> None:
        description, completed, total = train_task(trainer)
        self.train_progress_bar_id = self._add_task(total, description)
        self.progress.update(self.train_progress_bar_id, completed=completed)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not counts_steps(trainer):
            super().on_train_epoch_start(trainer, pl_module)
            return
        if self.is_disabled or self.progress is None:
            return
        if self.train_progress_bar_id is None:  # once per run: epochs do not reset it
            self.add_train_task(trainer)
        self.refresh()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not counts_steps(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        if self.is_disabled or self.progress is None:
            return
        if self.train_progress_bar_id is None:
            self.add_train_task(trainer)
        self._update(self.train_progress_bar_id, trainer.global_step)
        self._update_metrics(trainer, pl_module)
        self.refresh()


class StepTQDMProgressBar(TQDMProgressBar):
    """Lightning's tqdm progress bar with the training bar over the whole run, ``global_step`` of
    ``max_steps`` (where ``rich`` is not installed)."""

    def on_train_start(self, *args: Any) -> None:
        super().on_train_start(*args)
        self._step_bar_ready = False

    def on_train_epoch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if not counts_steps(trainer):
            super().on_train_epoch_start(trainer, *args)
            return
        if getattr(self, "_step_bar_ready", False):  # once per run: epochs do not reset it
            return
        description, completed, total = train_task(trainer)
        bar = self.train_progress_bar
        bar.reset(total=None if math.isinf(total) else total)
        bar.initial = 0
        bar.set_description(description)
        self._set_n(completed)
        self._step_bar_ready = True

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if not counts_steps(trainer):
            super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
            return
        bar = self.train_progress_bar
        if bar is not None and self._should_update(trainer.global_step, bar.total):
            self._set_n(trainer.global_step)
            bar.set_postfix(self.get_metrics(trainer, pl_module))

    def _set_n(self, n: int) -> None:
        bar = self.train_progress_bar
        if not bar.disable:
            bar.n = n
            bar.refresh()


def step_progress_bar() -> ProgressBar:
    """The step-counting bar Lightning's default would be: rich where installed, else tqdm."""
    return StepProgressBar() if _RICH_AVAILABLE else StepTQDMProgressBar()
