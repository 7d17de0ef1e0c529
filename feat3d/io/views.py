"""Spatial views of a clip: the boxes of the multi-crop test protocols, and their cutting.

``--crops N`` cuts N boxes of the crop's size out of every (resized, uncropped) frame of a
clip, in the conventions of the libraries the protocols come from:

- 3: SlowFast's ``uniform_crop`` with ``spatial_idx`` 0, 1, 2: the first, middle and last box
  along the long side (left, centre, right of a landscape frame; top, centre, bottom of a
  portrait one; a square frame counts as landscape), centred on the short side. The middle
  offset is ``ceil((side - box) / 2)``.
- 5: torchvision's ``five_crop`` order: top-left, top-right, bottom-left, bottom-right,
  centre. The centre offset is ``round((side - box) / 2)`` with Python's ``round`` (halves
  to even), as ``center_crop`` and ``--crop`` do.
- 10: torchvision's ``ten_crop`` (``vertical_flip=False``): those five, then the five boxes
  of the horizontally mirrored frame.

Boxes are ``(y0, x0, height, width, flipped)`` in the coordinates of the resized frame; a
flipped box is the mirror image of the pixels under it (for the mirrored frame's top-left
box, the original's top-right pixels, mirrored).
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import numpy as np

from ..errors import UsageError

#: The ``--crops`` counts.
CROP_COUNTS = (1, 3, 5, 10)
#: What ``--crop-reduce`` does with the crop axis: keep it, or average over it.
CROP_REDUCTIONS = ("none", "mean")
_FIVE = ("top-left", "top-right", "bottom-left", "bottom-right", "centre")
#: The name of each view, in order, by crop count.
VIEW_NAMES: dict[int, tuple[str, ...]] = {
    1: ("centre",),
    3: ("first", "centre", "last"),
    5: _FIVE,
    10: (*_FIVE, *(f"{name} mirrored" for name in _FIVE)),
}


class ViewError(UsageError, ValueError):
    """A crop count or box that cannot be cut from the frames."""


class Box(NamedTuple):
    """One view: its top-left corner and size in the resized frame, and whether mirrored."""

    y0: int
    x0: int
    height: int
    width: int
    flipped: bool = False

    def as_list(self) -> list[int]:
        """``[y0, x0, height, width, flipped]`` as ints, as outputs record it."""
        return [self.y0, self.x0, self.height, self.width, int(self.flipped)]


def _hw(crop: int | tuple[int, int]) -> tuple[int, int]:
    return (crop, crop) if isinstance(crop, int) else (int(crop[0]), int(crop[1]))


def check_crops(crops: int) -> None:
    """Refuse a crop count other than 1, 3, 5 or 10."""
    if crops not in CROP_COUNTS:
        raise ViewError(f"--crops must be 1, 3, 5 or 10, not {crops!r}")


def crop_boxes(height: int, width: int, crop: int | tuple[int, int], n: int) -> list[Box]:
    """The ``n`` boxes (1, 3, 5 or 10) of size ``crop`` (a side, or ``(h, w)``) in a
    ``height × width`` frame, in the protocols' order (see the module docstring).

    Raises:
        ViewError: A count other than 1, 3, 5, 10, or a box larger than the frame.

    Example:
        >>> [(box.y0, box.x0) for box in crop_boxes(4, 7, 4, 3)]
        [(0, 0), (0, 2), (0, 3)]
    """
    check_crops(n)
    h, w = _hw(crop)
    if h > height or w > width:
        raise ViewError(
            f"a {h}×{w} crop box does not fit in a {height}×{width} frame: use a smaller --crop "
            "or a larger --size"
        )
    if n == 3:
        return _three(height, width, h, w)
    centre = Box(round((height - h) / 2.0), round((width - w) / 2.0), h, w)
    if n == 1:
        return [centre]
    bottom, right = height - h, width - w
    five = [Box(0, 0, h, w), Box(0, right, h, w), Box(bottom, 0, h, w),
            Box(bottom, right, h, w), centre]  # fmt: skip
    if n == 5:
        return five
    # The mirrored frame's box at x0 holds the original's pixels at width - w - x0, mirrored.
    return five + [box._replace(x0=right - box.x0, flipped=True) for box in five]


def _three(height: int, width: int, h: int, w: int) -> list[Box]:
    y_mid, x_mid = math.ceil((height - h) / 2), math.ceil((width - w) / 2)
    if height > width:
        return [Box(y, x_mid, h, w) for y in (0, y_mid, height - h)]
    return [Box(y_mid, x, h, w) for x in (0, x_mid, width - w)]


def cut_views(frames: np.ndarray, boxes: list[Box]) -> np.ndarray:
    """``(len(boxes), T, h, w, C)``: each box cut out of every frame of ``(T, H, W, C)``
    frames (a copy; flipped boxes mirrored left to right)."""
    first = boxes[0]
    out = np.empty((len(boxes), frames.shape[0], first.height, first.width, frames.shape[3]),
                   dtype=frames.dtype)  # fmt: skip
    for index, box in enumerate(boxes):
        view = frames[:, box.y0 : box.y0 + box.height, box.x0 : box.x0 + box.width]
        out[index] = view[:, :, ::-1] if box.flipped else view
    return out


def split_views(values: np.ndarray, crops: int, reduce: str = "none") -> np.ndarray:
    """Network outputs of ``(clips × crops, ...)`` rows as ``(clips, crops, ...)``, or with
    ``reduce="mean"`` averaged over the crops (in float64) to ``(clips, ...)``."""
    if reduce not in CROP_REDUCTIONS:
        raise ViewError(f"--crop-reduce must be none or mean, not {reduce!r}")
    split = values.reshape(-1, crops, *values.shape[1:])
    if reduce == "mean":
        return split.astype(np.float64).mean(axis=1).astype(values.dtype)
    return split


class ClipViews:
    """The views of one video's clips: its boxes found from the first clip's frame size."""

    def __init__(self, crops: int, crop: int | tuple[int, int] | None):
        check_crops(crops)
        if crop is None:
            raise ViewError(f"--crops {crops} needs a crop size (--crop)")
        self.crops = crops
        self.crop = _hw(crop)
        self.boxes: list[Box] = []
        self._frame: tuple[int, int] | None = None

    def cut(self, frames: np.ndarray) -> np.ndarray:
        """``(crops, T, h, w, 3)`` views of a ``(T, H, W, 3)`` clip."""
        frame = (int(frames.shape[1]), int(frames.shape[2]))
        if frame != self._frame:
            self.boxes = crop_boxes(*frame, self.crop, self.crops)
            self._frame = frame
        return cut_views(frames, self.boxes)

    def attributes(self) -> dict[str, Any]:
        """The video's boxes as outputs record them (``crop_boxes``, one row per view)."""
        return {"crop_boxes": [box.as_list() for box in self.boxes]} if self.boxes else {}
