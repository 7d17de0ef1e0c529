"""Tests for examples/make_motion_dataset.py: the tree, and that only motion tells classes apart."""

from __future__ import annotations

import importlib.util
import itertools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from feat3d.io import iter_frames, open_video
from feat3d.train import load_dataset

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "make_motion_dataset.py"
CLASSES = ("left", "right", "up", "down")


def _load_module():
    spec = importlib.util.spec_from_file_location("make_motion_dataset", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


motion = _load_module()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[np.ndarray]]]:
    """The default dataset (4 x 12 videos) and every video's frames, by class."""
    root = motion.make_motion_dataset(tmp_path_factory.mktemp("motion") / "m", seed=0)
    frames = {
        name: [
            np.stack([f.image for f in iter_frames(path, size=None, crop=None)]).astype(np.float32)
            for path in sorted((root / name).glob("*.mp4"))
        ]
        for name in CLASSES
    }
    return root, frames


def test_tree(dataset) -> None:
    root, frames = dataset
    assert sorted(p.name for p in root.iterdir()) == sorted(CLASSES)
    for name in CLASSES:
        assert sorted(p.name for p in (root / name).iterdir()) == sorted(
            f"{name}_{i}.mp4" for i in range(12)
        )
        assert all(v.shape == (32, 64, 64, 3) for v in frames[name])
    info = open_video(root / "left" / "left_0.mp4")
    assert (info.width, info.height, info.fps, info.codec) == (64, 64, 25.0, "h264")
    split = load_dataset(root, val_split=0.25)
    assert split.classes == ["down", "left", "right", "up"]
    assert (len(split.train), len(split.val)) == (36, 12)


def _leave_one_out_nearest_centroid(features: np.ndarray, labels: np.ndarray) -> float:
    correct = 0
    for i in range(len(labels)):
        keep = np.arange(len(labels)) != i
        centroids = np.stack([features[keep & (labels == c)].mean(0) for c in np.unique(labels)])
        correct += int(np.argmin(((centroids - features[i]) ** 2).sum(1)) == labels[i])
    return correct / len(labels)


def test_a_single_frame_does_not_tell_the_classes_apart(dataset) -> None:
    _, frames = dataset
    features, labels = [], []
    for c, name in enumerate(CLASSES):
        for video in frames[name]:
            first = video[0]
            pooled = first.mean(2).reshape(4, 16, 4, 16).mean((1, 3)).ravel()  # 4x4 layout
            features.append(np.concatenate([first.mean((0, 1)), pooled]))
            labels.append(c)
    accuracy = _leave_one_out_nearest_centroid(np.array(features), np.array(labels))
    assert accuracy <= 0.45  # chance is 0.25


def _displacement(video: np.ndarray) -> np.ndarray:
    """Mean (dy, dx) per frame of the foreground, from circular cross-correlation of
    consecutive background-subtracted frames (the square wraps around the edges)."""
    background = np.median(video, axis=0)
    foreground = np.abs(video - background).sum(-1)
    size = video.shape[1]
    shifts = []
    for a, b in itertools.pairwise(foreground):
        corr = np.fft.ifft2(np.fft.fft2(b) * np.conj(np.fft.fft2(a))).real
        dy, dx = np.unravel_index(np.argmax(corr), corr.shape)
        shifts.append(((dy + size // 2) % size - size // 2, (dx + size // 2) % size - size // 2))
    return np.mean(shifts, axis=0)


def test_frame_differences_read_the_class(dataset) -> None:
    _, frames = dataset
    expected = {"left": (0, -1), "right": (0, 1), "up": (-1, 0), "down": (1, 0)}
    for name in CLASSES:
        for video in frames[name]:
            dy, dx = _displacement(video)
            read = (0, int(np.sign(dx))) if abs(dx) > abs(dy) else (int(np.sign(dy)), 0)
            assert read == expected[name]
            assert 1.5 <= max(abs(dy), abs(dx)) <= 3.5  # 2 or 3 pixels per frame


def test_same_seed_same_videos_and_cli(tmp_path: Path) -> None:
    a = motion.make_motion_dataset(tmp_path / "a", videos_per_class=1, n_frames=4, seed=1)
    b = motion.make_motion_dataset(tmp_path / "b", videos_per_class=1, n_frames=4, seed=1)
    assert (a / "up" / "up_0.mp4").read_bytes() == (b / "up" / "up_0.mp4").read_bytes()
    with pytest.raises(ValueError, match="unknown class"):
        motion.make_motion_dataset(tmp_path / "c", classes=("sideways",))
    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path / "cli"), "--videos-per-class", "2",
         "--frames", "4"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert len(list((tmp_path / "cli").glob("*/*.mp4"))) == 8
