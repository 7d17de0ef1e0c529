"""Tests for feat3d.train.datasets: the three layouts, the split, errors, frame-count cache."""

from __future__ import annotations

import json
import os
from collections import Counter
from pathlib import Path

import pytest

import feat3d.train.datasets as datasets_module
from feat3d.train import DatasetError, DatasetSplit, FrameIndex, VideoItem, load_dataset
from tests.videos import write_text, write_video


def touch(path: Path) -> Path:
    """An empty stand-in video: load_dataset only checks that files exist."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    return path


def make_tree(root: Path, counts: dict[str, int], *, ext: str = ".mp4") -> Path:
    for name, n in counts.items():
        for i in range(n):
            touch(root / name / f"{name}_{i:02d}{ext}")
    return root


def keys(items: list[VideoItem]) -> list[str]:
    return [item.key for item in items]


def check_labels(split: DatasetSplit) -> None:
    for item in split.train + split.val:
        assert item.path.is_absolute()
        assert split.classes[item.label] in item.key.split("/")[:-1]


# -- (a) class folders ------------------------------------------------------------------------


def test_tree_classes_keys_and_stratified_split(tmp_path: Path) -> None:
    make_tree(tmp_path, {"walk": 10, "run": 5, "jump": 2, "solo": 1})
    (tmp_path / ".cache").mkdir()
    touch(tmp_path / ".cache" / "x.mp4")  # hidden folders are not classes
    (tmp_path / "empty").mkdir()  # folders without videos are not classes
    (tmp_path / "walk" / "notes.txt").write_text("not a video")
    touch(tmp_path / "run" / "sub" / "deep.avi")  # videos deeper inside a class count

    split = load_dataset(tmp_path, val_split=0.2, seed=0)
    assert split.classes == ["jump", "run", "solo", "walk"]
    check_labels(split)
    val_per_class = Counter(split.classes[item.label] for item in split.val)
    assert val_per_class == {"walk": 2, "run": 1, "jump": 1}  # round(6 * 0.2) = 1
    assert "solo/solo_00.mp4" in keys(split.train)  # a lone video stays in training
    assert "run/sub/deep.avi" in keys(split.train + split.val)
    assert len(split.train) + len(split.val) == 10 + 6 + 2 + 1
    assert not set(keys(split.train)) & set(keys(split.val))


def test_tree_split_is_deterministic_and_seeded(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a": 10, "b": 10, "c": 10})
    first = load_dataset(tmp_path, val_split=0.3, seed=0)
    again = load_dataset(tmp_path, val_split=0.3, seed=0)
    other = load_dataset(tmp_path, val_split=0.3, seed=1)
    assert first == again
    assert keys(first.val) != keys(other.val)
    assert len(first.val) == len(other.val) == 9


def test_split_of_one_class_does_not_depend_on_the_others(tmp_path: Path) -> None:
    make_tree(tmp_path / "small", {"a": 10, "b": 10})
    make_tree(tmp_path / "big", {"a": 10, "b": 10, "c": 10})
    small = load_dataset(tmp_path / "small", val_split=0.3)
    big = load_dataset(tmp_path / "big", val_split=0.3)
    assert [k for k in keys(small.val)] == [k for k in keys(big.val) if not k.startswith("c/")]


def test_val_split_zero_keeps_everything_for_training(tmp_path: Path) -> None:
    make_tree(tmp_path, {"a": 3, "b": 3})
    split = load_dataset(tmp_path, val_split=0.0)
    assert len(split.train) == 6 and split.val == []


def test_train_val_folders_are_the_split(tmp_path: Path) -> None:
    make_tree(tmp_path / "train", {"a": 3, "b": 2})
    make_tree(tmp_path / "val", {"a": 1, "b": 1})
    split = load_dataset(tmp_path, val_split=0.5, seed=3)
    assert split.classes == ["a", "b"]
    assert keys(split.train) == [
        "train/a/a_00.mp4", "train/a/a_01.mp4", "train/a/a_02.mp4",
        "train/b/b_00.mp4", "train/b/b_01.mp4",
    ]  # fmt: skip
    assert keys(split.val) == ["val/a/a_00.mp4", "val/b/b_00.mp4"]
    check_labels(split)


def test_tree_with_a_classes_file(tmp_path: Path) -> None:
    make_tree(tmp_path / "data", {"a": 2, "b": 2})
    (tmp_path / "classes.txt").write_text("1 b\n2 a\n")
    split = load_dataset(tmp_path / "data", classes_file=tmp_path / "classes.txt")
    assert split.classes == ["b", "a"]
    check_labels(split)
    (tmp_path / "classes.txt").write_text("b\n")
    with pytest.raises(DatasetError, match=r"not in .*classes\.txt: a"):
        load_dataset(tmp_path / "data", classes_file=tmp_path / "classes.txt")


def test_tree_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="not a folder"):
        load_dataset(tmp_path / "nope")
    (tmp_path / "a").mkdir()
    with pytest.raises(DatasetError, match="no class folders"):
        load_dataset(tmp_path)
    with pytest.raises(ValueError, match="val_split"):
        load_dataset(tmp_path, val_split=1.0)


# -- (b) split files --------------------------------------------------------------------------


@pytest.fixture
def ucf(tmp_path: Path) -> Path:
    """A miniature UCF-101: videos under root/<Class>/, lists under root/lists/."""
    root = tmp_path / "UCF-101"
    for cls in ("ApplyEyeMakeup", "BandMarching", "HandstandPushups"):
        for g in (1, 2, 3):
            stem = cls.replace("Handstand", "HandStand")  # UCF-101's own spelling quirk
            touch(root / cls / f"v_{stem}_g0{g}_c01.avi")
    lists = root / "lists"
    lists.mkdir()
    (lists / "classInd.txt").write_text("1 ApplyEyeMakeup\n2 BandMarching\n3 HandstandPushups\n")
    (lists / "trainlist01.txt").write_text(
        "".join(
            f"{cls}/v_{cls.replace('Handstand', 'HandStand')}_g0{g}_c01.avi {i + 1}\r\n"
            for i, cls in enumerate(("ApplyEyeMakeup", "BandMarching", "HandstandPushups"))
            for g in (1, 2)
        )
    )
    (lists / "testlist01.txt").write_text(
        "".join(
            f"{cls}/v_{cls.replace('Handstand', 'HandStand')}_g03_c01.avi\n"
            for cls in ("ApplyEyeMakeup", "BandMarching", "HandstandPushups")
        )
    )
    return root


def test_split_files_with_and_without_label_numbers(ucf: Path) -> None:
    lists = ucf / "lists"
    split = load_dataset(
        ucf,
        classes_file=lists / "classInd.txt",
        train_list=lists / "trainlist01.txt",
        val_list=lists / "testlist01.txt",
    )
    assert split.classes == ["ApplyEyeMakeup", "BandMarching", "HandstandPushups"]
    assert len(split.train) == 6 and len(split.val) == 3
    assert [item.label for item in split.train] == [0, 0, 1, 1, 2, 2]
    assert [item.label for item in split.val] == [0, 1, 2]  # from the parent folder
    assert split.val[0].key == "ApplyEyeMakeup/v_ApplyEyeMakeup_g03_c01.avi"
    assert split.val[0].path == ucf / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g03_c01.avi"
    check_labels(split)


def test_split_files_bare_class_names_and_no_class_file(ucf: Path) -> None:
    lists = ucf / "lists"
    bare = lists / "classes.txt"
    bare.write_text("ApplyEyeMakeup\nBandMarching\nHandstandPushups\n")
    with_bare = load_dataset(
        ucf,
        classes_file=bare,
        train_list=lists / "trainlist01.txt",
        val_list=lists / "testlist01.txt",
    )
    without = load_dataset(
        ucf, train_list=lists / "trainlist01.txt", val_list=lists / "testlist01.txt"
    )
    assert with_bare == without
    assert [item.label for item in without.train] == [0, 0, 1, 1, 2, 2]


def test_split_files_case_insensitive_folder_match(ucf: Path) -> None:
    lists = ucf / "lists"
    (lists / "odd.txt").write_text("handstandpushups/v_HandStandPushups_g01_c01.avi\n")
    # The folder is spelled differently in the list: matched case-insensitively when unique.
    # (The file must exist: on a case-sensitive disk, make the spelling real.)
    (ucf / "handstandpushups").mkdir(exist_ok=True)
    touch(ucf / "handstandpushups" / "v_HandStandPushups_g01_c01.avi")
    with pytest.warns(UserWarning, match="2 class"):
        split = load_dataset(ucf, classes_file=lists / "classInd.txt", train_list=lists / "odd.txt")
    assert split.train[0].label == 2


def test_split_file_errors(ucf: Path) -> None:
    lists = ucf / "lists"
    classes = lists / "classInd.txt"
    (lists / "unknown.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\nSkiing/x.avi\n"
    )
    with pytest.raises(DatasetError, match=r"unknown\.txt:2: unknown class 'Skiing'"):
        load_dataset(ucf, classes_file=classes, train_list=lists / "unknown.txt")

    (lists / "range.txt").write_text("ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 7\n")
    with pytest.raises(DatasetError, match=r"range\.txt:1: label 7 is out of range"):
        load_dataset(ucf, classes_file=classes, train_list=lists / "range.txt")

    # Numbers that disagree with the sorted folder names need the classes file.
    (lists / "renumbered.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 2\nBandMarching/v_BandMarching_g01_c01.avi 1\n"
    )
    with pytest.raises(DatasetError, match="pass the classes file"):
        load_dataset(ucf, train_list=lists / "renumbered.txt")

    (lists / "flat.txt").write_text("v_x.avi\n")
    with pytest.raises(DatasetError, match="no class folder"):
        load_dataset(ucf, train_list=lists / "flat.txt")

    missing = [f"ApplyEyeMakeup/gone_{i}.avi 1\n" for i in range(8)]
    (lists / "missing.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi 1\n" + "".join(missing)
    )
    with pytest.raises(DatasetError, match=r"8 listed video\(s\) not found") as info:
        load_dataset(ucf, classes_file=classes, train_list=lists / "missing.txt")
    message = str(info.value)
    assert "gone_0.avi" in message and "gone_4.avi" in message and "gone_5.avi" not in message
    assert "..." in message

    with pytest.raises(DatasetError, match="both train and val"):
        load_dataset(
            ucf, classes_file=classes, train_list=lists / "testlist01.txt",
            val_list=lists / "testlist01.txt",
        )  # fmt: skip

    (lists / "gaps.txt").write_text("1 a\n3 b\n")
    with pytest.raises(DatasetError, match="without gaps"):
        load_dataset(ucf, classes_file=lists / "gaps.txt", train_list=lists / "trainlist01.txt")


# -- (c) CSV ----------------------------------------------------------------------------------


@pytest.fixture
def kin(tmp_path: Path) -> Path:
    root = tmp_path / "kinetics"
    make_tree(root, {"abseiling": 4, "air drumming": 4})
    return root


def test_csv_without_header_with_split(kin: Path) -> None:
    rows = [
        "abseiling/abseiling_00.mp4,abseiling,train",
        "abseiling/abseiling_01.mp4,abseiling,Train",
        "air drumming/air drumming_00.mp4,air drumming,validation",
        "air drumming/air drumming_01.mp4,air drumming,train",
        "abseiling/abseiling_02.mp4,abseiling,test",
    ]
    (kin / "list.csv").write_text("\n".join(rows) + "\n")
    split = load_dataset(kin, csv=kin / "list.csv")
    assert split.classes == ["abseiling", "air drumming"]
    assert keys(split.train) == [
        "abseiling/abseiling_00.mp4", "abseiling/abseiling_01.mp4",
        "air drumming/air drumming_01.mp4",
    ]  # fmt: skip
    assert keys(split.val) == ["air drumming/air drumming_00.mp4", "abseiling/abseiling_02.mp4"]
    check_labels(split)


def test_csv_with_header_by_name_and_random_split(kin: Path) -> None:
    lines = ["youtube_id,label,path"] + [
        f"id{i},{cls},{kin / cls / f'{cls}_{i:02d}.mp4'}"  # absolute paths are fine
        for cls in ("abseiling", "air drumming")
        for i in range(4)
    ]
    (kin / "list.csv").write_text("\n".join(lines) + "\n")
    split = load_dataset(kin, csv=kin / "list.csv", val_split=0.25, seed=5)
    assert len(split.train) == 6 and len(split.val) == 2
    assert sorted(item.label for item in split.val) == [0, 1]  # stratified
    assert split == load_dataset(kin, csv=kin / "list.csv", val_split=0.25, seed=5)
    check_labels(split)


def test_csv_two_columns_and_class_file(kin: Path) -> None:
    (kin / "list.csv").write_text("abseiling/abseiling_00.mp4,abseiling\n")
    (kin / "classes.txt").write_text("air drumming\nabseiling\n")
    with pytest.warns(UserWarning, match="no training videos: air drumming"):
        split = load_dataset(kin, csv=kin / "list.csv", classes_file=kin / "classes.txt")
    assert split.classes == ["air drumming", "abseiling"]
    assert split.train[0].label == 1


def test_csv_errors(kin: Path) -> None:
    csv = kin / "list.csv"
    csv.write_text(
        "abseiling/abseiling_00.mp4,abseiling,train\nabseiling/abseiling_01.mp4,abseiling,holdout\n"
    )
    with pytest.raises(DatasetError, match=r"list\.csv:2: unknown split 'holdout'"):
        load_dataset(kin, csv=csv)
    csv.write_text("abseiling/abseiling_00.mp4,abseiling\nabseiling/abseiling_01.mp4,juggling\n")
    (kin / "classes.txt").write_text("abseiling\nair drumming\n")
    with pytest.raises(DatasetError, match=r"list\.csv:2: unknown class 'juggling'"):
        load_dataset(kin, csv=csv, classes_file=kin / "classes.txt")
    csv.write_text("abseiling/nope.mp4,abseiling\n")
    with pytest.raises(DatasetError, match="1 listed video"):
        load_dataset(kin, csv=csv)
    csv.write_text("abseiling/abseiling_00.mp4,abseiling,val\n")
    with pytest.raises(DatasetError, match="no training videos"):
        load_dataset(kin, csv=csv)
    csv.write_text("path,label\nabseiling/abseiling_00.mp4\n")
    with pytest.raises(DatasetError, match=r"list\.csv:2: expected 2 columns"):
        load_dataset(kin, csv=csv)


# -- frame counts -----------------------------------------------------------------------------


class Calls:
    """Counts calls to the probing functions FrameIndex uses."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = self.decode = 0
        real_open, real_iter = datasets_module.open_source, datasets_module.iter_source_frames

        def open_video(*args, **kwargs):
            self.open += 1
            return real_open(*args, **kwargs)

        def iter_frames(*args, **kwargs):
            self.decode += 1
            return real_iter(*args, **kwargs)

        monkeypatch.setattr(datasets_module, "open_source", open_video)
        monkeypatch.setattr(datasets_module, "iter_source_frames", iter_frames)


def test_frame_index_counts_once_and_caches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = Calls(monkeypatch)
    mp4 = write_video(tmp_path / "v" / "a.mp4", n_frames=37)
    mkv = write_video(tmp_path / "v" / "b.mkv", n_frames=23, codec="ffv1")  # no header count
    cache = tmp_path / "cache" / "counts.json"

    index = FrameIndex(cache)
    assert index.count_many([mp4, mkv]) == [37, 23]
    assert calls.open == 2 and calls.decode == 1  # the MP4 header count is trusted
    assert cache.is_file() and list(cache.parent.iterdir()) == [cache]  # no temp files left
    stored = json.loads(cache.read_text())["videos"]
    assert stored[str(mp4.absolute())]["n_frames"] == 37

    # Same instance, next epoch; and a new instance, next run: no probing at all.
    assert index.count(mp4) == 37
    assert FrameIndex(cache).count_many([mp4, mkv]) == [37, 23]
    assert calls.open == 2 and calls.decode == 1

    # A changed file (new mtime) is counted again.
    write_video(mp4, n_frames=30)
    os.utime(mp4, ns=(1_000_000_000, 1_000_000_000))
    again = FrameIndex(cache)
    assert again.count(mp4) == 30 and again.count(mkv) == 23
    assert calls.open == 3


def test_frame_index_broken_video_counts_zero_and_is_remembered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = write_text(tmp_path / "bad.mp4")
    cache = tmp_path / "counts.json"
    assert FrameIndex(cache).count(bad) == 0
    calls = Calls(monkeypatch)
    index = FrameIndex(cache)
    assert index.count(bad) == 0
    assert calls.open == 0
    assert index.error(bad) and "not a video" in index.error(bad)
    assert FrameIndex().count(tmp_path / "missing.mp4") == 0  # in memory, no file


def test_frame_index_survives_a_corrupt_cache(tmp_path: Path) -> None:
    video = write_video(tmp_path / "a.mp4", n_frames=12)
    cache = tmp_path / "counts.json"
    cache.write_text("{not json")
    with pytest.warns(UserWarning, match="unreadable frame-count cache"):
        index = FrameIndex(cache)
    assert index.count(video) == 12
    assert json.loads(cache.read_text())["version"] == 1
