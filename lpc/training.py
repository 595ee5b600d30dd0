"""From a composed Hydra config to a finished training run (called by the root ``train.py``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from lpc.build import build, instantiate_checked, instantiate_dict
from lpc.checkpoints import check_resumable

log = logging.getLogger(__name__)


def finish_wandb(loggers: list) -> None:
    """End the W&B runs of this job, so the next job of a multirun (same process) starts its own."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()


def train(cfg: DictConfig) -> dict[str, float]:
    """Build data, model, callbacks, loggers and trainer from ``cfg``; fit; return the final metrics.

    The metrics are also written to ``<output_dir>/metrics.json``.
    """
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)  # before the model exists: its initial weights follow the seed
    datamodule, model = build(cfg)  # a config that cannot work fails here, before anything is read
    if cfg.get("ckpt_path"):
        check_resumable(cfg.ckpt_path, model)
    callbacks = instantiate_dict(cfg.get("callbacks"), "callbacks")
    loggers = instantiate_dict(cfg.get("logger"), "logger")
    trainer: L.Trainer = instantiate_checked(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    log.info("data: %s; model: %s", cfg.data._target_, cfg.model._target_)
    datamodule.prepare_data()
    datamodule.setup("fit")  # a missing or corrupt dataset fails here, before anything is written
    model.save_hyperparameters(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=cfg.get("ckpt_path"))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if trainer.limit_val_batches and model.validated_at != trainer.global_step:
            trainer.validate(model, datamodule=datamodule, verbose=False)  # final val/ metrics
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    finally:
        finish_wandb(loggers)

    out = Path(cfg.paths.output_dir) / "metrics.json"
    out.write_text(json.dumps({"global_step": trainer.global_step, **metrics}, indent=2, sort_keys=True))
    log.info("metrics written to %s", out)
    return metrics
