"""Bad and odd input through the decoder, ``extract`` and the CLI: every video is either
written or recorded as a failure with its reason, and the run never raises or hangs."""

from __future__ import annotations

import itertools
import math
import shutil
import tempfile
import time
from pathlib import Path

import av
import h5py
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from feat3d.cli import cli
from feat3d.io.decode import VideoDecodeError, iter_frames
from feat3d.io.discover import discover_videos
from feat3d.io.writers import read_h5_features
from feat3d.run.extract import extract
from tests.hostile import (
    CASE_NAMES,
    HostileCase,
    lock,
    make_hostile_corpus,
    shared_folder,
    unprivileged,
    vanish,
)
from tests.videos import write_video

CLIP_LEN = 4
TINY = {"size": 32, "crop": 32, "clip_len": CLIP_LEN, "batch_size": 4}
GOOD = {"good/a.mp4": 20, "good/b.mkv": 12, "good/c.avi": 9}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict[str, HostileCase]]:
    """The hostile corpus plus three good videos, in one folder."""
    folder = tmp_path_factory.mktemp("hostile") / "inputs"
    cases = make_hostile_corpus(folder)
    for key, n_frames in GOOD.items():
        codec = "mpeg4" if key.endswith(".avi") else "h264"
        write_video(folder / key, n_frames=n_frames, codec=codec)
    return folder, cases


def expected_failures(cases: dict[str, HostileCase], folder: Path) -> dict[str, str]:
    return {
        c.path.relative_to(folder).as_posix(): c.reason
        for c in cases.values()
        if c.expectation == "fail"
    }


def decodable(cases: dict[str, HostileCase], folder: Path) -> dict[str, HostileCase]:
    return {
        c.path.relative_to(folder).as_posix(): c
        for name, c in cases.items()
        if c.expectation != "fail" and name != "symlink_loop"
    }


def error_records(path: Path) -> dict[str, str]:
    with h5py.File(path, "r") as handle:
        if "_errors" not in handle:
            return {}
        return {g.attrs["video"]: g.attrs["message"] for g in handle["_errors"].values()}


def incomplete_groups(path: Path) -> list[str]:
    """Groups holding feature datasets but no ``complete`` attribute (a partial write)."""
    partial: list[str] = []
    with h5py.File(path, "r") as handle:

        def visit(name: str, obj: h5py.HLObject) -> None:
            if name.startswith("_errors") or not isinstance(obj, h5py.Group):
                return
            holds_data = any(isinstance(obj.get(k), h5py.Dataset) for k in obj)
            if holds_data and not obj.attrs.get("complete", False):
                partial.append(name)

        handle.visititems(visit)
    return partial


def test_corpus_is_quick_to_make_and_covers_every_expectation(tmp_path) -> None:
    started = time.perf_counter()
    cases = make_hostile_corpus(tmp_path / "c")
    elapsed = time.perf_counter() - started
    assert elapsed < 10, f"corpus took {elapsed:.1f} s"
    assert {c.expectation for c in cases.values()} == {"fail", "ok", "ok-with-warning"}
    assert all(c.path.exists() or c.path.is_symlink() for c in cases.values())
    assert (tmp_path / "c" / "loop").resolve() == (tmp_path / "c").resolve()
    assert not (tmp_path / ".c-sources").exists()  # the uncut originals are removed


def test_odd_cases_are_what_they_claim(corpus) -> None:
    """The corpus really holds the oddities (an encoder could silently fall back)."""
    _, cases = corpus

    def probe(name: str) -> tuple[str, list[int], bool, tuple[int, int]]:
        with av.open(str(cases[name].path)) as container:
            stream = container.streams.video[0]
            frames = list(container.decode(stream))
            size = (stream.codec_context.width, stream.codec_context.height)
            pts = [f.pts for f in frames]
            return stream.codec_context.pix_fmt, pts, any(f.interlaced_frame for f in frames), size

    for name in ("yuv420p10le", "yuv444p", "yuva420p"):
        assert probe(name)[0] == name
    assert probe("interlaced")[2]
    for name in ("ts_restart", "pts_backwards"):
        pts = probe(name)[1]
        assert any(later < earlier for earlier, later in itertools.pairwise(pts)), name
    assert probe("tall")[3] == (2, 4000) and probe("one_pixel")[3] == (1, 1)
    with av.open(str(cases["rotated"].path)) as container:
        assert next(container.decode(video=0)).rotation in (90, -270)


@pytest.mark.parametrize("name", CASE_NAMES)
def test_decoder_verdict(corpus, name) -> None:
    folder, cases = corpus
    case = cases[name]
    if name == "symlink_loop":
        keys = [s.key for s in discover_videos([folder])]
        assert keys and not any(k.startswith("loop/") for k in keys)
        return
    found: list[str] = []
    if case.expectation == "fail":
        with pytest.raises(VideoDecodeError) as excinfo:
            for _ in iter_frames(case.path, size=32, crop=32, warnings_out=found):
                pass
        message = str(excinfo.value)
        assert message.startswith(case.reason), message
        assert "\n" not in message and str(case.path) not in message
        return
    frames = list(iter_frames(case.path, size=32, crop=32, warnings_out=found))
    assert all(f.image.shape == (32, 32, 3) for f in frames)
    assert [f.time for f in frames] == sorted(f.time for f in frames)
    if case.expectation == "ok":
        assert len(frames) == case.n_frames and found == []
    else:
        assert len(frames) > 0 and found and case.reason in found[0]


@pytest.mark.parametrize("workers", [0, 2])
def test_extract_writes_every_good_video_and_records_every_bad_one(
    corpus, tiny_model, tmp_path, workers
) -> None:
    folder, cases = corpus
    # A copy that disappears between discovery and decoding.
    doomed = shutil.copy(folder / "good/a.mp4", folder / f"doomed{workers}.mp4")
    sources = discover_videos([folder])
    vanish(Path(doomed))
    out = tmp_path / "f.h5"
    started = time.perf_counter()
    report = extract(sources, out, model=tiny_model, workers=workers, **TINY)
    assert time.perf_counter() - started < 120

    failures = {f.key: f.message for f in report.failures}
    expected = {**expected_failures(cases, folder), f"doomed{workers}.mp4": "no such file"}
    assert set(failures) == set(expected)
    for key, reason in expected.items():
        assert failures[key].startswith(reason), (key, failures[key])
        assert "\n" not in failures[key]
    assert error_records(out) == failures

    written = read_h5_features(out)
    good = {**{k: HostileCase(folder / k, "ok", "good", n_frames=n) for k, n in GOOD.items()},
            **decodable(cases, folder)}  # fmt: skip
    assert set(written) == set(good)
    for key, case in good.items():
        attrs = written[key]["attrs"]
        assert written[key]["features"].shape == (attrs["n_clips"], 512)
        if case.n_frames is not None:
            assert attrs["n_clips"] == math.ceil(case.n_frames / CLIP_LEN), key
            assert attrs["n_frames"] == case.n_frames, key
        else:  # damaged: fewer frames than were encoded
            assert 1 <= attrs["n_clips"] <= math.ceil(60 / CLIP_LEN)
    assert written["rotated.mp4"]["attrs"]["width"] == 48  # upright: 64×48 turned
    assert incomplete_groups(out) == []


def test_damage_warning_is_stored_with_the_video(corpus, tiny_model, tmp_path) -> None:
    _, cases = corpus
    out = tmp_path / "w.h5"
    extract([cases["flipped"].path], out, model=tiny_model, **TINY)
    stored = read_h5_features(out)["flipped.mp4"]["attrs"]
    assert any("decode errors" in str(w) for w in stored["warnings"])


def test_cli_exits_1_with_one_line_per_failure(corpus, tmp_path) -> None:
    folder, cases = corpus
    out = tmp_path / "cli.h5"
    args = ["extract", str(folder), "-o", str(out), "-m", "resnet-10", "-w", "none",
            "--size", "32", "--crop", "32", "--clip-len", str(CLIP_LEN), "-j", "0"]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    expected = expected_failures(cases, folder)
    assert len(lines) == len(expected)
    for key, reason in expected.items():
        (line,) = [line for line in lines if line.startswith(f"error: {folder / key}: ")]
        assert line.split(": ", 2)[2].startswith(reason)
    assert "Traceback" not in result.output


def test_unreadable_file_and_folder(tiny_model) -> None:
    """As root, file modes apply only to another user: the run decodes as ``nobody``, in
    this process (see :func:`tests.hostile.unprivileged`)."""
    with shared_folder() as root:
        inputs = root / "in"
        write_video(inputs / "fine.mp4", n_frames=8)
        write_video(inputs / "closed/inside.mp4", n_frames=8)
        write_video(inputs / "secret.mp4", n_frames=8)
        for path in [inputs, *inputs.rglob("*")]:
            path.chmod(0o755 if path.is_dir() else 0o644)
        (inputs / "closed").chmod(0)
        out = root / "out"
        out.mkdir(mode=0o777)
        out.chmod(0o777)
        with unprivileged():
            sources = discover_videos([inputs])
        lock(inputs / "secret.mp4")  # after discovery, before decoding
        with unprivileged():
            report = extract(sources, out / "f.h5", model=tiny_model, workers=0, **TINY)
        failures = {f.key: f.message for f in report.failures}
        assert failures == {
            "closed": "cannot list folder: permission denied",
            "secret.mp4": "permission denied",
        }
        assert report.written == ["fine.mp4"]


_BASES: dict[str, bytes] = {}


def _base(suffix: str) -> bytes:
    if suffix not in _BASES:
        folder = Path(tempfile.mkdtemp())
        path = write_video(folder / f"base{suffix}", n_frames=16, width=32, height=24,
                           pattern="texture", gop=4)  # fmt: skip
        _BASES[suffix] = path.read_bytes()
        shutil.rmtree(folder)
    return _BASES[suffix]


@st.composite
def corruptions(draw: st.DrawFn) -> tuple[str, bytes, list[tuple[str, int, int]]]:
    suffix = draw(st.sampled_from([".mp4", ".mkv"]))
    data = bytearray(_base(suffix))
    edits = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate"]))
        at = draw(st.integers(0, max(0, len(data) - 1)))
        length = draw(st.integers(1, 256))
        edits.append((kind, at, length))
        if kind == "flip":
            data[at : at + length] = bytes(b ^ 0xA5 for b in data[at : at + length])
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=length, max_size=length))
        elif kind == "delete":
            del data[at : at + length]
        else:
            del data[at:]
    return suffix, bytes(data), edits


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])  # fmt: skip
@given(corruptions())
def test_random_corruption_never_escapes_extract(tiny_model, tmp_path, damaged) -> None:
    suffix, data, edits = damaged
    video = tmp_path / f"damaged{suffix}"
    video.write_bytes(data)
    out = tmp_path / "p.h5"
    report = extract([video], out, model=tiny_model, overwrite=True, **TINY)
    assert len(report.written) + len(report.failures) == 1, edits
    for failure in report.failures:
        assert failure.message and "\n" not in failure.message, edits
    assert incomplete_groups(out) == [], edits
    assert set(read_h5_features(out)) == set(report.written), edits
