"""The weights home: checkpoints added or downloaded once, then used by name everywhere.

The home is ``$FEAT3D_HOME`` when set, else ``<torch.hub.get_dir()>/feat3d``. It holds the
added files and ``weights.json``, the registry mapping each name to its file, SHA-256,
architecture, format, class count and the date it was added. The registry is rewritten
atomically (temporary file, then rename). torchvision's named weights download into the torch
hub cache, where :func:`~feat3d.backbones.weights.resolve_weights` has always looked.

Example:
    >>> from feat3d.backbones.hub import add_weights, find_registered
    >>> add_weights("resnet-34-kinetics.pth")  # doctest: +SKIP
    RegisteredWeights(name='resnet-34-kinetics', arch='resnet-34', ...)
    >>> get_backbone("resnet-34", weights="resnet-34-kinetics")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from feat3d.backbones.published import PublishedCheckpoint, published_checkpoints
from feat3d.backbones.weights import (
    NamedWeights,
    WeightsError,
    compute_sha256,
    fetch_weights,
    list_weights,
    resolve_weights,
    weights_cache_path,
)

__all__ = [
    "KnownWeights",
    "RegisteredWeights",
    "add_weights",
    "download_weights",
    "find_registered",
    "known_weights",
    "read_registry",
    "remove_weights",
    "weight_names",
    "weights_home",
]

REGISTRY_FILE = "weights.json"
_REGISTRY_VERSION = 1
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_RESERVED = {"none", "default"}


def weights_home() -> Path:
    """``$FEAT3D_HOME`` if set and non-empty, else ``<torch.hub.get_dir()>/feat3d``."""
    home = os.environ.get("FEAT3D_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    return Path(torch.hub.get_dir()) / "feat3d"


@dataclass(frozen=True)
class RegisteredWeights:
    """One entry of ``weights.json``.

    Attributes:
        name: What ``--weights`` accepts.
        path: The file in the home (a symlink when added with ``link=True``).
        sha256: SHA-256 of the file when it was added.
        arch: Registry name it loads into.
        format: Checkpoint format it was read as (``hara2017``, ``torchvision``, ...).
        classes: Rows of its classifier.
        added: ISO date it was added.
        origin: The file it was added from.
        linked: Whether ``path`` is a symlink to ``origin`` rather than a copy.
    """

    name: str
    path: Path
    sha256: str
    arch: str
    format: str
    classes: int
    added: str
    origin: str
    linked: bool = False

    def to_json(self) -> dict[str, Any]:
        """The registry record: the file is stored relative to the home."""
        return {
            "file": self.path.name,
            "sha256": self.sha256,
            "arch": self.arch,
            "format": self.format,
            "classes": self.classes,
            "added": self.added,
            "origin": self.origin,
            "linked": self.linked,
        }


def _registry_path(home: Path | None) -> Path:
    return (home or weights_home()) / REGISTRY_FILE


def read_registry(home: Path | None = None) -> dict[str, RegisteredWeights]:
    """Every registered weights, by name; empty when the home has no registry yet.

    Raises:
        WeightsError: ``weights.json`` exists but is not a registry feat3d wrote.
    """
    home = home or weights_home()
    path = _registry_path(home)
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text("utf-8"))
        entries = data["weights"]
        return {
            name: RegisteredWeights(
                name=name,
                path=home / str(record["file"]),
                sha256=str(record["sha256"]),
                arch=str(record["arch"]),
                format=str(record["format"]),
                classes=int(record["classes"]),
                added=str(record["added"]),
                origin=str(record.get("origin", "")),
                linked=bool(record.get("linked", False)),
            )
            for name, record in entries.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(
            f"{path}: not a feat3d weights registry ({type(exc).__name__}: {exc}); "
            "fix it or delete it (the files next to it stay usable as paths)"
        ) from None


def _write_registry(entries: dict[str, RegisteredWeights], home: Path) -> None:
    path = _registry_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "version": _REGISTRY_VERSION,
        "weights": {name: entries[name].to_json() for name in sorted(entries)},
    }
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(payload, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def find_registered(name: str, *, home: Path | None = None) -> RegisteredWeights | None:
    """The registered weights called ``name``, or ``None``; a missing file is an error.

    Raises:
        WeightsError: The name is registered but its file is gone (a moved link target, a
            deleted copy), or the registry is unreadable.
    """
    entry = read_registry(home).get(name.strip())
    if entry is not None and not entry.path.is_file():
        raise WeightsError(
            f"registered weights {entry.name!r} point to {entry.path}, which no longer exists; "
            f"run `feat3d weights remove {entry.name}` and add the file again"
        )
    return entry


# --------------------------------------------------------------------------------------------
# What is known: the published table joined with the registry and the torch hub cache


def _named_by_name() -> dict[str, NamedWeights]:
    return {named.name: named for named in list_weights()}


def _published_name(checkpoint: PublishedCheckpoint) -> str:
    """The ``--weights`` name of a published file: torchvision's tag, else the file stem."""
    for named in list_weights():
        if named.filename == checkpoint.filename:
            return named.name
    return Path(checkpoint.filename).stem


def _published_by_name() -> dict[str, PublishedCheckpoint]:
    return {_published_name(c): c for c in published_checkpoints()}


@dataclass(frozen=True)
class KnownWeights:
    """A row of ``feat3d weights``: a published or added checkpoint and where it is.

    Attributes:
        name: What ``--weights`` accepts once the file is local.
        model: Registry name it loads into.
        format: Checkpoint format.
        classes: Rows of its classifier.
        source: A download URL, ``"Google Drive: manual"``, another manual source, or the file
            it was added from.
        sha256: Full SHA-256 of a registered file, the published leading hex digits of
            torchvision's files (8), else ``None``.
        path: The local file, or ``None`` when not downloaded or added.
        published: The published-table row, ``None`` for files added under other names.
    """

    name: str
    model: str
    format: str
    classes: int
    source: str
    sha256: str | None
    path: Path | None
    published: PublishedCheckpoint | None

    def to_json(self) -> dict[str, Any]:
        """The published row's fields (filename, dataset, accuracy, ...) plus these."""
        row: dict[str, Any] = dict(self.published.__dict__) if self.published else {}
        row.update(
            name=self.name,
            model=self.model,
            format=self.format,
            classes=self.classes,
            download=self.source,
            sha256=self.sha256,
            path=str(self.path) if self.path else None,
        )
        row.setdefault("source", self.source)
        row.setdefault("filename", self.path.name if self.path else None)
        return row


def _manual_source(checkpoint: PublishedCheckpoint) -> str:
    if "Google Drive" in checkpoint.source:
        return "Google Drive: manual"
    return f"manual: {checkpoint.source}"


def known_weights(*, home: Path | None = None) -> list[KnownWeights]:
    """Every published checkpoint, then every added file under a name of its own.

    Returns:
        Rows in the published table's order, then registered names in alphabetical order.
    """
    registry = read_registry(home)
    named = _named_by_name()
    rows = []
    for checkpoint in published_checkpoints():
        name = _published_name(checkpoint)
        entry = registry.pop(name, None)
        url = named[name].url if name in named else None
        cached = weights_cache_path(named[name]) if name in named else None
        if entry is not None:
            path, sha = entry.path, entry.sha256
        else:
            path = cached if cached is not None and cached.is_file() else None
            sha = named[name].hash_prefix if name in named else None
        rows.append(
            KnownWeights(
                name=name,
                model=checkpoint.model,
                format=checkpoint.format,
                classes=checkpoint.classes,
                source=url or _manual_source(checkpoint),
                sha256=sha,
                path=path,
                published=checkpoint,
            )
        )
    for entry in sorted(registry.values(), key=lambda e: e.name):
        rows.append(
            KnownWeights(
                name=entry.name,
                model=entry.arch,
                format=entry.format,
                classes=entry.classes,
                source=f"added from {entry.origin}" + (" (linked)" if entry.linked else ""),
                sha256=entry.sha256,
                path=entry.path,
                published=None,
            )
        )
    return rows


def weight_names(*, home: Path | None = None) -> list[str]:
    """Names ``--weights`` accepts without a path: registered, named, ``DEFAULT``, ``none``."""
    try:
        registered = list(read_registry(home))
    except WeightsError:
        registered = []
    return [*sorted({*registered, *_named_by_name()}), "DEFAULT", "none"]


# --------------------------------------------------------------------------------------------
# add / remove


def _check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name) or name.lower() in _RESERVED:
        raise WeightsError(
            f"invalid weights name {name!r}: use letters, digits and . _ + - (not 'none' or "
            "'DEFAULT'), starting with a letter or digit"
        )
    return name


def _default_name(path: Path) -> str:
    for named in list_weights():
        if named.filename == path.name:
            return named.name
    return path.stem


def _check_published(name: str, path: Path, sha: str, arch: str, classes: int) -> None:
    """Compare a file with what the published table says about ``name``."""
    named = _named_by_name().get(name)
    if named is not None and not sha.startswith(named.hash_prefix):
        raise WeightsError(
            f"checksum mismatch: {path} has sha256 {sha}, but {name} is published with a "
            f"sha256 starting {named.hash_prefix} ({named.url})"
        )
    published = _published_by_name().get(name)
    if published is not None and (arch, classes) != (published.model, published.classes):
        raise WeightsError(
            f"{path} holds {arch} with {classes} classes, but {name} is published as "
            f"{published.model} with {published.classes} classes; pass another --name"
        )


def add_weights(
    path: str | Path,
    *,
    name: str | None = None,
    model: str | None = None,
    link: bool = False,
    replace: bool = False,
    trust: bool = False,
    home: Path | None = None,
) -> RegisteredWeights:
    """Verify a checkpoint, copy (or link) it into the home and register it under a name.

    Verification: the file is read with the safe loader in its detected format, loaded
    strictly into the architecture its layout names (``model``, when given, must agree), and
    compared with the published table when ``name`` is a published one (torchvision's hash
    prefix; architecture and class count for Hara's and C3D files).

    Args:
        path: The checkpoint (any format :func:`~feat3d.backbones.weights.load_checkpoint`
            reads, ``.safetensors`` included).
        name: Its ``--weights`` name; default: torchvision's tag for torchvision's published
            file names, else the file stem.
        model: The architecture it must hold.
        link: Symlink to the file instead of copying it.
        replace: Overwrite a registered entry of the same name.
        trust: Allow full unpickling (see :func:`~feat3d.backbones.weights.load_checkpoint`).
        home: The weights home; default :func:`weights_home`.

    Returns:
        The registry entry.

    Raises:
        WeightsError: Not a checkpoint, a layout that fits no architecture, the wrong
            architecture, a checksum mismatch, an invalid or taken name.
    """
    from feat3d.backbones.registry import get_backbone  # late: registry imports weights

    source = Path(path).expanduser()
    if not source.is_file():
        raise WeightsError(f"weights file not found: {source}")
    name = _check_name(name if name is not None else _default_name(source))
    home = home or weights_home()
    registry = read_registry(home)
    if name in registry and not replace:
        raise WeightsError(
            f"weights {name!r} are already registered ({registry[name].path}); remove them "
            "first or pass --force"
        )
    resolved = resolve_weights(source, model=model, trust=trust)
    get_backbone(resolved.arch, weights=resolved)  # strict: every key and shape must fit
    meta = resolved.meta
    sha = meta.sha256 or compute_sha256(source)
    classes = len(meta.categories)
    _check_published(name, source, sha, resolved.arch, classes)

    home.mkdir(parents=True, exist_ok=True)
    target = home / f"{name}{''.join(source.suffixes[-1:]) or '.pt'}"
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        if link:
            tmp.symlink_to(source.resolve())
        else:
            shutil.copyfile(source, tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    entry = RegisteredWeights(
        name=name,
        path=target,
        sha256=sha,
        arch=resolved.arch,
        format=meta.format,
        classes=classes,
        added=datetime.date.today().isoformat(),
        origin=str(source.resolve()),
        linked=link,
    )
    registry = read_registry(home)  # re-read: keep entries added meanwhile
    old = registry.get(name)
    registry[name] = entry
    _write_registry(registry, home)
    if old is not None and old.path != target:
        old.path.unlink(missing_ok=True)
    return entry


def remove_weights(name: str, *, home: Path | None = None) -> list[Path]:
    """Forget registered weights and delete their file (a link, not its target); for
    torchvision's named weights also delete the torch hub cache copy.

    Returns:
        The files deleted.

    Raises:
        WeightsError: Nothing of that name is registered or downloaded.
    """
    home = home or weights_home()
    registry = read_registry(home)
    removed = []
    entry = registry.pop(name, None)
    if entry is not None:
        _write_registry(registry, home)
        if entry.path.is_symlink() or entry.path.exists():
            entry.path.unlink()
            removed.append(entry.path)
    named = _named_by_name().get(name)
    if named is not None and weights_cache_path(named).is_file():
        weights_cache_path(named).unlink()
        removed.append(weights_cache_path(named))
    if entry is None and not removed:
        known = ", ".join(sorted(registry)) or "none"
        raise WeightsError(
            f"no weights named {name!r} are registered or downloaded (registered: {known})"
        )
    return removed


# --------------------------------------------------------------------------------------------
# download


def download_weights(name: str, *, progress: bool = True) -> Path:
    """Download torchvision's named weights into the torch hub cache and check their hash.

    Args:
        name: A named weights (``r3d_18.kinetics400_v1``).
        progress: Show a progress bar on stderr.

    Returns:
        The cached file (already there: returned after checking its hash).

    Raises:
        WeightsError: Offline or unreachable server, a hash mismatch, a published name that
            must be fetched by hand (the message says where and the ``weights add`` command to
            run), or an unknown name.
    """
    named = _named_by_name().get(name.strip().lower())
    if named is None:
        published = _published_by_name().get(name.strip())
        if published is not None:
            raise WeightsError(
                f"{name} cannot be downloaded by feat3d ({published.source}); download "
                f"{published.filename} there, then run "
                f"`feat3d weights add {published.filename} --name {name}`"
            )
        known = ", ".join(sorted(_named_by_name()))
        raise WeightsError(f"unknown weights {name!r}; downloadable: {known}")
    return fetch_weights(named.name, progress=progress)
