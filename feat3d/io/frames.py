"""Folders of frame images read as videos (Hara et al.'s ``image_00001.jpg`` ... folders).

A *frame folder* holds one video as numbered images: ``image_%05d.jpg`` (Hara et al.'s
``generate_video_jpgs.py``), ``img_%05d.jpg`` (TSN, MMAction2) or any names that sort into
frame order (``frame_1.png`` ... ``frame_10.png`` sort by their numbers). When names follow
several patterns, the largest group of one prefix and extension is the video (a stray
``thumbnail.png`` beside ``image_*.jpg`` is not a frame). A folder is read as a video:

- when a frame rate is given (``--frame-rate``): every folder holding images and no video
  files;
- without it, when it holds one of the files Hara et al.'s scripts write beside the images:
  ``n_frames`` (``n_frames_ucf101_hmdb51.py``, ``n_frames_kinetics.py``: the highest frame
  number) or ``fps`` (``fps.py``: the source video's frame rate).

Frame ``i`` (0-based, in sorted order) is shown at ``i / rate`` seconds for ``1 / rate``; the
rate is the one given, else the ``fps`` file's, else :data:`DEFAULT_FRAME_RATE` (the default
of pytorchvideo's ``FrameVideo``). Each image is decoded on its own with PyAV (FFmpeg's image
demuxer) and converted by the video decoder's resize path (:class:`~.decode._Converter`), one
image at a time, so frames come out as :func:`~feat3d.io.iter_frames` gives them and the
same clip rules, ``fps`` ticks and ``start``/``end`` windows apply (a window starts at its
image: nothing before it is read).

A missing image (a gap in the numbers, or fewer images than ``n_frames`` says) or one that
cannot be decoded fails the video with one line naming the file.
"""

from __future__ import annotations

import math
import os
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import av.error

from .decode import (
    _EPS,
    Frame,
    VideoDecodeError,
    VideoInfo,
    _checked_args,
    _Converter,
    _every_frame,
    _Raw,
    _reason,
    _ticks,
    _Window,
)
from .discover import is_frame_image

__all__ = [
    "DEFAULT_FRAME_RATE",
    "FrameFolder",
    "iter_folder_frames",
    "open_frame_folder",
    "read_frame_folder",
]

#: Frame rate of a folder without ``--frame-rate`` and without an ``fps`` file (as
#: pytorchvideo's ``FrameVideo``).
DEFAULT_FRAME_RATE = 30.0

#: The keyword arguments of :func:`~feat3d.io.iter_frames` and their defaults.
_DEFAULTS: dict[str, Any] = {
    "size": 112, "crop": 112, "threads": 0, "info_out": None, "fps": None, "start": None,
    "end": None, "stats": None, "warnings_out": None,
}  # fmt: skip

_NUMBERED = re.compile(r"^(.*?)(\d+)$")


@dataclass(frozen=True)
class FrameFolder:
    """A frame folder's images and rate.

    Attributes:
        path: The folder.
        files: Image file names in frame order.
        rate: Frames per second (given, from the ``fps`` file, or the default).
        declared: Frame count from the ``n_frames`` file, ``None`` without one.
    """

    path: Path
    files: tuple[str, ...]
    rate: Fraction
    declared: int | None


def _pattern(name: str) -> tuple[str, str, int | None]:
    """``(prefix, extension, number)`` of an image name (``number`` None without digits)."""
    stem, ext = os.path.splitext(name)
    match = _NUMBERED.match(stem)
    if match is None:
        return stem, ext.lower(), None
    return match.group(1), ext.lower(), int(match.group(2))


def _frame_names(names: list[str]) -> list[str]:
    """The images that make up the video, in frame order (see the module notes)."""
    images = [name for name in names if is_frame_image(name)]
    if not images:
        return []
    groups = Counter(_pattern(name)[:2] for name in images)
    (prefix, ext), _ = max(groups.items(), key=lambda kv: (kv[1], kv[0]))
    chosen = [name for name in images if _pattern(name)[:2] == (prefix, ext)]
    return sorted(chosen, key=lambda name: (_pattern(name)[2] or -1, name))


def _value_file(path: Path, *, kind: type) -> float | int | None:
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise VideoDecodeError(f"cannot read {path.name}: {_reason(e)}") from e
    try:
        value = kind(float(text)) if kind is int else kind(text)
    except ValueError as e:
        raise VideoDecodeError(f"{path.name}: not a number ({text[:20]!r})") from e
    if value <= 0 and not (kind is int and value == 0):
        raise VideoDecodeError(f"{path.name}: must be positive, got {text[:20]!r}")
    return value


def read_frame_folder(
    path: str | os.PathLike[str], *, frame_rate: float | None = None
) -> FrameFolder:
    """List a frame folder and check that its numbered images have no gaps.

    Args:
        path: The folder.
        frame_rate: Frames per second; ``None``: the ``fps`` file's, else
            :data:`DEFAULT_FRAME_RATE`.

    Raises:
        VideoDecodeError: The folder cannot be listed, holds no images, an image is missing
            (a gap in the numbers, or fewer than ``n_frames`` says), or ``fps``/``n_frames``
            is not a number.
    """
    folder = Path(path)
    try:
        names = os.listdir(folder)
    except OSError as e:
        reason = "permission denied" if isinstance(e, PermissionError) else _reason(e)
        raise VideoDecodeError(f"cannot list folder: {reason}") from e
    files = _frame_names(names)
    if not files:
        raise VideoDecodeError("is a directory, not a video file nor a folder of frame images")
    if frame_rate is None:
        frame_rate = _value_file(folder / "fps", kind=float) or DEFAULT_FRAME_RATE
    declared = _value_file(folder / "n_frames", kind=int)
    _check_numbers(files, declared)
    rate = Fraction(float(frame_rate)).limit_denominator(1_000_000)
    return FrameFolder(folder, tuple(files), rate, int(declared) if declared else None)


def _check_numbers(files: list[str], declared: float | int | None) -> None:
    """Raise for a gap in the image numbers or fewer images than ``n_frames`` declares."""
    numbers = [_pattern(name)[2] for name in files]
    if None not in numbers:
        for before, after, name in zip(numbers, numbers[1:], files, strict=False):
            if after != before + 1:  # type: ignore[operator]
                missing = _renumber(name, before + 1)  # type: ignore[operator]
                raise VideoDecodeError(f"missing frame image {missing} (after {name})")
    if declared and len(files) < declared:
        last = numbers[-1]
        missing = _renumber(files[-1], last + 1) if last is not None else "after " + files[-1]
        raise VideoDecodeError(
            f"truncated: n_frames says {int(declared)}, found {len(files)} images "
            f"(first missing: {missing})"
        )


def _renumber(name: str, number: int) -> str:
    """``name`` with its frame number replaced by ``number``, digits padded alike."""
    stem, ext = os.path.splitext(name)
    match = _NUMBERED.match(stem)
    assert match is not None
    return f"{match.group(1)}{number:0{len(match.group(2))}d}{ext}"


def _decode_image(path: Path) -> av.VideoFrame:
    """The picture of one image file, decoded by FFmpeg's image demuxer."""
    try:
        with av.open(str(path), mode="r", metadata_errors="ignore") as container:
            if not container.streams.video:
                raise VideoDecodeError(f"{path.name}: not an image")
            for frame in container.decode(video=0):
                return frame
    except VideoDecodeError:
        raise
    except FileNotFoundError as e:
        raise VideoDecodeError(f"missing frame image {path.name}") from e
    except (av.error.FFmpegError, OSError, EOFError, ValueError) as e:
        raise VideoDecodeError(f"{path.name}: cannot decode image ({_reason(e)})") from e
    raise VideoDecodeError(f"{path.name}: cannot decode image (no picture in the file)")


def _info(folder: FrameFolder, first: av.VideoFrame, codec: str) -> VideoInfo:
    n = len(folder.files)
    return VideoInfo(
        path=folder.path,
        width=first.width,
        height=first.height,
        fps=float(folder.rate),
        n_frames_declared=n,
        duration=float(n / folder.rate),
        rotation=0,
        codec=codec,
        constant_rate=True,
    )


def _codec(path: Path) -> str:
    ext = path.suffix.lower()
    return {".jpg": "mjpeg", ".jpeg": "mjpeg"}.get(ext, ext.lstrip("."))


def open_frame_folder(
    path: str | os.PathLike[str], *, frame_rate: float | None = None
) -> VideoInfo:
    """Probe a frame folder as :func:`~feat3d.io.open_video` probes a video: list it and
    decode its first image. ``n_frames_declared`` is the number of images.

    Raises:
        VideoDecodeError: See :func:`read_frame_folder`, or the first image cannot be decoded.
    """
    folder = read_frame_folder(path, frame_rate=frame_rate)
    first = folder.path / folder.files[0]
    return _info(folder, _decode_image(first), _codec(first))


def _raws(
    folder: FrameFolder, first: int, stats: dict[str, int], info_out: list[VideoInfo] | None
) -> Iterator[_Raw]:
    """Images ``first``, ``first + 1``, ... decoded one at a time, timed by the rate."""
    period = float(1 / folder.rate)
    for index in range(first, len(folder.files)):
        image = folder.path / folder.files[index]
        frame = _decode_image(image)
        stats["decoded"] += 1
        if index == first and info_out is not None:
            info_out.append(_info(folder, frame, _codec(image)))
        yield _Raw(index, float(index / folder.rate), period, frame)


def iter_folder_frames(
    path: str | os.PathLike[str], *, frame_rate: float | None = None, **options: Any
) -> Iterator[Frame]:
    """Frames of a frame folder, as :func:`~feat3d.io.iter_frames` yields a video's.

    ``options`` are the keyword arguments of :func:`~feat3d.io.iter_frames`, with its
    defaults (``size``, ``crop``, ``fps``, ``start``, ``end``, ``info_out``, ``stats``;
    ``threads`` and ``warnings_out`` are accepted and unused: one image is one picture, and
    a damaged image fails the video). ``frame_rate``: frames per second, ``None`` for the
    ``fps`` file's or :data:`DEFAULT_FRAME_RATE`.

    Raises:
        ValueError: Invalid arguments (on call).
        VideoDecodeError: On the first ``next()``: the reasons of :func:`read_frame_folder`;
            later: an image that is missing or cannot be decoded (named in the message), or
            ``start`` past the last frame.
    """
    given = {**_DEFAULTS, **options}
    info_out = given.pop("info_out")
    size_v, crop_hw, window = _checked_args(**given)
    if frame_rate is not None and (not math.isfinite(frame_rate) or frame_rate <= 0):
        raise ValueError(f"frame_rate must be a positive number, got {frame_rate!r}")
    stats = given["stats"]
    return _iter_folder(Path(path), frame_rate, size_v, crop_hw, info_out, window, stats)


def _iter_folder(
    path: Path,
    frame_rate: float | None,
    size: int | tuple[int, int] | None,
    crop: tuple[int, int] | None,
    info_out: list[VideoInfo] | None,
    window: _Window,
    stats: dict[str, int] | None,
) -> Iterator[Frame]:
    stats = {} if stats is None else stats
    stats["decoded"] = 0
    folder = read_frame_folder(path, frame_rate=frame_rate)
    start, end, rate = window.start, window.end, window.rate
    duration = len(folder.files) / folder.rate
    first = 0
    if start:  # the image on screen at ``start``: nothing before it is read
        if float(start) >= duration - _EPS:
            raise VideoDecodeError(
                f"start {float(start):.3f} s is past the end of the video ({float(duration):.3f} s)"
            )
        first = math.floor(start * folder.rate + Fraction(_EPS))
    raws = _raws(folder, first, stats, info_out)
    convert = _Converter(None, size=size, crop=crop)
    try:
        if rate is None:
            yield from _every_frame(raws, convert, start=start, end=end)
        else:
            yield from _ticks(raws, convert, rate=rate, start=start, end=end)
    finally:
        raws.close()
