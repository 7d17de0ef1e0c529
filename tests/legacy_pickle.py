"""Checkpoints written the way PyTorch 0.2/0.3 wrote them, as Hara et al.'s 2017 files are.

The legacy format (before the zip container of PyTorch 1.6): pickled magic number, protocol
version and system info, then the object pickled with tensors reduced to
``torch._utils._rebuild_tensor(storage, offset, size, stride)`` (0.4 added ``_v2``) and
storages as persistent ids ``("storage", type, key, location, numel, None)``, where a model
trained on a GPU names ``torch.cuda.FloatStorage`` and ``"cuda:0"``; then the storage keys and
each storage's element count and raw bytes. No BatchNorm ``num_batches_tracked`` (0.4.1).
"""

from __future__ import annotations

import pickle
import struct
from pathlib import Path
from typing import Any

import torch

_MAGIC = 0x1950A86A20F9469CFC6C
_PROTOCOL = 1001


class _Storage:
    def __init__(self, key: str, tensor: torch.Tensor) -> None:
        self.key, self.tensor = key, tensor


def save_like_pytorch_03(obj: Any, path: Path, *, location: str = "cuda:0") -> Path:
    """Write ``obj`` (float tensors in dicts and lists) in PyTorch 0.3's format."""
    storages: dict[str, torch.Tensor] = {}
    storage_type = torch.cuda.FloatStorage if location.startswith("cuda") else torch.FloatStorage

    class Pickler(pickle.Pickler):
        def persistent_id(self, value: Any) -> Any:
            if isinstance(value, _Storage):
                storages[value.key] = value.tensor
                return ("storage", storage_type, value.key, location, value.tensor.numel(), None)
            return None

        def reducer_override(self, value: Any) -> Any:
            if isinstance(value, torch.Tensor):
                tensor = value.detach().float().contiguous()
                storage = _Storage(str(len(storages) + len(pending)), tensor)
                pending.append(storage)
                shape = tuple(tensor.shape)
                return (torch._utils._rebuild_tensor, (storage, 0, shape, tensor.stride()))
            return NotImplemented

    pending: list[_Storage] = []
    with open(path, "wb") as handle:
        pickle.dump(_MAGIC, handle, protocol=2)
        pickle.dump(_PROTOCOL, handle, protocol=2)
        sys_info = {"protocol_version": _PROTOCOL, "little_endian": True,
                    "type_sizes": {"short": 2, "int": 4, "long": 4}}  # fmt: skip
        pickle.dump(sys_info, handle, protocol=2)
        Pickler(handle, protocol=2).dump(obj)
        keys = sorted(storages)
        pickle.dump(keys, handle, protocol=2)
        for key in keys:
            handle.write(struct.pack("<q", storages[key].numel()))
            handle.write(storages[key].numpy().tobytes())
    return path
