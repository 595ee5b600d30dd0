"""Train a latent generative model: ``python train.py model=pc_langevin precond=adam step_size=0.05``.

Thin entry point: Hydra composes ``configs/train.yaml`` with the command-line overrides and
``lpc.jobs.train.train`` does the rest.
"""

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

os.environ.setdefault("LPC_ROOT", str(Path(__file__).resolve().parent))

from lpc.config.checks import refuse_renamed_keys  # noqa: E402
from lpc.errors import exit_on_user_error  # noqa: E402
from lpc.jobs.train import optimized_value, train  # noqa: E402


@hydra.main(version_base="1.3", config_path="configs", config_name="train")
@exit_on_user_error
def main(cfg: DictConfig) -> float | None:
    # returns the value a Hydra sweeper (e.g. Optuna) optimises, when one is configured
    return optimized_value(train(cfg), cfg.get("optimized_metric"))


if __name__ == "__main__":
    refuse_renamed_keys(sys.argv[1:])
    main()
