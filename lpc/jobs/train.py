"""From a composed Hydra config to a finished training run (called by the root ``train.py``)."""

from __future__ import annotations

import json
import logging
import os
import random
import warnings
from pathlib import Path

import lightning as L
import torch
from hydra.core.hydra_config import HydraConfig
from lightning.pytorch.callbacks.progress.progress_bar import ProgressBar
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf, open_dict

import lpc.config.resolvers  # noqa: F401 - the configs' ${lpc.*:} resolvers
from lpc.callbacks.periodic_evaluation import PeriodicEvaluation
from lpc.callbacks.progress import step_progress_bar
from lpc.config.build import build, instantiate_checked, instantiate_dict
from lpc.errors import ConfigError, DivergenceError
from lpc.jobs.checkpoints import check_resumable
from lpc.jobs.resume import keep_csv_history, resume_checkpoint
from lpc.reporting.provenance import commit, machine

log = logging.getLogger(__name__)
WANDB_TARGETS = ("lpc.jobs.loggers.wandb_logger", "lightning.pytorch.loggers.WandbLogger")

# lpc's data order resumes mid-epoch (EpochSampler + the DataModule's state), which Lightning cannot see
warnings.filterwarnings("ignore", message="You're resuming from a checkpoint that ended before the epoch ended")
# lpc's checkpoints hold the state after the step they are named by, which is what resuming needs
warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization and every_n_train_steps")

# the commit of the code this process runs, read when it was loaded: a multirun's later jobs run that
# code whatever HEAD is when they finish
CODE_COMMIT = commit()


def finish_wandb(loggers: list) -> None:
    """End the W&B runs of this job, so the next job of a multirun (same process) starts its own."""
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        wandb.finish()


def resolve_seed(cfg: DictConfig) -> int:
    """``cfg.seed``; for ``seed=null`` a fresh one (a DDP child takes its parent's), written back
    into ``cfg`` so that the run's saved config says how to repeat it."""
    seed = cfg.get("seed")
    if seed is None:
        inherited = os.environ.get("PL_GLOBAL_SEED") if "LOCAL_RANK" in os.environ else None
        seed = int(inherited) if inherited is not None else random.SystemRandom().randrange(2**31)
        log.info("seed=null: drew seed=%d (set seed=%d to repeat this run)", seed, seed)
        with open_dict(cfg):
            cfg.seed = seed
    return int(seed)


def continue_wandb_run(cfg: DictConfig, ckpt: dict) -> None:
    """Point the config's W&B logger at the checkpointed run's id, so a resumed run logs on there."""
    run_id = ckpt.get("wandb_run_id")
    if not run_id or not cfg.get("logger"):
        return
    for node in cfg.logger.values():
        if isinstance(node, DictConfig) and node.get("_target_") in WANDB_TARGETS:
            with open_dict(node):
                node.id = run_id
                node.resume = "allow"
            log.info("resuming W&B run %s", run_id)


def optimized_value(metrics: dict[str, float], name: str | None) -> float | None:
    """The metric a sweeper optimises (``optimized_metric``), which the run must have logged."""
    if not name:
        return None
    if name not in metrics:
        raise ConfigError(f"optimized_metric={name} was not logged by this run; it logged: {', '.join(sorted(metrics))}")
    return metrics[name]


def set_tf32(enabled: bool) -> None:
    """TF32 (``tf32=true``) or IEEE fp32 (false) for CUDA matmuls and cuDNN convolutions."""
    torch.set_float32_matmul_precision("high" if enabled else "highest")
    torch.backends.cudnn.allow_tf32 = enabled


def check_updates(cfg: DictConfig, counts: dict[str, int], steps: int, is_global_zero: bool) -> None:
    """After the results are written: a run that never updated the weights (every chain diverged on
    every step) raises ``DivergenceError``; one that skipped most updates ends with a warning."""
    updates, skipped = counts["updates"], counts["skipped_updates"]
    step_size = OmegaConf.select(cfg, "model.sampler.step_size")
    if skipped and not updates:
        raise DivergenceError(
            f"nothing was learned: every Langevin chain diverged on every one of the {steps} steps with "
            f"step_size={step_size:g}, so the decoder was never updated. Use precond=adam or a smaller step_size "
            f"(metrics.json and the checkpoints are written)"
        )
    if skipped > updates and is_global_zero:
        log.warning("%d of %d updates were skipped (every chain of the batch diverged, step_size=%g): use precond=adam "
                    "or a smaller step_size", skipped, skipped + updates, step_size)


def train(cfg: DictConfig) -> dict[str, float]:
    """Build data, model, callbacks, loggers and trainer from ``cfg``; fit; return the final metrics.

    The metrics are also written to ``<output_dir>/metrics.json`` (by rank 0), with the step count,
    the update counts (``GenerativeModule.update_counts``), the decoder passes spent
    (``decoder_evals_total``, what ``budget.decoder_evals`` limits) and ``estimators`` (which estimate
    ``val/log_likelihood`` and ``test/log_likelihood`` are, e.g. ``test/ais_prior``) and ``provenance`` (the commit and machine the
    run trained at, which a report drawn later elsewhere cannot know); then ``check_updates`` runs.
    """
    L.seed_everything(resolve_seed(cfg), workers=True)  # before the model exists: its initial weights follow the seed
    set_tf32(bool(cfg.get("tf32", False)))
    datamodule, model = build(cfg)  # a config that cannot work fails here, before anything is read
    finished = Path(cfg.paths.output_dir) / "metrics.json"
    if cfg.get("skip_finished") and finished.is_file():
        log.info("skip_finished=true: %s holds a finished run; not run again", finished)
        return {k: v for k, v in json.loads(finished.read_text()).items() if isinstance(v, float)}
    overrides = list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    ckpt_path = resume_checkpoint(cfg, overrides)
    if ckpt_path:
        ckpt = check_resumable(ckpt_path, model)
        continue_wandb_run(cfg, ckpt)
        log.info("continuing from %s (step %d)", ckpt_path, ckpt.get("global_step", 0))
        cfg.ckpt_path = ckpt_path  # the run's saved config says where it came from
        del ckpt
        in_place = Path(ckpt_path).resolve().is_relative_to(Path(cfg.paths.output_dir).resolve())
        if in_place and rank_zero_only.rank == 0:  # every rank (DDP child, SLURM task) starts the script
            kept = keep_csv_history(Path(cfg.paths.output_dir))  # continuing in its own folder (resume=auto)
            if kept:
                log.info("the rows logged before the interruption are kept in %s", kept)
    budget = [instantiate_checked(cfg.budget, "budget")] if cfg.get("budget") else []
    callbacks = [*budget, *instantiate_dict(cfg.get("callbacks"), "callbacks")]  # the budget first: it ends a step
    if cfg.trainer.get("enable_progress_bar", True) and not any(isinstance(cb, ProgressBar) for cb in callbacks):
        callbacks.append(step_progress_bar())  # "step 340/800", not Lightning's default "Epoch 34/-2"
    loggers = instantiate_dict(cfg.get("logger"), "logger")
    trainer: L.Trainer = instantiate_checked(cfg.trainer, "trainer", callbacks=callbacks, logger=loggers or False)
    log.info("data: %s; model: %s", cfg.data._target_, cfg.model._target_)
    datamodule.prepare_data()
    datamodule.setup("fit")  # a missing or corrupt dataset fails here, before anything is written
    model.save_hyperparameters(OmegaConf.to_container(cfg, resolve=True))
    try:
        trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path)
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        if trainer.limit_val_batches and model.validated_at != trainer.global_step:
            trainer.validate(model, datamodule=datamodule, verbose=False)  # final val/ metrics
            metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
        for callback in callbacks:
            if isinstance(callback, PeriodicEvaluation):
                callback.run_missed_final(trainer, model)
        metrics.update({k: float(v) for k, v in trainer.callback_metrics.items()})
    finally:
        finish_wandb(loggers)

    if trainer.is_global_zero:
        out = Path(cfg.paths.output_dir) / "metrics.json"
        estimators = {k: v for cb in callbacks if isinstance(cb, PeriodicEvaluation) for k, v in cb.estimators.items()}
        summary = {"global_step": trainer.global_step, **model.update_counts, "decoder_evals_total": model.decoder_evals_total,
                   **metrics, "estimators": estimators,
                   "provenance": {"commit": CODE_COMMIT, "machine": machine()}}
        out.write_text(json.dumps(summary, indent=2, sort_keys=True))
        log.info("metrics written to %s", out)
    check_updates(cfg, model.update_counts, trainer.global_step, trainer.is_global_zero)
    return metrics
