"""Folders of frame images read as videos: the same frames and features as the video they
were dumped from, discovery's rule, windows, and one clear line for a missing image."""

from __future__ import annotations

from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from feat3d.cli import cli
from feat3d.io import VideoDecodeError, discover_videos, iter_frames, iter_source_frames
from feat3d.io.discover import InputError
from feat3d.io.frames import DEFAULT_FRAME_RATE, open_frame_folder
from feat3d.run.extract import extract
from tests.videos import frame_id, write_video

# Measured on this suite's generated video (64×48 h264 "texture", 20 frames, resnet-10 with
# random weights, 8-frame clips at 32 px): PNG frames give clip features within 0.0077 of the
# video's (max abs; the largest feature is 0.71), JPEG (qscale 2) within 0.0089. Colour
# conversion happens in another order: the video is resized in YUV and converted to RGB once;
# the images were converted to RGB at full size when dumped (and to YUV again for JPEG), then
# resized.
PNG_FEATURE_TOL = 0.015
JPEG_FEATURE_TOL = 0.03
PNG_PIXEL_TOL = 8  # measured 6 (uint8, max abs)
JPEG_PIXEL_TOL = 20  # measured 13


def dump_frames(video: Path, folder: Path, *, ext: str = "png", name: str = "image_{:05d}") -> Path:
    """Write every frame of ``video`` as one image (Hara et al.'s 1-based numbering)."""
    codec, pix = {"png": ("png", "rgb24"), "jpg": ("mjpeg", "yuvj420p")}[ext]
    folder.mkdir(parents=True, exist_ok=True)
    with av.open(str(video)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            rgb = frame.to_ndarray(format="rgb24")
            with av.open(str(folder / f"{name.format(i + 1)}.{ext}"), "w", format="image2") as out:
                stream = out.add_stream(codec)
                stream.width, stream.height, stream.pix_fmt = rgb.shape[1], rgb.shape[0], pix
                if codec == "mjpeg":
                    stream.codec_context.qscale = 2
                out.mux(stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")))
                out.mux(stream.encode(None))
    return folder


@pytest.fixture(scope="module")
def dumped(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("frames")
    video = write_video(root / "v.mp4", n_frames=20, fps=25, pattern="texture")
    return {
        "video": video,
        "png": dump_frames(video, root / "png" / "v", ext="png"),
        "jpg": dump_frames(video, root / "jpg" / "v", ext="jpg"),
    }


def images(frames) -> np.ndarray:
    return np.stack([frame.image for frame in frames]).astype(np.int16)


def test_frames_match_the_video_they_were_dumped_from(dumped) -> None:
    video = list(iter_frames(dumped["video"], size=32, crop=32))
    png = list(iter_source_frames(dumped["png"], frame_rate=25, size=32, crop=32))
    jpg = list(iter_source_frames(dumped["jpg"], frame_rate=25, size=32, crop=32))
    assert [f.index for f in png] == [f.index for f in video] == list(range(20))
    assert [f.time for f in png] == pytest.approx([f.time for f in video])
    assert png[0].image.shape == (32, 32, 3) and png[0].image.dtype == np.uint8
    assert np.abs(images(png) - images(video)).max() <= PNG_PIXEL_TOL
    assert np.abs(images(jpg) - images(video)).max() <= JPEG_PIXEL_TOL


def test_features_close_to_the_video(dumped, tiny_model) -> None:
    opts = dict(model=tiny_model, clip_len=8, size=32, crop=32, frame_rate=25)
    video = extract([dumped["video"]], **opts).videos["v.mp4"]
    png = extract([dumped["png"]], **opts).videos["v"]
    jpg = extract([dumped["jpg"]], **opts).videos["v"]
    assert png.features.shape == video.features.shape == (3, 512)
    png_diff = np.abs(png.features - video.features).max()
    jpg_diff = np.abs(jpg.features - video.features).max()
    assert png_diff <= PNG_FEATURE_TOL and jpg_diff <= JPEG_FEATURE_TOL
    assert png.segments.tolist() == video.segments.tolist()


def test_ticks_and_windows_as_a_video(dumped) -> None:
    window = dict(fps=10, start=0.3, end=0.8, size=16, crop=None)
    from_video = [(f.index, round(f.time, 6)) for f in iter_frames(dumped["video"], **window)]
    folder = [(f.index, round(f.time, 6)) for f in
              iter_source_frames(dumped["png"], frame_rate=25, **window)]  # fmt: skip
    assert folder == from_video == [(7, 0.3), (10, 0.4), (12, 0.5), (15, 0.6), (17, 0.7)]
    stats: dict[str, int] = {}
    list(iter_source_frames(dumped["png"], frame_rate=25, start=0.6, size=16, stats=stats))
    assert stats["decoded"] == 5  # images 15..19: nothing before the window is read
    with pytest.raises(VideoDecodeError, match="past the end"):
        list(iter_source_frames(dumped["png"], frame_rate=25, start=0.8))


def test_rate_from_fps_file_else_default(tmp_path, dumped) -> None:
    folder = tmp_path / "clip"
    folder.mkdir()
    for image in sorted(dumped["png"].iterdir())[:4]:
        (folder / image.name).write_bytes(image.read_bytes())
    assert open_frame_folder(folder).fps == DEFAULT_FRAME_RATE
    (folder / "fps").write_text("12.5\n")
    info = open_frame_folder(folder)
    assert info.fps == 12.5 and info.n_frames_declared == 4 and info.duration == 4 / 12.5
    assert open_frame_folder(folder, frame_rate=50).fps == 50


def test_missing_or_broken_image_names_the_file(tmp_path, dumped) -> None:
    folder = tmp_path / "gap"
    folder.mkdir()
    for image in sorted(dumped["png"].iterdir())[:6]:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "image_00004.png").unlink()
    with pytest.raises(VideoDecodeError, match=r"missing frame image image_00004\.png"):
        list(iter_source_frames(folder, frame_rate=25))
    (folder / "image_00004.png").write_bytes(b"not a png")
    with pytest.raises(VideoDecodeError, match=r"^image_00004\.png: cannot decode image"):
        list(iter_source_frames(folder, frame_rate=25))
    (folder / "image_00004.png").write_bytes((dumped["png"] / "image_00004.png").read_bytes())
    (folder / "n_frames").write_text("8")
    with pytest.raises(VideoDecodeError, match=r"n_frames says 8, found 6 .*image_00007\.png"):
        list(iter_source_frames(folder, frame_rate=25))


def test_names_sort_by_number_and_stray_images_are_ignored(tmp_path) -> None:
    folder = tmp_path / "numbers"
    write_video(tmp_path / "ids.mkv", n_frames=12, codec="ffv1", width=32, height=32)
    dump_frames(tmp_path / "ids.mkv", folder, name="frame_{}")  # frame_1 ... frame_12
    (folder / "thumbnail.jpg").write_bytes((folder / "frame_1.png").read_bytes())
    ids = [frame_id(f.image) for f in iter_source_frames(folder, frame_rate=25, crop=None)]
    assert ids == list(range(12))


def test_discovery_rule(tmp_path, dumped) -> None:
    root = tmp_path / "data"
    for name in ("a/clip1", "a/clip2", "b/clip3"):
        target = root / name
        target.mkdir(parents=True)
        for image in sorted(dumped["png"].iterdir())[:3]:
            (target / image.name).write_bytes(image.read_bytes())
    (root / "a/clip2/n_frames").write_text("3")
    write_video(root / "b/real.mp4", n_frames=4)
    # without a rate only the folder with Hara's n_frames file is a video
    assert [s.key for s in discover_videos([root])] == ["a/clip2", "b/real.mp4"]
    found = discover_videos([root], frame_rate=25)
    assert [s.key for s in found] == ["a/clip1", "a/clip2", "b/real.mp4", "b/clip3"]
    assert found[0].path == root / "a/clip1"
    assert [s.key for s in discover_videos([root / "a/clip1"], frame_rate=25)] == ["clip1"]
    with pytest.raises(InputError, match=r"clip1: a folder of images.*--frame-rate"):
        discover_videos([root / "a/clip1"])


def test_cli_extract_resumes_and_records_a_broken_folder(tmp_path, dumped, tiny_model) -> None:
    root = tmp_path / "jpg"
    for name in ("good", "broken"):
        target = root / name
        target.mkdir(parents=True)
        for image in sorted(dumped["jpg"].iterdir())[:8]:
            (target / image.name).write_bytes(image.read_bytes())
    (root / "broken/image_00005.jpg").write_bytes(b"")
    out = tmp_path / "f.h5"
    args = [
        "extract",
        str(root),
        "-o",
        str(out),
        "-m",
        "resnet-10",
        "-w",
        "none",
        "-j",
        "0",
        "--clip-len",
        "4",
        "--size",
        "32",
        "--crop",
        "32",
        "--frame-rate",
        "25",
        "-q",
    ]
    first = CliRunner().invoke(cli, args)
    assert first.exit_code == 1
    assert "broken" in first.output and "image_00005.jpg" in first.output
    with h5py.File(out, "r") as f:
        assert "good" in f and "broken" not in f and f["good/features"].shape[0] == 2
        assert f["good"].attrs["fps"] == 25
    again = extract([root], out, model=tiny_model, clip_len=4, size=32, crop=32, frame_rate=25)
    assert again.skipped == ["good"]  # resumed: the complete folder is not read again
    assert [f.key for f in again.failures] == ["broken"]
    assert "image_00005.jpg" in again.failures[0].message
