"""Streaming video decoding with PyAV.

Frames come out of :func:`iter_frames` one at a time, already converted to RGB and resized
inside libswscale, so a whole video is never held in memory. :func:`open_video` probes a file
(container header plus the first decoded frame) without decoding the rest.

Conventions:

- ``Frame.index`` counts decoded frames in presentation order (0-based); for variable frame
  rate videos it is *not* ``time * fps``. With a target ``fps`` it is the index of the
  *source* frame shown at the frame's tick (repeated or skipping as the rates require).
- ``Frame.time`` is ``pts * time_base`` minus the stream's ``start_time``, in seconds, and
  never decreases. AVI stores no presentation timestamps (FFmpeg's made-up ones come out
  permuted when there are B-frames), so there, and for frames without a pts, it is
  ``index / fps``.
- Output images are upright as a player shows them: the display matrix (``rotate`` tag of
  phone videos) is honoured.
- Resampling to a frame rate and time windows happen at decode time, by presentation time
  (``iter_frames(fps=, start=, end=)``): nothing is re-encoded, and a window starting late
  seeks back to a keyframe instead of decoding from the beginning.
- Every failure surfaces as :class:`VideoDecodeError` whose message is a one-line reason; the
  caller prefixes the path.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from av.stream import Discard
from av.video.reformatter import Interpolation, VideoReformatter

from ..errors import RunError
from ..urls import DEFAULT_RETRIES, FetchError, RetryingFile, as_location, mask_url

__all__ = ["Frame", "VideoDecodeError", "VideoInfo", "iter_frames", "open_video", "tick_count"]

#: Allowed shortfall, as a fraction of the declared duration (or frame count), before a video
#: counts as truncated. A few frames more are always allowed (see ``_TRUNCATION_FRAMES``).
_TRUNCATION_FRACTION = 0.05
_TRUNCATION_FRAMES = 3

#: Demuxers whose packets carry no presentation timestamps: FFmpeg fabricates pts from the
#: decode order, so with B-frames they come out permuted (h264 in AVI gives 1, 4, 3, 5, 2, ...).
#: AVI is constant-rate by design; frame times there are ``index / fps``.
_NO_PTS_FORMATS = frozenset({"avi"})


class VideoDecodeError(RunError):
    """A video could not be opened or decoded completely.

    The message is a single line giving the reason (``"empty file"``, ``"no video stream"``,
    ``"truncated: ..."``); the caller adds the path.
    """


@dataclass(frozen=True)
class VideoInfo:
    """What the container and the first decoded frame say about a video.

    Attributes:
        path: The file (a ``str`` for a URL).
        width: Display width in pixels, after rotation and sample aspect ratio.
        height: Display height in pixels, after rotation.
        fps: Average frame rate (falls back to the guessed rate, the base rate, then
            ``1 / time_base``).
        n_frames_declared: Frame count from the container header, ``None`` when it has none
            (Matroska/WebM, most streams without an index).
        duration: Duration of the video stream in seconds, ``None`` when unknown.
        rotation: Counterclockwise rotation in degrees (0, 90, 180 or 270) applied to coded
            frames to display them upright.
        codec: FFmpeg decoder name (``"h264"``, ``"mpeg4"``, ...).
        constant_rate: Whether the header says every frame lasts ``1 / fps``, so frame
            ``i`` is at ``i / fps`` seconds: ``True`` for AVI (constant-rate by design) and
            for MP4/MOV whose average rate (frames / duration) equals the rate of its
            sample durations (``r_frame_rate``); ``False`` for MP4/MOV where they differ
            (variable frame rate); ``None`` where the header cannot tell (Matroska and
            others report the first frames' rate). Not part of equality comparisons.
    """

    path: Path | str
    width: int
    height: int
    fps: float
    n_frames_declared: int | None
    duration: float | None
    rotation: int
    codec: str
    constant_rate: bool | None = field(default=None, compare=False)


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based position among decoded frames, in presentation order (with a target
            ``fps``: the source frame shown at ``time``).
        time: Presentation time in seconds, relative to the stream's start time
            (``index / fps`` for AVI and for frames without a pts; with a target ``fps``, the
            tick).
        duration: Seconds until the next frame (from the next frame's timestamp; for the last
            frame the frame's own duration, else ``1 / fps``; with a target ``fps``,
            ``1 / fps``).
        image: ``(H, W, 3)`` uint8 RGB, C-contiguous.
    """

    index: int
    time: float
    duration: float
    image: np.ndarray


# --------------------------------------------------------------------------------------------
# Size planning


def _as_hw(value: int | tuple[int, int] | None, *, name: str) -> tuple[int, int] | None:
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        pair = (int(value), int(value))
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name} must be an int, a (height, width) pair or None, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair


@dataclass(frozen=True)
class _Plan:
    """How one coded frame geometry becomes an output image."""

    width: int  # swscale output width (pre-rotation)
    height: int  # swscale output height (pre-rotation)
    quarter_turns: int  # np.rot90 k, counterclockwise
    top: int
    left: int
    crop_h: int | None
    crop_w: int | None


def _plan(
    *,
    coded_w: int,
    coded_h: int,
    sar: Fraction,
    rotation: int,
    size: int | tuple[int, int] | None,
    crop: tuple[int, int] | None,
) -> _Plan:
    """Compute resize target, rotation and crop box for one frame geometry.

    Rules, applied to the *displayed* frame (after rotation and, when resizing, after the
    sample aspect ratio): ``size`` int sets the short side (aspect kept, long side rounded);
    a ``(H, W)`` pair is exact; ``None`` keeps the coded pixels. If the result is smaller than
    ``crop`` in either dimension, it is scaled up uniformly until the crop fits (never padded).
    """
    k = _quarter_turns(rotation)
    if size is None:
        disp_w, disp_h = float(coded_w), float(coded_h)
    else:
        disp_w, disp_h = coded_w * float(sar), float(coded_h)
    if k % 2:
        disp_w, disp_h = disp_h, disp_w

    if size is None:
        th, tw = round(disp_h), round(disp_w)
    elif isinstance(size, tuple):
        th, tw = size
    elif disp_w <= disp_h:
        tw, th = size, round(disp_h * size / disp_w)
    else:
        th, tw = size, round(disp_w * size / disp_h)
    th, tw = max(1, th), max(1, tw)

    ch = cw = None
    top = left = 0
    if crop is not None:
        ch, cw = crop
        scale = max(ch / th, cw / tw)
        if scale > 1:
            th, tw = max(ch, round(th * scale)), max(cw, round(tw * scale))
        # torchvision's CenterCrop offsets.
        top, left = round((th - ch) / 2.0), round((tw - cw) / 2.0)

    rw, rh = (th, tw) if k % 2 else (tw, th)
    return _Plan(rw, rh, k, top, left, ch, cw)


def _quarter_turns(rotation: float) -> int:
    """Counterclockwise quarter turns for a display-matrix angle (nearest multiple of 90)."""
    if rotation is None or math.isnan(rotation):
        return 0
    return round(rotation / 90.0) % 4


# --------------------------------------------------------------------------------------------
# Probing helpers


def _check_path(path: Path) -> None:
    try:
        st = path.stat()
    except FileNotFoundError as e:
        raise VideoDecodeError("no such file") from e
    except PermissionError as e:
        raise VideoDecodeError("permission denied") from e
    except OSError as e:
        raise VideoDecodeError(f"cannot access file: {e.strerror or e}") from e
    if path.is_dir():
        try:
            os.scandir(path).close()
        except OSError as e:  # discovery passes on folders it could not list
            reason = "permission denied" if isinstance(e, PermissionError) else _reason(e)
            raise VideoDecodeError(f"cannot list folder: {reason}") from e
        raise VideoDecodeError("is a directory, not a video file")
    if st.st_size == 0:
        raise VideoDecodeError("empty file")


def _sniff(path: Path) -> str | None:
    """Name a container family from the file's first bytes, for clearer open errors."""
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError:
        return None
    if len(head) >= 8 and head[4:8] in (b"ftyp", b"moov", b"mdat", b"free", b"wide"):
        return "mp4"
    if head[:4] == b"\x1a\x45\xdf\xa3":
        return "matroska"
    if head[:4] == b"RIFF":
        return "avi"
    return None


def _open_error(path: Path, exc: BaseException) -> VideoDecodeError:
    if isinstance(exc, FileNotFoundError):
        return VideoDecodeError("no such file")
    if isinstance(exc, PermissionError):
        return VideoDecodeError("permission denied")
    if isinstance(exc, IsADirectoryError):
        return VideoDecodeError("is a directory, not a video file")
    family = _sniff(path)
    if isinstance(exc, EOFError):
        return VideoDecodeError("truncated: end of file while reading the container header")
    if isinstance(exc, av.error.InvalidDataError):
        if family == "mp4":
            # A file cut before its 'moov' index (written at the end unless faststart).
            return VideoDecodeError("truncated or corrupt MP4/MOV: no usable 'moov' index")
        if family is not None:
            return VideoDecodeError(f"truncated or corrupt {family} container header")
        return VideoDecodeError(f"not a video file (ffmpeg: {_reason(exc)})")
    if family is not None and isinstance(exc, OSError) and exc.errno == errno.EIO:
        return VideoDecodeError(
            f"I/O error reading the {family} container header (truncated or corrupt file?)"
        )
    return VideoDecodeError(f"cannot open container: {_reason(exc)}")


def _reason(exc: BaseException) -> str:
    """One-line text of an FFmpeg/OS error without the file name PyAV appends."""
    if isinstance(exc, av.error.FFmpegError) and exc.strerror:
        return str(exc.strerror)
    if isinstance(exc, OSError) and exc.strerror:
        return str(exc.strerror)
    return " ".join(str(exc).split()) or type(exc).__name__


def _video_stream(container: av.container.InputContainer) -> av.video.stream.VideoStream:
    if not container.streams:
        raise VideoDecodeError("truncated or corrupt header: no streams found")
    if not container.streams.video:
        kinds = sorted({s.type for s in container.streams})
        found = "audio only" if kinds == ["audio"] else f"found: {', '.join(kinds)}"
        raise VideoDecodeError(f"no video stream ({found})")
    if _is_still_image(container):
        name = container.format.name
        codec = container.streams.video[0].codec_context
        kind = name.removesuffix("_pipe") if name.endswith("_pipe") or codec is None else codec.name
        kind = kind.upper()
        raise VideoDecodeError(f"not a video file (a still {kind} image)")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoDecodeError(
            "video stream has no decoder parameters (unsupported codec, or truncated header)"
        )
    return stream


def _is_still_image(container: av.container.InputContainer) -> bool:
    """Whether FFmpeg opened the file with an image demuxer (``png_pipe``, ``image2``, ...):
    it decodes a picture saved under a video name as a one-frame video, which would give
    features of a still image looped into a clip."""
    name = container.format.name
    return name == "image2" or name.endswith("_pipe")


def _fps(stream: av.video.stream.VideoStream) -> float:
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate:
            return float(rate)
    if stream.time_base:
        return float(1 / stream.time_base)
    return 0.0


def _parse_hms(text: str) -> float | None:
    """Parse Matroska's per-track ``DURATION`` tag (``HH:MM:SS.nnnnnnnnn``)."""
    try:
        h, m, s = text.strip().split(":")
        return int(h) * 3600 + int(m) * 60 + float(s)
    except ValueError:
        return None


def _duration(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> float | None:
    """Duration of the video stream in seconds, from the most specific source available."""
    if stream.duration and stream.time_base:
        return float(stream.duration * stream.time_base)
    tag = stream.metadata.get("DURATION") or stream.metadata.get("duration")
    if tag:
        parsed = _parse_hms(tag)  # the track's end time, not its length
        if parsed:
            start = float(stream.start_time * stream.time_base) if stream.start_time else 0.0
            return max(0.0, parsed - start)
    # The container duration spans all streams; only trust it when video is all there is.
    if container.duration and len(container.streams) == 1:
        return container.duration / av.time_base
    return None


def _sar(stream: av.video.stream.VideoStream) -> Fraction:
    for sar in (stream.sample_aspect_ratio, stream.codec_context.sample_aspect_ratio):
        if sar and sar > 0:
            return Fraction(sar)
    return Fraction(1)


def _make_info(
    path: Path | str,
    container: av.container.InputContainer,
    stream: av.video.stream.VideoStream,
    first: av.VideoFrame,
) -> VideoInfo:
    k = _quarter_turns(first.rotation)
    w = round(first.width * float(_sar(stream)))
    h = first.height
    if k % 2:
        w, h = h, w
    return VideoInfo(
        path=mask_url(path) if isinstance(path, str) else path,
        width=w,
        height=h,
        fps=_fps(stream),
        n_frames_declared=stream.frames or None,
        duration=_duration(container, stream),
        rotation=k * 90,
        codec=stream.codec_context.name,
        constant_rate=_constant_rate(container, stream),
    )


#: Demuxers whose average rate comes from the sample table (frames / duration) and whose base
#: rate (``r_frame_rate``) comes from the sample durations, so equal rates mean constant rate.
_INDEXED_FORMATS = frozenset({"mov,mp4,m4a,3gp,3g2,mj2"})


def _constant_rate(
    container: av.container.InputContainer, stream: av.video.stream.VideoStream
) -> bool | None:
    if container.format.name in _NO_PTS_FORMATS:
        return True
    if container.format.name not in _INDEXED_FORMATS:
        return None
    average, base = stream.average_rate, stream.base_rate
    if not average or not base:
        return None
    return Fraction(average) == Fraction(base)


@contextlib.contextmanager
def _open(
    path: Path | str, retries: int = DEFAULT_RETRIES
) -> Iterator[av.container.InputContainer]:
    """The container of a file, or of a URL (a ``str``), closed on leaving."""
    if isinstance(path, str):
        handle, container = _open_url(path, retries)
        with handle, container:
            yield container
        return
    _check_path(path)
    try:
        container = av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, EOFError) as e:
        raise _open_error(path, e) from e
    with container:
        yield container


def _open_url(url: str, retries: int) -> tuple[RetryingFile, av.container.InputContainer]:
    """A URL's file object and container, which PyAV reads through it (range requests
    through a block cache; no local copy)."""
    try:
        handle = RetryingFile(url, retries=retries)
    except FetchError as e:
        raise VideoDecodeError(str(e.strerror)) from e
    if handle.size == 0:
        handle.close()
        raise VideoDecodeError("empty file")
    try:
        container = av.open(handle, mode="r", metadata_errors="ignore")
    except FetchError as e:
        handle.close()
        raise VideoDecodeError(f"cannot fetch: {e.strerror}") from e
    except (av.error.FFmpegError, OSError, EOFError) as e:
        handle.close()
        if isinstance(e, EOFError):
            raise VideoDecodeError("truncated: end of file while reading the header") from e
        raise VideoDecodeError(f"not a video file, or a corrupt header ({_reason(e)})") from e
    return handle, container


class _DamageLog:
    """Packets the decoder rejected and frames it concealed errors in, for one video.

    A packet that fails to decode (damaged bytes mid-stream) is skipped: its frame, and the
    frames that reference it until the next keyframe, are missing or concealed, while the
    rest of the video decodes. The damage is reported once per video (:meth:`warnings`).
    """

    def __init__(self) -> None:
        self.packets = 0
        self.failed = 0
        self.concealed = 0
        self.first: tuple[int, str] | None = None  # frames decoded before it, reason

    def decode(self, packet: av.Packet, n_decoded: int) -> list[av.VideoFrame]:
        if packet.size:
            self.packets += 1
        try:
            frames = packet.decode()
        except MemoryError:
            raise
        except (av.error.FFmpegError, OSError, ValueError) as e:
            self.failed += 1
            if self.first is None:
                self.first = (n_decoded, _reason(e))
            return []
        self.concealed += sum(1 for frame in frames if frame.is_corrupt)
        return frames

    def warnings(self) -> list[str]:
        found = []
        if self.failed and self.first is not None:
            after, reason = self.first
            found.append(
                f"decode errors: {self.failed} of {self.packets} packets could not be decoded "
                f"(first after {after} frames: {reason}); their frames are missing"
            )
        if self.concealed:
            found.append(f"decode errors: {self.concealed} frames had damage concealed")
        return found

    def none_decoded(self, what: str) -> VideoDecodeError:
        if self.failed and self.first is not None:
            return VideoDecodeError(
                f"no frames decoded ({self.failed} of {self.packets} packets could not be "
                f"decoded: {self.first[1]})"
            )
        return VideoDecodeError(f"no frames decoded ({what})")


def _next_packet(packets: Iterator[av.Packet], n_decoded: int) -> av.Packet | None:
    try:
        return next(packets)
    except StopIteration:
        return None
    except EOFError:
        return None
    except (av.error.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"read error after {n_decoded} frames: {_reason(e)}") from e


def _corrupt_error(n_decoded: int, declared: int | None) -> VideoDecodeError:
    of = f" of {declared} declared" if declared else ""
    return VideoDecodeError(
        f"truncated or corrupt: demuxer flagged a partial/corrupt packet after "
        f"{n_decoded}{of} frames"
    )


# --------------------------------------------------------------------------------------------
# Public API


def open_video(path: str | os.PathLike[str], *, retries: int = DEFAULT_RETRIES) -> VideoInfo:
    """Probe a video: read the container header and decode only the first frame.

    The first frame is decoded because the display rotation reaches PyAV as frame side data.

    Args:
        path: Video file, or a URL (``s3://``, ``https://``, ...; see :mod:`feat3d.urls`).
        retries: Tries again after a transient network error (URLs only).

    Returns:
        The video's :class:`VideoInfo`.

    Raises:
        VideoDecodeError: No such file, permission denied, empty file, not a video, truncated
            header, no video stream, or no decodable frame.

    Example:
        >>> info = open_video("clip.mp4")  # doctest: +SKIP
        >>> info.width, info.height, info.fps
        (320, 240, 25.0)
    """
    path = as_location(path)
    with _open(path, retries) as container:
        stream = _video_stream(container)
        packets = container.demux(stream)
        damage = _DamageLog()
        while (packet := _next_packet(packets, 0)) is not None:
            if packet.is_corrupt:
                raise _corrupt_error(0, stream.frames or None)
            frames = damage.decode(packet, 0)
            if frames:
                return _make_info(path, container, stream, frames[0])
        raise damage.none_decoded(f"{damage.packets} packets read")


def iter_frames(
    path: str | os.PathLike[str],
    *,
    size: int | tuple[int, int] | None = 112,
    crop: int | tuple[int, int] | None = 112,
    threads: int = 0,
    info_out: list[VideoInfo] | None = None,
    fps: float | Fraction | None = None,
    start: float | Fraction | None = None,
    end: float | Fraction | None = None,
    stats: dict[str, int] | None = None,
    warnings_out: list[str] | None = None,
    retries: int = DEFAULT_RETRIES,
) -> Iterator[Frame]:
    """Decode a video lazily into upright, resized, centre-cropped RGB frames.

    Pipeline per frame: one reused :class:`~av.video.reformatter.VideoReformatter` converts
    to planar RGB and resizes (bilinear) in libswscale, to the *pre-rotation* size; the small
    image is then rotated with :func:`numpy.rot90` and centre-cropped (torchvision's offsets).
    Only one decoded frame is held back (to compute its duration from the next timestamp, or
    as the frame on screen at the next tick), so memory does not grow with the video's
    length. The container is closed when the generator finishes, raises, or is closed early.

    Sizes (applied to the displayed frame, i.e. after rotation and sample aspect ratio):

    - ``size=int``: the short side becomes ``size``, aspect ratio kept (long side rounded),
      e.g. 64×48 → 149×112 for ``size=112``.
    - ``size=(H, W)``: exact resize, e.g. torchvision's ``(128, 171)``.
    - ``size=None``: no resize (coded pixels, rotated).
    - ``crop``: centre crop (square for an int). A resized frame smaller than the crop in
      either dimension is first scaled up uniformly until the crop fits; nothing is padded.

    Frame rate (``fps=F``): frames are picked by presentation time as they decode, with no
    re-encoding, so videos of any frame rate (variable too) give frames at the same instants.
    Tick ``k`` (``k = 0, 1, ...``) is at ``t_k = t0 + k / F`` seconds, with ``t0 = start``
    (``0``, the stream start, without ``start``). Its frame is the one *on screen* at
    ``t_k``: the last frame whose time is ``<= t_k`` (times within 1 µs count as equal), so
    a source slower than ``F`` repeats frames and a faster one skips frames (skipped frames
    are decoded but never converted to RGB). A tick before the first frame gets the first
    frame. Ticks continue while ``t_k`` is before the end of the last frame's display
    interval (its time plus its duration: the container's frame duration, else
    ``1 / average rate``) and before ``end``. E.g. 40 frames at 25 fps (1.6 s) with
    ``fps=15`` give 24 ticks, sources ``floor(k * 25 / 15) = 0, 1, 3, 5, 6, 8, ...``. The
    yielded :class:`Frame` keeps the *source* frame's ``index`` (so clip segments name
    source frames), with ``time = t_k`` and ``duration = 1 / F``.

    Time window (``start``/``end``, seconds relative to the stream start like
    :attr:`Frame.time`): with ``start > 0`` the demuxer seeks to the nearest keyframe at or
    before ``start`` (``container.seek(pts, backward=True, any_frame=False, stream=...)``)
    and decodes forward. Demuxers without a usable index (MPEG-TS) can land *after* the
    target; then the seek is retried 1 s earlier, doubling the step, and when even that
    fails (or the demuxer cannot seek at all) the file is read from its beginning
    (VideoIO.jl PR #467 handles the same problem so). AVI (no stored timestamps) is never
    seeked: it is decoded from the beginning. Without ``fps``, the frames on screen during
    ``[start, end)`` are yielded: from the one on screen at ``start`` (the last whose time
    is ``<= start``; earlier ones are dropped) up to the last whose time is ``< end``, where
    decoding stops. With ``fps``, the ticks of ``[start, end)``. Either way a ``start`` at
    or after the end of the last frame's display interval raises.

    Frame indices after a seek equal those of a decode from the beginning for constant
    frame rate streams: the first decoded frame gets
    ``round((pts - stream.start_time) * time_base * average_rate)`` (``0`` if it is the
    stream's first frame) and later ones count on from it. For variable frame rate video
    this is an *estimate* (its time times the average rate), and the indices of the frames
    after it are that estimate plus their count; only a decode from the beginning
    (``start`` ``None`` or ``0``) gives exact indices there. Times are always exact (pts).

    Truncation rule (checked before the last frame is yielded, so a truncated video never
    looks complete; not checked when decoding stops at ``end`` or the generator is closed
    early): PyAV 18 opens a truncated MP4 whose ``moov`` index is at the end not at
    all (``InvalidDataError``/``EOFError`` on open); with ``movflags=faststart`` it opens
    and decodes the surviving frames *without* raising, but the demuxer flags the cut packet
    as corrupt (``Packet.is_corrupt``) — single-threaded decoding then raises
    ``InvalidDataError`` while frame threading swallows it, so the flag is checked instead.
    Matroska drops the partial block silently. Hence a video is truncated when (a) any packet
    is flagged corrupt, or (b) after the last frame, the decoded frames end before the
    declared stream duration (stream duration, Matroska ``DURATION`` tag, or container
    duration for video-only files) by more than ``max(3 frames, 5%)``; with no duration, when
    the last frame's index falls short of the header's frame count by that margin. Time is
    preferred over counts because MP4 edit lists legitimately hide frames the header counts.

    Damage (bytes changed mid-stream, as on a bad disk or a broken download that kept its
    length): a packet the decoder rejects is skipped and decoding goes on, so the frames that
    decode are kept; the missing frames shift nothing (times come from pts). When decoding
    ends, ``warnings_out`` gets ``"decode errors: N of M packets could not be decoded (first
    after K frames: <FFmpeg's reason>); their frames are missing"`` and, for frames the
    decoder flagged as concealed, ``"decode errors: N frames had damage concealed"``. A
    video where no packet decodes raises ``"no frames decoded (N of M packets could not be
    decoded: ...)"``, and a damaged video that stops short still fails the truncation rule.

    Not videos: a still image under a video name (FFmpeg opens PNG, JPEG, ... as one-frame
    videos through its image demuxers) raises ``"not a video file (a still PNG image)"``.

    Args:
        path: Video file, or a URL read through fsspec without a local copy (see
            :mod:`feat3d.urls`); a URL that cannot be fetched raises ``VideoDecodeError``
            with the reason (``"cannot fetch: not found (HTTP 404 or no such key)"``).
        size: Resize rule, see above. Default 112 (short side), the papers' protocol.
        crop: Centre crop, ``int`` (square) or ``(H, W)``; ``None`` for no crop.
        threads: Decoder threads; ``0`` lets FFmpeg choose. Frame and slice threading
            (``thread_type="AUTO"``) are enabled before decoding starts.
        info_out: If given, the video's :class:`VideoInfo` is appended to it when the first
            frame is decoded, before any is yielded (saves a second :func:`open_video`).
        fps: Output frame rate (``> 0``; a ``Fraction`` such as ``Fraction(30000, 1001)``
            is exact, a float is read as the nearest fraction with a denominator up to
            10^6); ``None`` yields every decoded frame.
        start: First instant in seconds (``>= 0``); ``None`` starts at the beginning.
        end: Stop before this instant, in seconds (``> start``); ``None`` runs to the end.
        stats: If given, ``stats["decoded"]`` is set to the number of frames the decoder
            produced so far, including dropped and skipped ones (kept up to date while
            iterating, so it is valid after an early ``close()``).
        warnings_out: If given, one line per kind of damage found is appended when decoding
            ends (completely, by an error, or by an early ``close()``), see "Damage" above.
        retries: Tries again after a transient network error (URLs only): a timeout, a
            dropped connection, HTTP 5xx.

    Yields:
        :class:`Frame` objects in presentation order.

    Raises:
        ValueError: Invalid ``size``, ``crop``, ``threads``, ``fps``, ``start`` or ``end``
            (raised on call).
        VideoDecodeError: On the first ``next()``: the reasons of :func:`open_video`; later:
            read or decode errors, truncation, no frames decoded, or
            ``"start ... is past the end ..."``.

    Example:
        >>> for frame in iter_frames("clip.mp4", size=112, crop=112):  # doctest: +SKIP
        ...     frame.image.shape
        (112, 112, 3)
        >>> ticks = iter_frames("clip60.mp4", fps=15, start=2.0, end=3.0)  # doctest: +SKIP
        >>> [(f.index, round(f.time, 3)) for f in ticks][:3]
        [(120, 2.0), (124, 2.067), (128, 2.133)]
    """
    size_v, crop_hw, window = _checked_args(
        size=size, crop=crop, threads=threads, fps=fps, start=start, end=end, stats=stats,
        warnings_out=warnings_out,
    )  # fmt: skip
    if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
        raise ValueError(f"retries must be an int >= 0, got {retries!r}")
    return _iter_frames(
        as_location(path), size_v, crop_hw, threads, info_out, window, stats, warnings_out, retries
    )


def _checked_args(
    *,
    size: int | tuple[int, int] | None,
    crop: int | tuple[int, int] | None,
    threads: int,
    fps: float | Fraction | None,
    start: float | Fraction | None,
    end: float | Fraction | None,
    stats: dict[str, int] | None,
    warnings_out: list[str] | None,
) -> tuple[int | tuple[int, int] | None, tuple[int, int] | None, _Window]:
    """The arguments of :func:`iter_frames` checked (``ValueError``): the resize rule, the
    crop and the time window (also used by the frame-folder reader, :mod:`.frames`)."""
    size_hw = _as_hw(size, name="size")
    size_v = size_hw if size_hw is None or isinstance(size, (tuple, list)) else size_hw[0]
    crop_hw = _as_hw(crop, name="crop")
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an int >= 0, got {threads!r}")
    rate = None if fps is None else _as_rate(fps)
    start_q = None if start is None else _as_seconds(start, name="start")
    end_q = None if end is None else _as_seconds(end, name="end")
    if end_q is not None and end_q <= (start_q or 0):
        raise ValueError(f"end must be after start, got start={start!r}, end={end!r}")
    if stats is not None and not isinstance(stats, dict):
        raise ValueError(f"stats must be a dict or None, got {type(stats).__name__}")
    if warnings_out is not None and not isinstance(warnings_out, list):
        raise ValueError(f"warnings_out must be a list or None, got {type(warnings_out).__name__}")
    return size_v, crop_hw, _Window(rate=rate, start=start_q, end=end_q)


def tick_count(duration: float, *, fps: float | Fraction, start: float | Fraction = 0) -> int:
    """Number of frames ``iter_frames(fps=fps, start=start)`` yields for a video whose last
    frame's display ends at ``duration`` seconds (see the tick rule of :func:`iter_frames`).

    Args:
        duration: End of the last frame's display interval, seconds from the stream start.
        fps: Output frame rate.
        start: First tick, seconds.

    Returns:
        ``#{k >= 0 : start + k / fps < duration}``, with the 1 µs tolerance of the rule.
    """
    span = (Fraction(duration) - _as_seconds(start, name="start")) * _as_rate(fps)
    return max(0, math.ceil(span - _EPS * _as_rate(fps)))


#: Timestamps closer than this (seconds) count as equal when picking frames for ticks and
#: windows; far below any frame period, far above float rounding of pts * time_base.
_EPS = 1e-6


def _as_rate(fps: float | Fraction) -> Fraction:
    if isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction, np.number)):
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    if not math.isfinite(float(fps)) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    rate = Fraction(fps) if isinstance(fps, (int, Fraction)) else Fraction(float(fps))
    return rate.limit_denominator(1_000_000)


def _as_seconds(value: float | Fraction, *, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction, np.number)):
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    if not math.isfinite(float(value)) or value < 0:
        raise ValueError(f"{name} must be a number of seconds >= 0, got {value!r}")
    return Fraction(value) if isinstance(value, (int, Fraction)) else Fraction(float(value))


@dataclass(frozen=True)
class _Window:
    """What to take from the decoded frames: every frame or ticks, within [start, end)."""

    rate: Fraction | None
    start: Fraction | None
    end: Fraction | None


@dataclass
class _Raw:
    """A decoded frame before conversion: index, time, duration (own, else 1 / fps)."""

    index: int
    time: float
    duration: float
    frame: av.VideoFrame


def _prepare(container: av.container.InputContainer, threads: int) -> av.video.stream.VideoStream:
    stream = _video_stream(container)
    stream.thread_type = "AUTO"  # must precede the codec's opening (first decode)
    stream.thread_count = threads
    for other in container.streams:
        if other.index != stream.index:
            other.discard = Discard.all  # the demuxer may skip reading them
    return stream


class _Reader:
    """Packets → decoded frame batches for one stream, with counted, keyframe-safe seeking."""

    def __init__(
        self,
        container: av.container.InputContainer,
        stream: av.video.stream.VideoStream,
        stats: dict[str, int],
    ) -> None:
        self.container = container
        self.stream = stream
        self.stats = stats
        self.declared = stream.frames or None
        self.damage = _DamageLog()
        self.time_base = stream.time_base or Fraction(1, 1)
        self.start_pts = stream.start_time or 0

    def seconds(self, pts: int) -> Fraction:
        return (pts - self.start_pts) * self.time_base

    def batches(self) -> Iterator[list[av.VideoFrame]]:
        """Non-empty lists of decoded frames, from the current position to the end."""
        packets = self.container.demux(self.stream)
        while (packet := _next_packet(packets, self.stats["decoded"])) is not None:
            if packet.is_corrupt:
                raise _corrupt_error(self.stats["decoded"], self.declared)
            frames = self.damage.decode(packet, self.stats["decoded"])
            self.stats["decoded"] += len(frames)
            if frames:
                yield frames

    def seek(self, target: Fraction) -> Iterator[list[av.VideoFrame]] | None:
        """Seek to a keyframe at or before ``target`` seconds.

        Returns:
            The frame batches from there on, or ``None`` when no seek lands at or before the
            target or seeking fails (read the file from its start instead).
        """
        to = target
        step = Fraction(1)
        while to > 0:
            offset = self.start_pts + math.floor(to / self.time_base)
            try:
                self.container.seek(offset, backward=True, any_frame=False, stream=self.stream)
            except (av.error.FFmpegError, OSError):
                return None  # not seekable: reading from the start is always right
            batches = self.batches()
            first = next(batches, None)
            if first is not None:
                pts = first[0].pts
                if pts is None or self.seconds(pts) <= target + Fraction(_EPS):
                    return itertools.chain([first], batches)
                to = min(to, self.seconds(pts))
            batches.close()
            to -= step  # landed after the target (or nowhere): back off further
            step *= 2
        return None


def _iter_frames(
    path: Path | str,
    size: int | tuple[int, int] | None,
    crop: tuple[int, int] | None,
    threads: int,
    info_out: list[VideoInfo] | None,
    window: _Window,
    stats: dict[str, int] | None,
    warnings_out: list[str] | None,
    retries: int = DEFAULT_RETRIES,
) -> Iterator[Frame]:
    stats = {} if stats is None else stats
    stats["decoded"] = 0
    with contextlib.ExitStack() as stack:
        container = stack.enter_context(_open(path, retries))
        stream = _prepare(container, threads)
        reader = _Reader(container, stream, stats)
        batches = None
        seeking = bool(window.start) and container.format.name not in _NO_PTS_FORMATS
        if seeking:
            assert window.start is not None
            batches = reader.seek(window.start)
            if batches is None:  # every seek landed late: read from the very beginning
                container.close()
                container = stack.enter_context(_open(path, retries))
                stream = _prepare(container, threads)
                reader = _Reader(container, stream, stats)
                seeking = False
        raws = _raw_frames(
            path,
            reader,
            batches if batches is not None else reader.batches(),
            derive_index=seeking,
            info_out=info_out,
        )
        convert = _Converter(stream, size=size, crop=crop)
        try:
            if window.rate is None:
                yield from _every_frame(raws, convert, start=window.start, end=window.end)
            else:
                yield from _ticks(
                    raws, convert, rate=window.rate, start=window.start, end=window.end
                )
        finally:
            raws.close()
            if warnings_out is not None:  # damage seen, also when the caller stopped early
                warnings_out.extend(reader.damage.warnings())


#: A planned resize more than this many times the crop's area, and larger than the coded
#: frame, is done crop first (see :meth:`_Converter.crop_first`): a sliver such as 4000×2
#: scaled to a 112-pixel short side would otherwise be a 224000×112 image per frame.
_CROP_FIRST_RATIO = 16


class _Converter:
    """Decoded frame → upright, resized, cropped RGB array (one reused reformatter)."""

    def __init__(
        self,
        stream: av.video.stream.VideoStream | None,
        *,
        size: int | tuple[int, int] | None,
        crop: tuple[int, int] | None,
    ) -> None:
        self.sar = _sar(stream) if stream is not None else Fraction(1)  # None: square pixels
        self.size = size
        self.crop = crop
        self.reformatter = VideoReformatter()
        self.plans: dict[tuple[int, int, int], _Plan] = {}

    def __call__(self, frame: av.VideoFrame) -> np.ndarray:
        key = (frame.width, frame.height, frame.rotation)
        plan = self.plans.get(key)
        if plan is None:
            plan = self.plans[key] = _plan(
                coded_w=frame.width,
                coded_h=frame.height,
                sar=self.sar,
                rotation=frame.rotation,
                size=self.size,
                crop=self.crop,
            )
        if plan.crop_h is not None and plan.width * plan.height > max(
            _CROP_FIRST_RATIO * plan.crop_h * plan.crop_w, frame.width * frame.height
        ):
            return self.crop_first(frame, plan)
        if not plan.quarter_turns:  # crop while interleaving: only the kept pixels move
            box = None if plan.crop_h is None else (plan.top, plan.left, plan.crop_h, plan.crop_w)
            return self.rgb(frame, plan.width, plan.height, box)
        img = np.rot90(self.rgb(frame, plan.width, plan.height), k=plan.quarter_turns)
        if plan.crop_h is not None:
            img = img[plan.top : plan.top + plan.crop_h, plan.left : plan.left + plan.crop_w]
        return np.array(img, dtype=np.uint8, order="C", copy=True)

    def rgb(
        self,
        frame: av.VideoFrame,
        width: int,
        height: int,
        box: tuple[int, int, int, int] | None = None,
    ) -> np.ndarray:
        """``frame`` as ``(height, width, 3)`` RGB, resized bilinearly in libswscale, or only
        the ``(top, left, height, width)`` ``box`` of it (a new C-contiguous array).

        When scaling, libswscale writes planar RGB (``gbrp``): from YUV it is faster than
        packed ``rgb24`` and, at some sizes, free of the column artefacts of swscale's packed
        output (the docs' speed page). The planes are interleaved here, box only, rather than
        whole by ``VideoFrame.to_ndarray`` and then copied.

        Without scaling, swscale's unscaled YUV → ``gbrp`` converter writes wrong pixels on
        some CPUs (AVX-512 Xeons) when the width is not a multiple of 16, different from
        one run to the next; its packed ``rgb24`` converter gives the pixels ``gbrp`` gives
        where that one is right, so unscaled frames take it.
        """
        top, left, rows, cols = box if box is not None else (0, 0, height, width)
        if (width, height) == (frame.width, frame.height):
            whole = self._reformat(frame, width, height, "rgb24").to_ndarray()
            return np.ascontiguousarray(whole[top : top + rows, left : left + cols])
        rgb = self._reformat(frame, width, height, "gbrp")
        out = np.empty((rows, cols, 3), np.uint8)
        for channel, plane in zip((1, 2, 0), rgb.planes, strict=True):  # planes: G, B, R
            pixels = np.frombuffer(plane, np.uint8, count=height * plane.line_size)
            pixels = pixels.reshape(height, plane.line_size)
            out[..., channel] = pixels[top : top + rows, left : left + cols]
        return out

    def _reformat(
        self, frame: av.VideoFrame, width: int, height: int, format: str
    ) -> av.VideoFrame:
        try:
            return self.reformatter.reformat(
                frame,
                width=width,
                height=height,
                format=format,
                interpolation=Interpolation.BILINEAR,
            )
        except (av.error.FFmpegError, ValueError) as e:
            raise VideoDecodeError(
                f"cannot convert {frame.format.name} frame to RGB: {_reason(e)}"
            ) from e

    def crop_first(self, frame: av.VideoFrame, plan: _Plan) -> np.ndarray:
        """Convert at the coded size, cut out the source pixels under the crop (one pixel
        of margin for the bilinear filter) and scale only those: the same image as scaling
        the whole frame and cropping, for a fraction of the pixels."""
        assert plan.crop_h is not None and plan.crop_w is not None
        img = self.rgb(frame, frame.width, frame.height)
        if plan.quarter_turns:
            img = np.rot90(img, k=plan.quarter_turns)
        turned = plan.quarter_turns % 2
        out_h, out_w = (plan.width, plan.height) if turned else (plan.height, plan.width)
        boxes = []
        for offset, length, out, src in (
            (plan.top, plan.crop_h, out_h, img.shape[0]),
            (plan.left, plan.crop_w, out_w, img.shape[1]),
        ):
            scale = out / src
            lo = max(0, math.floor(offset / scale) - 1)
            hi = min(src, math.ceil((offset + length) / scale) + 1)
            scaled = max(length, round((hi - lo) * scale))
            start = min(max(0, round(offset - lo * scale)), scaled - length)
            boxes.append((lo, hi, scaled, start))
        (r0, r1, rows, top), (c0, c1, cols, left) = boxes
        region = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[r0:r1, c0:c1]), "rgb24")
        return self.rgb(region, cols, rows, (top, left, plan.crop_h, plan.crop_w))


def _raw_frames(
    path: Path | str,
    reader: _Reader,
    batches: Iterator[list[av.VideoFrame]],
    *,
    derive_index: bool,
    info_out: list[VideoInfo] | None,
) -> Iterator[_Raw]:
    """Decoded frames with index and time; checks completeness after the last one."""
    stream = reader.stream
    fps = _fps(stream)
    clock = _Clock(
        time_base=reader.time_base,
        start=reader.start_pts,
        fps=fps,
        use_pts=reader.container.format.name not in _NO_PTS_FORMATS,
    )
    index: int | None = None
    last: _Raw | None = None
    for frames in batches:
        for av_frame in frames:
            if index is None:
                if info_out is not None:
                    info_out.append(_make_info(path, reader.container, stream, av_frame))
                index = 0
                pts = av_frame.pts
                if derive_index and pts is not None and pts > reader.start_pts:
                    rate = stream.average_rate or fps
                    index = round(reader.seconds(pts) * Fraction(rate))
            t = clock.time(index, av_frame.pts)
            own = float(av_frame.duration * reader.time_base) if av_frame.duration else 0.0
            last = _Raw(index, t, own or clock.period, av_frame)
            index += 1
            yield last
    if last is None:
        raise reader.damage.none_decoded(f"container declares {reader.declared or 'no'} frames")
    _check_complete(
        n_decoded=last.index + 1,
        end=last.time + last.duration,
        declared=reader.declared,
        duration=_duration(reader.container, stream),
        fps=fps,
    )


def _past_end(start: Fraction, last: _Raw | None) -> VideoDecodeError:
    ends = f" ({last.time + last.duration:.3f} s)" if last is not None else ""
    return VideoDecodeError(f"start {float(start):.3f} s is past the end of the video{ends}")


def _lasting_until(frame: Frame, time: float) -> Frame:
    """``frame``, on screen until the next frame's ``time`` when that comes later."""
    gap = time - frame.time
    if gap > 0:
        frame.duration = gap
    return frame


def _every_frame(
    raws: Iterator[_Raw],
    convert: _Converter,
    *,
    start: Fraction | None,
    end: Fraction | None,
) -> Iterator[Frame]:
    """Every decoded frame on screen during ``[start, end)``: from the one on screen at
    ``start`` to the last whose time is before ``end``."""
    lo = -math.inf if start is None else float(start) + _EPS
    hi = math.inf if end is None else float(end) - _EPS
    pending: Frame | None = None
    before: _Raw | None = None  # the last frame whose time is <= start, not yet converted
    for raw in raws:
        if raw.time < lo:
            before = raw
            continue
        if raw.time >= hi:
            if before is not None:  # the window falls inside one frame's display
                pending = Frame(before.index, before.time, before.duration, convert(before.frame))
            if pending is not None:
                yield _lasting_until(pending, raw.time)
            return  # past the window: no completeness check
        for taken in (before, raw) if before is not None else (raw,):
            frame = Frame(taken.index, taken.time, taken.duration, convert(taken.frame))
            if pending is not None:
                yield _lasting_until(pending, frame.time)
            pending = frame
        before = None
    if before is not None:  # no frame after start: is the last one still on screen?
        if start is not None and float(start) < before.time + before.duration - _EPS:
            pending = Frame(before.index, before.time, before.duration, convert(before.frame))
        else:
            assert start is not None
            raise _past_end(start, before)
    if pending is None:  # unreachable: raws raise on an empty video
        return
    yield pending


def _ticks(
    raws: Iterator[_Raw],
    convert: _Converter,
    *,
    rate: Fraction,
    start: Fraction | None,
    end: Fraction | None,
) -> Iterator[Frame]:
    """The frame on screen at each tick ``start + k / rate`` before ``end`` (see
    :func:`iter_frames`)."""
    t0 = start or Fraction(0)
    period = float(1 / rate)
    hi = math.inf if end is None else float(end) - _EPS
    k = 0
    tick = float(t0)
    shown: _Raw | None = None  # the last frame whose time is <= the current tick
    cached: tuple[_Raw | None, np.ndarray | None] = (None, None)

    def emit(raw: _Raw) -> Frame:
        nonlocal cached
        if cached[0] is raw and cached[1] is not None:
            image = cached[1].copy()  # a repeated frame gets its own array
        else:
            image = convert(raw.frame)
            cached = (raw, image)
        return Frame(raw.index, tick, period, image)

    if tick >= hi:
        return
    last: _Raw | None = None
    for raw in raws:
        last = raw
        while tick < raw.time - _EPS:  # ``raw`` comes after this tick: the tick is settled
            yield emit(shown if shown is not None else raw)
            k += 1
            tick = float(t0 + k / rate)
            if tick >= hi:
                return  # past the window: no completeness check
        shown = raw
    assert last is not None  # raws raise on an empty video
    stop = last.time + last.duration - _EPS
    while tick < stop and tick < hi:
        yield emit(last)
        k += 1
        tick = float(t0 + k / rate)
    if k == 0:
        raise _past_end(t0, last)


class _Clock:
    """Frame times in seconds: from pts where the container has them, always increasing.

    ``time = (pts - start_time) * time_base``. Without a pts (or in :data:`_NO_PTS_FORMATS`)
    the time is ``index / fps``; a pts that does not advance past the previous frame's time
    gives the previous time plus one frame period, so times never go backwards.
    """

    def __init__(self, *, time_base: Fraction, start: int, fps: float, use_pts: bool) -> None:
        self.time_base = time_base
        self.start = start
        self.period = 1.0 / fps if fps > 0 else 0.0
        self.use_pts = use_pts
        self.last: float | None = None

    def time(self, index: int, pts: int | None) -> float:
        t = index * self.period
        if self.use_pts:
            if pts is not None:
                t = float((pts - self.start) * self.time_base)
            if self.last is not None and (pts is None or t <= self.last):
                t = self.last + self.period
        self.last = t
        return t


def _check_complete(
    *, n_decoded: int, end: float, declared: int | None, duration: float | None, fps: float
) -> None:
    """Raise if the decoded frames fall markedly short of what the container declares."""
    if duration is not None and duration > 0:
        frame_s = 1.0 / fps if fps > 0 else 0.0
        tolerance = max(_TRUNCATION_FRAMES * frame_s, _TRUNCATION_FRACTION * duration)
        if end < duration - tolerance:
            of = f"/{declared} declared frames" if declared else ""
            raise VideoDecodeError(
                f"truncated: decoded {n_decoded}{of} covering {end:.3f} s of the "
                f"declared {duration:.3f} s"
            )
        return
    if declared:
        tolerance = max(_TRUNCATION_FRAMES, _TRUNCATION_FRACTION * declared)
        if n_decoded < declared - tolerance:
            raise VideoDecodeError(f"truncated: decoded {n_decoded} of {declared} declared frames")
