"""Checkpoint files: reading them safely, understanding them, loading them strictly, writing them.

A checkpoint is read with ``torch.load(..., weights_only=True)`` (no arbitrary code) or
safetensors, ``module.`` prefixes are stripped, its format and architecture are recognised
(:mod:`feat3d.backbones.layouts`), and the normalization the weights were trained with comes
along as a :class:`~feat3d.backbones.meta.WeightsMeta`. Resolving ``--weights`` names is
:mod:`feat3d.backbones.weights`' job, not this module's.

Example:
    >>> from feat3d.backbones import get_backbone, load_checkpoint
    >>> ckpt = load_checkpoint("resnet-34-kinetics.pth")  # doctest: +SKIP
    >>> ckpt.description  # doctest: +SKIP
    "Hara et al. 2017 checkpoint, 'module.' prefix stripped: resnet-34, shortcut A, 400 classes"
    >>> model = get_backbone(ckpt.arch, weights="resnet-34-kinetics.pth")  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import pickle
import re
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from feat3d import __version__
from feat3d.backbones.layouts import (
    LayoutError,
    UnsupportedLayout,
    detect_format,
    infer_layout,
    is_state_dict,
    parse_hara_arch,
)
from feat3d.backbones.meta import FORMAT_TEXT, WeightsMeta, arch_summary, preset_meta
from feat3d.backbones.presets import FILE_PRESETS, FORMAT_PRESET, preset_for
from feat3d.backbones.registry import Backbone, get_spec, is_registered, list_backbones
from feat3d.backbones.safetensors_io import (
    SafetensorsError,
    is_safetensors,
    read_safetensors,
    write_safetensors,
)
from feat3d.errors import RunError

__all__ = [
    "LoadedCheckpoint",
    "WeightsError",
    "build_model",
    "compute_sha256",
    "convert_checkpoint",
    "load_checkpoint",
    "load_state_dict_strict",
    "read_file",
    "save_checkpoint",
    "write_atomically",
]


class WeightsError(RunError):
    """Weights cannot be found, downloaded, read, recognised or loaded; one-line message."""


@dataclass(frozen=True)
class LoadedCheckpoint:
    """Weights read and understood: a file, a named download, or random initialization.

    Unpacks as ``(arch, state_dict, meta)``. Pass it as ``weights=`` to
    :func:`~feat3d.backbones.factory.get_backbone` to build the model without reading the
    file again.

    Attributes:
        arch: Registry name inferred from the keys (or recorded, for feat3d files).
        state_dict: Tensors with ``module.`` prefixes stripped; ``None`` for random weights.
        meta: Metadata: the normalization of the format's preset, the source, the SHA-256.
        description: One line saying what was recognised, for logs.
    """

    arch: str
    state_dict: dict[str, torch.Tensor] | None
    meta: WeightsMeta
    description: str = ""

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        """Builder arguments for the layout (``num_classes``, ``shortcut_type``, ...)."""
        return self.meta.arch_kwargs

    @property
    def format(self) -> str:
        """``"feat3d"``, ``"hara2017"``, ``"hara2020"``, ``"torchvision"``, ``"c3d"``, ..."""
        return self.meta.format

    def __iter__(self) -> Iterator[Any]:
        return iter((self.arch, self.state_dict, self.meta))


def compute_sha256(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# --------------------------------------------------------------------------------------------
# Reading checkpoints


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _load_reason(exc: BaseException) -> str:
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if match:
        return (
            f"it contains a pickled Python object ({match.group(1)}), which weights-only "
            "loading refuses for safety"
        )
    if isinstance(exc, pickle.UnpicklingError | EOFError | RuntimeError):
        return f"not a readable PyTorch checkpoint ({_first_line(exc)})"
    return _first_line(exc)


def _strip_prefixes(sd: Mapping[str, Any], *, source: str) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    depth = 0
    for key, value in sd.items():
        k, n = str(key), 0
        while True:
            if k.startswith("module."):
                k, n = k[len("module.") :], n + 1
            elif k.startswith("_orig_mod."):
                k = k[len("_orig_mod.") :]
            else:
                break
        if k in out:
            raise WeightsError(f"{source}: key {key!r} collides with another after stripping")
        out[k] = value
        depth = max(depth, n)
    return out, depth


def read_file(path: Path, *, trust: bool) -> Any:
    """The object stored in a checkpoint file, read without running code unless ``trust``.

    Raises:
        WeightsError: Unreadable file, or pickled Python objects without ``trust``.
    """
    if is_safetensors(path):
        try:
            return read_safetensors(path)
        except SafetensorsError as exc:
            raise WeightsError(f"cannot load weights file {path}: {exc}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for foreign or unsafe files
        reason = _load_reason(exc)
        if not trust or "pickled Python object" not in reason:
            hint = (
                "; if you trust whoever made it, --trust-checkpoint (trust=True) loads it with "
                "full unpickling, which can run arbitrary code"
                if "pickled Python object" in reason
                else ""
            )
            raise WeightsError(f"cannot load weights file {path}: {reason}{hint}") from None
    warnings.warn(
        f"{path}: loading with full unpickling (--trust-checkpoint): this can run code stored "
        "in the file",
        stacklevel=3,
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise WeightsError(f"cannot load weights file {path}: {_first_line(exc)}") from None


def load_checkpoint(
    path: str | Path, *, sha256: str | None = None, trust: bool = False
) -> LoadedCheckpoint:
    """Read a checkpoint safely and work out what it holds.

    Recognised formats:

    - ``feat3d``: ``{"feat3d_version", "arch", "state_dict", "meta"}`` (:func:`save_checkpoint`);
    - ``hara2017``: ``{"arch": "resnet-34", "state_dict"}`` with ``module.`` prefixes, maybe
      ``epoch``/``optimizer`` (kenshohara/video-classification-3d-cnn-pytorch);
    - ``hara2020``: ``{"epoch", "arch", "state_dict", "optimizer", "scheduler"}``
      (kenshohara/3D-ResNets-PyTorch);
    - ``torchvision``: a plain state dict with ``stem.0.weight``;
    - ``pytorchvideo``: the hub's ``.pyth`` files, ``{"model_state", ...}`` with keys
      ``blocks.N...`` (X3D, Slow-R50, SlowFast-R50); the preset is the architecture's.

    ``.safetensors`` files (feat3d's own, with the metadata in the header, or a bare state
    dict) are read with safetensors; everything else with ``torch.load(weights_only=True)``,
    which refuses pickled Python objects because unpickling them can run code.

    Args:
        path: The file.
        sha256: Its SHA-256 when already known (skips hashing it again).
        trust: Fall back to full unpickling (``weights_only=False``) for a file that holds
            pickled Python objects. Only for files from a source you trust: unpickling can
            execute arbitrary code.

    Returns:
        A :class:`LoadedCheckpoint`; ``meta.sha256`` holds the file's hash.

    Raises:
        WeightsError: Missing or unreadable file (including pickled Python objects, refused by
            ``weights_only`` loading), unrecognised layout, or a recognised architecture that
            this version does not provide.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    top, raw = _unpack(read_file(path, trust=trust), path)
    source = str(path)
    sd, depth = _strip_prefixes(raw, source=source)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{path}: state_dict entry {bad[0]!r} is not a tensor")
    fmt = detect_format(top, sd, depth)
    if fmt == "unknown":
        raise WeightsError(
            f"{path}: unrecognised checkpoint layout (keys {', '.join(list(sd)[:3])}, ...); "
            "feat3d reads feat3d, Hara et al. 2017/2020, torchvision, C3D and I3D checkpoints"
        )
    sha = sha256 or compute_sha256(path)
    if fmt == "feat3d":
        return _feat3d_checkpoint(path, top, sd, sha)
    return _foreign_checkpoint(path, top, sd, fmt, depth, sha)


def _unpack(obj: Any, path: Path) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """``(top-level mapping, raw state dict)`` of a file's contents."""
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        return obj, obj["state_dict"]
    if isinstance(obj, Mapping) and isinstance(obj.get("model_state"), Mapping):
        return obj, obj["model_state"]  # PyTorchVideo / PySlowFast
    if is_state_dict(obj):
        return {}, obj
    raise WeightsError(
        f"{path} is not a model checkpoint: expected a state dict or a dict with "
        f"'state_dict', got {type(obj).__name__}"
    )


def _feat3d_checkpoint(
    path: Path, top: Mapping[str, Any], sd: dict[str, torch.Tensor], sha: str
) -> LoadedCheckpoint:
    arch = top.get("arch")
    if not isinstance(arch, str) or not isinstance(top.get("meta"), Mapping):
        raise WeightsError(f"{path}: feat3d checkpoint without 'arch' or 'meta'")
    if not is_registered(arch):
        raise WeightsError(
            f"{path}: recognised as {arch} (format feat3d) but that architecture is not "
            "available in this version"
        )
    try:
        meta = WeightsMeta.from_dict(top["meta"])
    except ValueError as exc:
        raise WeightsError(f"{path}: {exc}") from None
    meta = replace(meta, arch=arch, source=str(path), sha256=sha, format="feat3d")
    description = f"{FORMAT_TEXT['feat3d']}: {arch_summary(arch, meta.arch_kwargs)}"
    return LoadedCheckpoint(arch, sd, meta, description)


def _foreign_checkpoint(
    path: Path, top: Mapping[str, Any], sd: dict[str, torch.Tensor], fmt: str, depth: int, sha: str
) -> LoadedCheckpoint:
    """A Hara, torchvision, C3D or PyTorchVideo checkpoint: the layout and normalization are
    inferred (a PyTorchVideo file's name tells X3D-XS, -S and -M apart: same keys)."""
    arch_hint = top.get("arch") or (path.stem if fmt == "pytorchvideo" else None)
    try:
        arch, kwargs = infer_layout(sd, arch_hint=arch_hint)
    except UnsupportedLayout as exc:
        raise WeightsError(
            f"{path}: recognised as {exc.name} (format {fmt}) but that architecture is not "
            f"available in this version (available: {', '.join(list_backbones())})"
        ) from None
    except LayoutError as exc:
        raise WeightsError(f"{path} ({FORMAT_TEXT[fmt]}): unsupported layout: {exc}") from None

    notes = []
    assumed = fmt.startswith("hara") and "arch" not in top and "scheduler" not in top
    if depth:
        notes.append("'module.' prefix stripped" if depth == 1 else "'module.module.' stripped")
    hint_family, hint_depth = parse_hara_arch(arch_hint)
    if hint_depth is not None and hint_family == "resnet" and arch != f"resnet-{hint_depth}":
        notes.append(f"its 'arch' says {arch_hint!r} but the keys are {arch}")
    if assumed:
        note = f"no 'arch' recorded, normalization assumed to be {fmt}'s"
        notes.append(note)
        warnings.warn(f"{path}: {note}; check the results", stacklevel=3)
    preset = _preset_of(fmt, arch, kwargs, path)
    meta = preset_meta(
        preset,
        name=path.stem,
        arch=arch,
        num_classes=kwargs["num_classes"],
        source=str(path),
        format=fmt,
        sha256=sha,
        arch_kwargs=kwargs,
    )
    head = FORMAT_TEXT[fmt] + (f", {', '.join(notes)}" if notes else "")
    return LoadedCheckpoint(arch, sd, meta, f"{head}: {arch_summary(arch, kwargs)}")


def _preset_of(fmt: str, arch: str, kwargs: dict[str, Any], path: Path) -> str:
    """The preset of a published file: the format's (:func:`~feat3d.backbones.presets.
    preset_for`: one format may hold several, as the I3D port's RGB, flow and Charades files);
    for a format whose files each name their architecture (PyTorchVideo's), that
    architecture's; for torchvision's layout, which several publishers share (torchvision,
    IG-65M), the architecture's refined by :data:`~feat3d.backbones.presets.FILE_PRESETS` (a
    file-name part or a class count)."""
    num_classes = kwargs["num_classes"]
    if fmt != "torchvision":
        if fmt not in FORMAT_PRESET:
            return get_spec(arch).default_meta
        return preset_for(fmt, in_channels=kwargs.get("in_channels", 3), num_classes=num_classes)
    for name, marker, preset in FILE_PRESETS:
        hit = marker == num_classes if isinstance(marker, int) else marker in path.name
        if name == arch and hit:
            return preset
    return get_spec(arch).default_meta


# --------------------------------------------------------------------------------------------
# Strict loading


def _listing(keys: list[str], what: str) -> str:
    shown = ", ".join(keys[:5])
    more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
    return f"{len(keys)} {what}: {shown}{more}"


def load_state_dict_strict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    model_name: str | None = None,
) -> None:
    """Load weights requiring every key and shape to match; explain any mismatch.

    ``num_batches_tracked`` buffers absent from files saved before PyTorch 0.4.1 are filled
    with zeros rather than reported.

    Args:
        model: Target module.
        state_dict: Tensors, prefixes already stripped.
        source: Where they came from, for the message.
        model_name: Registry name of ``model``, for the message.

    Raises:
        WeightsError: Listing up to 5 missing and 5 unexpected keys, shape mismatches, and
            ``likely --model NAME`` when the keys fit another registered layout.
    """
    expected = model.state_dict()
    sd = dict(state_dict)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = torch.zeros_like(value)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and sd[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(_listing(missing, "missing keys"))
        if unexpected:
            parts.append(_listing(unexpected, "unexpected keys"))
        if mismatched:
            parts.append(_listing(mismatched, "shape mismatches (weights vs model)"))
        target = model_name or getattr(getattr(model, "meta", None), "arch", type(model).__name__)
        raise WeightsError(
            f"weights {source} do not fit {target}: {'; '.join(parts)}"
            f"{_suggest(state_dict, target)}"
        )
    model.load_state_dict(sd, strict=True)


def _suggest(sd: Mapping[str, torch.Tensor], target: str) -> str:
    try:
        arch, kwargs = infer_layout(sd)
    except (UnsupportedLayout, LayoutError):
        return ""
    if arch != target:
        return f"; likely --model {arch}"
    options = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"; the weights are {arch} with {options}"


# --------------------------------------------------------------------------------------------
# Writing checkpoints


def write_atomically(path: Path, write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` on a temporary name next to ``path``, then rename it to ``path``.

    Readers never see a half-written file; a failed write leaves nothing behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_checkpoint(model: nn.Module, path: str | Path, *, meta: WeightsMeta | None = None) -> Path:
    """Write feat3d's checkpoint format, readable with ``weights_only=True``.

    Layout: ``{"feat3d_version": str, "arch": str, "state_dict": {key: tensor},
    "meta": WeightsMeta.to_dict()}``. DataParallel/DDP/compiled wrappers are unwrapped so
    keys carry no prefix. The file is written to a temporary name and renamed. A path ending
    in ``.safetensors`` gets a safetensors file with the same fields in its header.

    Args:
        model: A registry model (its ``arch_kwargs`` are recorded).
        path: Destination file (``.pt``/``.pth``, or ``.safetensors``).
        meta: Metadata to store; defaults to ``model.meta``.

    Returns:
        The written path.

    Raises:
        ValueError: No metadata, unknown ``meta.arch``, or labels that do not match the
            classifier (update ``meta.categories`` after ``reset_classifier``).
    """
    module = _unwrap(model)
    meta = meta if meta is not None else getattr(module, "meta", None)
    if not isinstance(meta, WeightsMeta):
        raise ValueError("no weights metadata: pass meta= or build the model with get_backbone()")
    get_spec(meta.arch)
    arch_kwargs = dict(getattr(module, "arch_kwargs", meta.arch_kwargs))
    num_classes = arch_kwargs.get("num_classes")
    if num_classes is not None and len(meta.categories) != num_classes:
        raise ValueError(
            f"meta has {len(meta.categories)} categories but the classifier has {num_classes} "
            "rows; pass meta with matching categories"
        )
    record = replace(meta, arch_kwargs=arch_kwargs, sha256=None).to_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    payload = {
        "feat3d_version": __version__,
        "arch": meta.arch,
        "state_dict": state,
        "meta": record,
    }
    path = Path(path)
    if is_safetensors(path):
        return write_atomically(path, lambda tmp: write_safetensors(tmp, payload))
    return write_atomically(path, lambda tmp: torch.save(payload, tmp))


def convert_checkpoint(src: str | Path, dst: str | Path, *, trust: bool = False) -> WeightsMeta:
    """Convert any supported checkpoint into feat3d's format (``.safetensors`` or ``.pt``).

    The weights are loaded strictly into their architecture first, so a converted file is
    known to work; its metadata (classes, normalization, clip length, input size) comes along.

    Args:
        src: A checkpoint in any format :func:`load_checkpoint` reads.
        dst: Destination; ``.safetensors`` for a file that can never run code when loaded.
        trust: Allow full unpickling of ``src`` (see :func:`load_checkpoint`).

    Returns:
        The metadata written.
    """
    loaded = load_checkpoint(Path(src), trust=trust)
    model = build_model(loaded)
    save_checkpoint(model, dst, meta=loaded.meta)
    return loaded.meta


def build_model(loaded: LoadedCheckpoint, **arch_kwargs: Any) -> Backbone:
    """Build ``loaded.arch`` on the CPU and load the weights strictly.

    Args:
        loaded: Weights read by :func:`load_checkpoint` (a ``state_dict`` is required).
        **arch_kwargs: Builder arguments overriding the recorded ones.

    Returns:
        The model in training mode, ``model.meta`` the weights' metadata.

    Raises:
        WeightsError: A key or shape that does not fit.
    """
    model = get_spec(loaded.arch).builder(**{**loaded.meta.arch_kwargs, **arch_kwargs})
    if loaded.state_dict is not None:
        load_state_dict_strict(
            model, loaded.state_dict, source=loaded.meta.source, model_name=loaded.arch
        )
    model.meta = replace(loaded.meta, arch_kwargs=dict(model.arch_kwargs))
    return model
