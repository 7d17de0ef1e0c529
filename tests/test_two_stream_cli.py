"""The two-stream ST-ResNet from the command line: flow → train stages → classify/extract."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import pytest
import torch
from click.testing import CliRunner

from feat3d.cli import cli
from tests.backbones.test_st_resnet import _ResNet50_2d
from tests.train.test_fit import _motion_module

pytest.importorskip("cv2")


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> dict[str, Path]:
    """The motion dataset of the training tests (two of its classes), its flow, and a
    randomly initialised torchvision-layout ResNet-50 standing in for ImageNet weights."""
    root = tmp_path_factory.mktemp("two_stream")
    data = _motion_module().make_motion_dataset(
        root / "data", classes=("left", "right"), videos_per_class=2, n_frames=16, size=32
    )
    flow = root / "flow.h5"
    result = CliRunner().invoke(
        cli, ["flow", str(data), "-o", str(flow), "--method", "dis", "--short-side", "32", "-q"]
    )
    assert result.exit_code == 0, result.output
    torch.manual_seed(0)
    resnet50 = root / "resnet50.pth"
    torch.save(_ResNet50_2d().state_dict(), resnet50)
    return {"root": root, "data": data, "flow": flow, "resnet50": resnet50}


def _invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture(scope="module")
def staged(project) -> Path:
    """Stage `motion` from ImageNet weights, then stage `st` from its checkpoint."""
    common = ["--flow", str(project["flow"]), "--max-steps", "1", "-b", "2", "--crop", "32",
              "-j", "0", "--val-split", "0"]  # fmt: skip
    first = project["root"] / "run_motion"
    out = _invoke("train", str(project["data"]), "-o", str(first), "-m", "st-resnet-50",
                  "--stage", "motion", "--init-2d", str(project["resnet50"]), *common)  # fmt: skip
    assert "stage motion: 1 step(s)" in out and (first / "last.pt").exists()
    second = project["root"] / "run_st"
    out = _invoke("train", str(project["data"]), "-o", str(second), "-m", "st-resnet-50",
                  "--stage", "st", "--pretrained", str(first / "last.pt"), *common)  # fmt: skip
    assert "stage st: 1 step(s)" in out
    assert (second / "steps.csv").read_text().splitlines()[0] == "step,lr,loss"
    return second / "last.pt"


def test_a_stage_needs_its_flow_and_one_weights_source(project):
    result = CliRunner().invoke(cli, ["train", str(project["data"]), "-o", "x", "-m",
                                      "st-resnet-50", "--stage", "st", "--flow",
                                      str(project["flow"]), "--val-split", "0"])  # fmt: skip
    assert result.exit_code != 0 and "--init-2d" in result.output
    result = CliRunner().invoke(cli, ["train", str(project["data"]), "-o", "x", "-m",
                                      "st-resnet-50", "--val-split", "0"])  # fmt: skip
    assert result.exit_code == 2 and "--stage" in result.output


def test_classify_with_a_flow_file_labels_every_video(project, staged, tmp_path):
    out = tmp_path / "labels.json"
    _invoke("classify", str(project["data"]), "-w", str(staged), "--flow", str(project["flow"]),
            "--chunks", "3", "-k", "2", "-q", "--json", str(out))  # fmt: skip
    report = json.loads(out.read_text())
    assert len(report["videos"]) == 4 and not report["failures"]
    for video in report["videos"]:
        assert {label["label"] for label in video["top_k"]} == {"left", "right"}
        assert sum(label["score"] for label in video["top_k"]) == pytest.approx(1.0, abs=1e-4)


def test_extract_each_stream_and_flow_computed_on_the_fly(project, staged, tmp_path):
    stored = tmp_path / "stored.h5"
    _invoke("extract", str(project["data"] / "left"), "-o", str(stored), "-w", str(staged),
            "--flow", str(project["flow"]), "--chunks", "3", "--layer", "pool5_motion",
            "-q")  # fmt: skip
    with h5py.File(stored) as handle:
        assert handle.attrs["chunks"] == 3 and handle.attrs["flow_method"] == "dis"
        assert handle["left_0.mp4/features"].shape == (1, 2048)
    both = tmp_path / "both.h5"
    _invoke("extract", str(project["data"] / "left" / "left_0.mp4"), "-o", str(both), "-w",
            str(staged), "--flow-method", "dis", "--chunks", "3", "-q")  # fmt: skip
    with h5py.File(both) as handle:
        assert handle["left_0.mp4/features"].shape == (1, 4096)  # pool5 of both streams
        assert handle.attrs["flow"] == ""


def test_evaluate_runs_the_paper_test_protocol(project, staged, tmp_path):
    out = _invoke("evaluate", str(staged), str(project["data"]), "--split", "all", "--flow",
                  str(project["flow"]), "--chunks", "3", "-o", str(tmp_path / "eval"))  # fmt: skip
    assert "(4 videos, 4 clips, 0 failed)" in out  # one fully convolutional "clip" per video
    metrics = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert 0.0 <= metrics["video_top1"] <= 1.0 and metrics["n_videos"] == metrics["n_clips"] == 4
