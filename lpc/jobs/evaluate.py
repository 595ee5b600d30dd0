"""Evaluating a finished run from its checkpoint (``scripts/evaluate.py``): the test split by
default, or the validation split (``split=val``) for choices such as AIS's settings."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

import lpc.config.resolvers  # noqa: F401 - the configs' ${lpc.*:} resolvers
from lpc.callbacks.images import write_grids
from lpc.config.build import instantiate_checked, instantiate_dict
from lpc.data.base import stack_images
from lpc.evaluation.names import (
    AIS_STARTS,
    LOG_LIKELIHOOD,
    SIGMA_FIT_CONVERGED,
    SIGMA_FIT_ITERATIONS,
    SIGMA_FITTED,
    SIGMA_TRAINED,
    ais,
    key,
    trained_sigma,
)
from lpc.evaluation.protocol import Evaluator
from lpc.jobs.checkpoints import read_checkpoint
from lpc.jobs.restore import restore, run_config

log = logging.getLogger(__name__)


def trained_before_validation_split(ckpt: dict[str, Any]) -> bool:
    """Whether the checkpoint's run trained before data modules held out a validation split
    (its saved ``data`` config has no ``val_size``): it trained on every image of the training
    split, the validation images of today's split included (its test split is the same)."""
    return "val_size" not in ckpt.get("hyper_parameters", {}).get("data", {})


PRE_SPLIT = ("this checkpoint was trained before lpc held out a validation split: its training saw the images that "
             "are now the validation split, so its sigma fit (and any split=val number) is on images it trained on; "
             "the test split is the same as then, and unseen")


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path`` on ``cfg.split`` (``test``, or ``val``); write
    ``<output_dir>/metrics.json`` (metrics named ``<split>/<name>``) and sample grids; log to the
    configured loggers; print the split, the fitted sigma and the headline log-likelihood. Returns
    the JSON's contents."""
    split = cfg.get("split", "test")
    ckpt = read_checkpoint(cfg.ckpt_path)
    run = run_config(cfg, ckpt)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.get("device", "auto") != "cpu" else "cpu")
    datamodule, model = restore(run, ckpt, cfg.ckpt_path, device)
    notes = [PRE_SPLIT] if trained_before_validation_split(ckpt) else []
    for note in notes:
        log.warning("%s", note)
    evaluator: Evaluator = instantiate_checked(run.eval, "eval")
    result = evaluator.evaluate_split(model, datamodule, split, final=True)
    metrics = {key(split, k): v for k, v in sorted(result.metrics.items())}
    step = int(ckpt.get("global_step", 0))
    out_dir = Path(cfg.paths.output_dir)
    loggers = instantiate_dict(run.get("logger"), "logger")
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(run, resolve=True))
        logger.log_metrics(metrics, step=step)
    images = datamodule.split(split)
    x = stack_images(images, 0, min(64, len(images))).to(device)
    write_grids(model, x, out_dir / "images", step, datamodule.pixel_range, loggers)
    for logger in loggers:
        logger.finalize("success")
    report = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "global_step": step,
        "method": run.model._target_,
        "split": split,
        "images": len(images),
        "metrics": metrics,
        "estimators": {key(split, k): key(split, v) for k, v in result.estimators.items()},
        "missing": result.errors,
        "notes": notes,
    }
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    print(summary(report))
    log.info("evaluation written to %s", out_dir / "metrics.json")
    return report


def summary(report: dict[str, Any]) -> str:
    """What ``scripts/evaluate.py`` prints: the split it scored, the sigma and the headline log-likelihood."""
    split, metrics = report["split"], report["metrics"]
    lines = [f"scored the {split} split ({report['images']} images) of {report['ckpt_path']} (step {report['global_step']})"]
    fitted = key(split, SIGMA_FITTED)
    if fitted in metrics:
        lines.append(f"sigma fitted on the validation split: {metrics[fitted]:.4g} "
                     f"(training left {metrics[key(split, SIGMA_TRAINED)]:.4g}; "
                     f"{'converged' if metrics[key(split, SIGMA_FIT_CONVERGED)] else 'NOT converged'} in "
                     f"{metrics[key(split, SIGMA_FIT_ITERATIONS)]:.0f} EM iterations)")
    headline = key(split, LOG_LIKELIHOOD)
    if headline in metrics:
        at = " at the fitted sigma" if fitted in metrics else ""
        lines.append(f"{headline} = {metrics[headline]:.2f} nats ({report['estimators'][headline]}{at})")
        for start in sorted(s for s in AIS_STARTS if key(split, ais(s)) in metrics):  # by name, as the keys sort
            estimate, trained = metrics[key(split, ais(start))], metrics.get(key(split, trained_sigma(ais(start))))
            beside = f"; {trained:.2f} at the training sigma" if trained is not None else ""
            lines.append(f"{key(split, ais(start))} = {estimate:.2f} nats{beside}")
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)
