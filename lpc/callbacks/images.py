"""Image grids of data, reconstructions and prior samples, saved as PNG and sent to the loggers."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger, WandbLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from lpc.data.base import stack_images
from lpc.methods.base import GenerativeModule


def write_grids(
    model: GenerativeModule,
    x: Tensor,
    dirpath: Path,
    step: int,
    pixel_range: tuple[float, float],
    loggers: Sequence[Logger] = (),
    min_side: int = 32,
) -> None:
    """Grids of ``x`` (``data``), ``model.reconstruct(x)`` (``recon``) and as many prior samples
    (``samples``), drawn under a fixed seed, written to ``dirpath/<kind>_step<N>.png`` and to every
    W&B logger as ``images/<kind>``. Images smaller than ``min_side`` are enlarged (nearest)."""
    devices = [model.device] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(0)
        grids = {"data": x, "recon": model.reconstruct(x), "samples": model.generate(len(x))}
    low, high = pixel_range
    factor = max(1, -(-min_side // x.shape[-1]))
    dirpath.mkdir(parents=True, exist_ok=True)
    wandb_loggers = [lg for lg in loggers if isinstance(lg, WandbLogger)]
    for kind, batch in grids.items():
        pixels = ((batch.float() - low) / (high - low)).clamp(0, 1).cpu()
        grid = make_grid(F.interpolate(pixels, scale_factor=factor, mode="nearest"), nrow=8, padding=1)
        save_image(grid, dirpath / f"{kind}_step{step:06d}.png")
        for logger in wandb_loggers:
            logger.log_image(key=f"images/{kind}", images=[grid], step=step)


class ImageGrids(L.Callback):
    """At the start of training, every ``every_n_steps`` steps and at the end, writes the grids of
    ``write_grids`` for the first ``num_images`` images of the validation set."""

    def __init__(self, dirpath: str, every_n_steps: int = 500, num_images: int = 64, min_side: int = 32):
        super().__init__()
        self.dirpath = Path(dirpath)
        self.every_n_steps = every_n_steps
        self.num_images = num_images
        self.min_side = min_side
        self.last_step = -1

    def on_train_start(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        self.write(trainer, pl_module)

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: GenerativeModule, outputs, batch, batch_idx: int) -> None:
        if self.every_n_steps > 0 and trainer.global_step % self.every_n_steps == 0:
            self.write(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        self.write(trainer, pl_module)

    def write(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        step = trainer.global_step
        if step == self.last_step or not trainer.is_global_zero:
            return
        self.last_step = step
        dataset = trainer.datamodule.val_set
        x = stack_images(dataset, 0, min(self.num_images, len(dataset))).to(pl_module.device)
        write_grids(pl_module, x, self.dirpath, step, trainer.datamodule.pixel_range, trainer.loggers, self.min_side)
