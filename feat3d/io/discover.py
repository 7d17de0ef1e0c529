"""Find the videos named by command-line inputs: files, folders (recursive) and ``@list.txt``.

Each video gets a *key*, the name it has in the output: its path relative to the input root it
was found under, in posix form (``class_a/clip01.mp4``). A file named directly is keyed by its
file name; a line of a list file by the path as written in the list when that is relative and
stays inside the list's folder, else by its file name.

Keys are safe as HDF5 group paths and as relative file paths (npy output): each path component
that HDF5 or a file system cannot hold is escaped (see :func:`safe_key`), and no key is
absolute or contains ``.``/``..`` components, so nothing can be written outside the output.

Two different files whose keys would clash — the same key, keys that differ only in letter
case (one file on a case-insensitive disk), or a key that is a folder of another key (an HDF5
group cannot be both) — are told apart in discovery order (sorted, so stable between runs):
the later one gets ``~2`` (then ``~3``, ...) appended to its first path component
(``clip.mp4~2``, ``sub~2/clip.mp4``). The original path is always in the ``source``
attribute.

URLs (``s3://bucket/videos/``, ``https://host/a.mp4``, see :mod:`feat3d.urls`) are inputs
too: one ending in a video extension is one video (not fetched until it is decoded, so a
missing one is one failed video); one ending in ``/``, without a video extension, or with
glob characters (``s3://bucket/videos/*/*.mp4``) is listed. A URL keeps its address in
``path``; its key is its name (or its path under the listed folder), never its credentials.
A list file can be a URL too, and relative lines of a URL list are under its folder.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import urls
from ..errors import UsageError

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv",
        ".wmv", ".3gp", ".ogv", ".ts", ".mts", ".m2ts", ".vob", ".gif",
    }
)  # fmt: skip


class InputError(UsageError):
    """An input named on the command line does not exist or cannot be listed."""


@dataclass(frozen=True)
class VideoSource:
    """One video to process.

    Attributes:
        path: Absolute path of the file, or its URL (a ``str``, credentials included).
        key: Its name in the output (posix, relative to the input root it was found under).
    """

    path: Path | str
    key: str

    @property
    def display(self) -> str:
        """The path, or the URL with its credentials masked: what outputs and messages show."""
        return urls.mask_url(self.path) if isinstance(self.path, str) else str(self.path)


def is_video_file(path: Path | str) -> bool:
    """Whether ``path`` has one of the video extensions feat3d looks for in folders."""
    return PurePosixPath(str(path)).suffix.lower() in VIDEO_EXTENSIONS


def _walk_videos(root: Path) -> Iterator[Path]:
    """Video files under ``root``, sorted, following symlinks but never looping.

    A folder that cannot be listed (no permission, removed meanwhile, an I/O error) is
    yielded itself, in its place, so that the run records it as a failed input with the
    reason and goes on (the decoder names it: ``"cannot list folder: permission denied"``).
    """
    seen: set[tuple[int, int]] = set()
    unlisted: list[Path] = []

    def note(error: OSError) -> None:
        if error.filename is not None:
            unlisted.append(Path(os.fsdecode(error.filename)))

    for dirpath, dirnames, filenames in os.walk(root, onerror=note, followlinks=True):
        yield from unlisted
        unlisted.clear()
        try:
            stat = os.stat(dirpath)
        except OSError:
            dirnames[:] = []
            yield Path(dirpath)
            continue
        ident = (stat.st_dev, stat.st_ino)
        if ident in seen:
            dirnames[:] = []
            continue
        seen.add(ident)
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if is_video_file(path):
                yield path
    yield from unlisted


_MAX_COMPONENT_BYTES = 200  # file systems allow 255 bytes; leave room for ".npy" and "~N"


def _escape_component(component: str) -> str:
    if component in (".", ".."):
        return component.replace(".", "%2E")
    out = []
    for char in component:
        code = ord(char)
        if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte kept by os.fsdecode
            out.append(f"%{code - 0xDC00:02X}")
        elif code < 0x20 or code == 0x7F or char in "/\\":
            out.append(f"%{code:02X}")
        else:
            out.append(char)
    escaped = "".join(out)
    encoded = escaped.encode("utf-8")
    if len(encoded) > _MAX_COMPONENT_BYTES:
        digest = hashlib.sha1(encoded).hexdigest()[:12]
        _, dot, suffix = escaped.rpartition(".")
        suffix = f".{suffix}" if dot and len(suffix) <= 8 else ""
        head = escaped.encode("utf-8")[: _MAX_COMPONENT_BYTES - 40].decode("utf-8", "ignore")
        escaped = f"{head}~{digest}{suffix}"
    return escaped


def safe_key(relative: str) -> str:
    """Turn a relative path into an output key that HDF5 and file systems can hold.

    Components are joined with ``/``; empty and ``.`` components are dropped; control
    characters, backslashes and undecodable bytes become ``%XX``; a ``..`` component becomes
    ``%2E%2E``; a component longer than 200 bytes is shortened and given a hash.

    Example:
        >>> safe_key("a/./b\\x01c/../d.mp4")
        'a/b%01c/%2E%2E/d.mp4'
    """
    parts = [p for p in relative.replace(os.sep, "/").split("/") if p not in ("", ".")]
    return "/".join(_escape_component(p) for p in parts) or "%2E"


def check_key(key: str) -> None:
    """Raise ``ValueError`` for a key that could escape an output folder or break HDF5."""
    parts = key.split("/")
    if not key or key.startswith("/") or "\x00" in key or any(p in ("", ".", "..") for p in parts):
        raise ValueError(f"unsafe output key {key!r}")


def _list_key(entry: str, path: Path) -> str:
    pure = PurePosixPath(entry.replace(os.sep, "/"))
    if not pure.is_absolute() and ".." not in pure.parts:
        return str(pure)
    return path.name


def _expand(
    inputs: Iterable[str | os.PathLike[str]], *, base: Path | None
) -> Iterator[VideoSource]:
    for raw in inputs:
        text = os.fspath(raw)
        if text.startswith("@"):
            if urls.is_url(text[1:]):
                yield from _expand_url_list(text[1:])
                continue
            list_path = Path(text[1:])
            if base is not None and not list_path.is_absolute():
                list_path = base / list_path
            yield from _expand_list(list_path)
            continue
        if urls.is_url(text):
            yield from _expand_url(text, listed=base is not None)
            continue
        path = urls.as_location(text)
        assert isinstance(path, Path)
        if base is not None and not path.is_absolute():
            path = base / path
        if path.is_dir():
            root = path.absolute()
            for video in _walk_videos(root):
                key = video.relative_to(root).as_posix()
                yield VideoSource(video.absolute(), root.name if key == "." else key)
        elif base is not None:
            # A list entry: kept even when missing so the run records it as a failed video.
            yield VideoSource(path.absolute(), _list_key(text, path))
        elif path.exists():
            yield VideoSource(path.absolute(), path.name)
        else:
            raise InputError(f"{text}: no such file or directory")


def _expand_list(list_path: Path) -> Iterator[VideoSource]:
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"@{list_path}: cannot read the list ({error.strerror})") from error
    entries = [line.strip() for line in lines]
    yield from _expand(
        [e for e in entries if e and not e.startswith("#")], base=list_path.absolute().parent
    )


def _expand_url(url: str, *, listed: bool) -> Iterator[VideoSource]:
    """One video URL, or the videos of a folder or glob URL. A list's line names one video."""
    if listed or not urls.looks_like_folder(url, is_video_file):
        yield VideoSource(url, urls.url_name(url) or "video")
        return
    try:
        found = urls.list_files(url, is_video_file)
    except urls.StorageError as error:
        raise InputError(str(error)) from error
    if not found:
        raise InputError(f"{urls.mask_url(url)}: no videos found there")
    for address, key in found:
        yield VideoSource(address, key)


def _expand_url_list(list_url: str) -> Iterator[VideoSource]:
    """``@URL``: a list file read through fsspec; relative lines are under its folder."""
    try:
        text = urls.read_bytes(list_url).decode("utf-8")
    except (urls.FetchError, UnicodeDecodeError) as error:
        raise InputError(f"@{urls.mask_url(list_url)}: cannot read the list ({error})") from error
    folder = urls.url_parent(list_url)
    for line in text.splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        if urls.is_url(entry):
            yield VideoSource(entry, urls.url_name(entry) or "video")
        elif PurePosixPath(entry).is_absolute():
            yield VideoSource(Path(entry), Path(entry).name)
        else:
            yield VideoSource(urls.join_url(folder, entry), _list_key(entry, Path(entry)))


def discover_videos(inputs: Iterable[str | os.PathLike[str]]) -> list[VideoSource]:
    """Expand inputs into the list of videos to process, each with a unique output key.

    Args:
        inputs: Files, folders (searched recursively for video extensions) and ``@list.txt``
            files (one path per line, relative to the list's folder; ``#`` starts a comment);
            each may be a URL (see the module's docstring).

    Returns:
        Videos in a stable order; the same file named twice appears once. Folders are
        followed through symlinks, each visited once (a link back to a parent is skipped).
        A sub-folder that cannot be listed is returned as a source of its own, so that the
        run records it as failed (``"cannot list folder: permission denied"``) and goes on.

    Raises:
        InputError: A file or folder named directly does not exist, a folder URL cannot be
            listed or holds no video, or a list can't be read.
        UsageError: A URL whose back-end is not installed (the message names the pip line).
    """
    sources: list[VideoSource] = []
    seen_paths: set[Path | str] = set()
    keys = _KeySet()
    for source in _expand(inputs, base=None):
        if source.path in seen_paths:
            continue
        seen_paths.add(source.path)
        sources.append(VideoSource(source.path, keys.claim(safe_key(source.key))))
    return sources


class _KeySet:
    """Keys handed out so far, compared without letter case, with their folder prefixes."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.folders: set[str] = set()

    def _clashes(self, key: str) -> bool:
        folded = key.casefold()
        parts = folded.split("/")
        prefixes = ["/".join(parts[:i]) for i in range(1, len(parts))]
        return (
            folded in self.keys
            or folded in self.folders
            or any(prefix in self.keys for prefix in prefixes)
        )

    def claim(self, key: str) -> str:
        first, _, rest = key.partition("/")
        candidate, number = key, 1
        while self._clashes(candidate):
            number += 1
            candidate = f"{first}~{number}" + (f"/{rest}" if rest else "")
        parts = candidate.casefold().split("/")
        self.keys.add(candidate.casefold())
        self.folders.update("/".join(parts[:i]) for i in range(1, len(parts)))
        return candidate
