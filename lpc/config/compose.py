"""The config ``python train.py <overrides>`` sees, composed without a Hydra job (for tests and
scripts that build models themselves, e.g. scripts/benchmark.py)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf, open_dict

import lpc.config.resolvers  # noqa: F401 - the configs' ${lpc.*:} resolvers

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def compose_config(overrides: list[str], output_dir: Path, config_name: str = "train") -> DictConfig:
    """Compose ``configs/<config_name>.yaml`` with ``overrides`` as if the job ran in ``output_dir``
    (``${hydra:...}`` interpolations resolve there), and register it as the current Hydra config."""
    with initialize_config_dir(version_base="1.3", config_dir=str(CONFIGS)):
        cfg = compose(config_name=config_name, overrides=list(overrides), return_hydra_config=True)
    OmegaConf.set_readonly(cfg.hydra, False)
    with open_dict(cfg):
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(CONFIGS.parent)
        cfg.hydra.job.num = 0
        cfg.paths.log_dir = str(output_dir)
    HydraConfig.instance().set_config(cfg)
    return cfg
