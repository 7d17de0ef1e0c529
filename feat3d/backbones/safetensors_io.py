"""feat3d checkpoints as ``.safetensors``: tensors plus the weights' metadata in the header.

A safetensors file holds only tensors and a string-to-string header, so reading one can never
run code. feat3d stores ``feat3d_version``, ``arch`` and ``meta`` (the :class:`WeightsMeta` as
JSON) in the header; :func:`read_safetensors` returns the same dict layout as a feat3d ``.pt``
checkpoint, so both go through one loading path.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from feat3d.errors import RunError

SUFFIX = ".safetensors"


class SafetensorsError(RunError):
    """The file is not a readable feat3d safetensors checkpoint."""


def is_safetensors(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names a safetensors file (by its suffix)."""
    return Path(path).suffix.lower() == SUFFIX


def write_safetensors(path: str | os.PathLike[str], payload: Mapping[str, Any]) -> None:
    """Write ``{"feat3d_version", "arch", "state_dict", "meta"}`` as one safetensors file.

    The caller makes the write atomic (temporary name, then rename).
    """
    state = {k: v.detach().cpu().contiguous() for k, v in payload["state_dict"].items()}
    header = {
        "format": "feat3d",
        "feat3d_version": str(payload["feat3d_version"]),
        "arch": str(payload["arch"]),
        "meta": json.dumps(payload["meta"], ensure_ascii=False),
    }
    # safetensors refuses tensors that share memory; clone the few that do (tied weights).
    seen: dict[int, str] = {}
    for name, tensor in state.items():
        pointer = tensor.untyped_storage().data_ptr() if tensor.numel() else 0
        if pointer and pointer in seen:
            state[name] = tensor.clone()
        seen.setdefault(pointer, name)
    save_file(state, os.fspath(path), metadata=header)


def read_safetensors(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a feat3d safetensors checkpoint into the dict layout of a feat3d ``.pt`` file.

    Raises:
        SafetensorsError: Not a safetensors file, or one without feat3d's header (a bare
            state dict is returned as ``{"state_dict": ...}`` so the layout can be inferred).
    """
    try:
        state: dict[str, torch.Tensor] = {}
        with safe_open(os.fspath(path), framework="pt", device="cpu") as handle:
            header = handle.metadata() or {}
            for name in handle.keys():  # noqa: SIM118 - safe_open is not a Mapping
                state[name] = handle.get_tensor(name)
    except (SafetensorError, OSError, ValueError) as error:
        raise SafetensorsError(f"not a readable safetensors file ({error})") from None
    if header.get("format") != "feat3d":
        return {"state_dict": state}
    try:
        meta = json.loads(header["meta"])
    except (KeyError, json.JSONDecodeError) as error:
        raise SafetensorsError(f"feat3d header without valid 'meta' ({error})") from None
    return {
        "feat3d_version": header.get("feat3d_version", ""),
        "arch": header.get("arch"),
        "state_dict": state,
        "meta": meta,
    }
