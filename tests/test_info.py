"""``feat3d info``: summaries of extract outputs (every format), one video, and checkpoints."""

from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feat3d.backbones import get_backbone, kinetics400_categories, save_checkpoint
from feat3d.cli import cli
from feat3d.info import (
    InfoError,
    OutputInfo,
    describe,
    describe_checkpoint,
    describe_output,
    describe_video,
    is_checkpoint_path,
)
from feat3d.io.writers import VideoFailure, VideoFeatures, open_writer, read_h5_features
from feat3d.run.extract import extract
from tests.videos import write_text, write_video

CLIP_LEN = 16
FRAMES = {"a.mp4": 40, "sub/b.mp4": 20}  # video key → frames
FORMATS = {"h5": "feats.h5", "json": "feats.jsonl", "npy": "feats"}
CLASSES = ["left", "right", "up", "down"]


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, tiny_model) -> dict[str, object]:
    """One extract run over two videos and a broken file, written in every format."""
    root = tmp_path_factory.mktemp("info")
    videos = root / "videos"
    for key, n_frames in FRAMES.items():
        write_video(videos / key, n_frames=n_frames, width=64, height=48)
    write_text(videos / "broken.mp4")
    paths: dict[str, Path] = {}
    failures = []
    for form, name in FORMATS.items():
        paths[form] = root / name
        report = extract([videos], paths[form], model=tiny_model, format=form, crop=32, size=32)
        failures = report.failures
    return {"paths": paths, "failures": failures, "stored": read_h5_features(paths["h5"])}


@pytest.mark.parametrize("form", list(FORMATS))
def test_output_summary_matches_what_extract_wrote(outputs, form):
    info = describe_output(outputs["paths"][form])
    stored = outputs["stored"]
    assert info.format == form
    assert info.keys == sorted(FRAMES)
    assert info.n_videos == len(FRAMES)
    assert info.n_clips == sum(math.ceil(n / CLIP_LEN) for n in FRAMES.values())
    assert info.feature_shape == stored["a.mp4"]["features"].shape[1:]
    assert info.feature_dim == stored["a.mp4"]["features"].shape[1]
    assert info.dtype == "float32" and not info.average_only
    assert info.options["arch"] == "resnet-10" and info.options["layer"] == "pool5"
    assert info.options["clip_len"] == CLIP_LEN and info.options["crop"] == 32
    [failure] = outputs["failures"]
    assert [(f.key, f.message) for f in info.failures] == [(failure.key, failure.message)]
    assert info.disk_bytes > 0 and info.incomplete == 0 and info.journal_records is None
    text = info.to_text()
    assert "2 complete, 1 failed" in text and failure.message in text and "resnet-10" in text
    assert json.loads(json.dumps(info.to_json()))["feature_dim"] == info.feature_dim


@pytest.mark.parametrize("form", list(FORMATS))
def test_one_video_lists_its_clips_in_frames_and_seconds(outputs, form):
    video = describe_video(outputs["paths"][form], "a.mp4")
    stored = outputs["stored"]["a.mp4"]
    assert [c.index for c in video.clips] == list(range(len(stored["segments"])))
    np.testing.assert_array_equal([c.segment for c in video.clips], stored["segments"])
    np.testing.assert_allclose([c.time for c in video.clips], stored["timestamps"], atol=1e-9)
    assert video.attrs["n_frames"] == FRAMES["a.mp4"] and video.attrs["width"] == 64
    assert video.feature_shape[0] == len(stored["segments"])
    text = video.to_text()
    first = video.clips[-1]
    assert f"{first.segment[0]}–{first.segment[1]}" in text
    assert json.loads(json.dumps(video.to_json()))["clips"][0]["segment"] == [0, CLIP_LEN]


@pytest.mark.parametrize("form", list(FORMATS))
def test_a_missing_or_failed_video_is_one_clear_error(outputs, form):
    path = outputs["paths"][form]
    with pytest.raises(InfoError, match=r"no complete video 'nope\.mp4'.*a\.mp4"):
        describe_video(path, "nope.mp4")
    [failure] = outputs["failures"]
    with pytest.raises(InfoError, match=re.escape(f"failed: {failure.message}")):
        describe_video(path, failure.key)


def test_unfinished_hdf5_groups_are_counted_apart(outputs, tmp_path):
    copy = tmp_path / "killed.h5"
    shutil.copy(outputs["paths"]["h5"], copy)
    with h5py.File(copy, "a") as handle:  # what a run killed mid-write used to leave
        handle.create_group("half.mp4").create_dataset("segments", data=np.zeros((1, 2)))
    info = describe_output(copy)
    assert info.incomplete == 1 and info.n_videos == len(FRAMES) and "half.mp4" not in info.keys


def _fake_video(key: str) -> VideoFeatures:
    segments = np.array([[0, 16], [16, 32]])
    return VideoFeatures(
        key=key, source=f"/data/{key}", features=np.ones((2, 8), np.float32),
        segments=segments, timestamps=segments / 25.0, fps=25.0, n_frames=32, duration=1.28,
        width=64, height=48, padded_frames=0,
    )  # fmt: skip


def test_pending_journal_records_are_reported(tmp_path):
    pytest.importorskip("feat3d.io.h5store")
    path = tmp_path / "run.h5"
    attrs = {"arch": "resnet-10", "layer": "pool5", "dtype": "float32"}
    writer = open_writer(path, format="h5", attrs=attrs)
    writer.write(_fake_video("done.mp4"))
    writer.close()
    writer = open_writer(path, format="h5", attrs=attrs)
    try:  # not closed yet: the next results wait in OUT.h5.journal, as after a kill
        writer.write(_fake_video("pending1.mp4"))
        writer.write(_fake_video("pending2.mp4"))
        info = describe_output(path)
    finally:
        writer.close()
    assert info.n_videos == 1 and info.journal_records == 2
    assert "2 record(s) pending" in info.to_text()
    assert describe_output(path).journal_records is None  # closing merged them
    assert describe_output(path).n_videos == 3


def test_a_journal_this_version_cannot_read_is_mentioned(outputs, tmp_path):
    copy = tmp_path / "feats.h5"
    shutil.copy(outputs["paths"]["h5"], copy)
    Path(f"{copy}.journal").write_bytes(b"F3DJRN99" + bytes(64))  # a later version's journal
    info = describe_output(copy)
    assert info.journal_records is None and "cannot read" in info.journal_note
    assert "feats.h5.journal" in info.to_text()


# ------------------------------------------------------------------------------ checkpoints


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    model = get_backbone("resnet-10", num_classes=len(CLASSES))
    model.meta.categories = list(CLASSES)
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pt"
    return save_checkpoint(model, path), model


@pytest.mark.parametrize("suffix", [".pt", ".safetensors"])
def test_checkpoint_summary(checkpoint, tmp_path, suffix):
    _, model = checkpoint
    path = save_checkpoint(model, tmp_path / f"tiny{suffix}")
    info = describe_checkpoint(path)
    assert info.arch == "resnet-10" and info.format == "feat3d"
    assert info.n_classes == len(CLASSES) and info.classes == CLASSES
    assert info.n_parameters == sum(p.numel() for p in model.parameters())
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.meta["clip_len"] == model.meta.clip_len
    assert info.meta["mean"] == list(model.meta.mean)
    assert info.disk_bytes == path.stat().st_size
    text = info.to_text()
    assert "left, right, up, down" in text and info.sha256 in text and "resnet-10" in text


def test_torchvision_state_dict_summary(tmp_path):
    model = get_backbone("mc3_18")
    path = tmp_path / "mc3.pth"
    torch.save(model.state_dict(), path)
    info = describe_checkpoint(path)
    assert info.format == "torchvision" and info.arch == "mc3_18"
    assert info.classes == kinetics400_categories()
    assert info.n_parameters == sum(p.numel() for p in model.parameters())
    assert "400: " + ", ".join(kinetics400_categories()[:5]) in info.to_text()


def test_outputs_and_checkpoints_are_told_apart_by_content(outputs, checkpoint, tmp_path):
    ckpt, _ = checkpoint
    unnamed = tmp_path / "weights"
    shutil.copy(ckpt, unnamed)
    renamed_h5 = tmp_path / "features.dat"
    shutil.copy(outputs["paths"]["h5"], renamed_h5)
    assert is_checkpoint_path(unnamed) and is_checkpoint_path(ckpt)
    assert not is_checkpoint_path(renamed_h5)
    assert not is_checkpoint_path(outputs["paths"]["npy"])
    assert not is_checkpoint_path(outputs["paths"]["json"])
    assert describe(unnamed).arch == "resnet-10"
    assert describe(renamed_h5).n_videos == len(FRAMES)
    notes = tmp_path / "notes.txt"
    notes.write_text("hello\n")
    with pytest.raises(InfoError, match=r"notes\.txt: neither a feat3d output"):
        describe(notes)
    with pytest.raises(InfoError, match="--video applies to extract outputs"):
        describe(ckpt, video="a.mp4")


# ---------------------------------------------------------------------------------- the CLI


def test_cli_info_on_outputs_videos_and_checkpoints(outputs, checkpoint, tmp_path):
    runner = CliRunner()
    h5 = str(outputs["paths"]["h5"])
    result = runner.invoke(cli, ["info", h5])
    assert result.exit_code == 0 and "2 complete, 1 failed" in result.output
    result = runner.invoke(cli, ["info", str(outputs["paths"]["npy"]), "--json"])
    assert result.exit_code == 0 and json.loads(result.output)["n_videos"] == len(FRAMES)
    result = runner.invoke(cli, ["info", h5, "--video", "sub/b.mp4", "--json"])
    data = json.loads(result.output)
    assert result.exit_code == 0 and data["attrs"]["n_frames"] == FRAMES["sub/b.mp4"]
    result = runner.invoke(cli, ["info", str(checkpoint[0])])
    assert result.exit_code == 0 and "feat3d checkpoint" in result.output
    result = runner.invoke(cli, ["info", h5, "--video", "nope.mp4"])
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"Error: {h5}: no complete video 'nope.mp4' (it holds 2: a.mp4, sub/b.mp4)"
    ]
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"\x00" * 64)
    result = runner.invoke(cli, ["info", str(junk)])
    assert result.exit_code == 1 and len(result.output.strip().splitlines()) == 1


def test_info_describes_a_flow_file(tmp_path, video_factory):
    pytest.importorskip("cv2")
    from feat3d.flow import extract_flow
    from feat3d.info import FlowInfo, describe

    video = video_factory(tmp_path / "v.mp4", n_frames=6, width=48, height=32)
    bad = tmp_path / "bad.mp4"
    bad.write_text("not a video")
    out = tmp_path / "flow.h5"
    extract_flow([video, bad], out, method="dis", short_side=32)
    info = describe(out)
    assert isinstance(info, FlowInfo)
    assert (info.videos, info.fields, info.method, info.short_side) == (1, 5, "dis", 32)
    assert info.frame_size == (32, 48) and [f.key for f in info.failed] == ["bad.mp4"]
    text = info.to_text()
    assert "optical flow" in text and "5 (uint8" in text and "bad.mp4: not a video" in text


# ------------------------------------------------------------------------ listing the videos


def _many_videos(path: Path, count: int) -> list[str]:
    writer = open_writer(path, format="h5", attrs={"arch": "resnet-10", "dtype": "float32"})
    keys = [f"v{i:02d}.mp4" for i in range(count)]
    for key in reversed(keys):
        writer.write(_fake_video(key))
    writer.close()
    return keys


def test_info_lists_the_first_20_videos_and_how_many_more(tmp_path):
    path = tmp_path / "many.h5"
    keys = _many_videos(path, 25)
    info = describe_output(path)
    assert [v.key for v in info.videos] == keys
    assert {(v.n_clips, v.seconds, v.fps) for v in info.videos} == {(2, 1.28, 25.0)}
    lines = info.to_text().splitlines()
    listed = [line for line in lines if line.endswith(".mp4")]
    assert [line.split()[-1] for line in listed] == keys[:20]
    assert listed[0].split() == ["2", "1.28", "v00.mp4"]
    assert "videos (first 20 of 25)" in lines and lines[-1].startswith("... and 5 more")
    every = info.to_text(all_videos=True).splitlines()
    assert [line.split()[-1] for line in every if line.endswith(".mp4")] == keys
    assert not any("more" in line for line in every)

    runner = CliRunner()
    result = runner.invoke(cli, ["info", str(path)])
    assert result.exit_code == 0 and "... and 5 more (--all lists every one)" in result.output
    assert "v19.mp4" in result.output and "v20.mp4" not in result.output
    result = runner.invoke(cli, ["info", str(path), "--all"])
    assert result.exit_code == 0 and "v24.mp4" in result.output and "more" not in result.output
    data = json.loads(runner.invoke(cli, ["info", str(path), "--json"]).output)
    assert [v["key"] for v in data["videos"]] == keys
    assert data["videos"][0] == {
        "key": "v00.mp4", "source": "/data/v00.mp4", "n_clips": 2, "seconds": 1.28, "fps": 25.0,
    }  # fmt: skip


def test_info_describes_an_output_of_which_only_the_journal_exists(tmp_path):
    path = tmp_path / "killed.h5"
    attrs = {"arch": "resnet-10", "layer": "pool5", "dtype": "float32"}
    writer = open_writer(path, format="h5", attrs=attrs)
    writer.write(_fake_video("b.mp4"))
    writer.write(_fake_video("a.mp4"))
    writer.write_error(VideoFailure("bad.mp4", "/data/bad.mp4", "not a video"))
    writer.store.journal.close()  # the process dies: no file, the journal stays
    assert not path.exists()

    info = describe(path)
    assert isinstance(info, OutputInfo) and info.pending_only
    assert info.n_videos == 0 and info.journal_records == 3
    assert [v.key for v in info.videos] == ["a.mp4", "b.mp4"] and info.n_clips == 4
    assert [f.key for f in info.failures] == ["bad.mp4"] and info.feature_shape == (8,)
    text = info.to_text()
    assert "not written yet" in text and "same options" in text and "resumes" in text
    assert "2 pending, 1 failed" in text and "videos pending in the journal (all 2)" in text

    result = CliRunner().invoke(cli, ["info", str(path)])
    assert result.exit_code == 0 and "not written yet" in result.output
    data = json.loads(CliRunner().invoke(cli, ["info", str(path), "--json"]).output)
    assert data["pending_only"] and [v["key"] for v in data["videos"]] == ["a.mp4", "b.mp4"]

    open_writer(path, format="h5", attrs=attrs).close()  # the same options resume it
    assert describe_output(path).n_videos == 2 and not describe_output(path).pending_only


def test_info_on_a_journal_with_no_result_yet_and_on_nothing(tmp_path):
    path = tmp_path / "early.h5"
    writer = open_writer(path, format="h5", attrs={"arch": "resnet-10"})
    writer.store.journal.close()  # killed before its first video
    info = describe_output(path)
    assert info.pending_only and info.journal_records == 0 and info.videos == []
    assert "holds 0 result(s)" in info.to_text()
    missing = CliRunner().invoke(cli, ["info", str(tmp_path / "nothing.h5")])
    assert missing.exit_code == 2 and "does not exist" in missing.output
