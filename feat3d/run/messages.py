"""The messages of the run layer: a decoded clip (or a video's end or failure) on its way to
the network, and one video's network outputs on their way to a writer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import torch

from ..io.discover import VideoSource
from ..io.writers import VideoFeatures


class ClipItem(NamedTuple):
    """A message from a decoding worker: a clip, the end of a video, or its failure."""

    kind: str  # "clip" | "end" | "error"
    video: int
    frames: torch.Tensor | np.ndarray | None = None
    segment: tuple[int, int] = (0, 0)
    time: tuple[float, float] = (0.0, 0.0)
    padded: int = 0
    info: dict[str, Any] | None = None
    message: str = ""


@dataclass
class VideoOutputs:
    """Every requested layer of every clip of one video, in clip order."""

    source: VideoSource
    outputs: dict[str, np.ndarray]
    segments: np.ndarray
    timestamps: np.ndarray
    info: dict[str, Any]

    def to_features(self, layer: str) -> VideoFeatures:
        info = self.info
        return VideoFeatures(
            key=self.source.key,
            source=self.source.display,
            features=self.outputs[layer],
            segments=self.segments,
            timestamps=self.timestamps,
            fps=info["fps"],
            n_frames=info["n_frames"],
            duration=info["duration"],
            width=info["width"],
            height=info["height"],
            padded_frames=info["padded_frames"],
            extra={name: info[name] for name in ("warnings", "crop_boxes") if info.get(name)},
        )
