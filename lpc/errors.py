"""The errors lpc raises for problems a user can fix; each message names the fix.

``train.py`` and ``scripts/evaluate.py`` print them without a stack trace and exit with status 2.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger("lpc")


class LpcError(Exception):
    """Base class: a problem with the user's config, data, checkpoint or run, with a message saying what to do."""


class ConfigError(LpcError, ValueError):
    """A config value that cannot work: unknown key, wrong type, out of range, or parts that do not fit."""


class DatasetNotFoundError(LpcError, FileNotFoundError):
    """A dataset is missing (or unreadable) and could not be downloaded."""


class CorruptDataError(LpcError, OSError):
    """A dataset file exists but cannot be read (bad zip, truncated image, ...)."""


class CheckpointError(LpcError, RuntimeError):
    """A checkpoint that cannot be read, or does not fit the model it is loaded into."""


class DivergenceError(LpcError, FloatingPointError):
    """Langevin chains or the training loss went non-finite or exploded."""


def one_line(err: BaseException) -> str:
    """The error's own message; for an error re-raised from a DataLoader worker (whose message is
    the worker's whole traceback) its last line, without the class name."""
    text = str(err).strip()
    if "Original Traceback" in text:
        text = text.splitlines()[-1].split(": ", 1)[-1]
    return text


def exit_on_user_error(main: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap an entry point: an ``LpcError`` is logged as one line (to the console and the run's log)
    and ends the process with status 2, instead of a stack trace. In a multirun only this job
    fails: a ``DivergenceError`` (a step size too large, which sweeps visit on purpose) makes the
    job return NaN, which the Optuna sweeper records as a failed trial and goes on; any other
    error is re-raised, and Hydra runs the remaining jobs before it reports it."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except LpcError as err:
            log.error("%s: %s", type(err).__name__, one_line(err))
            from lpc.config.resolvers import (
                in_multirun,  # Hydra only where entry points use it
            )

            if in_multirun():
                if isinstance(err, DivergenceError):
                    return float("nan")
                raise
            raise SystemExit(2) from None

    return wrapped
