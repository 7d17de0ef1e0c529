"""A corpus of bad and odd input files, the kind a crawl of web videos contains.

:func:`make_hostile_corpus` writes every case into one folder (about a second on two cores)
and says what feat3d must do with each: ``"fail"`` with a reason, ``"ok"``, or
``"ok-with-warning"`` (the frames that decode are kept and a warning is recorded).
The two cases that need timing (a file deleted, a file made unreadable, after discovery but
before decoding) are :func:`vanish` and :func:`lock` applied to a discovered file.

Encoder findings (PyAV 18.1, FFmpeg 8.1):

- libx264 accepts 1×1 and 2×4000 with ``yuv444p``; ``yuv420p`` needs even sides.
- A PNG named ``.mp4`` is *opened* by FFmpeg (``png_pipe`` demuxer) as a one-frame video, so
  only feat3d's own check keeps images out.
- Decreasing timestamps cannot be muxed directly (every muxer refuses a decreasing dts), so
  the case is two MPEG-TS files concatenated byte by byte (the second restarts its clock, as
  in a concatenated broadcast capture), and an MKV whose intra-only packets carry shuffled pts
  over increasing dts.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Literal

import av
import numpy as np

from tests.videos import truncate_copy, write_audio_only, write_empty, write_text, write_video

__all__ = [
    "CASE_NAMES",
    "HostileCase",
    "flip_bytes",
    "lock",
    "make_hostile_corpus",
    "shared_folder",
    "unprivileged",
    "vanish",
]

Expectation = Literal["fail", "ok", "ok-with-warning"]

#: Every case :func:`make_hostile_corpus` writes, in order (for parametrized tests).
CASE_NAMES = (
    "zero_bytes", "text", "png", "jpeg", "audio_only", "no_frames", "garbage_packets",
    "truncated_10", "truncated_50", "truncated_90", "truncated_faststart", "truncated_mkv",
    "flipped", "single_frame", "one_pixel", "tall", "wide", "odd_size", "rotated", "vfr",
    "ts_restart", "pts_backwards", "interlaced", "yuv420p10le", "yuv444p", "yuva420p",
    "shell_name", "symlink_loop",
)  # fmt: skip


@dataclass(frozen=True)
class HostileCase:
    """One file of the corpus.

    Attributes:
        path: The file (or, for ``symlink_loop``, the link).
        expectation: ``"fail"``, ``"ok"`` or ``"ok-with-warning"``.
        description: What is odd about it.
        reason: For failures, the start of the one-line reason feat3d must give; for
            warnings, a word the warning must contain.
        n_frames: For decodable cases, the frames a complete decode yields (``None`` when
            it depends on the corruption).
    """

    path: Path
    expectation: Expectation
    description: str
    reason: str = ""
    n_frames: int | None = None


def flip_bytes(data: bytes, *, start: float, length: int, seed: int = 0) -> bytes:
    """XOR ``length`` bytes from ``start`` (a fraction of the size) with random non-zero
    values, so every byte in the range changes."""
    out = bytearray(data)
    at = int(len(out) * start)
    noise = np.random.default_rng(seed).integers(1, 256, size=length, dtype=np.uint8)
    end = min(len(out), at + length)
    out[at:end] = (np.frombuffer(bytes(out[at:end]), np.uint8) ^ noise[: end - at]).tobytes()
    return bytes(out)


def _write_image(path: Path, codec_name: str, pix_fmt: str) -> Path:
    """One still image (``png`` or ``mjpeg``) written as raw encoder output."""
    codec = av.CodecContext.create(codec_name, "w")
    codec.width, codec.height, codec.pix_fmt = 32, 24, pix_fmt
    codec.time_base = Fraction(1, 25)
    frame = av.VideoFrame.from_ndarray(np.full((24, 32, 3), 90, np.uint8), format="rgb24")
    frame = frame.reformat(format=pix_fmt)
    frame.pts = 0
    path.write_bytes(b"".join(bytes(p) for p in [*codec.encode(frame), *codec.encode(None)]))
    return path


def _write_no_frames(path: Path) -> Path:
    """A Matroska file with a video track that holds no frame, next to an audio track."""
    with av.open(str(path), mode="w") as container:
        video = container.add_stream("mpeg4", rate=25)
        video.width, video.height, video.pix_fmt = 32, 24, "yuv420p"
        audio = container.add_stream("aac", rate=16000)
        for k in range(8):
            samples = np.zeros((1, 1024), np.float32)
            frame = av.AudioFrame.from_ndarray(samples, format="fltp", layout="mono")
            frame.sample_rate, frame.pts = 16000, k * 1024
            container.mux(audio.encode(frame))
        container.mux(audio.encode(None))
    return path


def _write_garbage_packets(path: Path, *, n_frames: int = 12) -> Path:
    """An MKV whose video packets are all random bytes: a stream, nothing decodable."""
    rng = np.random.default_rng(1)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("h264", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        for i in range(n_frames):
            packet = av.Packet(rng.integers(0, 256, 300, dtype=np.uint8).tobytes())
            packet.pts = packet.dts = i
            packet.time_base = Fraction(1, 25)
            packet.stream = stream
            container.mux(packet)
    return path


def _write_ts_restart(path: Path, *, n_frames: int = 16) -> Path:
    """Two MPEG-TS files concatenated: the second half's timestamps restart (go back)."""
    parts = []
    for half in range(2):
        part = path.with_name(f".{path.stem}.{half}.ts")
        write_video(part, n_frames=n_frames, codec="mpeg4", width=32, height=24)
        parts.append(part.read_bytes())
        part.unlink()
    path.write_bytes(b"".join(parts))
    return path


def _write_shuffled_pts(path: Path, *, n_frames: int = 20) -> Path:
    """An MKV of intra-only frames whose pts go backwards (dts still increase)."""
    # dts i, pts i + (2 if i % 4 == 1 else 0): ..., 1 -> 3, 2 -> 2, ... pts 3 then 2 then 3.
    pts = [i + (2 if i % 4 == 1 else 0) for i in range(n_frames)]
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mjpeg", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "yuvj420p"
        stream.codec_context.time_base = Fraction(1, 25)
        for i in range(n_frames):
            image = np.full((24, 32, 3), (i * 10) % 256, np.uint8)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            for packet in stream.encode(frame):
                packet.dts, packet.pts = i, pts[i]
                container.mux(packet)
        container.mux(stream.encode(None))
    return path


def _write_interlaced(path: Path, *, n_frames: int = 12) -> Path:
    """MPEG-2 with interlaced DCT and motion estimation, top field first."""
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("mpeg2video", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 25)
        stream.options = {"flags": "+ildct+ilme", "top": "1"}
        for i in range(n_frames):
            image = np.zeros((48, 64, 3), np.uint8)
            image[i % 2 :: 2] = 200  # alternate lines: field content differs
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def make_hostile_corpus(folder: Path) -> dict[str, HostileCase]:
    """Write the corpus into ``folder`` (created) and describe each file.

    Args:
        folder: Where to write; every file lands directly in it except the symlink loop
            (``folder/loop -> folder``).

    Returns:
        Cases by name. ``symlink_loop`` is the link itself: discovery must not follow it
        forever and must not report it as a video.
    """
    folder.mkdir(parents=True, exist_ok=True)
    source = folder.parent / f".{folder.name}-sources"
    source.mkdir(exist_ok=True)
    cases: dict[str, HostileCase] = {}

    def add(name: str, path: Path, expectation: Expectation, description: str, **kw) -> None:
        cases[name] = HostileCase(path, expectation, description, **kw)

    add("zero_bytes", write_empty(folder / "zero.mp4"), "fail", "zero-byte file",
        reason="empty file")  # fmt: skip
    add("text", write_text(folder / "readme.mp4"), "fail", "a text file named .mp4",
        reason="not a video file")  # fmt: skip
    add("png", _write_image(folder / "picture.mp4", "png", "rgb24"), "fail",
        "a PNG image named .mp4", reason="not a video file")  # fmt: skip
    add("jpeg", _write_image(folder / "photo.mkv", "mjpeg", "yuvj420p"), "fail",
        "a JPEG image named .mkv", reason="not a video file")  # fmt: skip
    add("audio_only", write_audio_only(folder / "podcast.mp4"), "fail", "AAC audio, no video",
        reason="no video stream")  # fmt: skip
    add("no_frames", _write_no_frames(folder / "no_frames.mkv"), "fail",
        "a video track header and no frames", reason="no frames decoded")  # fmt: skip
    add("garbage_packets", _write_garbage_packets(folder / "garbage.mkv"), "fail",
        "an h264 track whose every packet is random bytes", reason="no frames decoded")  # fmt: skip

    whole = write_video(source / "whole.mp4", n_frames=60, width=64, height=48)
    for percent in (10, 50, 90):
        add(f"truncated_{percent}", truncate_copy(whole, folder / f"cut{percent}.mp4",
            fraction=percent / 100), "fail", f"an MP4 cut at {percent} % (index at the end)",
            reason="truncated")  # fmt: skip
    whole_fs = write_video(source / "whole_fs.mp4", n_frames=60, faststart=True, pattern="texture")
    add("truncated_faststart", truncate_copy(whole_fs, folder / "cut_fs.mp4", fraction=0.5),
        "fail", "a faststart MP4 (index first) cut at 50 %", reason="truncated")  # fmt: skip
    whole_mkv = write_video(source / "whole.mkv", n_frames=60, pattern="texture")
    add("truncated_mkv", truncate_copy(whole_mkv, folder / "cut.mkv", fraction=0.5), "fail",
        "a Matroska file cut at 50 %", reason="truncated")  # fmt: skip

    flipped = write_video(source / "flip.mp4", n_frames=60, width=96, height=64,
                          pattern="texture", gop=12)  # fmt: skip
    (folder / "flipped.mp4").write_bytes(flip_bytes(flipped.read_bytes(), start=0.45, length=64))
    add("flipped", folder / "flipped.mp4", "ok-with-warning",
        "64 bytes flipped mid-stream: some frames do not decode", reason="decode")  # fmt: skip

    add("single_frame", write_video(folder / "one.mp4", n_frames=1), "ok", "a single frame",
        n_frames=1)  # fmt: skip
    add("one_pixel", write_video(folder / "1x1.mp4", n_frames=6, width=1, height=1,
        pix_fmt="yuv444p"), "ok", "1×1 pixels (h264 yuv444p)", n_frames=6)  # fmt: skip
    add("tall", write_video(folder / "2x4000.mp4", n_frames=4, width=2, height=4000,
        pix_fmt="yuv444p"), "ok", "2×4000 pixels (h264 yuv444p)", n_frames=4)  # fmt: skip
    add("wide", write_video(folder / "4000x2.mp4", n_frames=4, width=4000, height=2,
        pix_fmt="yuv444p"), "ok", "4000×2 pixels (h264 yuv444p)", n_frames=4)  # fmt: skip
    add("odd_size", write_video(folder / "odd.mp4", n_frames=10, width=33, height=25), "ok",
        "33×25 pixels", n_frames=10)  # fmt: skip
    add("rotated", write_video(folder / "rotated.mp4", n_frames=10, width=64, height=48,
        rotation=90), "ok", "display matrix rotating 90°", n_frames=10)  # fmt: skip
    add("vfr", write_video(folder / "vfr.mp4", n_frames=20, vfr=True), "ok",
        "variable frame rate", n_frames=20)  # fmt: skip
    add("ts_restart", _write_ts_restart(folder / "restart.ts"), "ok",
        "two MPEG-TS files concatenated: timestamps jump back", n_frames=32)  # fmt: skip
    add("pts_backwards", _write_shuffled_pts(folder / "backwards.mkv"), "ok",
        "intra-only MKV whose pts go backwards", n_frames=20)  # fmt: skip
    add("interlaced", _write_interlaced(folder / "interlaced.mpg"), "ok",
        "interlaced MPEG-2 (ildct, ilme, top field first)", n_frames=12)  # fmt: skip
    add("yuv420p10le", write_video(folder / "ten_bit.mp4", n_frames=10,
        pix_fmt="yuv420p10le"), "ok", "10-bit h264", n_frames=10)  # fmt: skip
    add("yuv444p", write_video(folder / "yuv444.mp4", n_frames=10, pix_fmt="yuv444p"), "ok",
        "4:4:4 h264", n_frames=10)  # fmt: skip
    add("yuva420p", write_video(folder / "alpha.mkv", n_frames=10, codec="ffv1",
        pix_fmt="yuva420p"), "ok", "ffv1 with an alpha plane", n_frames=10)  # fmt: skip
    add("shell_name", write_video(folder / "a b'$(x);é.mp4", n_frames=10), "ok",
        "spaces, quotes, $(...), ; and é in the name", n_frames=10)  # fmt: skip

    loop = folder / "loop"
    if not loop.is_symlink():
        loop.symlink_to(folder, target_is_directory=True)
    add("symlink_loop", loop, "ok", "folder/loop -> folder")
    shutil.rmtree(source)
    assert tuple(cases) == CASE_NAMES
    return cases


def vanish(path: Path) -> None:
    """Delete a discovered file (the run must record it, not stop)."""
    path.unlink()


def lock(path: Path) -> None:
    """Make a file unreadable (``chmod 000``); root still reads it, see :func:`unprivileged`."""
    path.chmod(0)


@contextlib.contextmanager
def shared_folder() -> Iterator[Path]:
    """A fresh folder under the system temp dir that other users can enter (pytest's
    ``tmp_path`` sits in a ``0700`` folder), removed afterwards, for :func:`unprivileged`."""
    folder = Path(tempfile.mkdtemp(prefix="feat3d-hostile-"))
    folder.chmod(0o777)
    try:
        yield folder
    finally:
        for path in [folder, *folder.rglob("*")]:
            if not path.is_symlink():
                path.chmod(0o777)
        shutil.rmtree(folder)


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run the body with the effective user ``nobody`` when the tests run as root, so file
    modes apply; a no-op otherwise. Files the body needs must be reachable by others, and
    so must modules it imports lazily: decode in this process (``workers=0``), since the
    worker pool's multiprocessing machinery (resource tracker, shared memory) is root's."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        yield
        return
    nobody = 65534
    os.setegid(nobody)
    os.seteuid(nobody)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)
