"""Input discovery: folders, lists, keys."""

from __future__ import annotations

import os

import pytest

from feat3d.io.discover import InputError, discover_videos


def touch(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folders_are_searched_recursively_with_relative_keys(tmp_path):
    touch(tmp_path / "v/b/2.mkv")
    touch(tmp_path / "v/a/1.mp4")
    touch(tmp_path / "v/a/notes.txt")
    sources = discover_videos([tmp_path / "v"])
    assert [s.key for s in sources] == ["a/1.mp4", "b/2.mkv"]
    assert all(s.path.is_absolute() for s in sources)


def test_files_lists_duplicates_and_collisions(tmp_path):
    one = touch(tmp_path / "x/clip.mp4")
    two = touch(tmp_path / "y/clip.mp4")
    listing = tmp_path / "list.txt"
    listing.write_text("# comment\nx/clip.mp4\n\nmissing.mp4\n")
    sources = discover_videos([one, two, f"@{listing}", one])
    assert [(s.key, s.path) for s in sources[:2]] == [("clip.mp4", one), ("clip.mp4~2", two)]
    # The list names x/clip.mp4 again (the same file: not repeated) and a missing file, kept so
    # that the run records it as failed.
    assert [s.key for s in sources[2:]] == ["missing.mp4"]


def test_missing_input_is_an_error(tmp_path):
    with pytest.raises(InputError, match=r"nope\.mp4: no such file"):
        discover_videos([tmp_path / "nope.mp4"])


def test_symlink_loop_does_not_hang(tmp_path):
    touch(tmp_path / "v/a.mp4")
    os.symlink(tmp_path / "v", tmp_path / "v/loop")
    keys = [s.key for s in discover_videos([tmp_path / "v"])]
    assert keys == ["a.mp4"]


def test_symlink_loop_in_a_subfolder_is_visited_once(tmp_path):
    touch(tmp_path / "v/sub/b.mp4")
    os.symlink(tmp_path / "v", tmp_path / "v/sub/up")  # sub/up/sub/up/... -> v
    os.symlink(tmp_path / "v/sub/self.mp4", tmp_path / "v/sub/self.mp4")  # a file link loop
    keys = [s.key for s in discover_videos([tmp_path / "v"])]
    assert keys == ["sub/b.mp4", "sub/self.mp4"]  # the file loop is left to the decoder


def test_unlistable_folders_are_reported_in_place_and_the_walk_goes_on():
    from tests.hostile import shared_folder, unprivileged

    with shared_folder() as root:
        for name in ("v/a.mp4", "v/closed/x.mp4", "v/z/c.mp4"):
            touch(root / name)
        for path in [root / "v", *(root / "v").rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (root / "v/closed").chmod(0)
        with unprivileged():
            sources = discover_videos([root / "v"])
            closed_root = discover_videos([root / "v/closed"])
    keys = [s.key for s in sources]
    assert sorted(keys) == ["a.mp4", "closed", "z/c.mp4"]
    assert [s.path for s in sources if s.key == "closed"] == [root / "v/closed"]
    # A named folder that cannot be listed is reported under its own name.
    assert [s.key for s in closed_root] == ["closed"]
