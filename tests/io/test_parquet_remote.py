"""Parquet output on an S3 API served on 127.0.0.1 (moto): inputs and parts on the object
store, one PUT per part, resume without duplicates, ``info`` and ``svm`` reading the URL,
pandas reading it through s3fs; and writers sharing one folder (leases)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from feat3d import urls
from feat3d.cli import cli
from feat3d.io import leases, parquet, parquet_writer
from feat3d.io.reader import ParquetReader, ReadError, open_output
from feat3d.io.writers import open_writer
from feat3d.run.extract import extract
from tests.io.test_writers import ATTRS, video
from tests.remote import s3_server

pytest.importorskip("s3fs")
pytest.importorskip("moto")

BUCKET = "feat3d-parquet"
OUT = f"s3://{BUCKET}/out/feats.parquet"
TINY = {"size": 32, "crop": 32, "clip_len": 8, "workers": 0}


@pytest.fixture(scope="module")
def endpoint():
    with s3_server() as url:
        yield url


@pytest.fixture
def bucket(endpoint, monkeypatch):
    monkeypatch.setenv("FEAT3D_NET_TIMEOUT", "10")
    monkeypatch.setattr(urls, "BACKOFF", 0.01)
    fs, _ = urls.filesystem(f"s3://{BUCKET}")
    if fs.exists(BUCKET):  # moto keeps its buckets for the whole process
        fs.rm(BUCKET, recursive=True)
    fs.mkdir(BUCKET)
    fs.invalidate_cache()
    return fs


@pytest.fixture
def s3_videos(bucket, tmp_path, video_factory):
    for name, frames in (("a.mp4", 24), ("b.mp4", 16)):
        local = video_factory(tmp_path / "videos" / name, n_frames=frames, width=48, height=32)
        bucket.put_file(str(local), f"{BUCKET}/videos/{name}")
    bucket.invalidate_cache()
    return tmp_path / "videos"


@pytest.fixture
def s3_calls(monkeypatch):
    """The S3 API calls s3fs makes, as ``(operation, key)``."""
    from s3fs import S3FileSystem

    calls: list[tuple[str, str]] = []
    original = S3FileSystem._call_s3

    async def recording(self, method, *args, **kwargs):
        calls.append((getattr(method, "__name__", str(method)), str(kwargs.get("Key", ""))))
        return await original(self, method, *args, **kwargs)

    monkeypatch.setattr(S3FileSystem, "_call_s3", recording)
    return calls


def _objects(bucket, kind: str) -> list[str]:
    bucket.invalidate_cache()
    return sorted(p.rsplit("/", 1)[-1] for p in bucket.find(f"{BUCKET}/out/feats.parquet/{kind}"))


def _pandas_clips() -> pd.DataFrame:
    return pd.read_parquet(f"{OUT}/clips", storage_options={"skip_instance_cache": True})


def test_extract_to_s3_puts_each_part_once_and_reads_back(s3_videos, bucket, s3_calls, tiny_model):
    local = extract([s3_videos], s3_videos.parent / "local.h5", model=tiny_model, **TINY)
    report = extract([f"s3://{BUCKET}/videos/"], OUT, model=tiny_model, format="parquet",
                     part_rows=2, **TINY)  # fmt: skip
    assert sorted(report.written) == ["a.mp4", "b.mp4"] and not report.failures
    clips, videos = _objects(bucket, "clips"), _objects(bucket, "videos")
    assert clips == videos and len(clips) >= 2 and all(n.startswith("part-") for n in clips)
    # Each part object appeared through one PutObject (no multipart upload, no copy).
    puts = [key for op, key in s3_calls if op == "put_object"]
    for name in clips:
        for kind in ("clips", "videos"):
            assert puts.count(f"out/feats.parquet/{kind}/{name}") == 1, (kind, name)
    assert not [op for op, _ in s3_calls if "multipart" in op or op == "copy_object"]
    assert _objects(bucket, "_writers") == []  # the lease is dropped on close
    frame = _pandas_clips()  # pandas alone, through s3fs
    assert sorted(frame.video.unique()) == ["a.mp4", "b.mp4"]
    with open_output(OUT) as output, open_output(s3_videos.parent / "local.h5") as want:
        assert isinstance(output, ParquetReader) and output.path == OUT
        assert output.video_keys() == want.video_keys() == sorted(local.written)
        for key in want.video_keys():
            np.testing.assert_array_equal(output.arrays(key).features, want.arrays(key).features)
            np.testing.assert_array_equal(output.arrays(key).mean, want.arrays(key).mean)


def test_resume_on_s3_deletes_a_dead_writers_orphan_and_adds_no_duplicates(
    s3_videos, bucket, tiny_model
):
    extract([f"s3://{BUCKET}/videos/a.mp4"], OUT, model=tiny_model, format="parquet", **TINY)
    # A run killed between the clip part and the videos part of b.mp4 (no lease: dead).
    orphan = "part-20000101T000000-deadbeef-00000.parquet"
    rows = parquet.clip_table([video("b.mp4", n_clips=2, dim=512)], "float32", {})
    bucket.pipe_file(f"{BUCKET}/out/feats.parquet/clips/{orphan}", parquet.table_bytes(rows))
    bucket.invalidate_cache()
    with open_output(OUT) as output:  # readers ignore it
        assert output.video_keys() == ["a.mp4"]
    report = extract([f"s3://{BUCKET}/videos/"], OUT, model=tiny_model, format="parquet", **TINY)
    assert report.skipped == ["a.mp4"] and report.written == ["b.mp4"]
    assert orphan not in _objects(bucket, "clips")
    frame = _pandas_clips()
    assert not frame.duplicated(["video", "clip"]).any()
    assert frame.groupby("video").size().to_dict() == {"a.mp4": 3, "b.mp4": 2}


def test_info_and_svm_read_a_parquet_folder_at_a_url(bucket, tmp_path):
    rng = np.random.default_rng(0)
    writer = open_writer(OUT, format="parquet", attrs=ATTRS, part_rows=4)
    labels = []
    for i in range(12):
        item = video(f"v{i:02d}.mp4", n_clips=2, dim=8, seed=i)
        label = i % 2
        item.features = (rng.standard_normal((2, 8)) * 0.1 + (3 if label else -3)).astype("f4")
        writer.write(item)
        labels.append((item.key, f"class{label}"))
    writer.close()
    (tmp_path / "labels.csv").write_text("".join(f"{k},{c}\n" for k, c in labels))
    runner = CliRunner()
    info = runner.invoke(cli, ["info", OUT])
    assert info.exit_code == 0, info.output
    assert "Parquet folder" in info.output and "12 complete, 0 failed" in info.output
    one = runner.invoke(cli, ["info", OUT, "--video", "v03.mp4", "--json"])
    assert one.exit_code == 0, one.output
    assert [c["segment"] for c in json.loads(one.output)["clips"]] == [[0, 16], [16, 32]]
    svm = runner.invoke(cli, ["svm", OUT, "-l", str(tmp_path / "labels.csv"), "--json", "-"])
    assert svm.exit_code == 0, svm.output
    svm_report = json.loads(svm.output)
    assert svm_report["mean"] == pytest.approx(1.0) and svm_report["features_path"] == OUT
    missing = runner.invoke(cli, ["info", f"s3://{BUCKET}/nothing.parquet"])
    assert missing.exit_code != 0 and "no such object or folder" in missing.output


def test_an_other_output_at_a_url_is_refused_in_one_line(bucket):
    bucket.pipe_file(f"{BUCKET}/out/feats.h5", b"\x89HDF\r\n\x1a\n")
    with pytest.raises(ReadError, match="read as Parquet folders"):
        open_output(f"s3://{BUCKET}/out/feats.h5")


# --------------------------------------------------------------------------------------------
# Two writers on one folder


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def _in_flight(folder, writer: str) -> str:
    """A clip part of ``writer`` without its videos part (between its two PUTs)."""
    name = parquet_writer.part_name(writer, 0)
    rows = parquet.clip_table([video("x", n_clips=1)], "float32", ATTRS)
    parquet.put_atomic(folder, folder.path(parquet.CLIPS, name), parquet.table_bytes(rows))
    return name


def _lease(folder, writer: str, host: str, pid: int, renewed: float) -> None:
    data = {"writer": writer, "host": host, "pid": pid, "renewed": renewed}
    folder.fs.makedirs(f"{folder.root}/{leases.LEASES}", exist_ok=True)
    folder.fs.pipe_file(f"{folder.root}/{leases.LEASES}/{writer}.json", json.dumps(data).encode())


@pytest.mark.parametrize("where", ["local", "s3"])
def test_reopening_keeps_live_writers_parts_in_flight(where, tmp_path, request):
    if where == "s3":
        request.getfixturevalue("bucket")
    out = OUT if where == "s3" else str(tmp_path / "f.parquet")
    live = open_writer(out, format="parquet", attrs=ATTRS)  # open, in this process
    folder = live.folder
    here, now = socket.gethostname(), time.time()
    cases = {
        "open-here": (live.writer_id, True),
        "other-host-fresh": ("20990101T000000-0000aaaa", True),
        "other-host-stale": ("20990101T000000-0000bbbb", False),
        "dead-process": ("20990101T000000-0000cccc", False),
        "no-lease": ("20990101T000000-0000dddd", False),
    }
    _lease(folder, cases["other-host-fresh"][0], "elsewhere", 1, now)
    _lease(folder, cases["other-host-stale"][0], "elsewhere", 1, now - 2 * leases.STALE_SECONDS)
    _lease(folder, cases["dead-process"][0], here, _dead_pid(), now)
    names = {case: _in_flight(folder, writer) for case, (writer, _) in cases.items()}
    folder.fs.invalidate_cache()
    second = open_writer(out, format="parquet", attrs=ATTRS)
    kept = set(parquet.list_parts(folder, parquet.CLIPS))
    for case, (_, alive) in cases.items():
        assert (names[case] in kept) == alive, case
    remaining = {n[: -len(".json")] for n in parquet._names(folder, leases.LEASES)}
    assert cases["other-host-stale"][0] not in remaining
    assert cases["dead-process"][0] not in remaining and second.writer_id in remaining
    live.write(video("a"))
    live.close()  # its part in flight was not taken from it
    second.close()
    assert parquet._names(folder, leases.LEASES) == [
        f"{cases['other-host-fresh'][0]}.json"
    ]  # fmt: skip
    with open_output(out) as output:
        assert output.video_keys() == ["a"]


def test_a_clip_part_deleted_under_a_writer_is_put_again(tmp_path, monkeypatch):
    out = tmp_path / "f.parquet"
    writer = open_writer(out, format="parquet", attrs=ATTRS)
    original = parquet.put_atomic

    def racing(folder, path, data):
        original(folder, path, data)
        if "/videos/" in path:  # a reopen that took this writer for dead, just now
            for clip in (out / "clips").glob("part-*"):
                clip.unlink()

    monkeypatch.setattr(parquet, "put_atomic", racing)
    writer.write(video("a", n_clips=2))
    writer.close()
    with open_output(out) as output:
        assert output.arrays("a").features.shape == (2, 4)
    assert len(pd.read_parquet(out / "clips")) == 2


def test_merge_copies_local_shards_into_a_folder_on_s3(bucket, tmp_path, s3_calls):
    shards = []
    for index, keys in enumerate((["a", "b"], ["c"])):
        shard = tmp_path / f"shard{index}.parquet"
        writer = open_writer(shard, format="parquet", attrs=ATTRS)
        for key in keys:
            writer.write(video(key, n_clips=2, seed=ord(key)))
        writer.close()
        shards.append(str(shard))
    result = CliRunner().invoke(cli, ["merge", OUT, *shards])
    assert result.exit_code == 0, result.output
    assert f"{OUT}: 3 videos, 0 duplicates skipped" in result.output
    assert not [op for op, _ in s3_calls if "multipart" in op]
    assert sorted(_pandas_clips().video) == ["a", "a", "b", "b", "c", "c"]
    with open_output(OUT) as output:
        np.testing.assert_array_equal(
            output.arrays("c").features, video("c", 2, seed=ord("c")).features
        )
