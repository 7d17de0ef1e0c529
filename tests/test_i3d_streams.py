"""I3D's RGB and flow streams end to end: extract and classify on a generated video.

Each network is built, loaded and folded once for the module (:mod:`tests.load_once`): the
runs here differ in their clips and streams, never in how a network is loaded, which
tests/backbones/test_i3d.py covers.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feat3d.backbones import get_backbone
from feat3d.cli import cli
from feat3d.flow import FlowFile
from tests.backbones.test_i3d import port_state_dict
from tests.load_once import networks_loaded_once
from tests.videos import write_video

pytest.importorskip("cv2")

# 8-frame windows 4 apart, frames 48×40 kept at short side 40, centre crop 16.
COMMON = ["--clip-len", "8", "--stride", "4", "--size", "40", "--crop", "16", "-q",
          "--flow-method", "dis"]  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def _load_each_network_once() -> Iterator[None]:
    with networks_loaded_once() as loaded:
        yield
    assert len(loaded) == 2  # the RGB and the flow network, once each


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("i3d")
    write_video(root / "videos" / "a.mp4", n_frames=20, width=48, height=40, pattern="texture")
    torch.save(port_state_dict(), root / "rgb_imagenet.pt")
    torch.save(port_state_dict(in_channels=2, seed=1), root / "flow_imagenet.pt")
    return {"root": root, "videos": root / "videos", "rgb": root / "rgb_imagenet.pt",
            "flow": root / "flow_imagenet.pt"}  # fmt: skip


@pytest.fixture(scope="module")
def flow_h5(project: dict[str, Path]) -> Path:
    """``feat3d flow`` of the video at the native rate, short side 40."""
    path = project["root"] / "flow.h5"
    _invoke("flow", project["videos"], "-o", path, "--method", "dis", "--short-side", "40",
            "-q")  # fmt: skip
    return path


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, (result.output, result.exception)
    return result.output


def _features(path: Path) -> np.ndarray:
    with h5py.File(path, "r") as f:
        return f["a.mp4"]["features"][()]


def test_both_streams_store_rgb_then_flow(project: dict[str, Path], tmp_path: Path) -> None:
    both, rgb, flow = tmp_path / "both.h5", tmp_path / "rgb.h5", tmp_path / "flow.h5"
    _invoke("extract", project["videos"], "-o", both, "-m", "i3d", "-w", project["rgb"],
            "--streams", "rgb,flow", "--flow-weights", project["flow"], *COMMON)  # fmt: skip
    _invoke("extract", project["videos"], "-o", rgb, "-m", "i3d", "-w", project["rgb"], *COMMON)
    _invoke("extract", project["videos"], "-o", flow, "-m", "i3d-flow", "-w", project["flow"],
            *COMMON)  # fmt: skip
    features = _features(both)
    assert features.shape == (4, 2048)  # windows at 0, 4, 8, 12 of 20 frames
    with h5py.File(both, "r") as f:
        assert f.attrs["streams"] == "rgb,flow" and f.attrs["fps"] == 25.0
        assert list(f.attrs["pool5_rgb_columns"]) == [0, 1024]
        assert list(f.attrs["pool5_flow_columns"]) == [1024, 2048]
        assert f["a.mp4"]["segments"][()].tolist() == [[0, 8], [4, 12], [8, 16], [12, 20]]
    # The RGB half is what RGB-only extraction gives (there with batch norm folded).
    np.testing.assert_allclose(features[:, :1024], _features(rgb), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(features[:, 1024:], _features(flow), rtol=1e-5, atol=1e-6)
    assert not np.allclose(features[:, :1024], features[:, 1024:], atol=1e-3)


def test_flow_stream_input_is_stored_flow_over_20(
    project: dict[str, Path], flow_h5: Path, tmp_path: Path
) -> None:
    """A ``feat3d flow`` file at the native rate: each window's fields, centre-cropped and
    divided by 20, are the flow network's input; computing flow on the fly gives the same."""
    stored, computed = tmp_path / "stored.h5", tmp_path / "computed.h5"
    args = ["-m", "i3d-flow", "-w", project["flow"], "--fps", "0", "--layer", "pool5", *COMMON]
    _invoke("extract", project["videos"], "-o", stored, "--flow", flow_h5, *args)
    _invoke("extract", project["videos"], "-o", computed, *args)
    features = _features(stored)
    np.testing.assert_allclose(features, _features(computed), rtol=1e-5, atol=1e-6)

    with FlowFile(flow_h5) as flows:
        fields = flows.read("a.mp4", 0, 8)  # window 0: fields 0..7, (8, 2, 40, 48) pixels
    top, left = 12, 16  # centre 16×16 of 40×48
    x = torch.from_numpy(fields[:, :, top : top + 16, left : left + 16] / 20.0)
    x = x.permute(1, 0, 2, 3)[None].float()
    model = get_backbone("i3d-flow", weights=str(project["flow"])).eval()
    with torch.no_grad():
        expected = model.forward_features(x)[0].numpy()
    np.testing.assert_allclose(features[0], expected, rtol=1e-4, atol=1e-5)


def test_classify_averages_both_streams(project: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "labels.json"
    _invoke("classify", project["videos"], "-m", "i3d", "-w", project["rgb"], "--streams",
            "rgb,flow", "--flow-weights", project["flow"], "-k", "3", "--json", out,
            *COMMON)  # fmt: skip
    report = json.loads(out.read_text())
    assert not report["failures"] and len(report["videos"]) == 1
    top = report["videos"][0]["top_k"]
    assert len(top) == 3 and all(0 < label["score"] < 1 for label in top)


def test_stream_options_are_checked(project: dict[str, Path], tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["extract", str(project["videos"]), "-o", str(tmp_path / "x.h5"), "-m", "i3d"]
    result = runner.invoke(cli, [*base, "-w", str(project["rgb"]), "--streams", "rgb,flow"])
    assert result.exit_code == 2 and "--flow-weights" in result.output
    result = runner.invoke(cli, [*base, "-w", str(project["rgb"]), "--streams", "depth"])
    assert result.exit_code == 2 and "streams" in result.output
    result = runner.invoke(cli, [*base, "-w", str(project["rgb"]), "--streams", "flow"])
    assert result.exit_code == 2 and "i3d-flow" in result.output


def test_a_flow_file_at_another_rate_fails_the_video(
    project: dict[str, Path], flow_h5: Path, tmp_path: Path
) -> None:
    result = CliRunner().invoke(cli, ["extract", str(project["videos"]), "-o",
                                      str(tmp_path / "x.h5"), "-m", "i3d-flow", "-w",
                                      str(project["flow"]),
                                      "--flow", str(flow_h5), *COMMON])  # fmt: skip
    assert result.exit_code == 1
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert "a.mp4" not in f


def test_start_and_end_pick_the_same_windows(
    project: dict[str, Path], flow_h5: Path, tmp_path: Path
) -> None:
    """``--start 0.16 --end 0.8`` (frames 4..19 at 25 fps) gives the windows of a whole-video
    run that start at frame 4, with the same features: decoded and flow computed in two
    worker processes (one video each, windows of both in one batch), in this one
    (``--workers 0``), or flow read from a ``feat3d flow`` file."""
    two = tmp_path / "two"
    two.mkdir()
    for name in ("a.mp4", "b.mp4"):
        shutil.copyfile(project["videos"] / "a.mp4", two / name)
    window = ["--start", "0.16", "--end", "0.8"]
    both = ["-m", "i3d", "-w", project["rgb"], "--streams", "rgb,flow", "--flow-weights",
            project["flow"], "--fps", "0", *COMMON]  # fmt: skip
    outputs = {name: tmp_path / f"{name}.h5" for name in ("whole", "pool", "here", "stored")}
    _invoke("extract", project["videos"], "-o", outputs["whole"], "--workers", "0", *both)
    _invoke("extract", two, "-o", outputs["pool"], "--workers", "2", *window, *both)
    _invoke("extract", project["videos"], "-o", outputs["here"], "--workers", "0", *window, *both)
    _invoke("extract", project["videos"], "-o", outputs["stored"], "--flow", flow_h5,
            "--workers", "0", *window, *both)  # fmt: skip
    with h5py.File(outputs["pool"], "r") as f:
        for key in ("a.mp4", "b.mp4"):
            assert f[key]["segments"][()].tolist() == [[4, 12], [8, 16], [12, 20]]
        assert f.attrs["start"] == 0.16 and f.attrs["end"] == 0.8
        second = f["b.mp4"]["features"][()]
    whole = _features(outputs["whole"])
    assert whole.shape == (4, 2048)
    for features in (*(_features(outputs[n]) for n in ("pool", "here", "stored")), second):
        np.testing.assert_allclose(features, whole[1:], rtol=1e-5, atol=1e-6)
