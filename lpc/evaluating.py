"""Evaluating a finished run from its checkpoint (``scripts/evaluate.py``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf

import lpc.resolvers  # noqa: F401 - the configs' ${lpc.*:} resolvers
from lpc.build import build, instantiate_checked, instantiate_dict
from lpc.callbacks.images import write_grids
from lpc.checkpoints import check_state_dict, read_checkpoint
from lpc.evaluation import Evaluator, stack_images

log = logging.getLogger(__name__)


def key_overrides(task_overrides: list[str], roots: tuple[str, ...]) -> list[str]:
    """The command-line ``key=value`` overrides whose key starts with one of ``roots``."""
    return [o for o in task_overrides if "=" in o and o.split("=", 1)[0].split(".")[0] in roots]


def run_config(cfg: DictConfig, ckpt: dict[str, Any]) -> DictConfig:
    """The config to evaluate with: the run's saved config (model, data, networks, likelihood),
    with ``eval``, ``logger``, ``paths`` and ``task_name`` from this command, and the command's
    ``data.*``/``seed`` overrides on top (e.g. ``data.root=`` when the data moved)."""
    run = OmegaConf.create(ckpt["hyper_parameters"])
    for key in ("eval", "logger", "paths", "task_name"):
        run[key] = cfg[key]
    overrides = HydraConfig.get().overrides.task if HydraConfig.initialized() else []
    for item in key_overrides(list(overrides), ("data", "seed")):
        key, value = item.split("=", 1)
        OmegaConf.update(run, key, yaml.safe_load(value), force_add=True)
    return run


def restore(run: DictConfig, ckpt: dict[str, Any], ckpt_path: str, device: torch.device) -> tuple[Any, Any]:
    """The datamodule (test split set up) and the trained model of a checkpoint, on ``device``,
    built from ``run`` (its saved config, e.g. from ``run_config``)."""
    datamodule, model = build(run)
    check_state_dict(model, ckpt, ckpt_path)
    model.load_state_dict(ckpt["state_dict"])
    model.on_load_checkpoint(ckpt)  # what the method keeps beside its weights (e.g. a backed-off step size)
    datamodule.setup("test")
    return datamodule, model.to(device)


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path``; write ``<output_dir>/metrics.json`` and sample grids; log to the
    configured loggers. Returns the JSON's contents."""
    ckpt = read_checkpoint(cfg.ckpt_path)
    run = run_config(cfg, ckpt)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.get("device", "auto") != "cpu" else "cpu")
    datamodule, model = restore(run, ckpt, cfg.ckpt_path, device)
    evaluator: Evaluator = instantiate_checked(run.eval, "eval")
    result = evaluator.evaluate(model, datamodule.val_set, datamodule.pixel_range, datamodule.dataset_id)
    step = int(ckpt.get("global_step", 0))
    out_dir = Path(cfg.paths.output_dir)
    loggers = instantiate_dict(run.get("logger"), "logger")
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(run, resolve=True))
        logger.log_metrics({f"eval/{k}": v for k, v in result.metrics.items()}, step=step)
    x = stack_images(datamodule.val_set, 0, min(64, len(datamodule.val_set))).to(device)
    write_grids(model, x, out_dir / "images", step, datamodule.pixel_range, loggers)
    for logger in loggers:
        logger.finalize("success")
    report = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "global_step": step,
        "method": run.model._target_,
        "metrics": {f"eval/{k}": v for k, v in sorted(result.metrics.items())},
        "estimators": {f"eval/{k}": f"eval/{v}" for k, v in result.estimators.items()},
        "missing": result.errors,
    }
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    log.info("evaluation written to %s", out_dir / "metrics.json")
    return report
