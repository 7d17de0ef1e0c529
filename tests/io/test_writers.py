"""Output writers: layout, resume bookkeeping, error records, option checks."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from feat3d.io import h5store, writers
from feat3d.io import journal as journal_module
from feat3d.io.h5store import journal_path, pending_records, scan_groups
from feat3d.io.writers import (
    OutputError,
    VideoFailure,
    VideoFeatures,
    guess_format,
    open_writer,
    read_h5_features,
)

ATTRS = {"feat3d_version": "0", "arch": "resnet-18", "weights_sha256": "", "layer": "pool5",
         "clip_len": 16, "stride": 16, "size": 112, "crop": 112, "tail": "pad",
         "mean": [1.0, 2.0, 3.0], "std": [1.0, 1.0, 1.0], "value_scale": 255.0,
         "dtype": "float32", "average_only": False}  # fmt: skip
REPO_ROOT = Path(__file__).resolve().parents[2]


def video(key: str, n_clips: int = 3, dim: int = 4, seed: int = 0) -> VideoFeatures:
    rng = np.random.default_rng(seed)
    starts = np.arange(n_clips) * 16
    return VideoFeatures(
        key=key,
        source=f"/data/{key}",
        features=rng.standard_normal((n_clips, dim)).astype(np.float32),
        segments=np.stack([starts, starts + 16], 1),
        timestamps=np.stack([starts / 25, (starts + 16) / 25], 1),
        fps=25.0,
        n_frames=n_clips * 16,
        duration=n_clips * 16 / 25,
        width=64,
        height=48,
        padded_frames=0,
    )


def test_h5_layout_matches_the_design(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    v = video("dir/a.mp4")
    writer.write(v)
    writer.write_error(VideoFailure("bad/b.mp4", "/data/bad/b.mp4", "not a video"))
    writer.close()
    with h5py.File(path, "r") as f:
        assert f.attrs["arch"] == "resnet-18"
        np.testing.assert_allclose(f.attrs["mean"], [1, 2, 3])
        group = f["dir/a.mp4"]
        assert group["features"].shape == (3, 4) and group["features"].dtype == np.float32
        np.testing.assert_allclose(group["mean"][()], v.features.mean(0), rtol=1e-6)
        assert group["segments"].dtype == np.int64
        np.testing.assert_array_equal(group["segments"][()], [[0, 16], [16, 32], [32, 48]])
        assert group["timestamps"].dtype == np.float64
        for name in (
            "source",
            "fps",
            "n_frames",
            "duration",
            "width",
            "height",
            "n_clips",
            "padded_frames",
        ):
            assert name in group.attrs, name
        assert group.attrs["n_clips"] == 3
        errors = f["_errors"]
        (record,) = errors.values()
        assert record.attrs["video"] == "bad/b.mp4" and record.attrs["message"] == "not a video"
    assert set(read_h5_features(path)) == {"dir/a.mp4"}


def test_h5_float16_and_average_only(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs={**ATTRS, "average_only": True}, dtype="float16")
    writer.write(video("a.mp4"))
    writer.close()
    with h5py.File(path, "r") as f:
        assert "features" not in f["a.mp4"]
        assert f["a.mp4/mean"].dtype == np.float16


def test_h5_resume_keeps_complete_and_drops_incomplete_groups(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write(video("a.mp4"))
    writer.close()
    with h5py.File(path, "a") as f:  # what a kill in the middle of a write leaves behind
        f.create_group("b.mp4").create_dataset("features", data=np.zeros((2, 4)))
    writer = open_writer(path, format="h5", attrs=ATTRS)
    assert writer.completed() == {"a.mp4"}
    writer.close()
    with h5py.File(path, "r") as f:
        assert "b.mp4" not in f


def test_success_clears_an_earlier_error_record(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write_error(VideoFailure("a.mp4", "/data/a.mp4", "permission denied"))
    writer.write(video("a.mp4"))
    writer.close()
    with h5py.File(path, "r") as f:
        assert len(f["_errors"]) == 0


def test_resume_with_other_options_is_refused(tmp_path):
    path = tmp_path / "f.h5"
    open_writer(path, format="h5", attrs=ATTRS).close()
    with pytest.raises(OutputError, match="clip_len"):
        open_writer(path, format="h5", attrs={**ATTRS, "clip_len": 8})
    open_writer(path, format="h5", attrs={**ATTRS, "clip_len": 8}, overwrite=True).close()


def test_json_lines_resume_cuts_a_partial_last_line(tmp_path):
    path = tmp_path / "f.json"
    writer = open_writer(path, format="json", attrs=ATTRS)
    writer.write(video("a.mp4"))
    writer.write_error(VideoFailure("c.mp4", "/data/c.mp4", "truncated"))
    writer.close()
    with path.open("a") as handle:
        handle.write('{"video": "b.mp4", "features": [[1.0, ')
    writer = open_writer(path, format="json", attrs=ATTRS)
    assert writer.completed() == {"a.mp4"}
    writer.write(video("b.mp4"))
    writer.close()
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    assert "feat3d" in lines[0]
    assert [r["video"] for r in lines[1:]] == ["a.mp4", "c.mp4", "b.mp4"]
    assert len(lines[1]["features"]) == 3 and lines[2]["error"] == "truncated"


def test_npy_folder_and_index(tmp_path):
    out = tmp_path / "feats"
    writer = open_writer(out, format="npy", attrs=ATTRS)
    v = video("sub/a.mp4")
    writer.write(v)
    writer.close()
    np.testing.assert_array_equal(np.load(out / "sub/a.mp4.npy"), v.features)
    index = [json.loads(line) for line in (out / "index.jsonl").read_text().splitlines()]
    assert index[1]["file"] == "sub/a.mp4.npy" and index[1]["segments"][0] == [0, 16]
    (out / "sub/a.mp4.npy").unlink()  # an index line whose file is gone is not complete
    assert open_writer(out, format="npy", attrs=ATTRS).completed() == set()


def test_unwritable_output_fails_before_any_work(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        import os

        if os.access(folder, os.W_OK):  # running as root: permissions are not enforced
            pytest.skip("permissions are not enforced for this user")
        with pytest.raises(OutputError, match="not writable"):
            open_writer(folder / "f.h5", format="h5", attrs=ATTRS)
    finally:
        folder.chmod(0o700)


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.h5", "h5"), ("a.HDF5", "h5"), ("a.json", "json"), ("out", "npy")]
)
def test_guess_format(name, fmt):
    assert guess_format(name) == fmt


# --- crash safety (H5Store + journal), full disk, fast failures ---------------------------


def h5_contents(path) -> dict[str, dict[str, object]]:
    return read_h5_features(path)


def assert_video_stored(entry: dict, expected: VideoFeatures) -> None:
    np.testing.assert_array_equal(entry["features"], expected.features)
    np.testing.assert_array_equal(entry["segments"], expected.segments)
    np.testing.assert_array_equal(entry["timestamps"], expected.timestamps)
    assert entry["features"].dtype == np.float32 and entry["segments"].dtype == np.int64
    assert entry["attrs"]["source"] == expected.source
    assert entry["attrs"]["n_clips"] == expected.n_clips


def test_h5_results_live_in_the_journal_until_close(tmp_path):
    path = tmp_path / "f.h5"
    journal = tmp_path / "f.h5.journal"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write(video("a.mp4"))
    assert journal.exists() and not path.exists()
    assert writer.completed() == {"a.mp4"}
    assert pending_records(path) == 1
    writer.close()
    assert not journal.exists() and pending_records(path) == 0
    assert_video_stored(h5_contents(path)["a.mp4"], video("a.mp4"))


def test_h5_journal_of_a_killed_run_is_merged_on_reopen(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write(video("a.mp4", seed=1))
    writer.close()
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write(video("b/c.mp4", seed=2))
    writer.write_error(VideoFailure("d.mp4", "/data/d.mp4", "broken"))
    writer.store.journal.close()  # as if killed: no consolidation
    (tmp_path / "f.h5.tmp-99999").write_bytes(b"half a copy")  # left by a killed consolidation
    assert set(h5_contents(path)) == {"a.mp4"}
    writer = open_writer(path, format="h5", attrs=ATTRS)
    assert writer.completed() == {"a.mp4", "b/c.mp4"}
    assert not (tmp_path / "f.h5.tmp-99999").exists()
    writer.close()
    contents = h5_contents(path)
    assert_video_stored(contents["a.mp4"], video("a.mp4", seed=1))
    assert_video_stored(contents["b/c.mp4"], video("b/c.mp4", seed=2))
    with h5py.File(path, "r") as f:
        assert [r.attrs["video"] for r in f["_errors"].values()] == ["d.mp4"]


def test_replaying_a_journal_twice_changes_nothing(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    for i in range(4):
        writer.write(video(f"v{i}.mp4", seed=i))
    writer.write_error(VideoFailure("bad.mp4", "/data/bad.mp4", "broken"))
    saved_journal = (tmp_path / "f.h5.journal").read_bytes()
    writer.close()
    first = path.read_bytes()
    # A kill between the rename and the journal's deletion: the same journal is replayed again.
    (tmp_path / "f.h5.journal").write_bytes(saved_journal)
    writer = open_writer(path, format="h5", attrs=ATTRS)
    assert writer.completed() == {f"v{i}.mp4" for i in range(4)}
    writer.close()
    assert path.stat().st_size == len(first)  # nothing was deleted and written again
    contents = h5_contents(path)
    for i in range(4):
        assert_video_stored(contents[f"v{i}.mp4"], video(f"v{i}.mp4", seed=i))
    with h5py.File(path, "r") as f:
        assert len(f["_errors"]) == 1


def test_overwrite_keeps_the_old_file_until_the_new_run_is_merged(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write(video("old.mp4"))
    writer.close()
    writer = open_writer(path, format="h5", attrs={**ATTRS, "clip_len": 8}, overwrite=True)
    assert writer.completed() == set()
    writer.write(video("new.mp4"))
    assert set(h5_contents(path)) == {"old.mp4"}
    writer.store.journal.close()  # killed: the next plain run finishes the overwrite
    writer = open_writer(path, format="h5", attrs={**ATTRS, "clip_len": 8})
    assert writer.completed() == {"new.mp4"}
    writer.close()
    assert set(h5_contents(path)) == {"new.mp4"}
    with h5py.File(path, "r") as f:
        assert f.attrs["clip_len"] == 8


def test_disk_full_while_appending_stops_with_one_line_and_keeps_earlier_videos(
    tmp_path, monkeypatch
):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write(video("a.mp4", seed=1))
    writer.write(video("b.mp4", seed=2))

    def no_space(fd, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(journal_module, "_write_fully", no_space)
    with pytest.raises(OutputError) as caught:
        writer.write(video("c.mp4", seed=3))
    message = str(caught.value)
    assert message == (
        f"{path}: disk full while writing video c.mp4; 2 videos are safe in the journal, "
        "free space and run the same command again"
    )
    assert "\n" not in message
    writer.close()  # what extract's `finally` does: the journal must survive it
    monkeypatch.undo()
    assert pending_records(path) == 2
    writer = open_writer(path, format="h5", attrs=ATTRS)
    assert writer.completed() == {"a.mp4", "b.mp4"}
    writer.close()
    assert_video_stored(h5_contents(path)["b.mp4"], video("b.mp4", seed=2))


def test_too_little_free_space_fails_at_open_naming_the_path_and_the_space(tmp_path, monkeypatch):
    monkeypatch.setattr(h5store, "free_bytes", lambda folder: 3 * 2**20)
    monkeypatch.setattr(writers, "check_free_space", h5store.check_free_space)
    for fmt, name in (("h5", "f.h5"), ("json", "f.json"), ("npy", "feats")):
        with pytest.raises(OutputError, match=r"f\.h5|f\.json|feats") as caught:
            open_writer(tmp_path / name, format=fmt, attrs=ATTRS)
        assert "only 3.0 MiB free" in str(caught.value)
    assert sorted(path.name for path in tmp_path.iterdir()) == []  # no journal left either


def test_unwritable_folder_fails_at_open_for_every_format(tmp_path, monkeypatch):
    monkeypatch.setattr(h5store.os, "access", lambda path, mode: False)
    for fmt, name in (("h5", "f.h5"), ("json", "f.json"), ("npy", "feats")):
        with pytest.raises(OutputError, match="is not writable"):
            open_writer(tmp_path / "out" / name, format=fmt, attrs=ATTRS)


def test_a_second_run_on_the_same_output_is_refused(tmp_path):
    path = tmp_path / "f.h5"
    first = open_writer(path, format="h5", attrs=ATTRS)
    with pytest.raises(OutputError, match="in use by another feat3d process"):
        open_writer(path, format="h5", attrs=ATTRS)
    first.close()


def test_a_file_that_is_not_hdf5_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "f.h5"
    path.write_text("not hdf5")
    with pytest.raises(OutputError, match="cannot open as HDF5"):
        open_writer(path, format="h5", attrs=ATTRS)
    writer = open_writer(path, format="h5", attrs=ATTRS, overwrite=True)
    writer.write(video("a.mp4"))
    writer.close()
    assert set(h5_contents(path)) == {"a.mp4"}


def test_options_of_a_leftover_journal_count_when_resuming(tmp_path):
    path = tmp_path / "f.h5"
    writer = open_writer(path, format="h5", attrs=ATTRS)
    writer.write(video("a.mp4"))
    writer.store.journal.close()  # killed before the file existed
    with pytest.raises(OutputError, match="made with clip_len=16, this run uses clip_len=8"):
        open_writer(path, format="h5", attrs={**ATTRS, "clip_len": 8})
    assert set(h5_contents(path)) == {"a.mp4"}  # the leftover journal was merged first


def test_json_disk_full_keeps_earlier_lines(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    writer = open_writer(path, format="json", attrs=ATTRS)
    writer.write(video("a.mp4"))

    class FullDisk:
        def __init__(self, handle):
            self.handle = handle

        def tell(self):
            return self.handle.tell()

        def write(self, data):
            self.handle.write(data[:10])
            self.handle.flush()
            raise OSError(errno.ENOSPC, "No space left on device")

        def close(self):
            self.handle.close()

    writer.log.handle = FullDisk(writer.log.handle)
    with pytest.raises(OutputError, match=r"disk full while writing video b\.mp4; 1 videos"):
        writer.write(video("b.mp4"))
    writer.close()
    lines = path.read_text().splitlines()
    assert len(lines) == 2 and json.loads(lines[1])["video"] == "a.mp4"
    assert path.read_text().endswith("\n")


def test_npy_partial_files_of_a_killed_run_are_removed(tmp_path):
    out = tmp_path / "feats"
    writer = open_writer(out, format="npy", attrs=ATTRS)
    writer.write(video("sub/a.mp4"))
    writer.close()
    partial = out / "sub" / ".b.mp4.npy.partial"
    partial.write_bytes(b"\x93NUMPY half")
    writer = open_writer(out, format="npy", attrs=ATTRS)
    assert writer.completed() == {"sub/a.mp4"}
    writer.close()
    assert not partial.exists()


KILLED_WRITER = """
import sys
import time
from feat3d.io.writers import open_writer
from tests.io.test_writers import ATTRS, killed_run_video

path, count, work_seconds = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
writer = open_writer(path, format="h5", attrs=ATTRS)
done = writer.completed()
for i in range(count):
    key = killed_run_video(i).key
    if key not in done:
        time.sleep(work_seconds)  # the model's time per video
        writer.write(killed_run_video(i))
        print("committed", key, flush=True)
print("closing", flush=True)
writer.close()
print("closed", flush=True)
"""


def killed_run_video(i: int) -> VideoFeatures:
    return video(f"d{i % 3}/v{i:03d}.mp4", n_clips=1 + i % 4, dim=8, seed=i)


def run_and_kill(
    tmp_path,
    path,
    count: int,
    kill_after,
    pause: float | None,
    kill_at: str | None = None,
    work_seconds: float = 0.0,
) -> list[str]:
    """Run KILLED_WRITER and SIGKILL it once ``kill_after(line)`` says so (or let it kill
    itself at consolidation step ``kill_at``); return the keys it reported committed."""
    script = tmp_path / "killed_writer.py"
    script.write_text(KILLED_WRITER)
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    env.pop(h5store.PAUSE_ENV, None)
    env.pop(h5store.KILL_ENV, None)
    if pause is not None:
        env[h5store.PAUSE_ENV] = str(pause)
    if kill_at is not None:
        env[h5store.KILL_ENV] = kill_at
    process = subprocess.Popen(
        [sys.executable, str(script), str(path), str(count), str(work_seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    committed: list[str] = []
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("committed"):
            committed.append(line.split()[1])
        delay = kill_after(line)
        if delay is not None:
            time.sleep(delay)
            process.send_signal(signal.SIGKILL)
            break
    returncode = process.wait(timeout=60)
    if kill_at is not None:
        assert returncode == -signal.SIGKILL
    committed += [line.split()[1] for line in process.stdout if line.startswith("committed")]
    process.stdout.close()
    return committed


def check_after_kill(path, committed: list[str], count: int) -> None:
    if path.exists():  # the file a kill leaves is always a whole HDF5 file, old or new
        with h5py.File(path, "r") as f:
            assert scan_groups(f)[1] == []
    writer = open_writer(path, format="h5", attrs=ATTRS)
    completed = writer.completed()
    writer.close()
    keys = [killed_run_video(i).key for i in range(count)]
    in_flight = keys[len(committed)] if len(committed) < count else None
    assert set(committed) <= completed <= set(committed) | {in_flight}
    contents = h5_contents(path)
    assert set(contents) == completed
    for i in range(count):
        expected = killed_run_video(i)
        if expected.key in completed:
            assert_video_stored(contents[expected.key], expected)
    with h5py.File(path, "r") as f:
        assert scan_groups(f)[1] == []  # no partial group
    assert not list(path.parent.glob("f.h5.tmp-*")) and not journal_path(path).exists()


@pytest.mark.parametrize("seed", range(4))
def test_kill_9_while_appending_loses_nothing_committed(tmp_path, seed):
    rng = random.Random(seed)
    path, count = tmp_path / "f.h5", 30
    target = rng.randrange(1, count)
    seen = []

    def kill_after(line: str) -> float | None:
        seen.append(line)
        return rng.random() * 0.01 if len(seen) == target else None

    committed = run_and_kill(tmp_path, path, count, kill_after, pause=None, work_seconds=0.01)
    assert len(committed) < count, "the writer finished before the kill"
    check_after_kill(path, committed, count)
    # the resumed run writes the rest, and the output is exactly one full run's
    run_and_kill(tmp_path, path, count, lambda line: None, pause=None)
    assert set(h5_contents(path)) == {killed_run_video(i).key for i in range(count)}


@pytest.mark.parametrize(
    ("step", "earlier_run"),
    [("copied", True), ("record-4", False), ("synced", True), ("replaced", False)],
)
def test_kill_9_at_each_consolidation_step_leaves_old_or_new_file_and_the_journal(
    tmp_path, step, earlier_run
):
    path, count = tmp_path / "f.h5", 12
    earlier = 5 if earlier_run else 0
    if earlier_run:  # consolidation copies an existing file
        run_and_kill(tmp_path, path, earlier, lambda line: None, pause=None)
    before = set(h5_contents(path)) if earlier_run else None
    committed = run_and_kill(tmp_path, path, count, lambda line: None, pause=None, kill_at=step)
    everything = [killed_run_video(i).key for i in range(count)]
    assert sorted(committed) == sorted(everything[earlier:])
    assert journal_path(path).exists()
    if step == "replaced":
        assert set(h5_contents(path)) == set(everything)  # the new file, journal not yet deleted
    else:
        assert (set(h5_contents(path)) if path.exists() else None) == before  # the old file
    check_after_kill(path, everything, count)


@pytest.mark.parametrize("seed", range(2))
def test_kill_9_at_a_random_moment_of_consolidation(tmp_path, seed):
    rng = random.Random(seed)
    path, count, pause = tmp_path / "f.h5", 12, 0.01
    run_and_kill(tmp_path, path, 4, lambda line: None, pause=None)

    def kill_after(line: str) -> float | None:  # about count + 3 pauses in consolidation
        return rng.random() * pause * (count + 3) if line.startswith("closing") else None

    run_and_kill(tmp_path, path, count, kill_after, pause=pause)
    check_after_kill(path, [killed_run_video(i).key for i in range(count)], count)
