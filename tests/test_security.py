"""Safe formats: no code execution from checkpoints, safetensors, verified downloads, safe keys."""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import replace
from email.message import Message
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from feat3d.backbones import (
    WeightsError,
    convert_checkpoint,
    get_backbone,
    load_checkpoint,
    resolve_weights,
)
from feat3d.backbones import catalog as catalog_module
from feat3d.backbones import weights as weights_module
from feat3d.cli import cli
from feat3d.io.discover import check_key, discover_videos, safe_key
from feat3d.io.writers import read_h5_features
from feat3d.model import load_model
from feat3d.run.extract import extract

MARKER_ENV = "FEAT3D_TEST_MARKER"


def _touch_marker() -> str:
    Path(os.environ[MARKER_ENV]).write_text("code ran")
    return "payload"


class Malicious:
    """Unpickling this runs ``_touch_marker``: what a booby-trapped checkpoint does."""

    def __reduce__(self):
        return (_touch_marker, ())


@pytest.fixture
def evil_checkpoint(tmp_path, monkeypatch):
    marker = tmp_path / "marker"
    monkeypatch.setenv(MARKER_ENV, str(marker))
    net = get_backbone("resnet-10", shortcut_type="A")
    path = tmp_path / "resnet-10-kinetics.pth"
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"arch": "resnet-10", "state_dict": state, "extra": Malicious()}, path)
    return path, marker


def test_malicious_checkpoint_is_refused_and_runs_nothing(evil_checkpoint):
    path, marker = evil_checkpoint
    with pytest.raises(WeightsError, match=r"pickled Python object.*--trust-checkpoint"):
        load_checkpoint(path)
    result = CliRunner().invoke(cli, ["classify", str(path), "-w", str(path), "-q"])
    assert result.exit_code == 1 and "resnet-10-kinetics.pth" in result.output
    assert not marker.exists()


def test_trust_checkpoint_loads_it_and_its_code_runs(evil_checkpoint):
    """The documented risk of --trust-checkpoint: the file's code is executed."""
    path, marker = evil_checkpoint
    with pytest.warns(UserWarning, match="can run code"):
        loaded = load_checkpoint(path, trust=True)
    assert loaded.arch == "resnet-10" and loaded.format == "hara2017"
    assert marker.read_text() == "code ran"


def test_safetensors_round_trip_gives_identical_outputs_and_metadata(tmp_path):
    torch.manual_seed(0)
    net = get_backbone("resnet-10", shortcut_type="A").eval()
    source = tmp_path / "resnet-10-kinetics.pth"
    state = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"arch": "resnet-10", "state_dict": state}, source)
    meta = convert_checkpoint(source, tmp_path / "r10.safetensors")
    assert meta.format == "hara2017"
    original = load_model(None, str(source), device="cpu")
    converted = load_model(None, str(tmp_path / "r10.safetensors"), device="cpu")
    assert converted.meta.format == "feat3d"
    fields = ("arch", "categories", "mean", "std", "value_scale", "clip_len", "resize", "crop")
    for field in (*fields, "arch_kwargs"):
        assert getattr(converted.meta, field) == getattr(original.meta, field), field
    clips = torch.randint(0, 256, (2, 8, 32, 32, 3), dtype=torch.uint8)
    for layer in ("pool5", "logits"):
        np.testing.assert_array_equal(
            converted.run(clips, (layer,))[layer], original.run(clips, (layer,))[layer]
        )
    # a safetensors file is plain data: its header carries the metadata as JSON
    from safetensors import safe_open

    with safe_open(str(tmp_path / "r10.safetensors"), framework="pt") as handle:
        header = handle.metadata()
    assert header["arch"] == "resnet-10" and json.loads(header["meta"])["value_scale"] == 255.0


def test_convert_command(tmp_path):
    net = get_backbone("r3d_18")
    source = tmp_path / "r3d.pth"
    torch.save(net.state_dict(), source)
    target = tmp_path / "r3d.safetensors"
    result = CliRunner().invoke(cli, ["weights", "convert", str(source), str(target)])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(target).arch == "r3d_18"


class _Response(io.BytesIO):
    def __init__(self, data: bytes, length: int):
        super().__init__(data)
        self.length = length

    def info(self) -> Message:
        headers = Message()
        headers["Content-Length"] = str(self.length)
        return headers

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_partial_or_corrupt_download_is_rejected_and_not_cached(tmp_path, monkeypatch, damage):
    torch.manual_seed(0)
    upstream = tmp_path / "upstream.pth"
    torch.save(get_backbone("r3d_18").state_dict(), upstream)
    data = upstream.read_bytes()
    sha = weights_module.compute_sha256(upstream)
    served = data[: len(data) // 2] if damage == "truncated" else data[:-10] + b"x" * 10
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: _Response(served, len(data)))
    name = "r3d_18.kinetics400_v1"
    entry = catalog_module.CATALOG[name]
    monkeypatch.setitem(catalog_module.CATALOG, name, replace(entry, sha256=sha[:8]))
    with pytest.raises(WeightsError, match="corrupt"):
        resolve_weights(name, progress=False)
    cache = tmp_path / "hub" / "checkpoints"
    assert not cache.exists() or list(cache.iterdir()) == []  # nothing half-written counts
    monkeypatch.setattr(torch.hub, "urlopen", lambda *a, **k: _Response(data, len(data)))
    assert resolve_weights(name, progress=False).arch == "r3d_18"
    assert [p.name for p in cache.iterdir()] == ["r3d_18-b3b3357e.pth"]


# --------------------------------------------------------------------------------------------
# Output keys


def _touch(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_same_relative_path_under_two_roots_gets_distinct_keys(tmp_path):
    a = _touch(tmp_path / "root1/sub/clip.mp4")
    b = _touch(tmp_path / "root2/sub/clip.mp4")
    c = _touch(tmp_path / "root2/CLIP.MP4")
    d = _touch(tmp_path / "root3/clip.mp4")
    sources = discover_videos([tmp_path / "root1", tmp_path / "root2", tmp_path / "root3", d])
    keys = {s.path: s.key for s in sources}
    assert keys[a] == "sub/clip.mp4" and keys[b] == "sub~2/clip.mp4"
    assert keys[c] == "CLIP.MP4" and keys[d] == "clip.mp4~2"  # case-insensitive clash


def test_a_key_that_is_a_folder_of_another_is_renamed(tmp_path):
    file_key = _touch(tmp_path / "r1/a.mp4")
    nested = _touch(tmp_path / "r2/a.mp4/b.mp4")
    keys = {s.path: s.key for s in discover_videos([tmp_path / "r1", tmp_path / "r2"])}
    assert keys[file_key] == "a.mp4" and keys[nested] == "a.mp4~2/b.mp4"


HOSTILE = ["sp ace.mp4", "ünï cødé.mp4", "$(rm -rf x); `y` 'q' \"z\".mp4", "new\nline.mp4",
           "tab\tand\\back.mp4", "x" * 240 + ".mp4", "-dash.mp4", "%41.mp4", "..mp4"]  # fmt: skip


def test_hostile_names_give_distinct_safe_keys(tmp_path):
    folder = tmp_path / "v"
    for name in HOSTILE:
        _touch(folder / name)
    raw = os.fsencode(folder) + b"/bad\xffbyte.mp4"
    with open(raw, "wb") as handle:
        handle.write(b"x")
    keys = [s.key for s in discover_videos([folder])]
    assert len(keys) == len(set(keys)) == len(HOSTILE) + 1
    for key in keys:
        check_key(key)
        key.encode("utf-8")  # HDF5 names must be valid UTF-8
        assert all(len(part.encode()) <= 200 for part in key.split("/"))
        assert "\n" not in key and "\\" not in key
    assert "bad%FFbyte.mp4" in keys and "new%0Aline.mp4" in keys


@pytest.mark.parametrize("key", ["../up.mp4", "/abs.mp4", "a/../../x", "a/./b", "nul\x00.mp4", ""])
def test_unsafe_keys_are_rejected(key):
    with pytest.raises(ValueError, match="unsafe output key"):
        check_key(key)
    assert check_key(safe_key(key.replace("\x00", "_"))) is None


def test_extract_hostile_names_into_h5_and_npy(tmp_path, video_factory):
    folder = tmp_path / "v"
    names = ["sp ace.mp4", "$(x) `y`.mp4", "ünï.mp4", "new\nline.mp4"]
    for name in names:
        video_factory(folder / name, n_frames=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model("resnet-10", None, device="cpu")
    h5 = tmp_path / "f.h5"
    report = extract([folder], h5, model=model, size=32, crop=32)
    assert report.ok and len(report.written) == 4
    stored = read_h5_features(h5)
    assert {stored[k]["attrs"]["source"] for k in stored} == {str(folder / n) for n in names}
    out = tmp_path / "npy"
    extract([folder], out, model=model, size=32, crop=32, format="npy")
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.npy"))
    assert files == sorted(f"{k}.npy" for k in stored)
    with h5py.File(h5) as handle:
        assert "new%0Aline.mp4" in handle
