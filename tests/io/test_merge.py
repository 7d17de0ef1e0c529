"""Sharding keys and merging HDF5 outputs: one run's content, conflicts, options, journals."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from feat3d.io.h5store import journal_path
from feat3d.io.merge import merge_outputs, parse_shard, shard_of
from feat3d.io.writers import OutputError, VideoFailure, open_writer, read_h5_features
from tests.io.test_writers import ATTRS, video

REPO_ROOT = Path(__file__).resolve().parents[2]
KEYS = [f"class{i % 4}/clip{i:02d}.mp4" for i in range(20)]
FAILED = ["broken/x.mp4", "broken/y.mp4"]


def seed_of(key: str) -> int:
    return KEYS.index(key) if key in KEYS else 0


def write_run(path: Path, keys, failed=(), attrs=ATTRS) -> None:
    writer = open_writer(path, format="h5", attrs=attrs)
    for key in keys:
        writer.write(video(key, n_clips=1 + seed_of(key) % 3, seed=seed_of(key)))
    for key in failed:
        writer.write_error(VideoFailure(key, f"/data/{key}", "not a video"))
    writer.close()


def errors_of(path: Path) -> dict[str, tuple[str, str]]:
    with h5py.File(path, "r") as f:
        return {
            r.attrs["video"]: (r.attrs["source"], r.attrs["message"])
            for r in f.get("_errors", {}).values()
        }


def assert_same_content(a: Path, b: Path) -> None:
    first, second = read_h5_features(a), read_h5_features(b)
    assert set(first) == set(second)
    for key, entry in first.items():
        other = second[key]
        assert set(entry) == set(other)
        for name in entry:
            if name == "attrs":
                assert {k: str(v) for k, v in entry["attrs"].items()} == {
                    k: str(v) for k, v in other["attrs"].items()
                }
            else:
                assert entry[name].dtype == other[name].dtype
                np.testing.assert_array_equal(entry[name], other[name])
    assert errors_of(a) == errors_of(b)
    with h5py.File(a, "r") as fa, h5py.File(b, "r") as fb:
        assert fa.attrs["arch"] == fb.attrs["arch"] and fa.attrs["clip_len"] == fb.attrs["clip_len"]


def test_three_shards_merge_into_the_one_run_content(tmp_path):
    one_run = tmp_path / "all.h5"
    write_run(one_run, KEYS, FAILED)
    shards = [tmp_path / f"part{i}.h5" for i in range(3)]
    for index, shard in enumerate(shards):
        keys = [k for k in KEYS if shard_of(k, 3) == index]
        failed = [k for k in FAILED if shard_of(k, 3) == index]
        assert len(keys) > 1, "every shard should get some of 20 keys"
        write_run(shard, keys[:-1], failed)
        # a second run of the shard writes its last video and is killed before consolidating:
        # merge_outputs consolidates the journal it left
        writer = open_writer(shard, format="h5", attrs=ATTRS)
        writer.write(video(keys[-1], n_clips=1 + seed_of(keys[-1]) % 3, seed=seed_of(keys[-1])))
        writer.store.journal.close()
        assert journal_path(shard).exists()

    report = merge_outputs(tmp_path / "merged.h5", shards)
    assert not any(journal_path(shard).exists() for shard in shards)
    assert report.videos == len(KEYS) and report.duplicates == 0
    assert report.errors == len(FAILED)
    assert [p.path for p in report.parts] == shards
    assert [p.videos for p in report.parts] == [
        sum(shard_of(k, 3) == i for k in KEYS) for i in range(3)
    ]
    assert_same_content(tmp_path / "merged.h5", one_run)
    assert not list(tmp_path.glob("merged.h5.tmp-*"))
    assert not journal_path(tmp_path / "merged.h5").exists()


def test_identical_duplicates_are_kept_once_and_a_success_beats_an_error(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_run(a, KEYS[:5], failed=[KEYS[7]])
    write_run(b, KEYS[3:8])
    report = merge_outputs(tmp_path / "m.h5", [a, b])
    assert report.videos == 8 and report.duplicates == 2 and report.errors == 0
    assert [(p.videos, p.duplicates) for p in report.parts] == [(5, 0), (3, 2)]
    assert errors_of(tmp_path / "m.h5") == {}
    assert set(read_h5_features(tmp_path / "m.h5")) == set(KEYS[:8])


def test_a_key_with_different_content_is_refused(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_run(a, KEYS[:3])
    writer = open_writer(b, format="h5", attrs=ATTRS)
    writer.write(video(KEYS[1], n_clips=2, seed=12345))
    writer.close()
    with pytest.raises(OutputError, match=rf"b\.h5: video {KEYS[1]} differs from the one in"):
        merge_outputs(tmp_path / "m.h5", [a, b])
    assert not (tmp_path / "m.h5").exists()
    assert not list(tmp_path.glob("m.h5.tmp-*"))


def test_parts_made_with_other_options_are_refused(tmp_path):
    a, b = tmp_path / "a.h5", tmp_path / "b.h5"
    write_run(a, KEYS[:2])
    write_run(b, KEYS[2:4], attrs={**ATTRS, "layer": "logits"})
    with pytest.raises(OutputError, match=r"b\.h5: made with layer='logits'.*layer='pool5'"):
        merge_outputs(tmp_path / "m.h5", [a, b])


def test_an_existing_output_needs_overwrite(tmp_path):
    a = tmp_path / "a.h5"
    write_run(a, KEYS[:2])
    out = tmp_path / "m.h5"
    out.write_bytes(b"old")
    with pytest.raises(OutputError, match="exists; pass --overwrite"):
        merge_outputs(out, [a])
    assert merge_outputs(out, [a], overwrite=True).videos == 2
    with pytest.raises(OutputError, match="is also an input"):
        merge_outputs(a, [a], overwrite=True)
    with pytest.raises(OutputError, match="no such file"):
        merge_outputs(tmp_path / "n.h5", [tmp_path / "missing.h5"])


def test_shard_of_is_the_documented_hash_and_ignores_python_hash_seeds(tmp_path):
    keys = [f"v{i}.mp4" for i in range(400)] + ["ünïcode/ß.mkv"]
    for key in keys[:20] + keys[-1:]:
        digest = hashlib.sha1(key.encode("utf-8")).digest()
        assert shard_of(key, 7) == int.from_bytes(digest[:8], "big") % 7
    counts = np.bincount([shard_of(k, 4) for k in keys], minlength=4)
    assert counts.min() > 60  # about 100 each
    code = (
        "import sys; from feat3d.io.merge import shard_of; "
        "print([shard_of(k, 5) for k in sys.argv[1:]])"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345", "PYTHONPATH": str(REPO_ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code, *keys[:50]],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    )
    assert out.stdout.strip() == str([shard_of(k, 5) for k in keys[:50]])


@pytest.mark.parametrize(
    ("text", "expected"), [("0/4", (0, 4)), ("3/4", (3, 4)), (" 0/1 ", (0, 1))]
)
def test_parse_shard(text, expected):
    assert parse_shard(text) == expected


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1/0", "1", "a/b", "1/2/3", ""])
def test_parse_shard_rejects(text):
    with pytest.raises(ValueError, match="shard"):
        parse_shard(text)
