"""Changing the weights home: adding a checkpoint under a name, removing one, downloading one.

Added files are verified (read safely, loaded strictly into their architecture, compared
with the catalog when the name is a published one), copied or linked into the home and
recorded in ``weights.json`` (:mod:`feat3d.backbones.catalog`). torchvision's named weights
download into the torch hub cache, where :func:`~feat3d.backbones.weights.resolve_weights`
has always looked.

Example:
    >>> from feat3d.backbones.hub import add_weights
    >>> add_weights("resnet-34-kinetics.pth")  # doctest: +SKIP
    CheckpointEntry(name='resnet-34-kinetics', arch='resnet-34', ...)
    >>> get_backbone("resnet-34", weights="resnet-34-kinetics")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime
import re
import shutil
from pathlib import Path

from feat3d.backbones.catalog import (
    CATALOG,
    CheckpointEntry,
    fetch_weights,
    find_registered,
    known_weights,
    list_weights,
    read_registry,
    weight_names,
    weights_cache_path,
    weights_home,
    write_registry,
)
from feat3d.backbones.checkpoints import (
    WeightsError,
    build_model,
    compute_sha256,
    write_atomically,
)
from feat3d.backbones.weights import resolve_weights

# find_registered, known_weights, read_registry, weight_names, weights_home: the catalog's,
# re-exported for the CLI's `weights` commands.
__all__ = [
    "add_weights",
    "download_weights",
    "find_registered",
    "known_weights",
    "read_registry",
    "remove_weights",
    "weight_names",
    "weights_home",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_RESERVED = {"none", "default"}


def _check_name(name: str) -> str:
    name = name.strip()
    if not _NAME.fullmatch(name) or name.lower() in _RESERVED:
        raise WeightsError(
            f"invalid weights name {name!r}: use letters, digits and . _ + - (not 'none' or "
            "'DEFAULT'), starting with a letter or digit"
        )
    return name


def _default_name(path: Path) -> str:
    for entry in CATALOG.values():
        if entry.filename == path.name:
            return entry.name
    return path.stem


def _check_published(name: str, path: Path, sha: str, arch: str, classes: int) -> None:
    """Compare a file with what the catalog says about ``name``."""
    published = CATALOG.get(name)
    if published is None:
        return
    if published.url and published.sha256 and not sha.startswith(published.sha256):
        raise WeightsError(
            f"checksum mismatch: {path} has sha256 {sha}, but {name} is published with a "
            f"sha256 starting {published.sha256} ({published.url})"
        )
    if (arch, classes) != (published.arch, published.classes):
        raise WeightsError(
            f"{path} holds {arch} with {classes} classes, but {name} is published as "
            f"{published.arch} with {published.classes} classes; pass another --name"
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
) -> CheckpointEntry:
    """Verify a checkpoint, copy (or link) it into the home and register it under a name.

    Verification: the file is read with the safe loader in its detected format, loaded
    strictly into the architecture its layout names (``model``, when given, must agree), and
    compared with the published table when ``name`` is a published one (torchvision's hash
    prefix; architecture and class count for Hara's and C3D files).

    Args:
        path: The checkpoint (any format :func:`~feat3d.backbones.checkpoints.load_checkpoint`
            reads, ``.safetensors`` included).
        name: Its ``--weights`` name; default: torchvision's tag for torchvision's published
            file names, else the file stem.
        model: The architecture it must hold.
        link: Symlink to the file instead of copying it.
        replace: Overwrite a registered entry of the same name.
        trust: Allow full unpickling (see :func:`~feat3d.backbones.checkpoints.load_checkpoint`).
        home: The weights home; default :func:`weights_home`.

    Returns:
        The registry entry.

    Raises:
        WeightsError: Not a checkpoint, a layout that fits no architecture, the wrong
            architecture, a checksum mismatch, an invalid or taken name.
    """
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
    loaded = resolve_weights(source, model=model, trust=trust)
    build_model(loaded)  # strict: every key and shape must fit
    sha = loaded.meta.sha256 or compute_sha256(source)
    classes = len(loaded.meta.categories)
    _check_published(name, source, sha, loaded.arch, classes)
    target = _store(source, home / f"{name}{''.join(source.suffixes[-1:]) or '.pt'}", link=link)
    entry = CheckpointEntry(
        name=name,
        arch=loaded.arch,
        format=loaded.format,
        classes=classes,
        filename=target.name,
        source=str(source.resolve()),
        sha256=sha,
        path=target,
        added=datetime.date.today().isoformat(),
        linked=link,
    )
    registry = read_registry(home)  # re-read: keep entries added meanwhile
    old = registry.get(name)
    registry[name] = entry
    write_registry(registry, home)
    if old is not None and old.path is not None and old.path != target:
        old.path.unlink(missing_ok=True)
    return entry


def _store(source: Path, target: Path, *, link: bool) -> Path:
    """Copy (or symlink) ``source`` to ``target`` atomically."""
    if link:
        return write_atomically(target, lambda tmp: tmp.symlink_to(source.resolve()))
    return write_atomically(target, lambda tmp: shutil.copyfile(source, tmp))


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
    if entry is not None and entry.path is not None:
        write_registry(registry, home)
        if entry.path.is_symlink() or entry.path.exists():
            entry.path.unlink()
            removed.append(entry.path)
    named = CATALOG.get(name)
    if named is not None and named.url and weights_cache_path(named).is_file():
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
    named = CATALOG.get(name.strip().lower())
    if named is None or not named.url:
        published = CATALOG.get(name.strip())
        if published is not None:
            raise WeightsError(
                f"{name} cannot be downloaded by feat3d ({published.source}); download "
                f"{published.filename} there, then run "
                f"`feat3d weights add {published.filename} --name {name}`"
            )
        known = ", ".join(entry.name for entry in list_weights())
        raise WeightsError(f"unknown weights {name!r}; downloadable: {known}")
    return fetch_weights(named.name, progress=progress)
