"""Conditional generation from a checkpoint (``scripts/complete.py``): the test images with pixels
masked out, completed by a Langevin chain on p(z | x_obs) (``lpc.methods.inpainting``), as grids and errors."""

from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from omegaconf import DictConfig, ListConfig
from torch import Tensor
from torchvision.utils import make_grid, save_image

from lpc.config.build import instantiate_checked
from lpc.data.base import stack_images
from lpc.errors import ConfigError, DivergenceError
from lpc.evaluation.names import completion as completion_key
from lpc.jobs.checkpoints import read_checkpoint
from lpc.jobs.restore import restore, run_config
from lpc.methods.base import GenerativeModule
from lpc.methods.inpainting import (
    MASKS,
    MaskedEnergy,
    centre_mask,
    complete,
    completion_errors,
    half_mask,
    paste,
    random_mask,
    with_chains,
)
from lpc.samplers.chain import ChainSampler

log = logging.getLogger(__name__)
SAMPLER_SOURCES = ("auto", "config")
SHOW = ("mean", "sample")
OVERRIDES = ("step_size", "num_steps", "burn_in", "thin")  # complete.<key>: null keeps the sampler's


def mask_names(cfg: DictConfig) -> list[str]:
    """``mask`` (one name or a list of them), each checked against ``lpc.methods.inpainting.MASKS``."""
    names = list(cfg.mask) if isinstance(cfg.mask, (ListConfig, list)) else [cfg.mask]
    unknown = [n for n in names if n not in MASKS]
    if unknown or not names:
        raise ConfigError(f"mask={unknown or names}: choose from {list(MASKS)}, or a list of them, "
                          f"e.g. mask=[half,centre,random]")
    return names


def check_settings(cfg: DictConfig) -> None:
    """Refuse the script's own settings that cannot work, before the checkpoint is read."""
    if cfg.num_images < 1 or cfg.num_draws < 1 or cfg.complete.batch_size < 1 or cfg.grid_images < 0:
        raise ConfigError(f"num_images={cfg.num_images}, num_draws={cfg.num_draws} and complete.batch_size="
                          f"{cfg.complete.batch_size} must be >= 1, grid_images={cfg.grid_images} >= 0")
    if not 0.0 < cfg.fraction < 1.0:
        raise ConfigError(f"fraction={cfg.fraction}: the missing fraction of mask=random must be in (0, 1)")
    if cfg.show not in SHOW:
        raise ConfigError(f"show={cfg.show}: choose from {list(SHOW)}")
    if cfg.complete.sampler not in SAMPLER_SOURCES:
        raise ConfigError(f"complete.sampler={cfg.complete.sampler}: choose from {list(SAMPLER_SOURCES)}")


def build_mask(name: str, shape: tuple[int, int, int, int], cfg: DictConfig) -> Tensor:
    """The mask ``name`` for ``shape`` (B, C, H, W), bool, True = observed; mask=random from a
    generator seeded by ``mask_seed``, so every method is judged on the same pixels."""
    if name == "half":
        return half_mask(shape)
    if name == "centre":
        try:
            return centre_mask(shape, cfg.centre_size)
        except ValueError as err:
            raise ConfigError(f"centre_size={cfg.centre_size}: {err}") from err
    return random_mask(shape, cfg.fraction, torch.Generator().manual_seed(int(cfg.mask_seed)))


def completion_sampler(cfg: DictConfig, run: DictConfig, model: GenerativeModule) -> ChainSampler:
    """The chain on p(z | x_obs), with ``num_draws`` chains per image:

    - ``complete.sampler=auto``: the model's own sampler with noise (``LangevinPC.noisy_sampler``:
      LPC's as trained, at the checkpoint's step size; PC's gradient descent as ULA with the same
      step size and preconditioner); for a method without one (VAE, IWAE) the run's ``sampler``
      group (ULA with precond=adam at the run's step_size/num_steps/burn_in, unless it chose others);
    - ``complete.sampler=config``: this command's ``sampler`` and ``precond`` groups (e.g.
      ``sampler=mala precond=none step_size=0.01``);

    then ``complete.step_size|num_steps|burn_in|thin`` where set. A noise-free sampler gets noise."""
    if cfg.complete.sampler == "config":
        sampler = instantiate_checked(cfg.sampler, "sampler")
    elif hasattr(model, "noisy_sampler"):
        sampler = model.noisy_sampler()
    else:
        sampler = instantiate_checked(run.sampler, "sampler")
    changes: dict[str, Any] = {k: cfg.complete[k] for k in OVERRIDES if cfg.complete[k] is not None}
    if not sampler.noise:
        changes["noise"] = True
    try:
        return with_chains(replace(sampler, **changes), int(cfg.num_draws))
    except ValueError as err:
        raise ConfigError(f"complete.{'|'.join(OVERRIDES)}: {err}; set the others of them to fit") from err


def image_grid(rows: list[Tensor], pixel_range: tuple[float, float], min_side: int = 32) -> Tensor:
    """One grid row per batch of images (each (G, C, H, W), in ``pixel_range``), enlarged (nearest)
    to at least ``min_side`` pixels a side, as in ``lpc.callbacks.images``."""
    low, high = pixel_range
    pixels = ((torch.cat(rows).float() - low) / (high - low)).clamp(0, 1).cpu()
    factor = max(1, -(-min_side // pixels.shape[-1]))
    return make_grid(F.interpolate(pixels, scale_factor=factor, mode="nearest"), nrow=len(rows[0]), padding=1)


def complete_mask(name: str, mask: Tensor, cfg: DictConfig, masked: MaskedEnergy, sampler: ChainSampler, x: Tensor,
                  pixel_range: tuple[float, float], device: torch.device, grid_path: Path) -> dict[str, float]:
    """Complete the images x (N, C, H, W) where ``mask`` (bool, like x; both on the CPU) is False,
    in batches; write the grid (rows: masked input, the ``num_draws`` completions, their mean, the
    truth) to ``grid_path``; return the errors averaged over the images whose chains did not diverge."""
    filler = sum(pixel_range) / 2  # mid-grey: what the grid shows for the missing pixels (the chain never reads it)
    errors: dict[str, list[Tensor]] = {"mse_missing": [], "mse_observed": []}
    diverged = []
    size = int(cfg.complete.batch_size)
    for start in range(0, len(x), size):
        xb, mb = x[start : start + size].to(device), mask[start : start + size].to(device)
        completion = complete(masked, sampler, xb, mb, filler)
        for key, value in completion_errors(xb, mb, completion).items():
            errors[key].append(value.cpu())
        diverged.append(completion.diverged.cpu())
        if start == 0 and cfg.grid_images > 0:
            g = int(cfg.grid_images)
            draws = completion.means if cfg.show == "mean" else completion.samples
            rows = [paste(xb, mb, filler)[:g], *draws[:, :g], completion.mean[:g], xb[:g]]
            grid_path.parent.mkdir(parents=True, exist_ok=True)
            save_image(image_grid(rows, pixel_range), grid_path)
    diverged_rows = torch.cat(diverged)
    if diverged_rows.all():
        raise DivergenceError(f"mask={name}: the chains of every image diverged (step_size={sampler.step_size:g}); "
                              f"set a smaller complete.step_size")
    if diverged_rows.any():
        log.warning("mask=%s: %d of %d images had a diverged chain; left out of the errors",
                    name, int(diverged_rows.sum()), len(diverged_rows))
    metrics = {}
    for key, values in errors.items():
        per_image = torch.cat(values)[~diverged_rows]
        per_image = per_image[~per_image.isnan()]  # an image with no pixel of the kind (mask=random) has none
        metrics[key] = per_image.mean().item()
        metrics[f"{key}_se"] = (per_image.std() / len(per_image) ** 0.5).item() if len(per_image) > 1 else 0.0
    metrics["missing_frac"] = (~mask).float().mean().item()
    metrics["diverged_frac"] = diverged_rows.float().mean().item()
    return {completion_key(name, k): v for k, v in metrics.items()}


def complete_checkpoint(cfg: DictConfig) -> dict[str, Any]:
    """Complete the first ``num_images`` test images of ``cfg.ckpt_path``'s data under every ``mask``;
    write ``<output_dir>/images/complete_<mask>.png`` and ``<output_dir>/metrics.json``; returns
    the JSON's contents."""
    names = mask_names(cfg)
    check_settings(cfg)
    ckpt = read_checkpoint(cfg.ckpt_path)
    run = run_config(cfg, ckpt)
    device = torch.device("cuda" if torch.cuda.is_available() and cfg.get("device", "auto") != "cpu" else "cpu")
    datamodule, model = restore(run, ckpt, cfg.ckpt_path, device)
    model.eval()
    test_set = datamodule.test_set
    if cfg.num_images > len(test_set):
        raise ConfigError(f"num_images={cfg.num_images} but the test split has {len(test_set)} images; lower num_images")
    if run.get("seed") is not None:
        torch.manual_seed(int(run.seed))
    sampler = completion_sampler(cfg, run, model)
    masked = MaskedEnergy(model.energy)
    x = stack_images(test_set, 0, int(cfg.num_images))
    masks = {name: build_mask(name, tuple(x.shape), cfg) for name in names}  # all checked before any chain runs
    out_dir = Path(cfg.paths.output_dir)
    metrics: dict[str, float] = {}
    grids = {}
    for name, mask in masks.items():
        grids[name] = str(out_dir / "images" / f"complete_{name}.png")
        metrics.update(complete_mask(name, mask, cfg, masked, sampler, x, datamodule.pixel_range, device, Path(grids[name])))
        log.info("mask=%s: mse_missing=%.5g (observed %.5g)", name, metrics[completion_key(name, "mse_missing")],
                 metrics[completion_key(name, "mse_observed")])
    report = {
        "ckpt_path": str(Path(cfg.ckpt_path).resolve()),
        "global_step": int(ckpt.get("global_step", 0)),
        "method": run.model._target_,
        "num_images": int(cfg.num_images),
        "num_draws": int(cfg.num_draws),
        "sampler": {
            "source": cfg.complete.sampler, "class": type(sampler).__name__,
            "preconditioner": type(sampler.preconditioner).__name__, "step_size": float(sampler.step_size),
            "num_steps": sampler.num_steps, "burn_in": sampler.burn_in, "thin": sampler.thin,
            "kept_per_chain": sampler.num_samples, "start": "prior",
        },
        "metrics": metrics,
        "grids": grids,
    }
    (out_dir / "metrics.json").write_text(json.dumps(report, indent=2))
    log.info("completions written to %s", out_dir)
    return report
