"""Training clips: random temporal position, multi-scale corner crops and flips.

The training-time sampling of Hara et al., "Can Spatiotemporal 3D CNNs Retrace the History of
2D CNNs and ImageNet?" (CVPR 2018, §3.3), one clip per video per step:

- **Temporal.** A window of ``clip_len * frame_stride`` consecutive frames starts at a
  uniformly random frame, and every ``frame_stride``-th frame of it is taken. Every start in
  ``[0, N - window]`` is possible (Hara's ``TemporalRandomCrop`` draws from
  ``[0, N - window - 1]``, never the last one). A video shorter than the window gives all of
  its sampled frames, looped to ``clip_len`` (``[a, b, c, a, b, ...]``) — the looping rule
  of :func:`feat3d.io.iter_clips`.
- **Frame rate.** With ``fps=F`` the same rule runs on *ticks* instead of frames: tick ``k``
  is the frame on screen at ``k / F`` seconds (the tick rule of
  :func:`feat3d.io.iter_frames`), and a video has ``tick_count(duration, fps=F)`` of them,
  so videos of different frame rates give clips spanning the same seconds.
- **Random access.** Decoding seeks to a keyframe before the window
  (``iter_frames(start=..., end=...)``) instead of decoding from the beginning: always with
  ``fps``; without it only for constant-rate videos
  (:attr:`~feat3d.train.datasets.VideoTiming.constant_rate`), where frame ``i`` is at
  ``i / fps`` and indices after a seek are exact. If the seeked decode does not deliver the
  window (the video is shorter than indexed), it falls back to decoding from the start.
- **Spatial.** Frames are decoded with the core decoder at short side ``decode_size`` (no
  crop). A scale ``s`` from ``scales`` (Hara's ``1, 2^-1/4, 2^-1/2, 2^-3/4, 1/2``) and a
  position (centre or one of the four corners) pick a square of side ``int(s * short
  side)``, which is resized to ``crop × crop`` (bilinear, antialiased): Hara's
  ``MultiScaleCornerCrop``. The same box serves every frame of the clip.
- **Flip.** The whole clip is mirrored left–right with probability ``flip``.

Clips stay uint8 ``(T, H, W, 3)``; normalization happens on the device, in the model wrapper.

Randomness comes from a generator seeded by ``(seed, epoch, index)``: a sample depends on
nothing else (not on worker ids, nor on the order samples are drawn in), so it is
reproducible, changes with :meth:`TrainClips.set_epoch`, and is safe with DataLoader workers
(the epoch lives in shared memory, so persistent workers see it too).

Broken videos never stop an epoch: a video that :class:`~feat3d.train.FrameIndex` cannot
count is left out when the dataset is built (one warning lists them); a video that fails to
decode later makes ``__getitem__`` return a :class:`FailedSample` (with a warning) that
:meth:`TrainClips.collate` drops, and :meth:`TrainClips.failed_items` names those videos.

Example:
    >>> clips = TrainClips(split.train, frame_index=FrameIndex("counts.json"))  # doctest: +SKIP
    >>> loader = DataLoader(clips, batch_size=8, shuffle=True, num_workers=4,
    ...                     collate_fn=TrainClips.collate)  # doctest: +SKIP
    >>> for epoch in range(10):  # doctest: +SKIP
    ...     clips.set_epoch(epoch)
    ...     for batch in loader:
    ...         if batch is None:  # every video of the batch failed
    ...             continue
    ...         frames, labels = batch  # (B, T, 112, 112, 3) uint8, (B,) int64
"""

from __future__ import annotations

import math
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..io.decode import Frame, VideoDecodeError, tick_count
from ..io.sources import iter_source_frames
from .datasets import DatasetError, FrameIndex, VideoItem, VideoTiming

__all__ = [
    "HARA_SCALES",
    "POSITIONS",
    "ClipParams",
    "FailedSample",
    "TrainClips",
    "crop_box",
    "temporal_indices",
]

#: Crop scales of Hara et al. 2018 (fractions of the short side).
HARA_SCALES = (1.0, 2**-0.25, 2**-0.5, 2**-0.75, 0.5)

#: Crop positions: centre, top-left, top-right, bottom-left, bottom-right.
POSITIONS = ("c", "tl", "tr", "bl", "br")

_SHOW = 5


@dataclass(frozen=True)
class ClipParams:
    """The random choices behind one training sample.

    Attributes:
        start: First frame of the temporal window (with ``fps``: its first tick).
        frames: Source frame index of each of the clip's ``clip_len`` frames (looped for
            short videos); with ``fps``, tick numbers ``k`` (the frames on screen at
            ``k / fps`` seconds).
        scale: Crop side as a fraction of the short side.
        position: ``"c"``, ``"tl"``, ``"tr"``, ``"bl"`` or ``"br"``.
        flip: Whether the clip is mirrored left–right.
    """

    start: int
    frames: tuple[int, ...]
    scale: float
    position: str
    flip: bool


@dataclass(frozen=True)
class FailedSample:
    """Stands in for a sample whose video failed to decode; :meth:`TrainClips.collate`
    drops it.

    Attributes:
        index: Dataset index.
        key: The video's key.
        message: Why it failed.
    """

    index: int
    key: str
    message: str


def temporal_indices(
    n_frames: int, *, start: int, clip_len: int, frame_stride: int = 1
) -> tuple[int, ...]:
    """Source frames of a clip whose window starts at ``start``.

    Args:
        n_frames: Frames in the video (``>= 1``).
        start: First frame of the window (``0`` when the video is shorter than the window).
        clip_len: Frames per clip.
        frame_stride: Take every ``frame_stride``-th frame of the window.

    Returns:
        ``clip_len`` frame indices: ``start, start + k, ...`` for ``k = frame_stride``; for a
        video shorter than the window, its sampled frames ``0, k, 2k, ... < n_frames``
        looped to ``clip_len``.

    Raises:
        ValueError: The window does not fit at ``start``, or invalid sizes.
    """
    if n_frames < 1 or clip_len < 1 or frame_stride < 1:
        raise ValueError("n_frames, clip_len and frame_stride must be >= 1")
    window = clip_len * frame_stride
    if n_frames < window:
        if start != 0:
            raise ValueError(f"a {n_frames}-frame video shorter than the window starts at 0")
        sampled = range(0, n_frames, frame_stride)
        return tuple(sampled[t % len(sampled)] for t in range(clip_len))
    if not 0 <= start <= n_frames - window:
        raise ValueError(f"start {start} out of [0, {n_frames - window}]")
    return tuple(start + t * frame_stride for t in range(clip_len))


def crop_box(height: int, width: int, *, scale: float, position: str) -> tuple[int, int, int]:
    """Square crop box of Hara's ``MultiScaleCornerCrop``.

    Args:
        height: Image height.
        width: Image width.
        scale: Side as a fraction of ``min(height, width)``, in ``(0, 1]``.
        position: ``"c"`` (centre), ``"tl"``, ``"tr"``, ``"bl"`` or ``"br"``.

    Returns:
        ``(top, left, side)`` with ``side = max(1, int(scale * min(height, width)))``.

    Raises:
        ValueError: Unknown position.
    """
    side = max(1, int(scale * min(height, width)))
    if position == "c":
        return round((height - side) / 2), round((width - side) / 2), side
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {POSITIONS}, got {position!r}")
    top = 0 if position[0] == "t" else height - side
    left = 0 if position[1] == "l" else width - side
    return top, left, side


def _check_arguments(
    *,
    sizes: dict[str, int],
    scales: Sequence[float],
    positions: Sequence[str],
    flip: float,
    seed: int,
    fps: float | Fraction | None,
    start: float | None,
    end: float | None,
) -> None:
    """Raise ``ValueError`` for an invalid :class:`TrainClips` argument."""
    if start is not None and end is not None and end <= start:
        raise ValueError(f"end ({end}) must be after start ({start})")
    for name, value in sizes.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not scales or not all(0 < float(s) <= 1 for s in scales):
        raise ValueError(f"scales must be non-empty, each in (0, 1], got {scales!r}")
    if not positions or not set(positions) <= set(POSITIONS):
        raise ValueError(f"positions must be a non-empty subset of {POSITIONS}")
    if not 0.0 <= float(flip) <= 1.0:
        raise ValueError(f"flip must be a probability, got {flip!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be >= 0, got {seed!r}")
    if fps is not None and (
        isinstance(fps, bool) or not isinstance(fps, (int, float, Fraction)) or not fps > 0
    ):
        raise ValueError(f"fps must be a positive number or None, got {fps!r}")


class TrainClips(Dataset):
    """One randomly sampled, augmented clip per video (Hara et al. 2018, §3.3).

    ``dataset[i]`` is ``(clip, label)``: ``clip`` a uint8 tensor ``(T, crop, crop, 3)``,
    ``label`` an int; or a :class:`FailedSample` when the video fails to decode. Use
    :meth:`collate` as the DataLoader's ``collate_fn``.

    Frame counts and durations come from ``frame_index`` (computed once per video and
    cached). Videos it cannot decode (count 0) are left out with one warning and listed in
    :attr:`skipped`. Decoding seeks to the window where it can (see the module notes) and
    stops at its end, so a clip costs about one GOP plus the window wherever it lies; frames
    are never held beyond one window.

    Args:
        items: Training videos.
        frame_index: Frame-count cache.
        clip_len: Frames per clip.
        frame_stride: Take every ``frame_stride``-th frame of a window of
            ``clip_len * frame_stride`` frames.
        crop: Output side in pixels.
        decode_size: Short side the frames are decoded at, before cropping.
        scales: Crop sides as fractions of the short side, each in ``(0, 1]``.
        positions: Allowed crop positions (subset of :data:`POSITIONS`).
        flip: Probability of a horizontal flip.
        seed: Base seed (``>= 0``).
        threads: Decoder threads per video (keep 1 with several DataLoader workers).
        index_workers: Threads counting the frames of videos not yet in ``frame_index``.
        fps: Sample clips at this frame rate (ticks ``k / fps``, see the module notes);
            ``None`` uses every source frame.
        start, end: Windows start inside this span of each video (seconds); a window that
            would not fit is moved back to the latest start that fits the video. An item's
            annotated segment (:attr:`~feat3d.train.datasets.VideoItem.frames`) narrows the
            span the same way. Frame folders are read at ``frame_index.frame_rate``.

    Attributes:
        items: The usable videos; ``dataset[i]`` samples ``items[i]``.
        n_frames: Frame count of each usable video.
        timings: :class:`~feat3d.train.datasets.VideoTiming` of each usable video.
        n_ticks: With ``fps``, the number of ticks of each usable video (else ``None``).
        skipped: ``(item, reason)`` for the videos left out.

    Raises:
        ValueError: Invalid arguments.
        DatasetError: No video can be decoded.
    """

    def __init__(
        self,
        items: Sequence[VideoItem],
        *,
        frame_index: FrameIndex,
        clip_len: int = 16,
        frame_stride: int = 1,
        crop: int = 112,
        decode_size: int = 128,
        scales: Sequence[float] = HARA_SCALES,
        positions: Sequence[str] = POSITIONS,
        flip: float = 0.5,
        seed: int = 0,
        threads: int = 1,
        index_workers: int = 1,
        fps: float | Fraction | None = None,
        start: float | None = None,
        end: float | None = None,
    ) -> None:
        _check_arguments(
            sizes={
                "clip_len": clip_len,
                "frame_stride": frame_stride,
                "crop": crop,
                "decode_size": decode_size,
            },
            scales=scales, positions=positions, flip=flip, seed=seed, fps=fps, start=start,
            end=end,
        )  # fmt: skip
        self.clip_len = clip_len
        self.frame_stride = frame_stride
        self.crop = crop
        self.decode_size = decode_size
        self.scales = tuple(float(s) for s in scales)
        self.positions = tuple(positions)
        self.flip = float(flip)
        self.seed = int(seed)
        self.threads = threads
        self.fps = fps
        self.span = (start, end)
        self.frame_rate = frame_index.frame_rate  # of frame folders, as they were counted

        self._index(items, frame_index, index_workers)
        if self.skipped:
            named = "; ".join(f"{item.key} ({why})" for item, why in self.skipped[:_SHOW])
            more = "; ..." if len(self.skipped) > _SHOW else ""
            warnings.warn(
                f"skipping {len(self.skipped)} of {len(items)} training videos that cannot be "
                f"decoded: {named}{more}",
                stacklevel=2,
            )
        if not self.items:
            raise DatasetError("no training video can be decoded")
        self.n_ticks: list[int] | None = None
        if fps is not None:
            self.n_ticks = [max(1, tick_count(t.duration, fps=fps)) for t in self.timings]
        # Shared memory: DataLoader workers (persistent ones too) see set_epoch and report
        # failures back; each writes only its own flags, so no lock is needed.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()
        self._failed = torch.zeros(len(self.items), dtype=torch.bool).share_memory_()

    def _index(
        self, items: Sequence[VideoItem], frame_index: FrameIndex, index_workers: int
    ) -> None:
        """Split ``items`` into the usable ones (with their timings) and the skipped ones."""
        timings = frame_index.timing_many([item.path for item in items], workers=index_workers)
        self.items: list[VideoItem] = []
        self.n_frames: list[int] = []
        self.timings: list[VideoTiming] = []
        self.skipped: list[tuple[VideoItem, str]] = []
        for item, timing in zip(items, timings, strict=True):
            if timing.n_frames > 0:
                self.items.append(item)
                self.n_frames.append(timing.n_frames)
                self.timings.append(timing)
            else:
                self.skipped.append((item, frame_index.error(item.path) or "no frames"))

    def __len__(self) -> int:
        return len(self.items)

    @property
    def epoch(self) -> int:
        """The epoch the samples are drawn for."""
        return int(self._epoch)

    def set_epoch(self, epoch: int) -> None:
        """Draw new random choices for ``epoch`` (``>= 0``); call before iterating."""
        if int(epoch) < 0:
            raise ValueError(f"epoch must be >= 0, got {epoch!r}")
        self._epoch.fill_(int(epoch))

    def params(self, index: int) -> ClipParams:
        """The random choices for ``dataset[index]`` in the current epoch (no decoding).

        Draws, in order, from ``numpy.random.default_rng([seed, epoch, index])``: the window
        start, the scale, the position, and a uniform number compared with ``flip`` (always
        drawn, so datasets differing only in ``flip`` make the same other choices).
        """
        if not 0 <= index < len(self.items):
            raise IndexError(f"index {index} out of range for {len(self.items)} videos")
        rng = np.random.default_rng([self.seed, self.epoch, index])
        n = self.n_frames[index] if self.n_ticks is None else self.n_ticks[index]
        window = self.clip_len * self.frame_stride
        low, high = self._span(index, n)
        last = max(0, n - window)  # the latest start whose window fits in the video
        first = min(low, last)
        start = int(rng.integers(first, max(first, min(last, high - window)) + 1))
        scale = self.scales[int(rng.integers(len(self.scales)))]
        position = self.positions[int(rng.integers(len(self.positions)))]
        flip = bool(rng.random() < self.flip)
        frames = temporal_indices(
            n, start=start, clip_len=self.clip_len, frame_stride=self.frame_stride
        )
        return ClipParams(start=start, frames=frames, scale=scale, position=position, flip=flip)

    def _span(self, index: int, n: int) -> tuple[int, int]:
        """``[low, high)`` in frames (ticks with ``fps``) of the ``start``/``end`` span and of
        the item's annotated segment (:attr:`VideoItem.frames`)."""
        start, end = self.span
        segment = self.items[index].frames
        if start is None and end is None and segment is None:
            return 0, n
        timing = self.timings[index]
        rate = float(self.fps) if self.fps is not None else (
            timing.fps or (n / timing.duration if timing.duration else 0.0)
        )  # fmt: skip
        low = math.ceil(start * rate - 1e-6) if start else 0
        high = math.ceil(end * rate - 1e-6) if end is not None else n
        if segment is not None:  # source frames; with fps, the ticks that show them
            ratio = 1.0 if self.fps is None or not timing.fps else rate / timing.fps
            low = max(low, math.ceil(segment[0] * ratio - 1e-6))
            high = min(high, math.ceil(segment[1] * ratio - 1e-6))
        return min(max(low, 0), n), max(min(high, n), 1)

    def load(self, index: int) -> tuple[torch.Tensor, int]:
        """``dataset[index]`` without the failure handling.

        Returns:
            ``(clip, label)``: uint8 ``(clip_len, crop, crop, 3)`` and the class index.

        Raises:
            VideoDecodeError: The video cannot be decoded.
        """
        p = self.params(index)
        item = self.items[index]
        images = self._decode(index, p.frames)
        top, left, side = crop_box(*images[0].shape[:2], scale=p.scale, position=p.position)
        crops = np.stack([img[top : top + side, left : left + side] for img in images])
        clip = torch.from_numpy(crops)
        if side != self.crop:
            x = clip.permute(0, 3, 1, 2).float()
            x = F.interpolate(
                x, size=(self.crop, self.crop), mode="bilinear", align_corners=False, antialias=True
            )
            clip = x.round_().clamp_(0, 255).to(torch.uint8).permute(0, 2, 3, 1).contiguous()
        if p.flip:
            clip = clip.flip(2)
        return clip, item.label

    def _decode(self, index: int, wanted: tuple[int, ...]) -> list[np.ndarray]:
        """Images of the ``wanted`` frames (ticks with ``fps``), decoding no further than the
        last of them; seeking to the first where the video allows (see the module notes)."""
        images = self._decode_seeking(index, wanted)
        return images if images is not None else self._decode_from_start(index, wanted)

    def _positions(self, frames: Iterator[Frame], first: int) -> Iterator[tuple[int, Frame]]:
        """``(position, frame)``: the frame index, or with ``fps`` the tick number (the
        ``k``-th frame of a decode starting at tick ``first`` is tick ``first + k``)."""
        if self.fps is None:
            return ((frame.index, frame) for frame in frames)
        return enumerate(frames, start=first)

    def _decode_seeking(self, index: int, wanted: tuple[int, ...]) -> list[np.ndarray] | None:
        """Seek to the window and decode it; ``None`` when seeking does not apply or does not
        deliver every wanted frame."""
        first, last = min(wanted), max(wanted)
        timing = self.timings[index]
        if first == 0:
            return None  # a decode from the start is the same work
        if self.fps is not None:
            rate = Fraction(self.fps).limit_denominator(1_000_000)
            window = {"fps": rate, "start": first / rate, "end": (last + 1) / rate}
        elif timing.constant_rate and timing.fps > 0:
            window = {"start": first / timing.fps}  # frame ``first``'s time
        else:
            return None
        needed = set(wanted)
        got: dict[int, np.ndarray] = {}
        frames = iter_source_frames(
            self.items[index].path,
            frame_rate=self.frame_rate,
            size=self.decode_size,
            crop=None,
            threads=self.threads,
            **window,
        )
        try:
            for position, frame in self._positions(frames, first):
                if position in needed:
                    got[position] = frame.image
                if position >= last:
                    break
        except VideoDecodeError:
            return None  # e.g. a start past the end of a video shorter than indexed
        finally:
            frames.close()  # stops decoding and closes the container
        return [got[i] for i in wanted] if len(got) == len(needed) else None

    def _decode_from_start(self, index: int, wanted: tuple[int, ...]) -> list[np.ndarray]:
        """Decode from the first frame (or tick) to the last wanted one.

        When the video holds fewer frames (ticks) than indexed (a header count that was too
        high), the clip is taken from its last window instead, looped as a short video would
        be.
        """
        needed = set(wanted)
        last = max(wanted)
        window = self.clip_len * self.frame_stride
        got: dict[int, np.ndarray] = {}
        tail: deque[np.ndarray] = deque(maxlen=window)
        frames = iter_source_frames(
            self.items[index].path,
            frame_rate=self.frame_rate,
            size=self.decode_size,
            crop=None,
            threads=self.threads,
            fps=self.fps,
        )
        n = 0
        try:
            for position, frame in self._positions(frames, 0):
                n += 1
                tail.append(frame.image)
                if position in needed:
                    got[position] = frame.image
                if position >= last:
                    break
        finally:
            frames.close()  # stops decoding and closes the container
        if len(got) == len(needed):
            return [got[i] for i in wanted]
        if n == 0:
            raise VideoDecodeError("no frames decoded")
        # Fewer frames than counted: the tail holds frames max(0, n - window) .. n - 1.
        first = max(0, n - window)
        short = temporal_indices(
            n, start=first if n >= window else 0, clip_len=self.clip_len,
            frame_stride=self.frame_stride,
        )  # fmt: skip
        return [tail[i - first] for i in short]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int] | FailedSample:
        try:
            return self.load(index)
        except VideoDecodeError as e:
            self._failed[index] = True
            key = self.items[index].key
            warnings.warn(f"skipping a clip of {key}: {e}", stacklevel=2)
            return FailedSample(index=index, key=key, message=str(e))

    def failed_items(self) -> list[VideoItem]:
        """Videos that failed to decode in ``__getitem__`` so far (in any worker)."""
        return [self.items[i] for i in torch.nonzero(self._failed).flatten().tolist()]

    @staticmethod
    def collate(
        batch: Sequence[tuple[torch.Tensor, int] | FailedSample],
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """DataLoader ``collate_fn``: stack the good samples, drop :class:`FailedSample`\\ s.

        Args:
            batch: Samples from ``__getitem__``.

        Returns:
            ``(clips, labels)``: uint8 ``(B, T, H, W, 3)`` and int64 ``(B,)``, with ``B`` the
            number of good samples; ``None`` when every sample failed.
        """
        good = [s for s in batch if not isinstance(s, FailedSample)]
        if not good:
            return None
        clips = torch.stack([clip for clip, _ in good])
        labels = torch.tensor([label for _, label in good], dtype=torch.int64)
        return clips, labels
