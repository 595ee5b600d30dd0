"""Loading a finished run back from its checkpoint, and evaluating it (``scripts/evaluate.py``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import yaml
from hydra.core.hydra_config import HydraConfig
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lpc.callbacks.images import write_grids
from lpc.data.base import ImageDataModule
from lpc.evaluation import Evaluator, stack_images
from lpc.methods.base import GenerativeModule
from lpc.training import check_compatible, instantiate_dict

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be read or was not written by lpc's train.py."""


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents; it must hold the run's config (saved by train.py) and weights."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at ckpt_path={path}; runs keep theirs in <run dir>/checkpoints/last.ckpt")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001 - any unreadable file gets the same advice
        raise CheckpointError(f"ckpt_path={path} is not a readable checkpoint ({type(err).__name__}: {err})") from err
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "model" not in ckpt.get("hyper_parameters", {}):
        raise CheckpointError(f"ckpt_path={path} was not written by lpc's train.py (no saved config or weights)")
    return ckpt


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


def load_model(run: DictConfig, ckpt: dict[str, Any]) -> GenerativeModule:
    model: GenerativeModule = instantiate(run.model)
    model.load_state_dict(ckpt["state_dict"])
    return model


def evaluate_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Evaluate ``cfg.ckpt_path``; write ``<output_dir>/metrics.json`` and sample grids; log to the
    configured loggers. Returns the JSON's contents."""
    ckpt = read_checkpoint(cfg.ckpt_path)
    run = run_config(cfg, ckpt)
    datamodule: ImageDataModule = instantiate(run.data)
    datamodule.setup("test")
    model = load_model(run, ckpt)
    check_compatible(model, datamodule)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.get("device", "auto") != "cpu" else "cpu")
    model.to(device)
    evaluator: Evaluator = instantiate(run.eval)
    result = evaluator.evaluate(model, datamodule.val_set, datamodule.pixel_range)
    step = int(ckpt.get("global_step", 0))
    out_dir = Path(cfg.paths.output_dir)
    loggers = instantiate_dict(run.get("logger"))
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
        "missing": result.errors,
    }
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    log.info("evaluation written to %s", out_dir / "metrics.json")
    return report
