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

A folder of frame images (Hara et al.'s ``image_00001.jpg`` ...) is one video, keyed like a
file by its path relative to the root, and not searched further (see
:func:`is_frame_folder`): always when it holds Hara's ``n_frames`` or ``fps`` file, and any
folder of images without video files when a frame rate is given (``--frame-rate``).

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


#: Image types a frame folder may hold.
IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".webp"})

#: Files Hara et al.'s scripts write beside a video's images (``n_frames_*.py``: the highest
#: frame number; ``fps.py``: the source's frame rate): they mark a folder as one video.
MARKER_FILES = ("n_frames", "fps")


class InputError(UsageError):
    """An input named on the command line does not exist or cannot be listed."""


@dataclass(frozen=True)
class VideoSource:
    """One video to process.

    Attributes:
        path: Absolute path of the file, or its URL (a ``str``, credentials included).
        key: Its name in the output (posix, relative to the input root it was found under).
        frames: ``[first, end)`` source frames (0-based) to read, ``None`` for the whole
            video: one labelled segment of a longer video (ActivityNet's ``v_<id>#k``
            items). Frame ``i`` is at ``i / rate`` seconds (a frame folder's rate; a video
            file's average rate, exact for constant-rate video), so decoding seeks to the
            segment and stops after it (:func:`feat3d.io.sources.segment_window`).
    """

    path: Path | str
    key: str
    frames: tuple[int, int] | None = None

    @property
    def display(self) -> str:
        """The path, or the URL with its credentials masked: what outputs and messages show."""
        return urls.mask_url(self.path) if isinstance(self.path, str) else str(self.path)


def is_video_file(path: Path | str) -> bool:
    """Whether ``path`` has one of the video extensions feat3d looks for in folders."""
    return PurePosixPath(str(path)).suffix.lower() in VIDEO_EXTENSIONS


def is_frame_image(name: str) -> bool:
    """Whether a file name is an image a frame folder may hold (not a hidden file)."""
    return not name.startswith(".") and os.path.splitext(name)[1].lower() in IMAGE_EXTENSIONS


def is_frame_folder(names: Iterable[str], *, frame_rate: float | None) -> bool:
    """Whether a folder holding the files ``names`` is one video of frame images.

    Args:
        names: The names of the files in the folder (not of its sub-folders).
        frame_rate: The ``--frame-rate`` given: with it any folder holding images and no
            video file is a video; without it, only one with Hara's ``n_frames`` or ``fps``
            file beside the images.
    """
    names = list(names)
    if any(is_video_file(Path(name)) for name in names):
        return False
    if frame_rate is None and not any(name in MARKER_FILES for name in names):
        return False
    return any(is_frame_image(name) for name in names)


def holds_images(folder: Path) -> bool:
    """Whether ``folder`` directly holds frame images (``False`` when it cannot be listed)."""
    try:
        with os.scandir(folder) as entries:
            return any(entry.is_file() and is_frame_image(entry.name) for entry in entries)
    except OSError:
        return False


def _walk_videos(root: Path, frame_rate: float | None = None) -> Iterator[Path]:
    """Video files and frame folders under ``root``, sorted, following symlinks but never
    looping.

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
        if is_frame_folder(filenames, frame_rate=frame_rate):
            dirnames[:] = []  # one video: its sub-folders are not searched
            yield Path(dirpath)
            continue
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
    inputs: Iterable[str | os.PathLike[str]], *, base: Path | None, frame_rate: float | None
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
            yield from _expand_list(list_path, frame_rate)
            continue
        if urls.is_url(text):
            yield from _expand_url(text, listed=base is not None)
            continue
        path = urls.as_location(text)
        assert isinstance(path, Path)
        if base is not None and not path.is_absolute():
            path = base / path
        if path.is_dir():
            yield from _expand_folder(path.absolute(), text, frame_rate)
        elif base is not None:
            # A list entry: kept even when missing so the run records it as a failed video.
            yield VideoSource(path.absolute(), _list_key(text, path))
        elif path.exists():
            yield VideoSource(path.absolute(), path.name)
        else:
            raise InputError(f"{text}: no such file or directory")


def _expand_folder(root: Path, text: str, frame_rate: float | None) -> Iterator[VideoSource]:
    found = False
    for video in _walk_videos(root, frame_rate):
        found = True
        key = video.relative_to(root).as_posix()
        yield VideoSource(video.absolute(), root.name if key == "." else key)
    if not found and frame_rate is None and holds_images(root):
        raise InputError(
            f"{text}: a folder of images, not of videos; give --frame-rate to read it as "
            "one video (Hara's n_frames or fps file beside the images does the same)"
        )


def _expand_list(list_path: Path, frame_rate: float | None) -> Iterator[VideoSource]:
    try:
        lines = list_path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise InputError(f"@{list_path}: cannot read the list ({error.strerror})") from error
    entries = [line.strip() for line in lines]
    yield from _expand(
        [e for e in entries if e and not e.startswith("#")],
        base=list_path.absolute().parent,
        frame_rate=frame_rate,
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


def discover_videos(
    inputs: Iterable[str | os.PathLike[str]], *, frame_rate: float | None = None
) -> list[VideoSource]:
    """Expand inputs into the list of videos to process, each with a unique output key.

    Args:
        inputs: Files, folders (searched recursively for video extensions and frame
            folders) and ``@list.txt`` files (one path per line, relative to the list's
            folder; ``#`` starts a comment); each may be a URL (see the module's docstring).
        frame_rate: ``--frame-rate``: every folder of images (without video files) is a
            video. Without it only folders with Hara's ``n_frames`` or ``fps`` file are.

    Returns:
        Videos in a stable order; the same file named twice appears once. Folders are
        followed through symlinks, each visited once (a link back to a parent is skipped).
        A sub-folder that cannot be listed is returned as a source of its own, so that the
        run records it as failed (``"cannot list folder: permission denied"``) and goes on.

    Raises:
        InputError: A file or folder named directly does not exist, a folder URL cannot be
            listed or holds no video, a list can't be read, or a folder named directly
            holds images but no video (without ``frame_rate``).
        UsageError: A URL whose back-end is not installed (the message names the pip line).
    """
    sources: list[VideoSource] = []
    seen_paths: set[Path | str] = set()
    keys = _KeySet()
    for source in _expand(inputs, base=None, frame_rate=frame_rate):
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
