"""From a composed Hydra config to a finished training run (called by the root ``train.py``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import WandbLogger
from omegaconf import DictConfig, OmegaConf

from lpc.data.base import ImageDataModule
from lpc.methods.base import GenerativeModule

log = logging.getLogger(__name__)


def instantiate_dict(cfg: DictConfig | None) -> list:
    """Instantiate every ``_target_`` entry of a config group that holds several objects (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate(node) for node in cfg.values() if isinstance(node, DictConfig) and "_target_" in node]


def finish_wandb(loggers: list) -> None:
    """End the W&B runs of this job, so the next job of a multirun (same process) starts its own."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()


def check_compatible(model: GenerativeModule, datamodule: ImageDataModule) -> None:
    """Refuse a decoder/likelihood that cannot model the data, before any work starts."""
    out_shape = tuple(getattr(model.decoder, "out_shape", datamodule.image_shape))
    if out_shape != datamodule.image_shape:
        raise ValueError(
            f"the decoder outputs images of shape {out_shape} but data={datamodule.name} gives "
            f"{datamodule.image_shape}; pick a decoder for that size (decoder=dcgan28|dcgan32|dcgan64|mlp) "
            f"or set data.image_size/data.channels to match"
        )
    for module in model.modules():
        in_shape = getattr(module, "in_shape", None)
        if in_shape is not None and tuple(in_shape) != datamodule.image_shape:
            raise ValueError(
                f"the encoder reads images of shape {tuple(in_shape)} but data={datamodule.name} gives "
                f"{datamodule.image_shape}; pick an encoder for that size (encoder=dcgan28|dcgan32|dcgan64|mlp)"
            )
    likelihood = type(model.likelihood).__name__
    wanted = model.likelihood.data_range
    if wanted is not None and tuple(wanted) != datamodule.pixel_range:
        raise ValueError(
            f"{likelihood} expects pixels in {list(wanted)} but data.pixel_range={list(datamodule.pixel_range)}; "
            f"set data.pixel_range={list(wanted)} (the likelihood options set it for you unless overridden)"
        )
    if model.likelihood.binary and datamodule.binarize == "none":
        raise ValueError(f"{likelihood} needs binarised pixels but data.binarize=none; set data.binarize=dynamic or fixed")


def train(cfg: DictConfig) -> dict[str, float]:
    """Build data, model, callbacks, loggers and trainer from ``cfg``; fit; return the final metrics.

    The metrics are also written to ``<output_dir>/metrics.json``.
    """
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    log.info("data: %s", cfg.data._target_)
    datamodule: ImageDataModule = instantiate(cfg.data)
    datamodule.prepare_data()
    datamodule.setup("fit")  # a missing dataset fails here, before anything is written

    log.info("model: %s", cfg.model._target_)
    model: GenerativeModule = instantiate(cfg.model)
    check_compatible(model, datamodule)
    model.save_hyperparameters(OmegaConf.to_container(cfg, resolve=True))

    callbacks = instantiate_dict(cfg.get("callbacks"))
    loggers = instantiate_dict(cfg.get("logger"))
    trainer: L.Trainer = instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)
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
