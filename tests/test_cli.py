"""The command line, through click's CliRunner and once as a real subprocess."""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import pytest
from click.testing import CliRunner

from feat3d import __version__
from feat3d.cli import cli

FAST = [
    "--model",
    "resnet-10",
    "--weights",
    "none",
    "--size",
    "32",
    "--crop",
    "32",
    "-j",
    "0",
    "-q",
]


@pytest.fixture
def clip(tmp_path, video_factory):
    return video_factory(tmp_path / "clip.mp4", n_frames=20, fps=25, codec="h264")


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_version():
    result = invoke("--version")
    assert result.exit_code == 0 and __version__ in result.output


def test_every_command_has_an_example_in_help():
    for command in ("extract", "classify"):
        result = invoke(command, "--help")
        assert (
            result.exit_code == 0
            and "Examples:" in result.output
            and f"feat3d {command}" in result.output
        )


def test_extract_writes_h5(tmp_path, clip):
    out = tmp_path / "f.h5"
    result = invoke("extract", str(clip), "-o", str(out), *FAST)
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert f["clip.mp4/features"].shape == (2, 512)
        assert f.attrs["weights"] == "none" or f.attrs["weights_format"] == "random"


def test_extract_exit_code_1_when_a_video_fails(tmp_path, clip):
    bad = tmp_path / "bad.mp4"
    bad.write_text("this is not a video")
    out = tmp_path / "f.h5"
    result = CliRunner().invoke(cli, ["extract", str(clip), str(bad), "-o", str(out), *FAST])
    assert result.exit_code == 1
    assert f"error: {bad}:" in result.output
    with h5py.File(out, "r") as f:
        assert "clip.mp4" in f and "bad.mp4" not in f


def test_usage_errors_exit_2(tmp_path, clip):
    missing = CliRunner().invoke(cli, ["extract", str(tmp_path / "nope.mp4"), "-o", "x.h5", *FAST])
    assert missing.exit_code == 2 and "nope.mp4" in missing.output
    bad_size = CliRunner().invoke(cli, ["extract", str(clip), "-o", "x.h5", *FAST, "--size", "big"])
    assert bad_size.exit_code == 2 and "not a size" in bad_size.output
    bad_model = CliRunner().invoke(cli, ["classify", str(clip), "--model", "resnet-7"])
    assert bad_model.exit_code == 2


def test_missing_weights_file_is_one_line_exit_1(tmp_path, clip):
    result = CliRunner().invoke(cli, ["classify", str(clip), "-w", str(tmp_path / "w.pth")])
    assert result.exit_code == 1 and "Error:" in result.output
    assert "Traceback" not in result.output


def test_bf16_on_a_cpu_without_bf16_instructions_is_one_line_exit_1(monkeypatch, clip):
    import feat3d.precision

    monkeypatch.setattr(feat3d.precision, "cpu_has_native_bf16", lambda: False)
    result = CliRunner().invoke(
        cli, ["classify", str(clip), *FAST, "--device", "cpu", "--precision", "bf16"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "bf16 needs a CUDA device or a CPU with bf16 instructions" in result.output


def test_classify_json_and_random_weights_marker(tmp_path, clip):
    out = tmp_path / "labels.json"
    result = invoke("classify", str(clip), *FAST, "--top-k", "3", "--per-clip", "--json", str(out))
    assert result.exit_code == 0
    assert "random weights" in result.output
    data = json.loads(out.read_text())
    assert data["model"]["arch"] == "resnet-10" and data["model"]["random_weights"] is True
    (video,) = data["videos"]
    assert video["video"] == "clip.mp4" and len(video["top_k"]) == 3
    scores = [entry["score"] for entry in video["top_k"]]
    assert scores == sorted(scores, reverse=True)
    assert [c["segment"] for c in video["clips"]] == [[0, 16], [16, 20]]
    assert video["clips"][1]["time"] == pytest.approx([0.64, 0.8], abs=1e-6)


def test_classify_hara_format(tmp_path, clip):
    out = tmp_path / "hara.json"
    result = invoke("classify", str(clip), *FAST, "--json", str(out), "--format", "hara")
    assert result.exit_code == 0
    (video,) = json.loads(out.read_text())
    assert video["video"] == "clip.mp4"
    assert [c["segment"] for c in video["clips"]] == [[1, 16], [17, 20]]
    assert len(video["clips"][0]["scores"]) == 400
    assert isinstance(video["clips"][0]["label"], str)


def test_real_subprocess(tmp_path, clip):
    out = tmp_path / "f.json"
    command = [sys.executable, "-m", "feat3d.cli", "extract", str(clip), "-o", str(out), *FAST]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = out.read_text().splitlines()
    assert json.loads(lines[0])["feat3d"]["arch"] == "resnet-10"
    assert json.loads(lines[1])["video"] == "clip.mp4"


def test_models_lists_every_architecture_with_its_layers():
    from feat3d.backbones import get_backbone, list_backbones

    result = invoke("models", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert set(rows) == set(list_backbones())
    small = get_backbone("resnet-10")
    assert rows["resnet-10"]["layers"] == {"conv5": 512, "pool5": 512, "logits": 400, "probs": 400}
    assert rows["resnet-10"]["num_params"] == sum(p.numel() for p in small.parameters())
    assert "resnet-34-kinetics.pth" in rows["resnet-34"]["weights"]
    table = invoke("models", "resnet-1*")
    assert table.exit_code == 0 and "resnet-18" in table.output and "r3d_18" not in table.output


def test_weights_table_names_only_registered_models():
    from feat3d.backbones import list_backbones

    result = invoke("weights", "--json")
    assert result.exit_code == 0
    rows = json.loads(result.output)
    assert {row["model"] for row in rows} <= set(list_backbones())
    by_file = {row["filename"]: row for row in rows}
    assert by_file["r3d50_KMS_200ep.pth"]["classes"] == 1139
    assert by_file["resnet-34-kinetics.pth"]["format"] == "hara2017"
    assert "r3d_18.kinetics400_v1" in by_file["r3d_18-b3b3357e.pth"]["source"]


def test_published_weights_carry_the_sampling_their_metadata_applies():
    from feat3d.backbones import default_meta
    from feat3d.backbones.published import published_checkpoints

    rows = {row.filename: row for row in published_checkpoints()}
    assert "15 fps" in rows["r3d_18-b3b3357e.pth"].sampling
    assert default_meta("r3d_18").frame_rate == 15
    assert "native" in rows["resnet-34-kinetics.pth"].sampling
    assert default_meta("resnet-34").frame_rate is None
