"""Building the objects of a run from its config, refusing configs that cannot work before any
data is read or anything is written."""

from __future__ import annotations

import importlib
import inspect
import re
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from hydra._internal.utils import _locate
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from lpc.config.checks import (
    HYDRA_KEYS,
    RESUME_MODES,
    added_keys,
    parameters,
    validate_config,
)
from lpc.data.base import ImageDataModule
from lpc.errors import ConfigError, LpcError, one_line
from lpc.methods.base import GenerativeModule

# the config groups a user may point at a class of their own (docs/networks.md), with what the class must be
OWN_CLASSES = {
    "decoder": "a torch.nn.Module whose forward maps z (batch, latent_dim) to images (batch, channels, image_size, "
               "image_size)",
    "encoder": "a torch.nn.Module whose forward maps images (batch, channels, image_size, image_size) to the pair "
               "(mean, log_std), each (batch, latent_dim)",
    "data": "a subclass of lpc.data.ImageDataModule that implements load_split(split)",
}
PROBE_BATCH = 2  # rows of the batch each network is tried on before training


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


def preset(group: str) -> str:
    """The option of ``group`` the run composed (``mlp`` for ``decoder=mlp``), or ``<group>``'s preset."""
    from hydra.core.hydra_config import HydraConfig

    if HydraConfig.initialized():
        choice = HydraConfig.get().runtime.choices.get(group)
        if choice:
            return f"{group}={choice}"
    return f"the {group} preset"


def locate(group: str, target: str) -> object:
    """The class (or factory) ``<group>._target_`` names; a ``ConfigError`` that says why it cannot be had."""
    try:
        return _locate(target)
    except Exception as err:  # noqa: BLE001 - any failure: diagnosed below
        failure = err
    module_name, _, name = target.rpartition(".")
    try:
        module = importlib.import_module(module_name) if module_name else None
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(f"{err.name}.")):
            raise ConfigError(f"{group}._target_={target} cannot be imported (no module named {err.name!r}): put the "
                              f"folder of its module on PYTHONPATH (PYTHONPATH=<folder> python train.py ...) or the module "
                              f"next to train.py") from err
        raise ConfigError(f"{group}._target_={target}: importing {module_name} failed ({one_line(err)})") from err
    except Exception as err:  # the user's module fails as it is imported (a SyntaxError, ...)
        raise ConfigError(f"{group}._target_={target}: importing {module_name} failed ({type(err).__name__}: "
                          f"{one_line(err)})") from err
    if module is not None and not hasattr(module, name):
        defined = sorted(getattr(module, "__all__", None) or (
            k for k, v in vars(module).items() if inspect.isclass(v) and v.__module__ == module.__name__))
        raise ConfigError(f"{group}._target_={target}: {module_name} ({getattr(module, '__file__', '?')}) has no {name}"
                          f"{'; it defines ' + ', '.join(defined) if defined else ''}") from failure
    raise ConfigError(f"{group}._target_={target} cannot be imported ({one_line(failure.__cause__ or failure)})") from failure


def check_own_classes(cfg: DictConfig) -> None:
    """Before anything is built: the class named by ``decoder._target_``, ``encoder._target_`` or
    ``data._target_`` is set, importable, of the right kind, and, when it is not lpc's own, takes
    the preset's keyword arguments and gets every one it requires. Raises ``ConfigError`` with the fix."""
    added = set(added_keys(cfg))
    for group, kind in OWN_CLASSES.items():
        node = cfg.get(group)
        if not isinstance(node, DictConfig):
            continue
        if OmegaConf.is_missing(node, "_target_"):
            raise ConfigError(f"{preset(group)} needs your class: set {group}._target_=<module>.<Class>, {kind} "
                              f"(docs/networks.md)")
        if "_target_" not in node:
            continue
        target = str(node._target_)
        cls = locate(group, target)
        if inspect.isclass(cls):
            base, base_name = (ImageDataModule, "lpc.data.ImageDataModule") if group == "data" else (nn.Module, "torch.nn.Module")
            if not issubclass(cls, base):
                raise ConfigError(f"{group}._target_={target} is not {kind}: subclass {base_name} (docs/networks.md)")
            if group == "data" and cls.load_split is ImageDataModule.load_split:
                raise ConfigError(f"{target} does not implement load_split(split): define load_split(self, split) "
                                  f"returning the 'train' or 'test' split as a dataset of (image, label) pairs "
                                  f"(docs/networks.md)")
        if target.startswith("lpc."):
            continue  # lpc's own classes and presets: validate_config names any unknown key
        params, _, open_ended = parameters(cls)
        unknown = [] if open_ended else [str(k) for k in node if k not in HYDRA_KEYS and k not in params]
        from_preset = [k for k in unknown if f"{group}.{k}" not in added]
        if from_preset:
            drop = " ".join(f"~{group}.{k}" for k in from_preset)
            bare = f"start from the bare preset, {group}=custom {group}._target_={target}, or " \
                if not preset(group).endswith("=custom") else ""
            raise ConfigError(f"{target} does not take {', '.join(from_preset)}, which {preset(group)} passes: {bare}"
                              f"drop them with {drop}, or add them to its __init__ ({target} takes: "
                              f"{', '.join(params) or 'nothing'})")
        needed = [name for name, p in params.items() if p.default is p.empty and name not in node]
        if needed:
            add = " ".join(f"+{group}.{name}=<value>" for name in needed)
            raise ConfigError(f"{target} needs {', '.join(needed)}, which {preset(group)} does not set: add {add} "
                              f"on the command line, or give {'it a default' if len(needed) == 1 else 'them defaults'}")


def qualname(obj: object) -> str:
    cls = type(obj)
    return cls.__qualname__ if cls.__module__.startswith("lpc.") else f"{cls.__module__}.{cls.__qualname__}"


@contextmanager
def probing(net: nn.Module) -> Iterator[None]:
    """Try ``net`` without a trace: no gradients, eval mode (no running statistics updated), its own
    random stream (the run's draws stay those of the seed); its training mode is restored after."""
    modes = [(m, m.training) for m in net.modules()]
    with torch.no_grad(), torch.random.fork_rng(devices=[]):
        net.eval()
        try:
            yield
        finally:
            for module, mode in modes:
                module.training = mode


def check_decoder(model: GenerativeModule, datamodule: ImageDataModule) -> None:
    """Run the decoder on a batch of z: it must return one tensor of the data's image shape."""
    decoder, dim, shape = model.decoder, model.prior.data_dim, datamodule.image_shape
    name, wanted = qualname(decoder), f"(batch, {', '.join(map(str, shape))})"
    try:
        with probing(decoder):
            out = decoder(torch.zeros(PROBE_BATCH, dim))
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ConfigError(f"the decoder {name} fails on z of shape ({PROBE_BATCH}, {dim}) ({one_line(err)}): a decoder "
                          f"maps z (batch, latent_dim={dim}) to images {wanted}: size its input by its latent_dim "
                          f"argument and leave decoder.latent_dim at ${{latent_dim}}") from err
    if not isinstance(out, Tensor):
        raise ConfigError(f"the decoder {name} returns a {type(out).__name__}, not a tensor: its forward must return "
                          f"one tensor of images {wanted}")
    if tuple(out.shape) != (PROBE_BATCH, *shape):
        raise ConfigError(f"the decoder {name} returns a tensor of shape {tuple(out.shape)} for z of shape "
                          f"({PROBE_BATCH}, {dim}), but data={datamodule.name} has images of shape {shape}: its forward "
                          f"must return {wanted}, e.g. end it with .view(-1, channels, image_size, image_size) (the "
                          f"channels and image_size arguments follow data.channels and data.image_size)")


def check_encoder(model: GenerativeModule, datamodule: ImageDataModule) -> None:
    """Run the method's encoder (if it has one) on a batch of images: it must return the pair
    (mean, log_std), each (batch, D), D the sampler's state (every latent layer)."""
    encoder = model.amortised_encoder
    if encoder is None:
        return
    dim, shape = model.prior.state_dim, datamodule.image_shape
    name, pair = qualname(encoder), f"the pair (mean, log_std) of q(z | x), each (batch, {dim})"
    low, high = datamodule.pixel_range
    x = torch.full((PROBE_BATCH, *shape), (low + high) / 2)
    try:
        with probing(encoder):
            out = encoder(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as err:
        raise ConfigError(f"the encoder {name} fails on images of shape {tuple(x.shape)} ({one_line(err)}): an encoder "
                          f"maps images (batch, {', '.join(map(str, shape))}) of data={datamodule.name} to {pair}; size it "
                          f"by its channels and image_size arguments (they follow data.channels and data.image_size)") from err
    if isinstance(out, Tensor):
        split = (": if it holds both side by side, end its forward with `return out.chunk(2, dim=-1)`"
                 if tuple(out.shape) == (PROBE_BATCH, 2 * dim) else "")
        raise ConfigError(f"the encoder {name} returns one tensor of shape {tuple(out.shape)}, but an encoder returns "
                          f"{pair}{split}")
    if not (isinstance(out, (tuple, list)) and len(out) == 2 and all(isinstance(t, Tensor) for t in out)):
        got = f"a {type(out).__name__} of {len(out)}" if isinstance(out, (tuple, list)) else f"a {type(out).__name__}"
        raise ConfigError(f"the encoder {name} returns {got}; an encoder returns {pair}")
    shapes = [tuple(t.shape) for t in out]
    if shapes != [(PROBE_BATCH, dim)] * 2:
        raise ConfigError(f"the encoder {name} returns (mean, log_std) of shapes {shapes[0]} and {shapes[1]} for "
                          f"{PROBE_BATCH} images; each must be ({PROBE_BATCH}, {dim}): {dim} is state_dim, every latent "
                          f"layer (the encoder's latent_dim argument; encoder presets set it to ${{state_dim}})")


def check_compatible(model: GenerativeModule, datamodule: ImageDataModule) -> None:
    """Refuse networks or a likelihood that cannot model the data: the decoder and the encoder are
    tried on a batch (``check_decoder``, ``check_encoder``), so a network of one's own needs no
    attributes; lpc's own state their shapes (``out_shape``, ``in_shape``) for a message that names the presets."""
    if not isinstance(datamodule, ImageDataModule):
        raise ConfigError(f"data._target_ builds a {qualname(datamodule)}, which is not {OWN_CLASSES['data']} "
                          f"(docs/networks.md)")
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
    check_decoder(model, datamodule)
    check_encoder(model, datamodule)
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
    check_own_classes(cfg)
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
