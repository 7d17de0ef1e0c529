"""URLs wherever a path is taken: telling and masking them, decoding videos over HTTP with
range requests (and its failures: 404, a stalled server, a reset connection), and extracting
from and into an S3 API served on 127.0.0.1 (moto), with resume."""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest

from feat3d import urls
from feat3d.errors import UsageError
from feat3d.io.decode import VideoDecodeError, iter_frames, open_video
from feat3d.io.discover import discover_videos
from feat3d.io.writers import read_h5_features
from feat3d.run.extract import extract
from tests.remote import file_server, s3_server

pytest.importorskip("fsspec")
pytest.importorskip("aiohttp")

TINY = {"size": 32, "crop": 32, "clip_len": 8}


@pytest.fixture(autouse=True)
def quick_network(monkeypatch):
    """Short timeouts and backoff, so that failing servers fail in about a second."""
    monkeypatch.setenv("FEAT3D_NET_TIMEOUT", "1")
    monkeypatch.setattr(urls, "BACKOFF", 0.01)


@pytest.fixture
def served(tmp_path, video_factory):
    root = tmp_path / "www"
    video_factory(root / "a.mp4", n_frames=24, width=64, height=48)
    video_factory(root / "sub/b.mkv", n_frames=12, width=48, height=64)
    with file_server(root) as server:
        yield server


# --------------------------------------------------------------------------------------------
# Telling URLs from paths, masking


def test_urls_paths_and_file_urls():
    assert urls.is_url("s3://bucket/a.mp4") and urls.is_url("https://h/a.mp4")
    assert not urls.is_url("videos/a.mp4") and not urls.is_url(Path("s3:/x"))
    assert not urls.is_url("file:///tmp/a.mp4") and not urls.is_url("C:\\videos\\a.mp4")
    assert urls.as_location("file:///tmp/a%20b.mp4") == Path("/tmp/a b.mp4")
    assert urls.as_location("gs://b/k.mp4") == "gs://b/k.mp4"


def test_credentials_are_masked():
    masked = urls.mask_url("https://ann:s3cret@host/v/a.mp4?X-Amz-Signature=abc&part=2&token=t")
    assert "s3cret" not in masked and "ann" not in masked and "abc" not in masked
    assert masked == "https://***@host/v/a.mp4?X-Amz-Signature=***&part=2&token=***"
    assert urls.mask_url("/local/ann:pw@x.mp4") == "/local/ann:pw@x.mp4"


def test_a_url_source_keeps_its_address_and_masks_it():
    (source,) = discover_videos(["https://ann:pw@host/clips/a%20b.mp4?sig=zz"])
    assert source.path == "https://ann:pw@host/clips/a%20b.mp4?sig=zz"
    assert source.key == "a b.mp4"
    assert "pw" not in source.display and "zz" not in source.display


def test_a_missing_backend_names_the_pip_line(monkeypatch):
    import fsspec

    def missing(*_args, **_kwargs):
        raise ImportError("Install s3fs to access S3")

    monkeypatch.setattr(fsspec.core, "url_to_fs", missing)
    with pytest.raises(UsageError, match=r'pip install "feat3d\[cloud\]"'):
        urls.filesystem("s3://bucket/a.mp4")


# --------------------------------------------------------------------------------------------
# HTTP


def test_http_video_decodes_bit_identical_with_range_requests(served, tmp_path):
    url = served.url("a.mp4", auth="ann:pw")
    local = [f.image for f in iter_frames(tmp_path / "www/a.mp4", size=32, crop=32)]
    remote = [f.image for f in iter_frames(url, size=32, crop=32)]
    assert len(remote) == len(local) == 24
    assert all(np.array_equal(a, b) for a, b in zip(local, remote, strict=True))
    assert any(rng and rng.startswith("bytes=") for _, _, rng in served.requests)
    info = open_video(url)
    assert info.width == 64 and "pw" not in str(info.path)


def test_http_errors_are_one_line_reasons(served):
    with pytest.raises(VideoDecodeError, match=r"HTTP 404"):
        open_video(served.url("missing.mp4"))
    with pytest.raises(VideoDecodeError, match=r"timed out"):
        list(iter_frames(served.url("stall/a.mp4"), retries=0))
    with pytest.raises(VideoDecodeError, match=r"connection lost"):
        list(iter_frames(served.url("reset/a.mp4"), retries=1))


def test_a_dropped_connection_is_retried(served):
    served.flaky = 1
    with pytest.raises(VideoDecodeError, match=r"connection lost"):
        list(iter_frames(served.url("flaky/a.mp4"), retries=0))
    served.flaky = 1
    assert len(list(iter_frames(served.url("flaky/a.mp4"), retries=1))) == 24


def test_extract_over_http_equals_local_and_bad_urls_fail_alone(served, tmp_path, tiny_model):
    local = extract([tmp_path / "www/a.mp4"], tmp_path / "local.h5", model=tiny_model, **TINY)
    inputs = [served.url("a.mp4", auth="ann:pw"), served.url("missing.mp4"),
              served.url("reset/sub/b.mkv")]  # fmt: skip
    errors = tmp_path / "errors.jsonl"
    report = extract(inputs, tmp_path / "remote.h5", model=tiny_model, errors=errors,
                     retries=0, **TINY)  # fmt: skip
    assert local.ok and report.written == ["a.mp4"]
    reasons = {failure.key: failure.message for failure in report.failures}
    assert "HTTP 404" in reasons["missing.mp4"] and "connection lost" in reasons["b.mkv"]
    a = read_h5_features(tmp_path / "local.h5")["a.mp4"]
    b = read_h5_features(tmp_path / "remote.h5")["a.mp4"]
    np.testing.assert_array_equal(a["features"], b["features"])
    with h5py.File(tmp_path / "remote.h5", "r") as handle:
        assert handle["a.mp4"].attrs["source"] == served.url("a.mp4", auth="***")
    logged = errors.read_text(encoding="utf-8")
    assert "pw" not in logged and len(logged.splitlines()) == 2


def test_weights_from_a_url_are_downloaded_once(served, tmp_path, monkeypatch):
    import torch

    from feat3d.backbones import get_backbone
    from feat3d.backbones.checkpoints import save_checkpoint
    from feat3d.backbones.weights import resolve_weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "hub"))
    torch.manual_seed(0)
    network = get_backbone("resnet-10", num_classes=3).eval()
    save_checkpoint(network, tmp_path / "www/w.pt")
    url = served.url("w.pt", auth="ann:pw")
    arch, state, meta = resolve_weights(url)
    assert arch == "resnet-10" and "pw" not in meta.source and meta.source.endswith("/w.pt")
    fetched = len(served.requests)
    resolve_weights(url)
    assert len(served.requests) == fetched  # the second load reads the cache
    assert state is not None
    for name, value in network.state_dict().items():
        assert torch.equal(state[name], value)
    with pytest.raises(Exception, match=r"HTTP 404"):
        resolve_weights(served.url("nope.pt"))


# --------------------------------------------------------------------------------------------
# S3 (moto's server on 127.0.0.1)


@pytest.fixture
def bucket(tmp_path, monkeypatch, video_factory):
    pytest.importorskip("s3fs")
    pytest.importorskip("moto")
    monkeypatch.setenv("FEAT3D_STAGING", str(tmp_path / "staging"))
    monkeypatch.setenv("FEAT3D_NET_TIMEOUT", "10")
    with s3_server():
        fs, _ = urls.filesystem("s3://feat3d-test")
        if fs.exists("feat3d-test"):  # moto keeps its buckets for the whole process
            fs.rm("feat3d-test", recursive=True)
        fs.mkdir("feat3d-test")
        for name, frames in (("a.mp4", 24), ("sub/b.mp4", 12), ("c.mp4", 16)):
            local = video_factory(tmp_path / "videos" / name, n_frames=frames, width=48,
                                  height=32)  # fmt: skip
            fs.put_file(str(local), f"feat3d-test/videos/{name}")
        fs.invalidate_cache()
        yield fs


def test_s3_inputs_output_and_resume(bucket, tmp_path, tiny_model):
    local = extract([tmp_path / "videos"], tmp_path / "local.h5", model=tiny_model, **TINY)
    out = "s3://feat3d-test/out/feats.h5"
    first = extract(["s3://feat3d-test/videos/a.mp4", "s3://feat3d-test/videos/nope.mp4"],
                    out, model=tiny_model, **TINY)  # fmt: skip
    assert first.written == ["a.mp4"] and "no such key" in first.failures[0].message
    assert first.output == out and not list((tmp_path / "staging").glob("*/feats.h5"))
    second = extract(["s3://feat3d-test/videos/"], out, model=tiny_model, **TINY)
    assert second.skipped == ["a.mp4"] and sorted(second.written) == ["c.mp4", "sub/b.mp4"]
    bucket.invalidate_cache()
    bucket.get_file("feat3d-test/out/feats.h5", str(tmp_path / "got.h5"))
    got, want = read_h5_features(tmp_path / "got.h5"), read_h5_features(tmp_path / "local.h5")
    assert sorted(got) == sorted(want) == ["a.mp4", "c.mp4", "sub/b.mp4"] and local.ok
    for key in want:
        np.testing.assert_array_equal(got[key]["features"], want[key]["features"])
    assert list((tmp_path / "staging").iterdir()) == []  # uploaded, the staged copy removed


def test_s3_glob_list_npy_output_and_error_log(bucket, tmp_path, tiny_model):
    bucket.pipe_file("feat3d-test/lists/todo.txt", b"../videos/c.mp4\n# a comment\nmissing.mp4\n")
    bucket.invalidate_cache()
    assert [s.key for s in discover_videos(["s3://feat3d-test/videos/*.mp4"])] == [
        "a.mp4", "c.mp4"
    ]  # fmt: skip
    report = extract(["@s3://feat3d-test/lists/todo.txt"], "s3://feat3d-test/out/npy",
                     model=tiny_model, errors="s3://feat3d-test/out/errors.jsonl",
                     format="npy", **TINY)  # fmt: skip
    assert report.written == ["c.mp4"] and [f.key for f in report.failures] == ["missing.mp4"]
    bucket.invalidate_cache()
    index = bucket.cat_file("feat3d-test/out/npy/index.jsonl").decode().splitlines()
    assert json.loads(index[0])["feat3d"]["clip_len"] == 8
    assert bucket.exists("feat3d-test/out/npy/c.mp4.npy")
    logged = json.loads(bucket.cat_file("feat3d-test/out/errors.jsonl"))
    assert logged["video"] == "missing.mp4" and "no such key" in logged["error"]


# --------------------------------------------------------------------------------------------
# The command line


def test_cli_takes_urls_and_never_prints_credentials(served, tmp_path):
    from click.testing import CliRunner

    from feat3d.cli import cli

    out = tmp_path / "f.h5"
    fast = ["-m", "resnet-10", "-w", "none", "--size", "32", "--crop", "32", "--clip-len", "8",
            "-j", "0", "-q"]  # fmt: skip
    args = ["extract", served.url("a.mp4", auth="ann:pw"), served.url("gone.mp4", auth="ann:pw"),
            "-o", str(out), "--retries", "0", *fast]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "HTTP 404" in result.output and "pw" not in result.output
    assert sorted(read_h5_features(out)) == ["a.mp4"]
    refused = CliRunner().invoke(cli, ["flow", served.url("a.mp4"), "-o", "s3://b/flow.h5"])
    assert refused.exit_code == 2 and "local paths only" in refused.output
