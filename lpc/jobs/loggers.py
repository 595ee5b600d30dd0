"""Weights & Biases logging that never hangs or fails a run for lack of a network."""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Sequence
from urllib.parse import urlparse

from lightning.pytorch.loggers import Logger, WandbLogger

log = logging.getLogger(__name__)
DEFAULT_WANDB_URL = "https://api.wandb.ai"


def reachable(url: str, timeout: float) -> bool:
    """Whether a TCP connection to the URL's host and port opens within ``timeout`` seconds."""
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname or "", port), timeout=timeout):
            return True
    except OSError:
        return False


def wandb_logger(
    project: str = "lpc",
    save_dir: str = ".",
    offline: bool = True,
    connect_timeout: float = 5.0,
    name: str | None = None,
    group: str | None = None,
    entity: str | None = None,
    tags: list[str] | None = None,
    job_type: str | None = None,
    notes: str | None = None,
    id: str | None = None,  # noqa: A002 - W&B's own name for the run id
    resume: str | None = None,
    log_model: bool = False,
) -> WandbLogger:
    """Lightning's ``WandbLogger``. Offline (the default) it writes the run under ``save_dir`` and
    never touches the network (upload later with ``wandb sync``). Online, the W&B server
    (``$WANDB_BASE_URL`` or api.wandb.ai) must answer within ``connect_timeout`` seconds; if it does
    not, the run falls back to offline with one warning instead of hanging or failing. The other
    arguments are W&B's own (``wandb.init``); ``group=""`` means no group."""
    if not offline:
        url = os.environ.get("WANDB_BASE_URL", DEFAULT_WANDB_URL)
        if not reachable(url, connect_timeout):
            log.warning("W&B server %s is not reachable: logging offline instead (upload later with `wandb sync`)", url)
            offline = True
    return WandbLogger(
        project=project, save_dir=save_dir, offline=offline, name=name or None, group=group or None, entity=entity,
        tags=list(tags) if tags else None, job_type=job_type, notes=notes, id=id, resume=resume, log_model=log_model,
    )


def log_line(loggers: Sequence[Logger], key: str, values: Sequence[float], x_name: str, y_name: str, step: int) -> None:
    """A W&B line plot of ``values`` against 1..n under ``key`` (other loggers take scalars only)."""
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            import wandb

            table = wandb.Table(data=[[i + 1, float(v)] for i, v in enumerate(values)], columns=[x_name, y_name])
            logger.experiment.log({key: wandb.plot.line(table, x_name, y_name, title=key), "trainer/global_step": step})
