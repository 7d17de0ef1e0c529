"""Parquet outputs whose clip rows are in *shared* clip parts (the Ray engine's layout): read
through the one reader (and ``info``, ``pool``), merged, swept of dead rows; outputs
of versions before ``clip_parts`` still read. Folders are built by hand with the functions of
:mod:`feat3d.io.parquet` and :mod:`feat3d.io.parquet_writer` (no Ray)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from feat3d.cli import cli
from feat3d.io import leases, parquet, reader
from feat3d.io.merge import merge_outputs
from feat3d.io.parquet_writer import PartTarget, part_name, write_shared_part
from feat3d.io.reader import open_output
from feat3d.io.writers import VideoFailure, open_writer
from tests.io.test_writers import ATTRS, video

DEAD = "20000101T000000-0000dead"  # a writer without a lease: its run is over
#: Video -> (clips, seed): A, B and C (failed after two clips) in the shared folder, D in the
#: local one (beside B again).
VIDEOS = {"A.mp4": (5, 1), "B.mp4": (3, 2), "C.mp4": (2, 3), "D.mp4": (2, 4)}


def _expected(key: str):
    n_clips, seed = VIDEOS[key]
    return video(key, n_clips=n_clips, seed=seed)


def _shared(target: PartTarget, rows: list[tuple[str, int]]) -> str:
    """A shared clip part holding ``(video, clip)`` rows of the expected videos."""
    items = [_expected(key) for key, _ in rows]
    clips = np.array([clip for _, clip in rows])
    return write_shared_part(
        target, [key for key, _ in rows], clips,
        np.stack([item.segments[clip] for item, clip in zip(items, clips, strict=True)]),
        np.stack([item.timestamps[clip] for item, clip in zip(items, clips, strict=True)]),
        np.stack([item.features[clip] for item, clip in zip(items, clips, strict=True)]),
    )  # fmt: skip


def _part_video(key: str, parts: list[str]) -> parquet.PartVideo:
    item = _expected(key)
    names = ("fps", "n_frames", "duration", "width", "height", "padded_frames")
    info = {name: getattr(item, name) for name in names}
    return parquet.PartVideo(key, item.source, info, item.n_clips, item.mean, tuple(parts))


def _shared_folder(out, writer: str = DEAD) -> dict[str, str]:
    """A's clips over two shared parts (``s1``: 0–2, ``s2``: 3–4), B's in ``s2`` (rows out of
    order), dead rows of C (failed) in ``s1``; videos part 0 commits A and C's failure,
    part 1 commits B. Returns the parts' names."""
    for kind in (parquet.CLIPS, parquet.VIDEOS):
        (out / kind).mkdir(parents=True, exist_ok=True)
    target = PartTarget(str(out), writer, "float32", ATTRS, part_rows=100)
    s1 = _shared(target, [("A.mp4", 0), ("C.mp4", 0), ("A.mp4", 1), ("C.mp4", 1), ("A.mp4", 2)])
    s2 = _shared(target, [("B.mp4", 2), ("A.mp4", 3), ("B.mp4", 0), ("A.mp4", 4), ("B.mp4", 1)])
    v0, v1 = part_name(writer, 0), part_name(writer, 1)
    failure = VideoFailure("C.mp4", "/data/C.mp4", "decoder died at frame 40")
    parquet.write_part(out, v0, [_part_video("A.mp4", [s1, s2])], [failure], dtype="float32",
                       attrs=ATTRS)  # fmt: skip
    parquet.write_part(out, v1, [_part_video("B.mp4", [s2])], [], dtype="float32", attrs=ATTRS)
    return {"s1": s1, "s2": s2, "v0": v0, "v1": v1}


def _check_video(output, key: str) -> None:
    want, got = _expected(key), output.arrays(key)
    np.testing.assert_array_equal(got.features, want.features)
    np.testing.assert_array_equal(got.segments, want.segments)
    np.testing.assert_array_equal(got.timestamps, want.timestamps)
    np.testing.assert_array_equal(got.mean, want.mean.astype(np.float32))
    assert output.layout(key).shape == want.features.shape


def _clip_rows(out) -> pd.DataFrame:
    return pd.read_parquet(out / parquet.CLIPS)


# ------------------------------------------------------------------------------- reading


def test_a_video_spread_over_shared_parts_reads_whole_and_dead_rows_are_ignored(tmp_path):
    out = tmp_path / "shared.parquet"
    _shared_folder(out)
    assert len(_clip_rows(out)) == 10  # C's two dead rows are there, as written
    with open_output(out) as output:
        assert output.video_keys() == ["A.mp4", "B.mp4"]
        assert [(f.key, f.message) for f in output.failures()] == [
            ("C.mp4", "decoder died at frame 40")
        ]  # fmt: skip
        for key in output.video_keys():
            _check_video(output, key)
        assert "clip_parts" not in output.video("A.mp4").attrs  # where rows are: not an attribute


def test_reading_every_video_reads_each_clip_part_once(tmp_path, monkeypatch):
    out = tmp_path / "shared.parquet"
    names = _shared_folder(out)
    reads: list[tuple[str, str]] = []
    original = reader.read_part

    def counting(folder, kind, name, columns=None):
        reads.append((kind, name))
        return original(folder, kind, name, columns)

    monkeypatch.setattr(reader, "read_part", counting)
    with open_output(out) as output:
        for arrays in output.iter_arrays():
            assert arrays.features is not None
    clip_reads = sorted(name for kind, name in reads if kind == parquet.CLIPS)
    assert clip_reads == sorted([names["s1"], names["s2"]])


def test_clip_rows_missing_from_the_named_parts_are_one_clear_error(tmp_path):
    out = tmp_path / "shared.parquet"
    names = _shared_folder(out)
    folder = parquet.folder_fs(out)
    s2 = parquet.read_part(folder, parquet.CLIPS, names["s2"])  # A's clips 3-4 lost
    kept = parquet.keep_videos(s2, {"B.mp4"})
    parquet.put_atomic(folder, folder.path(parquet.CLIPS, names["s2"]), parquet.table_bytes(kept))
    with open_output(out) as output:
        _check_video(output, "B.mp4")
        with pytest.raises(reader.ReadError, match=r"'A.mp4' has 3 clip rows .* but 5 clips"):
            output.arrays("A.mp4")


def test_info_and_pool_read_a_folder_with_shared_parts(tmp_path):
    out = tmp_path / "shared.parquet"
    _shared_folder(out)
    runner = CliRunner()
    summary = runner.invoke(cli, ["info", str(out)])
    assert summary.exit_code == 0, summary.output
    assert "2 complete, 1 failed" in summary.output and "C.mp4" in summary.output
    one = runner.invoke(cli, ["info", str(out), "--video", "A.mp4"])
    assert one.exit_code == 0, one.output
    assert "clip_parts" not in one.output and "5×4 float32" in one.output
    one = runner.invoke(cli, ["info", str(out), "--video", "B.mp4", "--json"])
    as_json = json.loads(one.output)
    assert [c["segment"] for c in as_json["clips"]] == _expected("B.mp4").segments.tolist()
    pooled = tmp_path / "pooled.h5"
    result = runner.invoke(cli, ["pool", str(out), "-o", str(pooled), "--segments", "2"])
    assert result.exit_code == 0, result.output
    with open_output(pooled) as output:
        assert output.video_keys() == ["A.mp4", "B.mp4"]
        assert output.arrays("A.mp4").features.shape == (2, 4)
        assert "clip_parts" not in output.video("A.mp4").attrs


def test_an_output_written_before_clip_parts_still_reads(tmp_path):
    out = tmp_path / "old.parquet"
    writer = open_writer(out, format="parquet", attrs=ATTRS, part_rows=4)
    written = [video(f"v{i}.mp4", n_clips=i + 1, seed=i) for i in range(3)]
    for item in written:
        writer.write(item)
    writer.close()
    for part in (out / parquet.VIDEOS).glob("*.parquet"):  # as an earlier version wrote it
        table = pq.read_table(part)
        pq.write_table(table.drop_columns(["clip_parts"]), part)
        assert "clip_parts" not in pq.read_schema(part).names
    with open_output(out) as output:
        assert output.video_keys() == [item.key for item in written]
        for item in written:
            got = output.arrays(item.key)
            np.testing.assert_array_equal(got.features, item.features)
            np.testing.assert_array_equal(got.segments, item.segments)
            assert output.clip_parts(item.key) == [output.video(item.key).attrs["part"]]


# ------------------------------------------------------------------------------- merging


def _local_folder(out, *, old: bool) -> None:
    """A local writer's folder of B (as in the shared folder) and D; ``old``: its videos
    parts without ``clip_parts``, as versions before it wrote them."""
    writer = open_writer(out, format="parquet", attrs=ATTRS)
    for key in ("B.mp4", "D.mp4"):
        writer.write(_expected(key))
    writer.close()
    for part in (out / parquet.VIDEOS).glob("*.parquet") if old else ():
        pq.write_table(pq.read_table(part).drop_columns(["clip_parts"]), part)


def _files(out) -> dict[str, bytes]:
    return {
        f"{kind}/{p.name}": p.read_bytes()
        for kind in (parquet.CLIPS, parquet.VIDEOS)
        for p in (out / kind).glob("*.parquet")
    }  # fmt: skip


def _check_merged(out, keys=("A.mp4", "B.mp4", "D.mp4")) -> None:
    with open_output(out) as output:
        assert output.video_keys() == list(keys)
        assert [f.key for f in output.failures()] == ["C.mp4"]
        for key in keys:
            _check_video(output, key)
    frame = _clip_rows(out)
    assert not frame.duplicated(["video", "clip"]).any()
    assert frame.groupby("video").size().to_dict() == {k: VIDEOS[k][0] for k in keys}


@pytest.mark.parametrize("shared_first", [True, False], ids=["shared-first", "old-first"])
def test_merge_copies_each_shared_part_once_with_only_its_live_rows(tmp_path, shared_first):
    shared, local, merged = (tmp_path / f"{n}.parquet" for n in ("shared", "local", "all"))
    names = _shared_folder(shared)
    _local_folder(local, old=not shared_first)
    inputs = [shared, local] if shared_first else [local, shared]
    report = merge_outputs(merged, inputs)
    assert (report.videos, report.duplicates, report.errors) == (3, 1, 1)
    _check_merged(merged)
    folder = parquet.folder_fs(merged)
    assert parquet.clip_part_keys(folder, names["s1"]) == {"A.mp4"}  # C's dead rows left behind
    b_from = {"A.mp4", "B.mp4"} if shared_first else {"A.mp4"}  # B: the first input's
    assert parquet.clip_part_keys(folder, names["s2"]) == b_from
    if not shared_first:  # the old folder's parts, first to hold their videos: byte for byte
        for name, data in _files(local).items():
            assert _files(merged)[name] == data
    before = _files(merged)
    again = merge_outputs(merged, inputs)  # nothing left to copy
    assert again.videos == 3 and _files(merged) == before
    _check_merged(merged)


def test_a_killed_merge_resumes_and_puts_back_the_rows_a_reopen_swept(tmp_path, monkeypatch):
    shared, merged = tmp_path / "shared.parquet", tmp_path / "all.parquet"
    names = _shared_folder(shared)
    original = parquet.put_atomic

    def killed(folder, path, data):
        if path.endswith(f"/videos/{names['v1']}"):  # before B's videos row is committed
            raise KeyboardInterrupt
        original(folder, path, data)

    monkeypatch.setattr(parquet, "put_atomic", killed)
    with pytest.raises(KeyboardInterrupt):
        merge_outputs(merged, [shared])
    monkeypatch.undo()
    folder = parquet.folder_fs(merged)
    assert parquet.clip_part_keys(folder, names["s2"]) == {"A.mp4", "B.mp4"}
    parquet.remove_leftovers(folder)  # what the reopen does: B's rows are dead there now
    assert parquet.clip_part_keys(folder, names["s2"]) == {"A.mp4"}
    with open_output(merged) as output:
        assert output.video_keys() == ["A.mp4"]
        _check_video(output, "A.mp4")
    report = merge_outputs(merged, [shared])
    assert report.videos == 2 and report.duplicates == 0
    _check_merged(merged, keys=("A.mp4", "B.mp4"))
    assert parquet.clip_part_keys(folder, names["s2"]) == {"A.mp4", "B.mp4"}


def test_a_folder_with_shared_parts_merges_into_hdf5(tmp_path):
    shared = tmp_path / "shared.parquet"
    _shared_folder(shared)
    report = merge_outputs(tmp_path / "all.h5", [shared])
    assert (report.videos, report.errors) == (2, 1)
    with open_output(tmp_path / "all.h5") as output:
        assert [f.key for f in output.failures()] == ["C.mp4"]
        for key in ("A.mp4", "B.mp4"):
            _check_video(output, key)
            assert "clip_parts" not in output.video(key).attrs


# ------------------------------------------------------------------------------ sweeping


def test_a_reopen_sweeps_dead_rows_from_dead_writers_shared_parts_only(tmp_path):
    out = tmp_path / "shared.parquet"
    names = _shared_folder(out)  # its writer is dead: s1 holds C's dead rows
    folder = parquet.folder_fs(out)
    unreferenced = _shared(PartTarget(str(out), DEAD, "float32", ATTRS, 100), [("C.mp4", 0)])
    live = "20990101T000000-0000a11e"  # a writer open in this process: its parts are in flight
    leases.hold(folder.fs, folder.root, live)
    in_flight = _shared(PartTarget(str(out), live, "float32", ATTRS, 100), [("D.mp4", 0)])
    s2 = (out / parquet.CLIPS / names["s2"]).read_bytes()
    try:
        open_writer(out, format="parquet", attrs=ATTRS).close()
        parts = set(parquet.list_parts(folder, parquet.CLIPS))
        assert parts == {names["s1"], names["s2"], in_flight} and unreferenced not in parts
        s1 = pd.read_parquet(out / parquet.CLIPS / names["s1"])
        assert sorted(s1.video) == ["A.mp4"] * 3  # C's rows are gone
        assert parquet.clip_part_keys(folder, names["s1"]) == {"A.mp4"}  # and from its footer
        assert (out / parquet.CLIPS / names["s2"]).read_bytes() == s2  # all alive: untouched
        assert list(pd.read_parquet(out / parquet.CLIPS / in_flight).video) == ["D.mp4"]
        with open_output(out) as output:
            for key in ("A.mp4", "B.mp4"):
                _check_video(output, key)
    finally:
        leases.release(folder.fs, folder.root, live)
