"""Runs the shared evaluation during training and logs it under ``eval/``."""

from __future__ import annotations

import logging

import lightning as L
import torch

from lpc.evaluation import EvalResult, Evaluator
from lpc.methods.base import GenerativeModule

log = logging.getLogger(__name__)


class PeriodicEvaluation(L.Callback):
    """Evaluates every ``every_n_steps`` training steps, every ``every_n_epochs`` epochs (0 turns
    either off) and, if ``at_end``, when training ends; on the test split of the datamodule.
    Metrics go to every logger as ``eval/<name>`` and to ``trainer.callback_metrics`` (hence to the
    run's metrics.json). A metric that cannot be computed (e.g. FID offline) is left out, never 0 or NaN.
    """

    def __init__(self, evaluator: Evaluator, every_n_steps: int | float = 0, every_n_epochs: int = 0, at_end: bool = True):
        super().__init__()
        if not float(every_n_steps).is_integer() or every_n_steps < 0:
            raise ValueError(
                f"callbacks.evaluation.every_n_steps must be a whole number of steps >= 0, got {every_n_steps} (by default it "
                f"follows trainer.val_check_interval; with a fractional interval set callbacks.evaluation.every_n_steps=N)"
            )
        self.evaluator = evaluator
        self.every_n_steps = int(every_n_steps)
        self.every_n_epochs = every_n_epochs
        self.at_end = at_end
        self.last_step = -1
        self.final_step = -1  # the step of the last final evaluation (``on_train_end``)
        self.estimators: dict[str, str] = {}  # the last evaluation's: eval/log_likelihood -> the estimate it is

    def setup(self, trainer: L.Trainer, pl_module: GenerativeModule, stage: str) -> None:
        dm = trainer.datamodule
        if trainer.is_global_zero and dm is not None:
            self.evaluator.prepare(dm.dataset_id, dm.image_shape)  # a misfit feature network fails before training

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: GenerativeModule, outputs, batch, batch_idx: int) -> None:
        last = self.at_end and trainer.global_step == trainer.max_steps  # on_train_end evaluates this step
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0 and not last:
            self.run(trainer, pl_module)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.run(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        if self.at_end:
            self.run(trainer, pl_module, final=True)
            self.final_step = trainer.global_step

    def run_missed_final(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        """The final evaluation, if ``on_train_end`` did not run it at this step: a run restored at
        its last step (killed during the final evaluation, then continued with resume=auto) skips
        Lightning's fit loop and with it ``on_train_end``."""
        if self.at_end and self.final_step != trainer.global_step:
            self.run(trainer, pl_module.to(trainer.strategy.root_device), final=True)
            self.final_step = trainer.global_step
            for logger in trainer.loggers:  # the fit loop, which flushes them, has ended
                logger.save()

    def run(self, trainer: L.Trainer, pl_module: GenerativeModule, final: bool = False) -> EvalResult | None:
        """Evaluate at this step (once per step; ``final``: the evaluation at the end of training,
        which also runs what is configured to run only there, e.g. ``eval.ais.at_end_only``)."""
        step = trainer.global_step
        if (step == self.last_step and not final) or not trainer.is_global_zero:
            return None
        self.last_step = step
        dm = trainer.datamodule
        result = self.evaluator.evaluate(pl_module, dm.val_set, dm.pixel_range, dm.dataset_id, final=final)
        metrics = {f"eval/{k}": v for k, v in result.metrics.items()}
        self.estimators = {f"eval/{k}": f"eval/{v}" for k, v in result.estimators.items()}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        named = ", ".join(f"{k} is {v}" for k, v in self.estimators.items())
        log.info("evaluation at step %d (%s): %s", step, named or "no likelihood estimate",
                 ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        return result
