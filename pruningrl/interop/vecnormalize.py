"""Stable-Baselines3 ``VecNormalize`` statistics, read without unpickling code.

``VecNormalize.save`` pickles the whole wrapper. A pickle can name any importable callable, so
this reader's unpickler resolves only numpy's array and scalar constructors (the set that
``torch.load(weights_only=True)`` also admits for numpy). SB3's ``VecNormalize`` and
``RunningMeanStd`` become plain records of their fields, and every other object the file names
(the wrapper's spaces, random generators) becomes an empty placeholder: nothing is imported and
nothing is called but numpy's constructors. Of what comes back, only the observation
statistics are used: ``obs_rms.mean``, ``obs_rms.var``, ``clip_obs``, ``epsilon``, ``norm_obs``.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np

from pruningrl.interop.assemble import ObsStats

_NUMPY = {
    ("numpy._core.multiarray", "_reconstruct"), ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"), ("numpy.core.multiarray", "scalar"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}
_SB3 = "stable_baselines3.common."
_RECORDS = {(f"{_SB3}running_mean_std", "RunningMeanStd"),
            (f"{_SB3}vec_env.vec_normalize", "VecNormalize")}


class _Record:
    """The fields of an SB3 object, as plain attributes (pickle's BUILD sets them)."""


class _Placeholder:
    """Any other object the pickle names: takes whatever it is given and keeps nothing."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __setstate__(self, state: object) -> None:
        pass


class _Unpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _NUMPY:
            return pickle.Unpickler.find_class(self, module, name)
        if (module, name) in _RECORDS:
            return type(name, (_Record,), {})
        return _Placeholder

    def persistent_load(self, pid: object) -> object:
        raise pickle.UnpicklingError("persistent ids are not supported")


def read_vecnormalize(path: str | os.PathLike) -> ObsStats | None:
    """The observation statistics a ``VecNormalize.save`` file holds (None: ``norm_obs`` off).

    Raises ``ValueError`` for a file that is not a VecNormalize save or holds bad statistics.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no VecNormalize statistics at {path}")
    try:
        with path.open("rb") as handle:
            saved = _Unpickler(handle).load()
    except Exception as error:  # noqa: BLE001 - whatever a damaged pickle raises is bad input
        raise ValueError(f"{path} is not a readable VecNormalize file "
                         f"({type(error).__name__})") from None
    if type(saved).__name__ != "VecNormalize" or not isinstance(saved, _Record):
        raise ValueError(f"{path} is not a VecNormalize save (VecNormalize.save(PATH))")
    fields = vars(saved)
    if not fields.get("norm_obs", True):
        return None
    rms = fields.get("obs_rms")
    if not isinstance(rms, _Record):
        raise ValueError(f"{path}: observation statistics for a dict observation space are "
                         "not supported (flat Box observations only)")
    mean, var = getattr(rms, "mean", None), getattr(rms, "var", None)
    if not all(isinstance(a, np.ndarray) and a.dtype.kind == "f" for a in (mean, var)):
        raise ValueError(f"{path}: obs_rms.mean and obs_rms.var are not float arrays")
    clip, epsilon = fields.get("clip_obs", 10.0), fields.get("epsilon", 1e-8)
    if not all(isinstance(x, int | float) for x in (clip, epsilon)):
        raise ValueError(f"{path}: clip_obs and epsilon are not numbers")
    if not (np.isfinite(mean).all() and np.isfinite(var).all()):
        raise ValueError(f"{path}: the observation statistics hold NaN or infinite values")
    return ObsStats(mean.astype(np.float64), var.astype(np.float64), float(clip), float(epsilon))
