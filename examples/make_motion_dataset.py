"""Write a tiny video dataset whose classes differ only by motion.

Every video shows the same checkered square sliding over the same noisy background, wrapping
around the frame edges. The class is the direction of travel (``left``, ``right``, ``up``,
``down``); the start position (uniform over the frame) and the speed are drawn from the same
distributions for every class. A single frame therefore says nothing about the class, and a
2D network or a per-frame statistic sits at chance, while a network that sees motion (a 3D
CNN over a clip) learns the task. Horizontal flipping swaps ``left`` and ``right``: train on
it with ``--flip 0``.

Layout: ``ROOT/<class>/<class>_<i>.mp4`` (H.264, ``size × size``), readable by
``feat3d.train.load_dataset(ROOT)`` (class folders).

Usage::

    python examples/make_motion_dataset.py motion/ --videos-per-class 12

or from Python::

    from make_motion_dataset import make_motion_dataset
    make_motion_dataset("motion/", videos_per_class=12)
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from fractions import Fraction
from pathlib import Path

import av
import click
import numpy as np

__all__ = ["DIRECTIONS", "make_motion_dataset"]

#: Per-frame displacement (dy, dx) of a unit speed, by class name.
DIRECTIONS = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}

#: Side of the moving square as a fraction of the frame side.
_SQUARE = 0.3
#: Speeds in pixels per frame (drawn uniformly, the same for every class).
_SPEEDS = (2, 3)
#: Seed of the scene shared by every video: the same noisy background and the same checkered
#: square. Per-video appearance (colours, textures) would let a network memorize each training
#: video instead of learning motion; with one shared scene, only motion tells the classes apart.
_SCENE_SEED = 12345


def _scene(size: int) -> tuple[np.ndarray, np.ndarray]:
    """The background and the square's texture, identical in every video."""
    scene = np.random.default_rng(_SCENE_SEED)
    background = np.clip(128 + scene.normal(0, 20, size=(size, size, 3)), 0, 255)
    side = max(2, round(size * _SQUARE))
    yy, xx = np.mgrid[0:side, 0:side]
    checker = ((yy // 3 + xx // 3) % 2)[..., None] == 1
    texture = np.where(checker, 230.0, 30.0) * np.ones(3)
    return background, texture


def _video_frames(
    rng: np.random.Generator, *, direction: tuple[int, int], n_frames: int, size: int
) -> np.ndarray:
    """``(n_frames, size, size, 3)`` uint8 frames of one video: the shared square starts at a
    random position and slides at a random speed in ``direction``, wrapping at the edges."""
    background, texture = _scene(size)
    side = texture.shape[0]
    y0, x0 = (int(v) for v in rng.integers(0, size, size=2))
    speed = int(rng.choice(_SPEEDS))
    dy, dx = direction
    frames = np.empty((n_frames, size, size, 3), np.uint8)
    offsets = np.arange(side)
    for t in range(n_frames):
        rows = (y0 + dy * speed * t + offsets) % size
        cols = (x0 + dx * speed * t + offsets) % size
        img = background.copy()
        img[np.ix_(rows, cols)] = texture
        frames[t] = img.round().astype(np.uint8)
    return frames


def _write_mp4(path: Path, frames: np.ndarray, *, fps: int) -> None:
    rate = Fraction(fps)
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("h264", rate=rate)
        stream.height, stream.width = frames.shape[1:3]
        stream.pix_fmt = "yuv420p"
        stream.codec_context.time_base = 1 / rate
        stream.options = {"preset": "ultrafast", "crf": "18"}
        for t, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = t
            frame.time_base = 1 / rate
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def make_motion_dataset(
    root: str | os.PathLike[str],
    *,
    classes: Sequence[str] = ("left", "right", "up", "down"),
    videos_per_class: int = 12,
    n_frames: int = 32,
    size: int = 64,
    fps: int = 25,
    seed: int = 0,
) -> Path:
    """Write ``root/<class>/<class>_<i>.mp4`` videos that differ between classes only by motion.

    Args:
        root: Output folder (created; existing files of the same names are overwritten).
        classes: Class names, each a key of :data:`DIRECTIONS`.
        videos_per_class: Videos per class.
        n_frames: Frames per video.
        size: Frame side in pixels (even, for H.264's 4:2:0 chroma).
        fps: Frame rate.
        seed: Seed; the same seed writes the same frames.

    Returns:
        ``root`` as a :class:`~pathlib.Path`.

    Raises:
        ValueError: Unknown class name, odd ``size``, or non-positive counts.

    Example:
        >>> make_motion_dataset("motion/", videos_per_class=12)  # doctest: +SKIP
        PosixPath('motion')
    """
    unknown = [c for c in classes if c not in DIRECTIONS]
    if unknown:
        raise ValueError(f"unknown class(es) {unknown}; choose from {sorted(DIRECTIONS)}")
    if size < 8 or size % 2:
        raise ValueError(f"size must be an even number >= 8, got {size}")
    if videos_per_class < 1 or n_frames < 1 or fps < 1:
        raise ValueError("videos_per_class, n_frames and fps must be >= 1")
    root = Path(root)
    for c, name in enumerate(classes):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(videos_per_class):
            # One generator per video, seeded by (seed, class index, video index); the class
            # only sets the direction, every other draw has the same distribution.
            rng = np.random.default_rng([seed, c, i])
            frames = _video_frames(rng, direction=DIRECTIONS[name], n_frames=n_frames, size=size)
            _write_mp4(folder / f"{name}_{i}.mp4", frames, fps=fps)
    return root


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("out", type=click.Path(file_okay=False, path_type=Path))
@click.option("--videos-per-class", default=12, show_default=True, help="Videos per class.")
@click.option("--frames", "n_frames", default=32, show_default=True, help="Frames per video.")
@click.option("--size", default=64, show_default=True, help="Frame side in pixels (even).")
@click.option("--fps", default=25, show_default=True, help="Frame rate.")
@click.option("--seed", default=0, show_default=True, help="Random seed.")
def main(out: Path, videos_per_class: int, n_frames: int, size: int, fps: int, seed: int) -> None:
    """Write a motion-only toy dataset to OUT (one folder per direction).

    Example: python examples/make_motion_dataset.py motion/ --videos-per-class 12
    """
    try:
        make_motion_dataset(
            out, videos_per_class=videos_per_class, n_frames=n_frames, size=size, fps=fps,
            seed=seed,
        )  # fmt: skip
    except ValueError as e:
        raise click.UsageError(str(e)) from e
    click.echo(f"wrote {4 * videos_per_class} videos to {out}")


if __name__ == "__main__":
    main()
