"""Checks of a composed config before any work starts: a key added on the command line must be
read by something, every ``_target_`` node's keys must be arguments of its target, with values of
the annotated type, and no number anywhere in the config may be inf or nan. Ranges are checked by
the classes themselves when they are built (``lpc.config.build.build``); all give a ``ConfigError`` that names the key, the bad value and what is
allowed."""

from __future__ import annotations

import dataclasses
import difflib
import inspect
import math
import sys
import types
import typing
from collections.abc import Iterator, Sequence
from typing import Any

from hydra._internal.utils import _locate
from omegaconf import DictConfig, ListConfig, OmegaConf

from lpc.errors import ConfigError

# Keys renamed since they were introduced: a command line naming the old one is refused before Hydra composes.
RENAMED_KEYS = {"eval.fid": "eval.sample_quality"}  # it holds every sample-quality setting (FD, KID, PRDC), FID or not
RESUME_MODES = (True, False, "auto")  # the values of the `resume` key (lpc.jobs.resume reads it)
HYDRA_KEYS = {"_target_", "_partial_", "_recursive_", "_convert_", "_args_"}


def defined(cfg: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """``cfg`` and every node and value below it, with its dotted path, where it is defined:
    interpolations (``sampler.step_size: ${step_size}``, ``model.decoder: ${decoder}``) and missing
    values are skipped (their targets are visited where they are defined), and so is Hydra's own
    ``hydra`` node."""
    yield path, cfg
    if isinstance(cfg, DictConfig):
        keys = [k for k in cfg if not (path == "" and k == "hydra")]
        children = [(k, f"{path}.{k}" if path else str(k)) for k in keys]
    elif isinstance(cfg, ListConfig):
        children = [(i, f"{path}[{i}]") for i in range(len(cfg))]
    else:
        return
    for key, child in children:
        if not (OmegaConf.is_interpolation(cfg, key) or OmegaConf.is_missing(cfg, key)):
            yield from defined(cfg[key], child)


def target_nodes(cfg: Any) -> Iterator[tuple[str, DictConfig]]:
    """Every node with a ``_target_`` below ``cfg``, with its dotted path (``defined``)."""
    return ((path, node) for path, node in defined(cfg) if isinstance(node, DictConfig) and "_target_" in node)


def leaves(cfg: Any) -> Iterator[tuple[str, Any]]:
    """Every value below ``cfg`` that is not a node, with its dotted path (``defined``)."""
    return ((path, value) for path, value in defined(cfg) if not isinstance(value, (DictConfig, ListConfig)))


def check_finite(cfg: DictConfig) -> None:
    """Refuse inf and nan in every number of the config: no setting of lpc (step sizes, learning
    rates, scales, bounds, ...) can work with one, and a run would train on without learning."""
    for path, value in leaves(cfg):
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{path}={value}: expected a finite number, not inf or nan; set {path} to a finite number")


def parameters(target: Any) -> tuple[dict[str, inspect.Parameter], dict[str, Any], bool]:
    """Named parameters a callable accepts, following ``**kwargs`` up the class hierarchy, their
    type hints, and whether it takes any other keyword too (``**kwargs`` that no parent consumes,
    e.g. a logger forwarding them to its library)."""
    if inspect.isclass(target):
        callables = [c.__init__ for c in inspect.getmro(target) if c is not object and "__init__" in vars(c)]
    else:
        callables = [target]
    params: dict[str, inspect.Parameter] = {}
    hints: dict[str, Any] = {}
    open_ended = True
    for fn in callables:
        signature = inspect.signature(fn)
        for name, p in signature.parameters.items():
            if name != "self" and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                params.setdefault(name, p)
        try:
            hints = {**typing.get_type_hints(fn), **hints}
        except Exception:  # noqa: BLE001 - unresolvable annotations are simply not type-checked
            pass
        if not any(p.kind == p.VAR_KEYWORD for p in signature.parameters.values()):
            open_ended = False
            break  # no **kwargs: the parents' arguments are not reachable
    if dataclasses.is_dataclass(target):  # fields' hints resolve in the modules that declare them
        hints = {**typing.get_type_hints(target), **hints}
    return params, hints, open_ended


def type_error(value: Any, hint: Any) -> str | None:
    """Why ``value`` does not fit the type hint, or None; only plain types are checked."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        reasons = [type_error(value, arm) for arm in typing.get_args(hint)]
        return None if any(r is None for r in reasons) else reasons[0]
    if value is None:
        return None  # whether null is allowed is the target's own check
    if hint is bool:
        return None if isinstance(value, bool) else "expected true or false"
    if hint is int:
        return None if isinstance(value, int) and not isinstance(value, bool) else "expected an integer"
    if hint is float:
        return None if isinstance(value, (int, float)) and not isinstance(value, bool) else "expected a number"
    if hint is str:
        return None if isinstance(value, str) else "expected a string"
    if origin in (Sequence, list, tuple, typing.Sequence) or hint in (list, tuple):
        return None if isinstance(value, (ListConfig, list, tuple)) else "expected a list"
    return None


def added_keys(cfg: DictConfig) -> list[str]:
    """The keys the command line added with ``+key=value`` (Hydra's record of the job's overrides: in
    ``cfg.hydra`` for a composed config, Hydra's own in a job; none elsewhere), not counting config
    groups (``+experiment=x``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from lpc.config.compose import CONFIGS

    task = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
    if task is None and HydraConfig.initialized():  # train.py's job: Hydra keeps its own node apart
        task = HydraConfig.get().overrides.task
    overrides = OverridesParser.create().parse_overrides(list(task or []))
    return [o.key_or_group for o in overrides if o.is_add() and not (CONFIGS / o.key_or_group.replace(".", "/")).is_dir()]


def check_added_keys(cfg: DictConfig) -> None:
    """A key added with ``+`` that nothing reads is refused (a typo such as ``+step_sizes=0.1`` would
    otherwise train with the setting ignored): allowed are keys inside a ``_target_`` node (whose
    arguments ``validate_config`` checks), Hydra's own, and a user's own under ``extra``."""
    for key in added_keys(cfg):
        parts = key.split(".")
        if parts[0] in ("hydra", "extra") or any(
                isinstance(node := OmegaConf.select(cfg, ".".join(parts[:i]), default=None), DictConfig) and "_target_" in node
                for i in range(1, len(parts))):
            continue
        parent = OmegaConf.select(cfg, ".".join(parts[:-1])) if len(parts) > 1 else cfg
        known = [str(k) for k in parent if str(k) != parts[-1] and str(k) != "hydra"] if isinstance(parent, DictConfig) else []
        close = difflib.get_close_matches(parts[-1], known, n=1)
        hint = f"did you mean {'.'.join([*parts[:-1], close[0]])}? " if close else ""
        raise ConfigError(f"unknown key {key}: nothing reads it, so it would train with the setting ignored; {hint}"
                          f"keys of your own for interpolations go under extra (+extra.{parts[-1]}=...)")


def validate_config(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for a key added with ``+`` that nothing reads, for the first unknown key
    or mistyped value of any ``_target_`` node, then for the first inf or nan anywhere in the config."""
    check_added_keys(cfg)
    for path, node in target_nodes(cfg):
        try:
            target = _locate(node._target_)
        except Exception as err:  # noqa: BLE001
            raise ConfigError(f"{path}._target_={node._target_!r} cannot be imported ({err})") from err
        params, hints, open_ended = parameters(target)
        for key in node:
            if key in HYDRA_KEYS or (open_ended and key not in params):
                continue
            if key not in params:
                close = difflib.get_close_matches(str(key), params, n=1)
                hint = f" (did you mean {close[0]}?)" if close else ""
                raise ConfigError(f"unknown key {path}.{key}{hint}; {node._target_} takes: {', '.join(params)}")
            if OmegaConf.is_missing(node, key):
                raise ConfigError(f"{path}.{key} is required: set {path}.{key}=<value> on the command line or in the config")
            if key in hints:
                value = node[key]
                if isinstance(value, DictConfig) and "_target_" in value:
                    continue
                reason = type_error(value, hints[key])
                if reason:
                    raise ConfigError(f"{path}.{key}={value!r}: {reason} ({hints[key]})")
    check_finite(cfg)


def refuse_renamed_keys(argv: list[str]) -> None:
    """Stop with status 2 and a message that names the new key when a command-line override names a
    renamed one (``RENAMED_KEYS``), e.g. ``eval.fid.num_samples=100``; called by the entry points
    before Hydra composes, which would otherwise only say that the old key is not in the config."""
    for item in argv:
        key = item.lstrip("+~").split("=", 1)[0]
        for old, new in RENAMED_KEYS.items():
            if key == old or key.startswith(old + "."):
                print(f"ConfigError: {old} is now {new}: write {item.replace(old, new, 1)}", file=sys.stderr)
                raise SystemExit(2)
