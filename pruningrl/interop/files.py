"""Reading agent files without running their code: format sniffing and tensor-only loading.

A file is recognised by its content, not its name: a ``pruningrl`` checkpoint (safetensors), a
Stable-Baselines3 zip (``data`` and ``policy.pth`` inside), or a torch file holding a state dict
(CleanRL's ``.cleanrl_model``, a ``state_dict()`` saved with ``torch.save``). Torch files are
read with ``torch.load(weights_only=True)``: tensors and plain containers only, never code.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch

PRUNINGRL, SB3, TORCH, UNKNOWN = "pruningrl", "stable-baselines3", "torch", "unknown"


def sniff(path: str | os.PathLike) -> str:
    """The format of the file at ``path``: PRUNINGRL, SB3, TORCH or UNKNOWN."""
    path = Path(path)
    with path.open("rb") as handle:
        head = handle.read(9)
    if head[:4] == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as archive:
                names = set(archive.namelist())
        except zipfile.BadZipFile:
            return UNKNOWN
        if {"data", "policy.pth"} <= names:
            return SB3
        if any(name == "data.pkl" or name.endswith("/data.pkl") for name in names):
            return TORCH
        return UNKNOWN
    if len(head) == 9 and head[8:9] == b"{":
        (length,) = struct.unpack("<Q", head[:8])
        if 0 < length <= path.stat().st_size - 8:
            return PRUNINGRL
    if head[:1] == b"\x80":  # a pickle: torch's legacy (non-zip) format
        return TORCH
    return UNKNOWN


def load_tensors(data: bytes | str | os.PathLike, what: str) -> object:
    """``torch.load(..., weights_only=True)`` with a one-line ``ValueError`` when it refuses."""
    source = io.BytesIO(data) if isinstance(data, bytes) else str(data)
    try:
        return torch.load(source, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ValueError(
            f"{what} holds pickled objects other than tensors (a whole module, or custom "
            "classes); pruningrl never unpickles code: save the network's state_dict() "
            "instead") from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else type(error)
        raise ValueError(f"{what} is not a readable torch file ({message})") from None


def state_dict(value: object, what: str) -> dict[str, torch.Tensor]:
    """``value`` as a flat ``{name: tensor}`` dict, or a ``ValueError`` saying what it is."""
    if not isinstance(value, Mapping) or not value:
        raise ValueError(f"{what} does not hold a state dict (a mapping of names to tensors)")
    if not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in value.items()):
        raise ValueError(f"{what} holds a mapping that is not a flat state dict of tensors")
    return {k: v.detach() for k, v in value.items()}


def linear_chain(
    state: Mapping[str, torch.Tensor], prefix: str, what: str
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The Linear layers ``PREFIX{i}.weight``/``.bias`` of an ``nn.Sequential`` state dict.

    The layers must sit at indices 0, 2, 4, ... (one elementwise activation between two), as
    in every MLP that Stable-Baselines3, CleanRL and ``build_mlp`` make.
    """
    pattern = re.compile(re.escape(prefix) + r"(\d+)\.(weight|bias)$")
    found: dict[int, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        match = pattern.match(key)
        if match:
            found.setdefault(int(match[1]), {})[match[2]] = tensor
    indices = sorted(found)
    if indices != list(range(0, 2 * len(indices), 2)):
        raise ValueError(f"{what}: Linear layers at positions {indices}; expected 0, 2, 4, ... "
                         "(Linear layers separated by one elementwise activation each)")
    layers = []
    for i in indices:
        if "weight" not in found[i] or found[i]["weight"].dim() != 2:
            raise ValueError(f"{what}: layer {i} is not a Linear layer")
        weight = found[i]["weight"]
        layers.append((weight, found[i].get("bias", torch.zeros(weight.shape[0]))))
    return layers


def read_json(archive: zipfile.ZipFile, name: str, what: str) -> dict:
    """A JSON object stored in a zip archive."""
    try:
        value = json.loads(archive.read(name).decode())
    except (KeyError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{what}: unreadable {name!r} ({type(error).__name__})") from None
    if not isinstance(value, dict):
        raise ValueError(f"{what}: {name!r} is not a JSON object")
    return value
