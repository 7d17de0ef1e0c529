"""``--weights`` resolution: a name, a path, ``DEFAULT`` or ``none`` → network weights + metadata.

The rule (:func:`resolve_weights`): ``none`` is random initialization with the family's
preset; ``DEFAULT`` and torchvision's names download into the torch hub cache (or use the
file added under that name); a name added with ``feat3d weights add`` is its file, checked
against the SHA-256 recorded when it was added; a URL (``https://``, ``s3://``, ...) is
downloaded once into ``<torch.hub.get_dir()>/checkpoints/urls`` and read from there; anything
else is a checkpoint path, whose contents decide the architecture. The catalog is
:mod:`feat3d.backbones.catalog`, reading files is :mod:`feat3d.backbones.checkpoints`.

Example:
    >>> from feat3d.backbones import resolve_weights
    >>> arch, state_dict, meta = resolve_weights("none", model="resnet-18")
    >>> arch, state_dict, meta.preset
    ('resnet-18', None, 'hara2020')
"""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

import torch

from feat3d.backbones.catalog import (
    CATALOG,
    CheckpointEntry,
    fetch,
    find_registered,
    list_weights,
)
from feat3d.backbones.checkpoints import (
    LoadedCheckpoint,
    WeightsError,
    compute_sha256,
    load_checkpoint,
    load_state_dict_strict,
)
from feat3d.backbones.meta import FORMAT_TEXT, default_meta, preset_meta
from feat3d.backbones.registry import get_spec
from feat3d.urls import StorageError, cached_download, is_url, mask_url

# WeightsError, compute_sha256, default_meta, load_state_dict_strict: re-exported for the
# builder modules that import them from here (st_resnet).
__all__ = [
    "DEFAULT_MODEL",
    "WeightsError",
    "compute_sha256",
    "default_meta",
    "load_state_dict_strict",
    "resolve_weights",
]

#: Model used when neither ``--model`` nor a checkpoint names one.
DEFAULT_MODEL = "r3d_18"

_CHECKPOINT_SUFFIXES = {".pth", ".pt", ".tar", ".ckpt", ".bin", ".pkl"}


def resolve_weights(
    weights: str | Path | None,
    *,
    model: str | None = None,
    progress: bool = True,
    trust: bool = False,
) -> LoadedCheckpoint:
    """Apply feat3d's model-selection rule to ``--weights`` and ``--model``.

    - ``None`` / ``"none"``: random init of ``model`` (default :data:`DEFAULT_MODEL`) with its
      family's default metadata (format ``"random"``, ``state_dict`` ``None``);
    - ``"DEFAULT"`` or a named weights (``"r3d_18.kinetics400_v1"``, or its tag
      ``"KINETICS400_V1"`` with ``model``): downloaded to / read from the torch hub cache;
    - a name added with ``feat3d weights add``: that file;
    - a URL: downloaded once into the torch hub cache (a file per URL), then as a path;
    - an existing path: :func:`~feat3d.backbones.checkpoints.load_checkpoint`; the checkpoint
      decides the architecture.

    Args:
        weights: The ``--weights`` value.
        model: The ``--model`` value, if given.
        progress: Show a progress bar when downloading.
        trust: Allow full unpickling of a checkpoint file (see
            :func:`~feat3d.backbones.checkpoints.load_checkpoint`).

    Returns:
        A :class:`~feat3d.backbones.checkpoints.LoadedCheckpoint`; unpacks as
        ``(arch, state_dict or None, meta)``.

    Raises:
        ValueError: Unknown ``model``.
        WeightsError: Unknown name or missing file, no default weights for ``model``, offline
            without a cached file, unreadable checkpoint, or a checkpoint of another
            architecture than ``model``.
    """
    if model is not None:
        get_spec(model)
    if weights is None or (isinstance(weights, str) and weights.strip().lower() in ("", "none")):
        arch = model or DEFAULT_MODEL
        return LoadedCheckpoint(arch, None, default_meta(arch))
    if isinstance(weights, str) and is_url(weights):
        return _resolve_url(weights, model=model, trust=trust)
    added = None
    if isinstance(weights, str):
        named = _lookup_named(weights, model=model)
        added = find_registered(named.name if named is not None else weights)
        if named is not None:
            return _resolve_named(named, added, progress=progress)
    path = added.path if added is not None and added.path else Path(weights).expanduser()
    return _resolve_file(path, str(weights), model=model, added=added, trust=trust)


def url_cache_folder() -> Path:
    """Where checkpoints given as URLs are downloaded: ``<hub dir>/checkpoints/urls``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / "urls"


def _resolve_url(url: str, *, model: str | None, trust: bool) -> LoadedCheckpoint:
    """A checkpoint at a URL: the cached download (fetched on first use), its source the URL
    without credentials."""
    try:
        path = cached_download(url, url_cache_folder())
    except StorageError as error:
        raise WeightsError(f"cannot download the weights: {error}") from error
    ckpt = _resolve_file(path, str(path), model=model, added=None, trust=trust)
    return replace(ckpt, meta=replace(ckpt.meta, source=mask_url(url)))


def _resolve_named(
    named: CheckpointEntry, added: CheckpointEntry | None, *, progress: bool
) -> LoadedCheckpoint:
    """A downloadable entry: the file added under its name, else the (downloaded) cache."""
    if added is not None and added.path is not None and added.sha256 is not None:
        path, sha = added.path, _check_unchanged(added.path, added.sha256)
    else:
        path, sha = fetch(named, progress=progress)
    ckpt = load_checkpoint(path, sha256=sha)
    if ckpt.arch != named.arch:
        raise WeightsError(f"{path} holds {ckpt.arch}, expected {named.arch}")
    assert named.preset is not None  # every downloadable catalog row names its preset
    meta = preset_meta(
        named.preset,
        name=named.name,
        arch=named.arch,
        num_classes=ckpt.arch_kwargs["num_classes"],
        source=named.url or str(path),
        format=ckpt.format,
        sha256=sha,
        arch_kwargs=ckpt.arch_kwargs,
        metrics=named.metrics,
    )
    return LoadedCheckpoint(named.arch, ckpt.state_dict, meta, ckpt.description)


def _resolve_file(
    path: Path, text: str, *, model: str | None, added: CheckpointEntry | None, trust: bool
) -> LoadedCheckpoint:
    """A checkpoint path, or the file added under the name ``text``."""
    if not path.is_file():
        if os.sep in text or "/" in text or path.suffix.lower() in _CHECKPOINT_SUFFIXES:
            raise WeightsError(f"weights file not found: {path}")
        names = ", ".join(entry.name for entry in list_weights())
        raise WeightsError(
            f"unknown weights {text!r}: not a file, and not one of the named weights "
            f"({names}, DEFAULT, none)"
        )
    ckpt = load_checkpoint(path, trust=trust)
    if model is not None and ckpt.arch != model:
        raise WeightsError(
            f"{path} holds {ckpt.arch} weights ({FORMAT_TEXT[ckpt.format]}) but the model is "
            f"{model}; use --model {ckpt.arch} or leave it out"
        )
    if added is None or added.sha256 is None:
        return ckpt
    _check_unchanged(path, added.sha256, sha256=ckpt.meta.sha256)
    return replace(ckpt, meta=replace(ckpt.meta, name=added.name))


def _check_unchanged(path: Path, registered: str, *, sha256: str | None = None) -> str:
    """The file's SHA-256, which must still be the one recorded when it was registered."""
    sha = sha256 or compute_sha256(path)
    if sha != registered:
        raise WeightsError(
            f"{path} changed since it was added (sha256 {sha}, registered {registered}); "
            "add it again with `feat3d weights add FILE --name NAME --force`"
        )
    return sha


def _no_default_message(arch: str) -> str:
    if get_spec(arch).family.startswith("hara-"):
        return (
            f"{arch} has no downloadable default weights: Hara et al.'s checkpoints are on "
            "Google Drive (links in github.com/kenshohara/3D-ResNets-PyTorch); download one "
            "(e.g. r3d18_K_200ep.pth or resnet-34-kinetics.pth) and pass --weights PATH, "
            "or --weights none for random initialization"
        )
    return f"{arch} has no default weights; pass --weights PATH, or --weights none"


def _lookup_named(text: str, *, model: str | None) -> CheckpointEntry | None:
    """The downloadable entry ``text`` names (``DEFAULT``, a name, or a tag with ``model``)."""
    key = text.strip()
    named: CheckpointEntry | None
    if key.upper() == "DEFAULT":
        arch = model or DEFAULT_MODEL
        named = next((entry for entry in list_weights(arch) if entry.default), None)
        if named is None:
            raise WeightsError(_no_default_message(arch))
    else:
        named = CATALOG.get(key.lower())
        if named is None and model is not None:  # "--model r3d_18 --weights KINETICS400_V1"
            named = CATALOG.get(f"{model}.{key.lower()}")
        if named is not None and not named.url:
            named = None  # a published file fetched by hand: usable once added, by path
    if named is not None and model is not None and named.arch != model:
        raise WeightsError(
            f"named weights {named.name} are for {named.arch}, not {model}; "
            f"use --model {named.arch} or leave it out"
        )
    return named
