"""Material for ``make demo``: a sample video made offline, and the weights to run it with."""

from __future__ import annotations

import argparse
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np


def make_sample_video(
    path: str | Path, *, n_frames: int = 80, fps: int = 25, width: int = 160, height: int = 120
) -> Path:
    """Write an h264 video of a bright disc moving across a gradient (no network needed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ys, xs = np.mgrid[0:height, 0:width]
    background = np.stack(
        [xs * 255 // width, ys * 255 // height, np.full_like(xs, 96)], axis=-1
    ).astype(np.uint8)
    with av.open(str(target), "w") as container:
        stream = container.add_stream("h264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(n_frames):
            image = background.copy()
            cx = int(width * (0.15 + 0.7 * index / max(1, n_frames - 1)))
            cy = int(height / 2 + height / 4 * math.sin(index / 6))
            image[(xs - cx) ** 2 + (ys - cy) ** 2 < (height // 8) ** 2] = (250, 240, 60)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return target


def demo_weights(model: str = "r3d_18") -> str:
    """``DEFAULT`` when the model's published weights are already in the torch.hub cache
    (so the demo stays offline), else ``none``."""
    from .backbones import list_weights, weights_cache_path

    named = [w for w in list_weights(model) if w.default]
    return "DEFAULT" if named and weights_cache_path(named[0]).exists() else "none"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("video", type=Path, help="where to write the sample video")
    args = parser.parse_args()
    make_sample_video(args.video)
    print(demo_weights())


if __name__ == "__main__":
    main()
