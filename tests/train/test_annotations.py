"""Hara et al.'s annotation JSON over frame folders: the published split runs unchanged."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
from click.testing import CliRunner

from feat3d.cli import cli
from feat3d.train import DatasetError, load_annotation
from tests.io.test_frames import dump_frames
from tests.videos import write_video


def hara_dataset(root: Path) -> dict:
    """``root/jpg/<label>/<id>/image_%05d.png`` with ``n_frames``, and its UCF-style JSON."""
    database = {}
    for label in ("jump", "run"):
        for k, subset in enumerate(("training", "training", "validation", "testing")):
            video_id = f"v_{label}_g0{k}"
            video = write_video(root / "src" / f"{video_id}.mkv", n_frames=10, codec="ffv1",
                                width=32, height=32)  # fmt: skip
            folder = dump_frames(video, root / "jpg" / label / video_id)
            (folder / "n_frames").write_text("10")
            entry = {"subset": subset, "annotations": {"label": label, "segment": [1, 11]}}
            if subset == "testing":
                entry["annotations"] = {}
            database[video_id] = entry
    database["v_gone_g00"] = {"subset": "training",
                              "annotations": {"label": "run", "segment": [1, 11]}}  # fmt: skip
    return {"labels": ["jump", "run"], "database": database}


@pytest.fixture(scope="module")
def ucf(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("hara")
    annotation = root / "ucf101_01.json"
    annotation.write_text(json.dumps(hara_dataset(root)))
    return root / "jpg", annotation


def test_split_classes_and_segments(ucf) -> None:
    root, annotation = ucf
    with pytest.warns(UserWarning, match=r"1 annotated video\(s\) not found.*v_gone_g00"):
        split = load_annotation(root, annotation)
    assert split.classes == ["jump", "run"]
    assert [i.key for i in split.train] == [
        "jump/v_jump_g00", "jump/v_jump_g01", "run/v_run_g00", "run/v_run_g01"]  # fmt: skip
    assert [i.key for i in split.val] == ["jump/v_jump_g02", "run/v_run_g02"]
    assert [i.label for i in split.train] == [0, 0, 1, 1]
    assert split.train[0].path == root / "jump" / "v_jump_g00" and split.train[0].frames == (0, 10)


def test_activitynet_segments_in_seconds(tmp_path, ucf) -> None:
    root, _ = ucf
    net = tmp_path / "anet"
    net.mkdir()
    (net / "v_abc").symlink_to(root / "jump" / "v_jump_g00")
    data = {
        "taxonomy": [
            {"nodeId": 0, "parentId": None, "nodeName": "Root"},
            {"nodeId": 1, "parentId": 0, "nodeName": "Sports"},
            {"nodeId": 2, "parentId": 1, "nodeName": "Long jump"},
            {"nodeId": 3, "parentId": 1, "nodeName": "Running"},
        ],
        "database": {"abc": {"subset": "training", "fps": 5.0, "annotations": [
            {"label": "Running", "segment": [0.2, 1.0]},
            {"label": "Long jump", "segment": [1.0, 1.9]},
        ]}},
    }  # fmt: skip
    annotation = tmp_path / "activity_net.json"
    annotation.write_text(json.dumps(data))
    split = load_annotation(net, annotation)
    assert split.classes == ["Long jump", "Running"]
    assert [(i.key, i.label, i.frames) for i in split.train] == [
        ("v_abc#0", 1, (1, 5)), ("v_abc#1", 0, (5, 9))]  # fmt: skip
    del data["database"]["abc"]["fps"]
    annotation.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match=r"no frame rate .* give --frame-rate"):
        load_annotation(net, annotation)
    assert load_annotation(net, annotation, frame_rate=10).train[0].frames == (2, 10)


def test_train_one_epoch_from_the_annotation(tmp_path, ucf) -> None:
    root, annotation = ucf
    out = tmp_path / "run"
    args = ["train", str(root), "--annotation", str(annotation), "-o", str(out),
            "-m", "resnet-10", "--epochs", "1", "-b", "4", "--accumulate", "1",
            "--clip-len", "4", "--crop", "32", "--decode-size", "32", "--scales", "1",
            "-j", "0", "--device", "cpu"]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "2 classes, 4 training and 2 validation videos" in result.output
    assert (out / "best.pt").is_file()
    counts = json.loads((out / "frame_counts.json").read_text())["videos"]
    assert sorted(Path(k).name for k in counts) == [
        "v_jump_g00", "v_jump_g01", "v_run_g00", "v_run_g01"]  # fmt: skip
    assert all(entry["n_frames"] == 10 for entry in counts.values())
    bad = CliRunner().invoke(cli, [*args, "--csv", str(annotation)])
    assert bad.exit_code == 2 and "--annotation names the split" in bad.output
