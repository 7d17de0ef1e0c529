"""``pool``: the per-clip features stored in a feat3d output re-pooled in time (K segments,
fixed intervals, per frame) into a new output, without decoding a video again."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..errors import UsageError
from ..io.pooling import pool_clips
from ..io.reader import OutputReader, ReadError, StoredVideo, VideoArrays, open_output
from ..io.writers import FeatureWriter, VideoFailure, VideoFeatures, guess_format, open_writer
from ..options import OptionsError, OutputOptions, PoolOptions
from .events import VideosReport

# Per-video attributes VideoFeatures writes itself (not carried over as extras).
_OWN_ATTRIBUTES = frozenset(
    {"video", "file", "error", "complete", "source", "fps", "n_frames", "duration", "width",
     "height", "n_clips", "padded_frames"}
)  # fmt: skip
# Run attributes of a pooled input replaced by this run's.
_POOL_ATTRIBUTES = ("pool_mode", "pool_segments", "pool_every", "pool_interpolate", "pooled_from")


class PoolInputError(UsageError, ValueError):
    """The input holds no per-clip rows that can be pooled in time."""


@dataclass
class PoolReport(VideosReport):
    """What a pooling run did: :class:`~feat3d.run.events.VideosReport`'s keys (``failures``:
    videos that could not be pooled, no clips or mismatched arrays), and

    Attributes:
        carried: Videos that failed in the input, recorded as failures in the output.
        rows: Rows written by this run.
    """

    carried: list[VideoFailure] = field(default_factory=list)
    rows: int = 0

    def summary(self) -> str:
        """One line: pooled / skipped / carried / failed videos and rows."""
        return (
            f"{len(self.written)} pooled to {self.output} ({self.rows} rows), "
            f"{len(self.skipped)} skipped (already complete), {len(self.carried)} failed in "
            f"the input (carried), {len(self.failures)} failed"
        )


def check_poolable(source: OutputReader) -> None:
    """Refuse an input without per-clip rows (``--average-only``) or with unpooled conv5 maps.

    Raises:
        PoolInputError: Such an input.
    """
    if source.average_only:
        raise PoolInputError(
            f"{source.path}: stored with --average-only (no per-clip rows); extract again "
            "without it to pool"
        )
    unpooled = source.options.get("pool") is False
    keys = source.video_keys()
    if keys and not unpooled:
        layout = source.layout(keys[0])
        if not layout.per_clip:
            raise PoolInputError(f"{source.path}: holds no per-clip rows to pool")
        unpooled = len(layout.row) > (2 if source.crops > 1 else 1)  # (crops, D) is pooled
    if unpooled:
        raise PoolInputError(
            f"{source.path}: holds unpooled conv5 maps (--no-pool); pool needs one vector per clip"
        )


def pooled_attributes(source: OutputReader, options: PoolOptions) -> dict[str, Any]:
    """The input's run attributes, the pooling options and ``pooled_from`` (the input)."""
    kept = {k: v for k, v in source.options.items() if k not in _POOL_ATTRIBUTES}
    return {**kept, **options.attributes(), "pooled_from": str(source.path.resolve())}


def pool_video(video: StoredVideo, arrays: VideoArrays, options: PoolOptions) -> VideoFeatures:
    """One stored video's clips pooled as ``options`` say, with its attributes.

    Raises:
        ValueError: No clips, arrays that don't match, or per-frame pooling without a frame
            rate.
    """
    if arrays.features is None:
        raise ValueError("no per-clip features stored")
    attrs = video.attrs
    stored = VideoFeatures(
        key=video.key, source=video.source, features=arrays.features, segments=arrays.segments,
        timestamps=arrays.timestamps, fps=float(video.fps or 0.0),
        n_frames=int(attrs.get("n_frames", 0) or 0), duration=float(video.seconds or 0.0),
        width=int(attrs.get("width", 0) or 0), height=int(attrs.get("height", 0) or 0),
        padded_frames=int(attrs.get("padded_frames", 0) or 0),
        extra={k: v for k, v in attrs.items() if k not in _OWN_ATTRIBUTES},
    )  # fmt: skip
    return pool_in_time(stored, options)


def pool_in_time(video: VideoFeatures, options: PoolOptions) -> VideoFeatures:
    """``video``'s clip features pooled as ``options`` say: its rows become the pooled spans
    (``segments``, ``timestamps``), its other attributes stay, ``pooled_clips`` records how
    many clips were pooled. The one pooling step of ``feat3d pool`` and of ``extract``'s
    ``--segments``/``--every``/``--per-frame``.

    Raises:
        ValueError: No clips, arrays that don't match, or per-frame pooling without a frame
            rate.
    """
    pooled = pool_clips(
        video.features, video.timestamps, duration=video.duration, fps=video.fps,
        n_frames=video.n_frames, segments=options.segments, every=options.every,
        interpolate=options.interpolate,
    )  # fmt: skip
    return replace(
        video, features=pooled.features, segments=pooled.segments, timestamps=pooled.timestamps,
        extra={**video.extra, "pooled_clips": video.n_clips},
    )  # fmt: skip


def pool_features(
    input: str | os.PathLike[str],
    output: str | os.PathLike[str] | OutputOptions,
    options: PoolOptions,
) -> PoolReport:
    """Re-pool the per-clip features of a feat3d output (HDF5, JSON Lines, npy folder).

    Args:
        input: An ``extract`` output with per-clip features.
        output: The pooled output, or :class:`OutputOptions` (``path``, ``format`` — default
            from the path —, ``overwrite``); features keep the input's stored type.
        options: How to pool.

    Returns:
        A :class:`PoolReport`. Videos complete in ``output`` are skipped unless ``overwrite``;
        videos that failed in the input are recorded as failures in it.

    Raises:
        PoolInputError: An ``--average-only`` or unpooled conv5 input.
        ReadError: An unreadable input.
        OutputError: An unwritable output, or one made with other options.

    Example:
        >>> report = pool_features("feats.h5", "ucf_crime.h5", PoolOptions(segments=32))
        >>> report.ok
        True
    """
    out = output if isinstance(output, OutputOptions) else OutputOptions(path=output)
    if out.target is None:
        raise OptionsError("pool needs a local output path (not a URL)")
    if out.target.resolve() == Path(input).resolve():
        raise OptionsError(f"{out.target}: is also the input; write the pooled features elsewhere")
    with open_output(input) as source:
        check_poolable(source)
        recorded = _recorded_failures(out.target) if not out.overwrite else set()
        writer = open_writer(
            out.target, format=out.format or guess_format(out.target),
            attrs=pooled_attributes(source, options), overwrite=out.overwrite,
            dtype=str(source.options.get("dtype") or out.dtype),
        )  # fmt: skip
        try:
            return _pool_into(source, writer, options, recorded, PoolReport(output=out.target))
        finally:
            writer.close()


def _pool_into(
    source: OutputReader, writer: FeatureWriter, options: PoolOptions, recorded: set[str],
    report: PoolReport,
) -> PoolReport:  # fmt: skip
    done = writer.completed()
    for video in source.videos():
        if video.key in done:
            report.skipped.append(video.key)
            continue
        try:
            pooled = pool_video(video, source.arrays(video.key), options)
        except ValueError as error:
            failure = VideoFailure(video.key, video.source, f"cannot pool: {error}")
            report.failures.append(failure)
            writer.write_error(failure)
            continue
        writer.write(pooled)
        report.written.append(video.key)
        report.rows += pooled.n_clips
    for failure in source.failures():
        report.carried.append(failure)
        if failure.key not in done and failure.key not in recorded:
            writer.write_error(failure)
    return report


def _recorded_failures(path: Path) -> set[str]:
    """Keys an existing output already records as failed (none when it can't be read)."""
    try:
        with open_output(path) as existing:
            return {failure.key for failure in existing.failures()}
    except (ReadError, OSError):
        return set()
