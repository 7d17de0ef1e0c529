"""Synthetic test videos written with PyAV, and helpers to read them back.

Every frame ``i`` is a solid colour that encodes ``i`` (6 levels per RGB channel, 51 apart,
so 216 distinct ids), which survives lossy coding, chroma subsampling, resizing, cropping and
rotation; :func:`frame_id` recovers ``i`` from a decoded image. ``pattern="marker"`` adds a
black or white block in the top-left corner of the *coded* frame (1/9 of the area) so tests
can see where the corner ended up (:func:`marker_corner`).

Findings behind the defaults (PyAV 18.1, FFmpeg 8):

- libx264 refuses odd sizes with ``yuv420p`` (``avcodec_open2`` fails); ``mpeg4`` with
  ``yuv420p`` accepts them, and so does ``h264`` with ``yuv444p``. :func:`write_video` picks
  ``yuv444p`` for ``h264`` with an odd width or height unless ``pix_fmt`` says otherwise.
- ``VideoStream.set_display_rotation(deg)`` (PyAV >= 17) writes a display matrix that the mov
  muxer stores in ``tkhd``; ``deg`` is counterclockwise, as ``VideoFrame.rotation`` reads it.
  The old ``rotate`` metadata tag is ignored by FFmpeg 8's muxer.
- Variable frame rate: set the codec time base to ``1 / fps`` and give each frame an explicit
  ``pts``; the decoded pts come back exactly (:func:`vfr_pts`).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

__all__ = [
    "LEVELS",
    "colour_of",
    "frame_id",
    "marker_corner",
    "truncate_copy",
    "vfr_pts",
    "write_audio_only",
    "write_empty",
    "write_text",
    "write_video",
]

#: Channel levels of the id colours.
LEVELS = np.array([0, 51, 102, 153, 204, 255])
N_IDS = len(LEVELS) ** 3

#: Frame-period multiples between consecutive frames of a VFR test video (cycled).
VFR_STEPS = (1, 2, 1, 3, 1, 1, 4, 2)


def colour_of(i: int) -> tuple[int, int, int]:
    """The RGB colour encoding frame id ``i`` (modulo 216)."""
    i %= N_IDS
    return int(LEVELS[i // 36]), int(LEVELS[(i // 6) % 6]), int(LEVELS[i % 6])


def frame_id(image: np.ndarray) -> int:
    """Recover the id of a decoded ``(H, W, 3)`` frame written by :func:`write_video`."""
    rgb = np.median(image.reshape(-1, 3), axis=0)
    digits = [int(np.abs(LEVELS - c).argmin()) for c in rgb]
    return digits[0] * 36 + digits[1] * 6 + digits[2]


def marker_corner(image: np.ndarray) -> str:
    """Which corner (``"tl"``, ``"tr"``, ``"bl"``, ``"br"``) holds the marker block."""
    h, w = image.shape[:2]
    background = np.median(image.reshape(-1, 3), axis=0)
    deviation = np.abs(image.astype(np.float32) - background).sum(axis=2)
    corners = {
        "tl": deviation[: h // 4, : w // 4],
        "tr": deviation[: h // 4, w - w // 4 :],
        "bl": deviation[h - h // 4 :, : w // 4],
        "br": deviation[h - h // 4 :, w - w // 4 :],
    }
    return max(corners, key=lambda k: float(corners[k].mean()))


def vfr_pts(n_frames: int) -> list[int]:
    """Irregular pts, in units of ``1 / fps``, used by ``write_video(vfr=True)``."""
    pts, t = [], 0
    for i in range(n_frames):
        pts.append(t)
        t += VFR_STEPS[i % len(VFR_STEPS)]
    return pts


def _image(i: int, width: int, height: int, pattern: str) -> np.ndarray:
    img = np.empty((height, width, 3), np.uint8)
    img[:] = colour_of(i)
    if pattern == "marker":
        mark = 0 if sum(colour_of(i)) > 3 * 127 else 255
        img[: max(1, height // 3), : max(1, width // 3)] = mark
    elif pattern == "texture":  # smooth moving detail, for speed measurements
        y, x = np.mgrid[0:height, 0:width]
        wave = (np.sin((x + 3 * i) / 7.0) * np.cos((y - 2 * i) / 5.0) * 40).astype(np.int16)
        img = np.clip(img.astype(np.int16) + wave[..., None], 0, 255).astype(np.uint8)
    elif pattern != "counter":
        raise ValueError(f"unknown pattern {pattern!r}")
    return img


def write_video(
    path: str | Path,
    *,
    n_frames: int = 40,
    fps: int | Fraction = 25,
    width: int = 64,
    height: int = 48,
    codec: str = "h264",
    pattern: str = "counter",
    rotation: float | None = None,
    display_matrix: Sequence[int] | None = None,
    vfr: bool = False,
    pts: Sequence[int] | None = None,
    pix_fmt: str | None = None,
    faststart: bool = False,
    sar: Fraction | None = None,
    gop: int | None = None,
    ids: Sequence[int] | None = None,
) -> Path:
    """Write a small synthetic video whose frames encode their index (see module docs).

    Args:
        path: Output file; the suffix picks the container (``.mp4``, ``.mkv``, ``.avi``).
            Missing parent folders are created.
        n_frames: Number of frames.
        fps: Frame rate, an int or a Fraction such as ``Fraction(30000, 1001)``.
        width: Coded width.
        height: Coded height.
        codec: ``"h264"`` (libx264, with B-frames), ``"mpeg4"``, ``"libx264rgb"`` (lossless
            RGB), ``"ffv1"`` (lossless, use ``.mkv``), ``"mjpeg"``.
        pattern: ``"counter"`` (solid id colour), ``"marker"`` (plus a corner block),
            ``"texture"`` (plus moving detail).
        rotation: Display rotation, counterclockwise degrees, written as a display matrix.
        display_matrix: Raw 9-int display matrix (overrides ``rotation``).
        vfr: Use the irregular :func:`vfr_pts` timestamps.
        pts: Explicit timestamps in units of ``1 / fps`` (overrides ``vfr``).
        pix_fmt: Encoder pixel format; by default ``yuv420p`` (``yuv444p`` for odd-sized
            h264, ``rgb24`` for libx264rgb, ``yuvj420p`` for mjpeg).
        faststart: Put the MP4 ``moov`` index before the media data.
        sar: Sample aspect ratio to declare.
        gop: Keyframe interval in frames (``codec_context.gop_size``; x264 may add keyframes
            at scene cuts, never fewer), so seeking lands close to its target.
        ids: The id each frame shows (default: its own index), e.g. ``f(time)`` to render
            one scene at several frame rates.

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rate = Fraction(fps)
    if pts is None:
        pts = vfr_pts(n_frames) if vfr else list(range(n_frames))
    if len(pts) != n_frames:
        raise ValueError("pts must have n_frames entries")
    if ids is None:
        ids = range(n_frames)
    if len(ids) != n_frames:
        raise ValueError("ids must have n_frames entries")
    if pix_fmt is None:
        if codec == "libx264rgb":
            pix_fmt = "rgb24"
        elif codec == "mjpeg":
            pix_fmt = "yuvj420p"
        elif codec == "h264" and (width % 2 or height % 2):
            pix_fmt = "yuv444p"
        else:
            pix_fmt = "yuv420p"
    options = {"movflags": "faststart"} if faststart else {}
    with av.open(str(path), mode="w", options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        stream.codec_context.time_base = 1 / rate
        if gop is not None:
            stream.codec_context.gop_size = gop
        if codec in ("h264", "libx264rgb"):
            stream.options = {"crf": "0"} if codec == "libx264rgb" else {"preset": "veryfast"}
        if sar is not None:
            stream.codec_context.sample_aspect_ratio = sar
        if display_matrix is not None:
            stream.set_display_matrix(display_matrix)
        elif rotation is not None:
            stream.set_display_rotation(rotation)
        for i in range(n_frames):
            image = _image(ids[i], width, height, pattern)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = pts[i]
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_audio_only(path: str | Path, *, seconds: float = 0.5, rate: int = 16000) -> Path:
    """Write an AAC file with no video stream (``.m4a``/``.mp4``)."""
    path = Path(path)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("aac", rate=rate)
        n = 1024
        for k in range(int(seconds * rate) // n + 1):
            t = (np.arange(n) + k * n) / rate
            samples = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = rate, k * n
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def write_empty(path: str | Path) -> Path:
    """Create a zero-byte file."""
    path = Path(path)
    path.write_bytes(b"")
    return path


def write_text(path: str | Path) -> Path:
    """Write a text file (give it a video suffix to test format detection)."""
    path = Path(path)
    path.write_text("this is not a video\n" * 200)
    return path


def truncate_copy(src: str | Path, dst: str | Path, *, fraction: float) -> Path:
    """Copy the first ``fraction`` of ``src``'s bytes to ``dst``."""
    src, dst = Path(src), Path(dst)
    if fraction >= 1:
        shutil.copyfile(src, dst)
        return dst
    data = src.read_bytes()
    dst.write_bytes(data[: int(len(data) * fraction)])
    return dst
