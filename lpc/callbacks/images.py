"""Image grids of data, reconstructions and prior samples, saved as PNG and sent to the loggers."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import WandbLogger
from torch import Tensor
from torchvision.utils import make_grid, save_image

from lpc.methods.base import GenerativeModule


class ImageGrids(L.Callback):
    """At the start of training, every ``every_n_steps`` steps and at the end, writes three grids of
    ``num_images`` images: ``data`` (a fixed batch of the validation set), ``recon`` (the method's
    reconstruction of that batch) and ``samples`` (decoder means at z ~ p(z), fixed noise), as
    ``<dirpath>/<kind>_step<N>.png``, and logs them to W&B when a WandbLogger is active.
    Images smaller than ``min_side`` pixels are enlarged (nearest neighbour) so they can be seen.
    """

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

    def fixed_batch(self, trainer: L.Trainer, pl_module: GenerativeModule) -> Tensor:
        dataset = trainer.datamodule.val_set
        n = min(self.num_images, len(dataset))
        return torch.stack([dataset[i][0] for i in range(n)]).to(pl_module.device)

    def write(self, trainer: L.Trainer, pl_module: GenerativeModule) -> None:
        step = trainer.global_step
        if step == self.last_step or not trainer.is_global_zero:
            return
        self.last_step = step
        x = self.fixed_batch(trainer, pl_module)
        with torch.random.fork_rng(devices=[pl_module.device] if pl_module.device.type == "cuda" else []):
            torch.manual_seed(0)
            grids = {"data": x, "recon": pl_module.reconstruct(x), "samples": pl_module.generate(len(x))}
        low, high = trainer.datamodule.pixel_range
        factor = max(1, -(-self.min_side // x.shape[-1]))
        self.dirpath.mkdir(parents=True, exist_ok=True)
        wandb_loggers = [lg for lg in trainer.loggers if isinstance(lg, WandbLogger)]
        for kind, batch in grids.items():
            pixels = ((batch.float() - low) / (high - low)).clamp(0, 1).cpu()
            grid = make_grid(F.interpolate(pixels, scale_factor=factor, mode="nearest"), nrow=8, padding=1)
            save_image(grid, self.dirpath / f"{kind}_step{step:06d}.png")
            for logger in wandb_loggers:
                logger.log_image(key=f"images/{kind}", images=[grid], step=step)
