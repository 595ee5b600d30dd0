"""OmegaConf resolvers the configs use (registered when this module is imported, as
``lpc.jobs.train`` and ``lpc.jobs.evaluate`` do).

``${lpc.sweep_group:PREFIX}``  in a multirun, ``PREFIX_<sweep folder>`` (e.g. ``train_2026-11-29_10-00-00``),
                               the same for every job of the sweep; otherwise ``""`` (no group).
``${lpc.job_name:}``     in a multirun, the job's swept values (``hydra.job.override_dirname``, e.g.
                         ``precond=adam,step_size=0.05``); otherwise ``""`` (W&B picks a name).
``${lpc.sum:LIST}``, ``${lpc.last:LIST}``  the sum and the last of a list of numbers (``prior.sizes``:
                         the sampler's state dimension and the decoder's input).
"""

from __future__ import annotations

from pathlib import Path

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import OmegaConf


def in_multirun() -> bool:
    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def sweep_group(prefix: str = "") -> str:
    if not in_multirun():
        return ""
    sweep_dir = Path(HydraConfig.get().runtime.output_dir).parent  # <sweep dir>/<job number>
    return f"{prefix}_{sweep_dir.name}" if prefix else sweep_dir.name


def job_name() -> str:
    return HydraConfig.get().job.override_dirname if in_multirun() else ""


def register() -> None:
    resolvers = (("lpc.sweep_group", sweep_group), ("lpc.job_name", job_name),
                 ("lpc.sum", lambda values: sum(values)), ("lpc.last", lambda values: values[-1]))
    for name, resolver in resolvers:
        if not OmegaConf.has_resolver(name):
            OmegaConf.register_new_resolver(name, resolver)


register()
