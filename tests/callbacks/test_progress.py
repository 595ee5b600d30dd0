"""The training progress bar counts steps against trainer.max_steps ("step 7/7"), not epochs ("Epoch 2/-2")."""

from __future__ import annotations

import math
from types import SimpleNamespace

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from lpc.callbacks.progress import (
    StepProgressBar,
    StepTQDMProgressBar,
    counts_steps,
    train_task,
)


class Tiny(L.LightningModule):
    """One weight, three batches an epoch."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):
        return (self.w - batch[0]).square().mean()

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)

    def train_dataloader(self):
        return DataLoader(TensorDataset(torch.randn(6, 1)), batch_size=2)


def fit(bar, max_steps: int = 7, max_epochs: int = -1) -> L.Trainer:
    trainer = L.Trainer(max_steps=max_steps, max_epochs=max_epochs, callbacks=[bar], logger=False,
                        enable_checkpointing=False, enable_model_summary=False, accelerator="cpu")
    trainer.fit(Tiny())
    return trainer


def test_the_training_task_is_global_step_of_max_steps():
    trainer = SimpleNamespace(global_step=340, max_steps=800, max_epochs=-1, current_epoch=16)
    assert counts_steps(trainer) and train_task(trainer) == ("step", 340, 800)
    # bounded by a budget or max_time alone: no total
    assert train_task(SimpleNamespace(global_step=5, max_steps=-1, max_epochs=-1)) == ("step", 5, math.inf)
    # bounded by epochs alone: Lightning's per-epoch bar
    assert not counts_steps(SimpleNamespace(max_steps=-1, max_epochs=10))


def test_rich_bar_counts_steps_across_epochs():
    pytest.importorskip("rich")
    bar = StepProgressBar()
    trainer = fit(bar)  # 7 steps over 3 epochs of 3 batches
    assert trainer.global_step == 7 and trainer.current_epoch >= 2
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert (task.description, task.completed, task.total) == ("step", 7, 7)
    assert [t.description for t in bar.progress.tasks].count("step") == 1  # one task, not one per epoch


def test_tqdm_bar_counts_steps_across_epochs():
    bar = StepTQDMProgressBar()
    fit(bar)
    assert (bar.train_progress_bar.desc, bar.train_progress_bar.n, bar.train_progress_bar.total) == ("step: ", 7, 7)


def test_an_epoch_bounded_run_keeps_the_epoch_bar():
    pytest.importorskip("rich")
    bar = StepProgressBar()
    fit(bar, max_steps=-1, max_epochs=2)
    task = bar.progress.tasks[bar.train_progress_bar_id]
    assert task.description.startswith("Epoch 1/1") and task.total == 3
