"""Find the videos named by command-line inputs: files, folders (recursive) and ``@list.txt``.

Each video gets a *key*, the name it has in the output: its path relative to the input root it
was found under, in posix form (``class_a/clip01.mp4``). A file named directly is keyed by its
file name; a line of a list file by the path as written in the list when that is relative and
stays inside the list's folder, else by its file name. Two different files that would get the
same key are told apart by a suffix: the second becomes ``key~2``, the third ``key~3`` (in
discovery order, which is sorted and therefore stable between runs).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

VIDEO_EXTENSIONS = frozenset(
    {
        ".mp4", ".m4v", ".mov", ".avi", ".mkv", ".webm", ".mpg", ".mpeg", ".flv",
        ".wmv", ".3gp", ".ogv", ".ts", ".mts", ".m2ts", ".vob", ".gif",
    }
)  # fmt: skip


class InputError(Exception):
    """An input named on the command line does not exist or cannot be listed."""


@dataclass(frozen=True)
class VideoSource:
    """One video to process.

    Attributes:
        path: Absolute path of the file.
        key: Its name in the output (posix, relative to the input root it was found under).
    """

    path: Path
    key: str


def is_video_file(path: Path) -> bool:
    """Whether ``path`` has one of the video extensions feat3d looks for in folders."""
    return path.suffix.lower() in VIDEO_EXTENSIONS


def _walk_videos(root: Path) -> Iterator[Path]:
    """Video files under ``root``, sorted, following symlinks but never looping."""
    seen: set[tuple[int, int]] = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        stat = os.stat(dirpath)
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
            list_path = Path(text[1:])
            if base is not None and not list_path.is_absolute():
                list_path = base / list_path
            yield from _expand_list(list_path)
            continue
        path = Path(text)
        if base is not None and not path.is_absolute():
            path = base / path
        if path.is_dir():
            root = path.absolute()
            for video in _walk_videos(root):
                yield VideoSource(video.absolute(), video.relative_to(root).as_posix())
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


def discover_videos(inputs: Iterable[str | os.PathLike[str]]) -> list[VideoSource]:
    """Expand inputs into the list of videos to process, each with a unique output key.

    Args:
        inputs: Files, folders (searched recursively for video extensions) and ``@list.txt``
            files (one path per line, relative to the list's folder; ``#`` starts a comment).

    Returns:
        Videos in a stable order; the same file named twice appears once.

    Raises:
        InputError: A file or folder named directly does not exist, or a list can't be read.
    """
    sources: list[VideoSource] = []
    seen_paths: set[Path] = set()
    key_counts: dict[str, int] = {}
    for source in _expand(inputs, base=None):
        if source.path in seen_paths:
            continue
        seen_paths.add(source.path)
        key = source.key
        count = key_counts.get(key, 0) + 1
        key_counts[key] = count
        if count > 1:
            key = f"{key}~{count}"
        sources.append(VideoSource(source.path, key))
    return sources
