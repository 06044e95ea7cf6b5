"""Seeding and determinism for notebooks, tests and experiments."""

from __future__ import annotations

import os
import random
import subprocess
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch


def seed_everything(seed: int = 0, deterministic: bool = True) -> torch.Generator:
    """Seed Python, NumPy and torch, and ask torch for deterministic kernels.

    Returns a torch.Generator seeded with ``seed`` for code that wants its own stream.
    """
    random.seed(seed)
    np.random.seed(seed)  # noqa: NPY002 - seeds the legacy global stream on purpose
    torch.manual_seed(seed)
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    return torch.Generator().manual_seed(seed)


@lru_cache(maxsize=1)
def code_version() -> str:
    """The library version, with the git commit (and ``.dirty``) when run from a checkout."""
    from pruningrl import __version__

    commit = checkout_commit(Path(__file__).resolve().parent.parent)
    return f"{__version__}+g{commit}" if commit else __version__


def checkout_commit(root: Path) -> str | None:
    """The short commit of the git checkout at ``root``, with ``.dirty`` when a tracked file
    differs from it outside the data the library writes into its own tree (shipped agents and
    results): a run that ships what it made does not mark the runs after it as run by
    uncommitted code. None outside a checkout."""
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short=10", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no", "--",
             ".", ":!pruningrl/agents", ":!pruningrl/results"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{sha}{'.dirty' if dirty else ''}" if sha else None


def provenance() -> dict:
    """Where and with what a result was produced: code version, host, interpreter, libraries,
    and the numeric path (CPU, instruction sets, BLAS builds, numeric mode; ``numerics``).

    Every record the project writes (shipped agents, sweep jobs, benchmarks) carries this one
    dictionary, so two records can always be compared on the same fields.
    """
    import datetime
    import platform
    from importlib import metadata

    from pruningrl.numerics import numeric_path

    versions = {}
    for package in ("torch", "numpy", "gymnasium", "mujoco"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "code_version": code_version(),
        "host": platform.node(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "versions": versions,
        "numeric_path": numeric_path(),
        "started_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }
