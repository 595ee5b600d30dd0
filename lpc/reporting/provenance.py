"""Where a measurement came from, for reports, benchmark JSON and feature-network cards."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[2]


def commit(repo: Path = REPO) -> str:
    """The repository's short commit, with ``-dirty`` when tracked files have uncommitted changes."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True).stdout.strip()

    return (git("rev-parse", "--short=12", "HEAD") or "unknown") + ("-dirty" if git("status", "--porcelain", "--untracked-files=no") else "")


def machine() -> str:
    """CPU architecture and cores, the GPU if any, torch's version and its threads."""
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()}, {os.cpu_count()} CPU cores, {device}; torch {torch.__version__}, "
            f"{torch.get_num_threads()} thread{'' if torch.get_num_threads() == 1 else 's'}")
