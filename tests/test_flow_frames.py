"""Optical flow and two-stream clips read folders of frame images as videos, and place
two-stream chunks inside an annotated segment."""

from __future__ import annotations

import random
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

pytest.importorskip("cv2")

from feat3d.cli import cli
from feat3d.flow import iter_flow, iter_two_stream_clips, read_flow
from feat3d.io.sources import iter_source_frames
from feat3d.train.datasets import VideoItem
from feat3d.train.two_stream import TwoStreamClips
from tests.io.test_frames import dump_frames
from tests.test_flow import DX, DY, write_translating


@pytest.fixture(scope="module")
def slide(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 12-frame translating texture, as a video and as ``root/slide/image_%05d.png``."""
    root = tmp_path_factory.mktemp("flow_frames")
    video = write_translating(root / "slide.mp4", n_frames=12)
    folder = dump_frames(video, root / "frames" / "slide")
    return {"video": video, "root": root / "frames", "folder": folder}


def test_cli_flow_reads_a_frame_folder(slide: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "flow.h5"
    args = ["flow", str(slide["root"]), "-o", str(out), "--method", "dis", "--short-side", "48"]
    result = CliRunner().invoke(cli, [*args, "--frame-rate", "10"])
    assert result.exit_code == 0, result.output
    assert "1 video(s) written" in result.output
    fields = read_flow(out, "slide")
    assert fields.shape == (11, 2, 48, 64)
    interior = fields[:, :, 8:-8, 8:-8]
    assert np.abs(interior[:, 0] - DX).mean() + np.abs(interior[:, 1] - DY).mean() < 0.5
    from_video = np.stack(list(iter_flow(slide["video"], method="dis", short_side=48)))
    assert np.abs(fields - from_video).mean() < 0.2  # the same frames, up to quantization
    with h5py.File(out) as handle:
        group = handle["slide"]
        assert group.attrs["fps"] == 10.0 and group.attrs["n_frames"] == 12
        np.testing.assert_allclose(group["times"][:], np.arange(12) / 10)
    # Without --frame-rate (and no n_frames/fps file) a folder of images is not a video.
    plain = CliRunner().invoke(cli, ["flow", str(slide["folder"]), "-o", str(tmp_path / "o.h5")])
    assert plain.exit_code == 2 and "--frame-rate" in plain.output


def test_two_stream_clips_of_a_folder_and_of_a_segment(slide: dict[str, Path]) -> None:
    folder = slide["folder"]
    common = {"chunks": 3, "flow_frames": 4, "short_side": 48, "method": "dis"}
    (whole,) = iter_two_stream_clips(folder, frame_rate=10, **common)
    (video,) = iter_two_stream_clips(slide["video"], **common)
    assert whole.segment == video.segment == (0, 12)
    assert whole.time == pytest.approx((0.0, 1.2))  # 12 frames at --frame-rate 10
    assert np.abs(whole.array - video.array).mean() < 0.5
    (part,) = iter_two_stream_clips(folder, frame_rate=10, frames=(4, 12), **common)
    # Chunks over frames 4..11 as over an 8-frame video: starts 4, 6, 7 (of 4..12-1-4).
    assert part.segment == (4, 12) and part.time == pytest.approx((0.4, 1.2))
    images = {f.index: f.image for f in iter_source_frames(folder, size=48, crop=None)}
    for chunk, start in enumerate((4, 6, 7)):
        np.testing.assert_array_equal(part.array[:3, chunk], images[start].transpose(2, 0, 1))
    # The whole video's chunk 1 also starts at frame 4: the same fields 4 → 5 ... 7 → 8.
    np.testing.assert_array_equal(part.array[3:, 0], whole.array[3:, 1])
    (short,) = iter_two_stream_clips(folder, frame_rate=10, frames=(9, 11), **common)
    # Two frames, one field (9 → 10): the stacks repeat it and never reach frame 11.
    assert short.segment == (9, 11)
    np.testing.assert_array_equal(short.array[5:7], short.array[3:5])
    with pytest.raises(Exception, match=r"segment frames \[20, 25\)"):
        next(iter_two_stream_clips(folder, frames=(20, 25), **common))


def test_stage_clips_read_a_frame_folder_inside_its_segment(
    slide: dict[str, Path], tmp_path: Path
) -> None:
    flow = tmp_path / "flow.h5"
    CliRunner().invoke(cli, ["flow", str(slide["root"]), "-o", str(flow), "--method", "dis",
                             "--short-side", "48", "--frame-rate", "10"])  # fmt: skip
    items = [
        VideoItem(slide["folder"], 0, "slide"),
        VideoItem(slide["folder"], 1, "v_slide#1", frames=(6, 12)),  # flow found by path
    ]
    clips = TwoStreamClips(items, flow_path=flow, chunks=2, stride_range=(2, 2), flow_frames=3,
                           crop=32, frame_rate=10)  # fmt: skip
    for index in range(2):
        clip, label = clips[index]
        assert clip.shape == (3 + 2 * 3, 2, 32, 32) and label == index
    # Starts s, s + 2 with s + 2 <= 12 - 1 - 3: in the segment only s = 6 fits.
    inside = {tuple(clips.starts(12, random.Random(e), (6, 12))) for e in range(40)}
    assert inside == {(6, 8)}
    whole = {tuple(clips.starts(12, random.Random(e))) for e in range(40)}
    assert whole == {(s, s + 2) for s in range(7)}
