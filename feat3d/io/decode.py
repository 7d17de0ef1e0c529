"""Streaming video decoding with PyAV.

Frames come out of :func:`iter_frames` one at a time, already converted to RGB and resized
inside libswscale, so a whole video is never held in memory. :func:`open_video` probes a file
(container header plus the first decoded frame) without decoding the rest.

Conventions:

- ``Frame.index`` counts decoded frames in presentation order (0-based); for variable frame
  rate videos it is *not* ``time * fps``.
- ``Frame.time`` is ``pts * time_base`` minus the stream's ``start_time``, in seconds, and
  never decreases. AVI stores no presentation timestamps (FFmpeg's made-up ones come out
  permuted when there are B-frames), so there, and for frames without a pts, it is
  ``index / fps``.
- Output images are upright as a player shows them: the display matrix (``rotate`` tag of
  phone videos) is honoured.
- Every failure surfaces as :class:`VideoDecodeError` whose message is a one-line reason; the
  caller prefixes the path.
"""

from __future__ import annotations

import errno
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np
from av.stream import Discard
from av.video.reformatter import Interpolation, VideoReformatter

__all__ = ["Frame", "VideoDecodeError", "VideoInfo", "iter_frames", "open_video"]

#: Allowed shortfall, as a fraction of the declared duration (or frame count), before a video
#: counts as truncated. A few frames more are always allowed (see ``_TRUNCATION_FRAMES``).
_TRUNCATION_FRACTION = 0.05
_TRUNCATION_FRAMES = 3

#: Demuxers whose packets carry no presentation timestamps: FFmpeg fabricates pts from the
#: decode order, so with B-frames they come out permuted (h264 in AVI gives 1, 4, 3, 5, 2, ...).
#: AVI is constant-rate by design; frame times there are ``index / fps``.
_NO_PTS_FORMATS = frozenset({"avi"})


class VideoDecodeError(Exception):
    """A video could not be opened or decoded completely.

    The message is a single line giving the reason (``"empty file"``, ``"no video stream"``,
    ``"truncated: ..."``); the caller adds the path.
    """


@dataclass(frozen=True)
class VideoInfo:
    """What the container and the first decoded frame say about a video.

    Attributes:
        path: The file.
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
    """

    path: Path
    width: int
    height: int
    fps: float
    n_frames_declared: int | None
    duration: float | None
    rotation: int
    codec: str


@dataclass
class Frame:
    """One decoded frame.

    Attributes:
        index: 0-based position among decoded frames, in presentation order.
        time: Presentation time in seconds, relative to the stream's start time
            (``index / fps`` for AVI and for frames without a pts).
        duration: Seconds until the next frame (from the next frame's timestamp; for the last
            frame the frame's own duration, else ``1 / fps``).
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
        return VideoDecodeError("not a video file (unrecognised or unreadable container)")
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
        kinds = ", ".join(sorted({s.type for s in container.streams}))
        raise VideoDecodeError(f"no video stream (found: {kinds})")
    stream = container.streams.video[0]
    if stream.codec_context is None:
        raise VideoDecodeError(
            "video stream has no decoder parameters (unsupported codec, or truncated header)"
        )
    return stream


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
    path: Path,
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
        path=path,
        width=w,
        height=h,
        fps=_fps(stream),
        n_frames_declared=stream.frames or None,
        duration=_duration(container, stream),
        rotation=k * 90,
        codec=stream.codec_context.name,
    )


def _open(path: Path) -> av.container.InputContainer:
    _check_path(path)
    try:
        return av.open(str(path), mode="r", metadata_errors="ignore")
    except (av.error.FFmpegError, OSError, EOFError) as e:
        raise _open_error(path, e) from e


def _decode_packet(packet: av.Packet, n_decoded: int) -> list[av.VideoFrame]:
    try:
        return packet.decode()
    except (av.error.FFmpegError, OSError) as e:
        raise VideoDecodeError(f"decode error after {n_decoded} frames: {_reason(e)}") from e


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


def open_video(path: str | os.PathLike[str]) -> VideoInfo:
    """Probe a video: read the container header and decode only the first frame.

    The first frame is decoded because the display rotation reaches PyAV as frame side data.

    Args:
        path: Video file.

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
    path = Path(path)
    with _open(path) as container:
        stream = _video_stream(container)
        packets = container.demux(stream)
        n_packets = 0
        while (packet := _next_packet(packets, 0)) is not None:
            n_packets += 1
            if packet.is_corrupt:
                raise _corrupt_error(0, stream.frames or None)
            frames = _decode_packet(packet, 0)
            if frames:
                return _make_info(path, container, stream, frames[0])
        raise VideoDecodeError(f"no frames decoded ({n_packets} packets read)")


def iter_frames(
    path: str | os.PathLike[str],
    *,
    size: int | tuple[int, int] | None = 112,
    crop: int | tuple[int, int] | None = 112,
    threads: int = 0,
    info_out: list[VideoInfo] | None = None,
) -> Iterator[Frame]:
    """Decode a video lazily into upright, resized, centre-cropped RGB frames.

    Pipeline per frame: one reused :class:`~av.video.reformatter.VideoReformatter` converts
    to ``rgb24`` and resizes (bilinear) in libswscale, to the *pre-rotation* size; the small
    image is then rotated with :func:`numpy.rot90` and centre-cropped (torchvision's offsets).
    Only one decoded frame is held back (to compute its duration from the next timestamp),
    so memory does not grow with the video's length. The container is closed when the
    generator finishes, raises, or is closed early.

    Sizes (applied to the displayed frame, i.e. after rotation and sample aspect ratio):

    - ``size=int``: the short side becomes ``size``, aspect ratio kept (long side rounded),
      e.g. 64×48 → 149×112 for ``size=112``.
    - ``size=(H, W)``: exact resize, e.g. torchvision's ``(128, 171)``.
    - ``size=None``: no resize (coded pixels, rotated).
    - ``crop``: centre crop (square for an int). A resized frame smaller than the crop in
      either dimension is first scaled up uniformly until the crop fits; nothing is padded.

    Truncation rule (checked before the last frame is yielded, so a truncated video never
    looks complete): PyAV 18 opens a truncated MP4 whose ``moov`` index is at the end not at
    all (``InvalidDataError``/``EOFError`` on open); with ``movflags=faststart`` it opens
    and decodes the surviving frames *without* raising, but the demuxer flags the cut packet
    as corrupt (``Packet.is_corrupt``) — single-threaded decoding then raises
    ``InvalidDataError`` while frame threading swallows it, so the flag is checked instead.
    Matroska drops the partial block silently. Hence a video is truncated when (a) any packet
    is flagged corrupt, or (b) after the last frame, the decoded frames end before the
    declared stream duration (stream duration, Matroska ``DURATION`` tag, or container
    duration for video-only files) by more than ``max(3 frames, 5%)``; with no duration, when
    the decoded count falls short of the header's frame count by that margin. Time is
    preferred over counts because MP4 edit lists legitimately hide frames the header counts.

    Args:
        path: Video file.
        size: Resize rule, see above. Default 112 (short side), the papers' protocol.
        crop: Centre crop, ``int`` (square) or ``(H, W)``; ``None`` for no crop.
        threads: Decoder threads; ``0`` lets FFmpeg choose. Frame and slice threading
            (``thread_type="AUTO"``) are enabled before decoding starts.
        info_out: If given, the video's :class:`VideoInfo` is appended to it just before the
            first frame is yielded (saves a second :func:`open_video`).

    Yields:
        :class:`Frame` objects in presentation order.

    Raises:
        ValueError: Invalid ``size``, ``crop`` or ``threads`` (raised on call).
        VideoDecodeError: On the first ``next()``: the reasons of :func:`open_video`; later:
            read or decode errors, truncation, or no frames decoded.

    Example:
        >>> for frame in iter_frames("clip.mp4", size=112, crop=112):  # doctest: +SKIP
        ...     frame.image.shape
        (112, 112, 3)
    """
    size_hw = _as_hw(size, name="size")
    size_v = size_hw if size_hw is None or isinstance(size, (tuple, list)) else size_hw[0]
    crop_hw = _as_hw(crop, name="crop")
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an int >= 0, got {threads!r}")
    return _iter_frames(Path(path), size_v, crop_hw, threads, info_out)


def _iter_frames(
    path: Path,
    size: int | tuple[int, int] | None,
    crop: tuple[int, int] | None,
    threads: int,
    info_out: list[VideoInfo] | None,
) -> Iterator[Frame]:
    with _open(path) as container:
        stream = _video_stream(container)
        stream.thread_type = "AUTO"  # must precede the codec's opening (first decode)
        stream.thread_count = threads
        for other in container.streams:
            if other.index != stream.index:
                other.discard = Discard.all  # the demuxer may skip reading them
        time_base = stream.time_base or Fraction(1, 1)
        start = stream.start_time or 0
        fps = _fps(stream)
        declared = stream.frames or None
        sar = _sar(stream)
        reformatter = VideoReformatter()
        plans: dict[tuple[int, int, int], _Plan] = {}

        def convert(frame: av.VideoFrame) -> np.ndarray:
            key = (frame.width, frame.height, frame.rotation)
            plan = plans.get(key)
            if plan is None:
                plan = plans[key] = _plan(
                    coded_w=frame.width,
                    coded_h=frame.height,
                    sar=sar,
                    rotation=frame.rotation,
                    size=size,
                    crop=crop,
                )
            try:
                rgb = reformatter.reformat(
                    frame,
                    width=plan.width,
                    height=plan.height,
                    format="rgb24",
                    interpolation=Interpolation.BILINEAR,
                )
            except (av.error.FFmpegError, ValueError) as e:
                raise VideoDecodeError(
                    f"cannot convert {frame.format.name} frame to RGB: {_reason(e)}"
                ) from e
            img = rgb.to_ndarray()  # a strided view of the frame's buffer
            if plan.quarter_turns:
                img = np.rot90(img, k=plan.quarter_turns)
            if plan.crop_h is not None:
                img = img[plan.top : plan.top + plan.crop_h, plan.left : plan.left + plan.crop_w]
            return np.array(img, dtype=np.uint8, order="C", copy=True)

        clock = _Clock(
            time_base=time_base,
            start=start,
            fps=fps,
            use_pts=container.format.name not in _NO_PTS_FORMATS,
        )
        pending: Frame | None = None
        n = 0
        packets = container.demux(stream)
        while (packet := _next_packet(packets, n)) is not None:
            if packet.is_corrupt:
                raise _corrupt_error(n, declared)
            for av_frame in _decode_packet(packet, n):
                if n == 0 and info_out is not None:
                    info_out.append(_make_info(path, container, stream, av_frame))
                t = clock.time(n, av_frame.pts)
                own = float(av_frame.duration * time_base) if av_frame.duration else 0.0
                frame = Frame(n, t, own or clock.period, convert(av_frame))
                n += 1
                if pending is not None:
                    gap = frame.time - pending.time
                    if gap > 0:
                        pending.duration = gap
                    yield pending
                pending = frame

        if pending is None:
            raise VideoDecodeError(
                f"no frames decoded (container declares {declared or 'no'} frames)"
            )
        _check_complete(
            n_decoded=n,
            end=pending.time + pending.duration,
            declared=declared,
            duration=_duration(container, stream),
            fps=fps,
        )
        yield pending


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
