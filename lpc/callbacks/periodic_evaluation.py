"""Runs the shared evaluation during training (validation split, ``val/``) and once at the end
(test split, ``test/``)."""

from __future__ import annotations

import logging

import lightning as L
import torch

from lpc.evaluation.names import key
from lpc.evaluation.protocol import EvalResult, Evaluator
from lpc.methods.base import GenerativeModule

log = logging.getLogger(__name__)
SPLIT_NAMES = {"val": "validation", "test": "test"}


class PeriodicEvaluation(L.Callback):
    """Evaluates the validation split every ``every_n_steps`` training steps and every
    ``every_n_epochs`` epochs (0 turns either off), and, if ``at_end``, at the run's last step;
    there, if ``test``, it then scores the test split, once. Every choice made during training
    (checkpoints, early stopping, a sweeper's objective) reads the validation metrics; the test
    split is never touched before the end. ``full_val_at_end``: the last validation evaluation runs
    everything the final one does (AIS with ``eval.ais.at_end_only``, the training-sigma numbers),
    so that a choice made on validation (a sweeper's ``val/log_likelihood``, the best setting of a
    grid) rests on the same estimator as the test split's headline.

    Metrics go to every logger as ``val/<name>`` and ``test/<name>`` and to
    ``trainer.callback_metrics`` (hence to the run's metrics.json). A metric that cannot be computed
    (e.g. FID offline) is left out, never 0 or NaN.
    """

    def __init__(self, evaluator: Evaluator, every_n_steps: int | float = 0, every_n_epochs: int = 0,
                 at_end: bool = True, test: bool = True, full_val_at_end: bool = False):
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
        self.test = test
        self.full_val_at_end = full_val_at_end
        self.evaluated_at = {"val": -1, "test": -1}  # the step of each split's last evaluation
        self.estimators: dict[str, str] = {}  # e.g. val/log_likelihood -> the estimate it is, per split's last evaluation

    def setup(self, trainer: L.Trainer, pl_module: GenerativeModule, stage: str) -> None:
        dm = trainer.datamodule
        if trainer.is_global_zero and dm is not None:
            self.evaluator.prepare(dm.dataset_id, dm.image_shape)  # a misfit feature network fails before training

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: GenerativeModule, outputs, batch, batch_idx: int) -> None:
        # the last step's validation runs here, before Lightning's own validation and checkpoint of that step
        last = self.at_end and (trainer.global_step == trainer.max_steps or trainer.should_stop)
        if last or (self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0):
            self.run(trainer, pl_module, "val", final=last and self.full_val_at_end)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        if self.every_n_epochs > 0 and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            self.run(trainer, pl_module, "val")

    def on_train_end(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        self.run_missed_final(trainer, pl_module)

    def run_missed_final(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        """The evaluations of the last step (validation, then test) that have not run at it: called
        when training ends and again by ``lpc.jobs.train.train``, because a run restored at its last
        step (killed during the final evaluation, then continued with resume=auto) skips Lightning's
        fit loop and with it ``on_train_end``."""
        if not self.at_end:
            return
        module = pl_module.to(trainer.strategy.root_device)
        if self.evaluated_at["val"] != trainer.global_step:
            self.run(trainer, module, "val", final=self.full_val_at_end)
        if self.test and self.evaluated_at["test"] != trainer.global_step:
            self.run(trainer, module, "test", final=True)

    def run(self, trainer: L.Trainer, pl_module: GenerativeModule, split: str, final: bool = False) -> EvalResult | None:
        """Evaluate ``split`` at this step (once per step and split); ``final`` (the test split's, and
        with ``full_val_at_end`` the last validation) also runs what is configured to run only at the
        end (e.g. ``eval.ais.at_end_only``)."""
        step = trainer.global_step
        if step == self.evaluated_at[split] or not trainer.is_global_zero:
            return None
        self.evaluated_at[split] = step
        result = self.evaluator.evaluate_split(pl_module, trainer.datamodule, split, final=final)
        metrics = {key(split, k): v for k, v in result.metrics.items()}
        estimators = {key(split, k): key(split, v) for k, v in result.estimators.items()}
        self.estimators = {**{k: v for k, v in self.estimators.items() if not k.startswith(key(split, ""))}, **estimators}
        for logger in trainer.loggers:
            logger.log_metrics(metrics, step=step)
            if split == "test":
                logger.save()  # the fit loop, which flushes them, may have ended
        trainer.callback_metrics.update({k: torch.tensor(v) for k, v in metrics.items()})
        named = ", ".join(f"{k} is {v}" for k, v in estimators.items())
        log.info("evaluation of the %s split at step %d (%s): %s", SPLIT_NAMES[split], step, named or "no likelihood estimate",
                 ", ".join(f"{k}={v:.4g}" for k, v in sorted(metrics.items())))
        return result
