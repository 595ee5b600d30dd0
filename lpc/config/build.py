"""Building the objects of a run from its config, refusing configs that cannot work before any
data is read or anything is written."""

from __future__ import annotations

import re

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from lpc.config.checks import RESUME_MODES, validate_config
from lpc.data.base import ImageDataModule
from lpc.errors import ConfigError, LpcError
from lpc.methods.base import GenerativeModule


def source_key(root: DictConfig, key: str) -> str:
    """The key a user sets for ``key``: ``model.sampler.thin`` is ``sampler.thin`` when
    ``model.sampler`` is the interpolation ``${sampler}``."""
    parts = key.split(".")
    for i in range(1, len(parts) + 1):
        parent = OmegaConf.select(root, ".".join(parts[: i - 1])) if i > 1 else root
        if not isinstance(parent, DictConfig) or parts[i - 1] not in parent:
            break
        if OmegaConf.is_interpolation(parent, parts[i - 1]):
            found = re.fullmatch(r"\$\{([\w.]+)\}", str(parent._get_node(parts[i - 1])._value()))
            return source_key(root, ".".join([found.group(1), *parts[i:]])) if found else key
    return key


def instantiate_checked(node: DictConfig, path: str, **kwargs):
    """``hydra.utils.instantiate``, with a class's own refusal of a value (ValueError/TypeError)
    turned into a ``ConfigError`` that names the config key."""
    try:
        return instantiate(node, **kwargs)
    except InstantiationException as err:
        cause = err.__cause__
        while cause is not None and not isinstance(cause, (ValueError, TypeError, LpcError)):
            cause = cause.__cause__
        if cause is None:
            raise  # not a refused value: a bug, with its traceback
        found = re.search(r"full_key: (\S+)", str(err))
        key = source_key(node._get_root(), found.group(1)) if found else path
        raise ConfigError(f"{key}: {cause}") from err


def instantiate_dict(cfg: DictConfig | None, path: str = "") -> list:
    """Instantiate every ``_target_`` entry of a config group that holds several objects (callbacks, loggers)."""
    if not cfg:
        return []
    return [instantiate_checked(node, f"{path}.{key}") for key, node in cfg.items() if isinstance(node, DictConfig) and "_target_" in node]


def check_compatible(model: GenerativeModule, datamodule: ImageDataModule) -> None:
    """Refuse networks or a likelihood that cannot model the data."""
    out_shape = tuple(getattr(model.decoder, "out_shape", datamodule.image_shape))
    if out_shape != datamodule.image_shape:
        raise ConfigError(
            f"the decoder outputs images of shape {out_shape} but data={datamodule.name} gives "
            f"{datamodule.image_shape}; pick a decoder for that size (decoder=dcgan28|dcgan32|dcgan64|higgins32|"
            f"higgins64|mlp) or set data.image_size/data.channels to match"
        )
    for module in model.modules():
        in_shape = getattr(module, "in_shape", None)
        if in_shape is not None and tuple(in_shape) != datamodule.image_shape:
            raise ConfigError(
                f"the encoder reads images of shape {tuple(in_shape)} but data={datamodule.name} gives "
                f"{datamodule.image_shape}; pick an encoder for that size (encoder=dcgan28|dcgan32|dcgan64|higgins32|"
                f"higgins64|mlp)"
            )
    likelihood = type(model.likelihood).__name__
    wanted = model.likelihood.data_range
    if wanted is not None and tuple(wanted) != datamodule.pixel_range:
        raise ConfigError(
            f"{likelihood} expects pixels in {list(wanted)} but data.pixel_range={list(datamodule.pixel_range)}; "
            f"set data.pixel_range={list(wanted)} (the likelihood options set it for you unless overridden)"
        )
    if model.likelihood.binary and datamodule.binarize == "none":
        raise ConfigError(f"{likelihood} needs binarised pixels but data.binarize=none; set data.binarize=dynamic or fixed")


def build(cfg: DictConfig) -> tuple[ImageDataModule, GenerativeModule]:
    """Check the config (unknown keys, types, ranges, parts that do not fit) and build the data
    module (not yet loaded) and the model. Raises ``ConfigError``."""
    validate_config(cfg)
    if cfg.get("resume", False) not in RESUME_MODES:
        raise ConfigError(f"resume={cfg.resume!r}: expected true, false or auto")
    if str(cfg.get("trainer", {}).get("precision", "32")).startswith("16"):
        raise ConfigError(
            f"trainer.precision={cfg.trainer.precision} is not supported: fp16 loss scaling does not fit lpc's "
            f"manual optimisation; use trainer.precision=bf16-mixed or 32"
        )
    if cfg.get("sampler", {}).get("compile") == "cuda_graph" and (
            not torch.cuda.is_available() or cfg.get("trainer", {}).get("accelerator") == "cpu"):
        raise ConfigError("sampler.compile=cuda_graph needs a CUDA GPU (trainer=gpu), and this run has none: "
                          "use sampler.compile=eager (or torch_compile)")
    datamodule: ImageDataModule = instantiate_checked(cfg.data, "data")
    model: GenerativeModule = instantiate_checked(cfg.model, "model")
    check_compatible(model, datamodule)
    datamodule.with_index = getattr(model, "needs_example_index", False)
    return datamodule, model
