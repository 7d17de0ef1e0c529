"""The papers' feature-extraction pipeline, reimplemented as the baseline for the benchmark.

Hara et al.'s ``video-classification-3d-cnn-pytorch`` (``main.py``, ``classify.py``,
``dataset.py``) extracts every frame of a video to JPEG files with the ffmpeg program
(``ffmpeg -i VIDEO tmp/image_%06d.jpg``, full resolution, ffmpeg's default JPEG quality),
then a ``torch.utils.data.DataLoader`` (``--n_threads`` worker processes) loads each clip's
16 files with PIL, applies ``Scale(112)`` (short side to 112, bilinear) and ``CenterCrop(112)``
per frame, and the network runs on batches of clips; the JPEG folder is deleted afterwards.

Here the steps until the crop are the same (ffmpeg subprocess with an argument list and no
shell, a temporary folder removed afterwards, PIL loading, PIL bilinear resize of the short
side, centre crop); the crops are then handed to feat3d's :class:`~feat3d.model.VideoModel`
as uint8 clips, so the network, its precision and its normalization (on the device) are
exactly those of ``feat3d extract``. The papers' per-frame float ``ToTensor``/``Normalize``
on the CPU is left out: that favours this baseline slightly. Clips are non-overlapping and
a last partial clip is looped, as ``feat3d extract --tail pad`` does.

Needs the ffmpeg program (Debian/Ubuntu: ``apt-get install ffmpeg``; macOS: ``brew install
ffmpeg``) and Pillow (``pip install pillow``); nothing is installed by this module.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from feat3d.model import VideoModel

INSTALL_HINT = (
    "the JPEG baseline needs the ffmpeg program (apt-get install ffmpeg, brew install ffmpeg, "
    "or https://ffmpeg.org/download.html) and Pillow (pip install pillow)"
)


def missing_tools() -> list[str]:
    """What the baseline lacks on this machine (empty when it can run)."""
    missing = []
    if shutil.which("ffmpeg") is None:
        missing.append("ffmpeg program")
    try:
        import PIL  # noqa: F401
    except ImportError:
        missing.append("Pillow")
    return missing


def extract_jpegs(video: Path, folder: Path) -> int:
    """``ffmpeg -i VIDEO folder/image_%06d.jpg`` as the papers' tool runs it; returns the
    number of files written."""
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise RuntimeError(INSTALL_HINT)
    argv = [ffmpeg, "-nostdin", "-loglevel", "error", "-i", str(video)]
    subprocess.run([*argv, str(folder / "image_%06d.jpg")], check=True)
    return len(list(folder.glob("image_*.jpg")))


def scale_center_crop(path: Path, size: int) -> np.ndarray:
    """PIL load, short side to ``size`` (bilinear), centre ``size``×``size`` crop: the
    papers' ``Scale(size)`` + ``CenterCrop(size)``."""
    from PIL import Image

    with open(path, "rb") as handle, Image.open(handle) as image:
        image = image.convert("RGB")
        width, height = image.size
        if width < height:
            new = (size, int(size * height / width))
        else:
            new = (int(size * width / height), size)
        image = image.resize(new, Image.BILINEAR)
        left = round((new[0] - size) / 2.0)
        top = round((new[1] - size) / 2.0)
        return np.asarray(image.crop((left, top, left + size, top + size)))


class JpegClips(Dataset):
    """Clips of ``clip_len`` consecutive JPEG frames, the last one looped to full length."""

    def __init__(self, folder: Path, n_frames: int, clip_len: int, size: int):
        self.folder, self.clip_len, self.size = folder, clip_len, size
        self.starts = list(range(0, n_frames, clip_len))
        self.n_frames = n_frames

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> torch.Tensor:
        start = self.starts[index]
        frames = list(range(start, min(start + self.clip_len, self.n_frames)))
        while len(frames) < self.clip_len:  # loop padding, as the papers' LoopPadding
            frames.append(frames[len(frames) % (self.n_frames - start)])
        images = [
            scale_center_crop(self.folder / f"image_{i + 1:06d}.jpg", self.size) for i in frames
        ]
        return torch.from_numpy(np.stack(images))


def _init_worker(_worker_id: int) -> None:
    torch.set_num_threads(1)


@dataclass
class JpegResult:
    """Features of one video and where the time went."""

    features: np.ndarray
    extract_seconds: float
    total_seconds: float


def run_jpeg_pipeline(
    model: VideoModel,
    videos: Sequence[Path],
    *,
    clip_len: int = 16,
    size: int = 112,
    batch_size: int = 8,
    workers: int = 1,
    layer: str = "pool5",
) -> list[JpegResult]:
    """Run the papers' pipeline over ``videos``, one after the other, as their tool does."""
    import time

    if missing_tools():
        raise RuntimeError(INSTALL_HINT)
    results = []
    for video in videos:
        start = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="feat3d-jpeg-") as tmp:
            folder = Path(tmp)
            n_frames = extract_jpegs(Path(video), folder)
            extracted = time.perf_counter()
            loader = DataLoader(
                JpegClips(folder, n_frames, clip_len, size),
                batch_size=batch_size,
                num_workers=workers,
                worker_init_fn=_init_worker if workers else None,
            )
            outputs = [model.run(batch, (layer,))[layer] for batch in loader]
        results.append(
            JpegResult(
                features=np.concatenate(outputs),
                extract_seconds=extracted - start,
                total_seconds=time.perf_counter() - start,
            )
        )
    return results
