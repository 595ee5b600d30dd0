"""A compute budget: training stops before its decoder evaluations would pass a given total."""

from __future__ import annotations

import lightning as L

from lpc.methods.base import GenerativeModule


class Budget(L.Callback):
    """Stops training at the last update that keeps the run's decoder forward+backward passes (over
    a batch; ``cost/decoder_evals_total``, counted on every update by ``GenerativeModule.count_cost``)
    within ``decoder_evals``: after each update, if the next one (costing what this one did) would
    pass the budget, the run ends there, so methods with different costs per update end within one
    update of the same total, never above it. ``None``: no budget. ``trainer.max_steps`` still
    applies (whichever comes first: set it to -1 to let the budget decide); a wall-clock budget is
    Lightning's own ``trainer.max_time``."""

    def __init__(self, decoder_evals: int | None = None):
        super().__init__()
        if decoder_evals is not None and decoder_evals < 1:
            raise ValueError(f"budget.decoder_evals must be >= 1 (or null: no budget), got {decoder_evals}")
        self.decoder_evals = decoder_evals

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: GenerativeModule, outputs, batch, batch_idx: int) -> None:
        if self.decoder_evals is None:
            return
        spent = pl_module.decoder_evals_total + pl_module.last_update_evals
        if trainer.strategy.reduce_boolean_decision(spent > self.decoder_evals, all=False):
            trainer.should_stop = True
