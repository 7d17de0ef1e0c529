"""Optical flow: accuracy on a translating texture, quantization, the HDF5 file (layout,
resume, errors, reading), two-stream clips, and the ``feat3d flow`` command."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

cv2 = pytest.importorskip("cv2")

from feat3d.cli import cli  # noqa: E402
from feat3d.flow import (  # noqa: E402
    FlowEvents,
    FlowFile,
    chunk_starts,
    dequantize,
    extract_flow,
    iter_flow,
    iter_two_stream_clips,
    quantize,
    read_flow,
)
from feat3d.io.writers import OutputError  # noqa: E402
from tests.videos import write_video  # noqa: E402

DX, DY = 2, -1  # texture displacement per frame, pixels


def write_translating(
    path: Path, *, n_frames: int = 12, width: int = 64, height: int = 48, seed: int = 0
) -> Path:
    """A smooth random texture sliding by (DX, DY) pixels per frame, coded losslessly."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    pad = 4 + n_frames * max(abs(DX), abs(DY))
    canvas = rng.random((height + 2 * pad, width + 2 * pad, 3)).astype(np.float32) * 255
    canvas = cv2.GaussianBlur(canvas, (0, 0), 2.0)
    canvas = cv2.normalize(canvas, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264rgb", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "rgb24"
        stream.options = {"crf": "0"}
        for i in range(n_frames):
            top, left = pad - i * DY, pad - i * DX  # content moves by +DX, +DY
            image = np.ascontiguousarray(canvas[top : top + height, left : left + width])
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


@pytest.fixture(scope="module")
def translating(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_translating(tmp_path_factory.mktemp("flow") / "slide.mp4")


@pytest.mark.parametrize("method", ["tvl1", "dis"])
def test_flow_recovers_translation(translating: Path, method: str) -> None:
    fields = np.stack(list(iter_flow(translating, method=method, short_side=48)))
    assert fields.shape == (11, 2, 48, 64)
    interior = fields[:, :, 8:-8, 8:-8]
    error = np.abs(interior[:, 0] - DX).mean() + np.abs(interior[:, 1] - DY).mean()
    assert error < 0.5


def test_flow_bound_clips(translating: Path) -> None:
    fields = np.stack(list(iter_flow(translating, method="dis", short_side=48, bound=1.5)))
    assert fields.max() <= 1.5 and fields.min() >= -1.5
    assert np.isclose(np.median(fields[:, 0]), 1.5)  # the +2 px motion is clipped


@pytest.mark.parametrize("bound", [20.0, 3.0])
def test_quantize_round_trip(bound: float) -> None:
    flow = np.random.default_rng(1).uniform(-bound, bound, (4, 2, 9, 7)).astype(np.float32)
    stored = quantize(flow, bound=bound)
    assert stored.dtype == np.uint8
    assert np.abs(dequantize(stored, bound=bound) - flow).max() <= bound / 255 + 1e-6
    ends = quantize(np.array([-bound, 0.0, bound, 10 * bound]), bound=bound)
    assert ends.tolist() == [0, 128, 255, 255]


def test_extract_flow_layout_and_resume(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    write_translating(videos / "a" / "slide.mp4", n_frames=10)
    write_video(videos / "b.mp4", n_frames=6, pattern="texture")
    out = tmp_path / "flow.h5"

    class Counting(FlowEvents):
        def __init__(self) -> None:
            self.fields = 0
            self.videos: list[str] = []

        def on_clips(self, count: int) -> None:
            self.fields += count

        def on_video(self, key: str, n_clips: int) -> None:
            self.videos.append(key)

    events = Counting()
    report = extract_flow([videos], out, method="dis", short_side=48, events=events)
    assert report.ok and sorted(report.written) == ["a/slide.mp4", "b.mp4"]
    assert events.fields == 9 + 5 == report.fields
    with h5py.File(out, "r") as handle:
        assert handle.attrs["method"] == "dis" and handle.attrs["short_side"] == 48
        assert handle.attrs["bound"] == 20.0
        group = handle["a/slide.mp4"]
        assert group["flow"].dtype == np.uint8 and group["flow"].shape == (9, 2, 48, 64)
        assert group["flow"].chunks == (1, 2, 48, 64)
        assert group["times"].shape == (10,)
        assert group.attrs["complete"] and group.attrs["n_frames"] == 10
        assert (group.attrs["width"], group.attrs["height"]) == (64, 48)
        assert group.attrs["fps"] == 25.0

    flow = read_flow(out, "a/slide.mp4", 2, 5)
    assert flow.shape == (3, 2, 48, 64) and flow.dtype == np.float32
    assert abs(float(np.median(flow[:, 0])) - DX) < 0.2
    with FlowFile(out) as flows:
        assert flows.keys() == ["a/slide.mp4", "b.mp4"]
        np.testing.assert_array_equal(flows.read("a/slide.mp4")[2:5], flow)

    again = extract_flow([videos], out, method="dis", short_side=48)
    assert again.written == [] and sorted(again.skipped) == ["a/slide.mp4", "b.mp4"]
    with pytest.raises(OutputError, match="method='dis'"):
        extract_flow([videos], out, method="farneback", short_side=48)


def test_kill_9_mid_run_then_resume_gives_the_uninterrupted_file(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    for i in range(4):
        write_translating(videos / f"v{i}.mp4", n_frames=12)
    whole = tmp_path / "whole.h5"
    extract_flow([videos], whole, method="tvl1", short_side=48)
    out = tmp_path / "flow.h5"
    command = [sys.executable, "-m", "feat3d", "flow", str(videos), "-o", str(out),
               "--method", "tvl1", "--short-side", "48", "-j", "0", "-q"]  # fmt: skip
    process = subprocess.Popen(command, stderr=subprocess.DEVNULL)
    pending = tmp_path / "flow.h5.pending"
    deadline = time.monotonic() + 120
    while not list(pending.glob("*.h5")) and time.monotonic() < deadline:
        time.sleep(0.005)  # the first video is finished and staged
    assert process.poll() is None, "the run ended before it could be killed"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not out.exists()  # nothing merged yet: the output is never half-written
    report = extract_flow([videos], out, method="tvl1", short_side=48)
    assert 1 <= len(report.skipped) < 4 and sorted(report.skipped + report.written) == [
        f"v{i}.mp4" for i in range(4)
    ]
    assert not pending.exists()
    with h5py.File(whole, "r") as a, h5py.File(out, "r") as b:
        for key in a:
            assert np.array_equal(a[key]["flow"][()], b[key]["flow"][()]), key
            assert np.array_equal(a[key]["times"][()], b[key]["times"][()]), key
            assert b[key].attrs["complete"]


def test_broken_video_gets_error_record(tmp_path: Path, bad_files: dict[str, Path]) -> None:
    good = write_translating(tmp_path / "good.mp4", n_frames=6)
    out = tmp_path / "flow.h5"
    report = extract_flow(
        [good, bad_files["text"], bad_files["truncated_faststart"]], out, method="dis",
        short_side=48,
    )  # fmt: skip
    assert report.written == ["good.mp4"]
    assert sorted(f.key for f in report.failures) == ["cut_fs.mp4", "notes.mp4"]
    with h5py.File(out, "r") as handle:
        errors = handle["_errors"]
        messages = {errors[name].attrs["video"]: errors[name].attrs["message"] for name in errors}
        assert "cut_fs.mp4" not in handle  # no partial group left behind
    assert set(messages) == {"cut_fs.mp4", "notes.mp4"}
    assert "truncated" in messages["cut_fs.mp4"]


def test_workers_match_in_process(tmp_path: Path) -> None:
    videos = [write_translating(tmp_path / f"v{i}.mp4", n_frames=7, seed=i) for i in range(3)]
    one = extract_flow(videos, tmp_path / "one.h5", method="dis", short_side=48)
    two = extract_flow(videos, tmp_path / "two.h5", method="dis", short_side=48, workers=2)
    assert sorted(one.written) == sorted(two.written) == ["v0.mp4", "v1.mp4", "v2.mp4"]
    for key in one.written:
        np.testing.assert_allclose(
            read_flow(tmp_path / "one.h5", key), read_flow(tmp_path / "two.h5", key), atol=0.2
        )


def test_chunk_starts() -> None:
    assert chunk_starts(40, chunks=5, flow_frames=10, spacing=None) == [[0, 7, 14, 22, 29]]
    assert chunk_starts(8, chunks=3, flow_frames=10, spacing=None) == [[0, 0, 0]]
    assert chunk_starts(100, chunks=3, flow_frames=10, spacing=5) == [
        [0, 5, 10], [15, 20, 25], [30, 35, 40], [45, 50, 55], [60, 65, 70], [75, 80, 85],
    ]  # fmt: skip


def test_two_stream_clips_from_file_equal_computed(tmp_path: Path, translating: Path) -> None:
    out = tmp_path / "flow.h5"
    extract_flow([translating], out, method="dis", short_side=48)
    from_file = list(
        iter_two_stream_clips(translating, flow_file=out, chunks=3, flow_frames=4, short_side=48)
    )
    computed = list(
        iter_two_stream_clips(translating, chunks=3, flow_frames=4, short_side=48, method="dis")
    )
    assert len(from_file) == len(computed) == 1
    array, segment, time = from_file[0]
    assert array.shape == (3 + 2 * 4, 3, 48, 64) and array.dtype == np.float32
    assert segment == (0, 12)  # starts 0, 4, 7 (of 0..12-1-4); the last uses frames 7..11
    assert time[0] == 0.0 and time[1] == pytest.approx(12 / 25)
    np.testing.assert_allclose(array, computed[0].array, atol=1e-5)
    stored = read_flow(out, "slide.mp4")
    np.testing.assert_array_equal(array[3:5, 1], stored[4])  # chunk 1, field 4 = its l = 0
    np.testing.assert_array_equal(array[9:11, 2], stored[10])  # chunk 2 (start 7), l = 3
    assert array[:3].min() >= 0 and array[:3].max() <= 255 and array[:3].std() > 10


def test_cli_flow(tmp_path: Path) -> None:
    video = write_translating(tmp_path / "v.mp4", n_frames=6)
    out = tmp_path / "flow.h5"
    runner = CliRunner()
    args = ["flow", str(video), "-o", str(out), "--method", "dis", "--short-side", "48"]
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "1 video(s) written" in result.output
    assert read_flow(out, "v.mp4").shape == (5, 2, 48, 64)
    result = runner.invoke(cli, [*args, "--bound", "10"])
    assert result.exit_code == 1 and "--overwrite" in result.output
    result = runner.invoke(cli, ["flow", str(tmp_path / "missing.mp4"), "-o", str(out)])
    assert result.exit_code == 2


def test_short_videos(tmp_path: Path) -> None:
    three = write_translating(tmp_path / "three.mp4", n_frames=3)
    clips = list(iter_two_stream_clips(three, chunks=2, flow_frames=4, short_side=48, method="dis"))
    assert len(clips) == 1 and clips[0].segment == (0, 3)
    array = clips[0].array
    np.testing.assert_array_equal(array[7:9], array[5:7])  # fields past the end repeat field 1
    assert np.abs(np.median(array[5, 0]) - DX) < 0.5

    one = write_translating(tmp_path / "one.mp4", n_frames=1)
    (single,) = iter_two_stream_clips(one, chunks=2, flow_frames=4, short_side=48, method="dis")
    assert single.segment == (0, 1) and not single.array[3:].any()
    out = tmp_path / "flow.h5"
    assert extract_flow([one], out, method="dis", short_side=48).written == ["one.mp4"]
    assert read_flow(out, "one.mp4").shape == (0, 2, 48, 64)


def test_spaced_clips_follow_each_other(translating: Path) -> None:
    clips = list(
        iter_two_stream_clips(
            translating, chunks=2, flow_frames=2, spacing=2, short_side=48, method="dis"
        )
    )
    assert [clip.segment for clip in clips] == [(0, 5), (4, 9)]
    assert clips[1].time[0] == pytest.approx(4 / 25)


def test_missing_opencv_is_one_clear_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    video = write_translating(tmp_path / "v.mp4", n_frames=3)
    monkeypatch.setitem(sys.modules, "cv2", None)  # import cv2 now raises ImportError
    result = CliRunner().invoke(cli, ["flow", str(video), "-o", str(tmp_path / "f.h5")])
    assert result.exit_code == 1
    assert "feat3d flow needs OpenCV: pip install 'feat3d[flow]'" in result.output
