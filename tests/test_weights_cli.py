"""``feat3d weights`` add / download / remove / list, the weights home and ``--weights NAME``."""

from __future__ import annotations

import json
import urllib.error
from dataclasses import replace
from pathlib import Path

import h5py
import pytest
import torch
from click.testing import CliRunner, Result

from feat3d.backbones import catalog as catalog_module
from feat3d.backbones import (
    compute_sha256,
    get_backbone,
    resolve_weights,
    save_checkpoint,
)
from feat3d.backbones import weights as weights_module
from feat3d.backbones.hub import find_registered, read_registry, weights_home
from feat3d.cli import cli
from tests.backbones.test_layouts import ENTRIES, SUPPORTED, _write
from tests.videos import write_text, write_video

NAME = "r3d_18.kinetics400_v1"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty weights home in $FEAT3D_HOME, a private torch hub cache, and no network."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setenv("FEAT3D_HOME", str(tmp_path / "home"))

    def offline(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "home"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def error_line(result: Result) -> str:
    """The one line of an ``Error: ...`` exit, checked to be a single line."""
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def tiny_checkpoint(path: Path, *, num_classes: int = 5, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    model = get_backbone("resnet-10", num_classes=num_classes)
    save_checkpoint(model, path)
    return model.state_dict()


# ---------------------------------------------------------------------------------------------
# add


@pytest.mark.parametrize("key", list(SUPPORTED))
def test_add_accepts_every_published_layout(key: str, home: Path, tmp_path: Path) -> None:
    fmt, arch, num_classes, _ = SUPPORTED[key]
    source = tmp_path / "published.pth"
    _write(ENTRIES[key], source)
    result = run("weights", "add", str(source), "--name", "mine", "--link")
    assert result.exit_code == 0, result.output
    assert f"added mine: {arch}, {num_classes} classes, {fmt} format" in result.output
    entry = read_registry(home)["mine"]
    assert (entry.arch, entry.format, entry.classes) == (arch, fmt, num_classes)
    assert entry.path.is_symlink() and entry.path.resolve() == source.resolve()
    assert entry.sha256 == compute_sha256(source)


def test_add_safetensors_then_weights_name_resolves_everywhere(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "tiny.safetensors"
    saved = tiny_checkpoint(source)
    result = run("weights", "add", str(source))
    assert result.exit_code == 0, result.output
    copy = home / "tiny.safetensors"
    assert copy.is_file() and not copy.is_symlink()  # copied, not linked
    source.unlink()  # the registered copy is what gets used

    arch, state_dict, meta = resolve_weights("tiny")
    assert (arch, meta.name, meta.format, meta.sha256) == ("resnet-10", "tiny", "feat3d",
                                                          compute_sha256(copy))  # fmt: skip
    torch.testing.assert_close(state_dict["fc.weight"], saved["fc.weight"], rtol=0, atol=0)
    assert get_backbone("resnet-10", weights="tiny").num_classes == 5
    with pytest.raises(weights_module.WeightsError, match="holds resnet-10 weights"):
        resolve_weights("tiny", model="resnet-18")

    # And through a command: extract records the weights it used.
    clip = write_video(tmp_path / "clip.mp4", n_frames=16, width=32, height=32)
    out = tmp_path / "f.h5"
    args = ["--weights", "tiny", "--size", "32", "--crop", "32", "-j", "0", "-q"]
    result = run("extract", str(clip), "-o", str(out), *args)
    assert result.exit_code == 0, result.output
    with h5py.File(out, "r") as f:
        assert f.attrs["arch"] == "resnet-10"
        assert f.attrs["weights_sha256"] == compute_sha256(copy)


def test_add_rejects_files_that_are_not_checkpoints(home: Path, tmp_path: Path) -> None:
    text = write_text(tmp_path / "notes.pth")
    line = error_line(run("weights", "add", str(text)))
    assert str(text) in line and "cannot load weights file" in line

    random_tensors = tmp_path / "random.pth"
    torch.save({"alpha": torch.randn(3), "beta.weight": torch.randn(2, 2)}, random_tensors)
    line = error_line(run("weights", "add", str(random_tensors)))
    assert str(random_tensors) in line and "unrecognised checkpoint layout" in line
    assert "alpha" in line
    assert read_registry(home) == {} and not any(home.glob("*.pt*"))


def test_add_rejects_a_checksum_mismatch_naming_both_sums(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "r3d_18-b3b3357e.pth"  # torchvision's file name, other contents
    _write(ENTRIES["torchvision r3d_18 (400 classes)"], source)
    line = error_line(run("weights", "add", str(source)))  # the name comes from the file name
    assert "checksum mismatch" in line and NAME in line
    assert compute_sha256(source) in line and "b3b3357e" in line
    assert read_registry(home) == {}


def test_add_checks_published_layout_model_and_name(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "tiny.pt"
    tiny_checkpoint(source)
    line = error_line(run("weights", "add", str(source), "--name", "resnet-34-kinetics"))
    assert "holds resnet-10 with 5 classes" in line and "published as resnet-34" in line
    line = error_line(run("weights", "add", str(source), "--model", "resnet-18"))
    assert "holds resnet-10" in line
    line = error_line(run("weights", "add", str(source), "--name", "none"))
    assert "invalid weights name 'none'" in line

    assert run("weights", "add", str(source)).exit_code == 0
    line = error_line(run("weights", "add", str(source)))
    assert "already registered" in line and "--force" in line
    other = tmp_path / "other.pt"
    tiny_checkpoint(other, num_classes=3, seed=1)
    result = run("weights", "add", str(other), "--name", "tiny", "--force")
    assert result.exit_code == 0, result.output
    assert read_registry(home)["tiny"].classes == 3


def test_changed_registered_file_is_refused(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "tiny.pt"
    tiny_checkpoint(source)
    assert run("weights", "add", str(source), "--link").exit_code == 0
    tiny_checkpoint(source, seed=1)  # the link target is overwritten
    with pytest.raises(weights_module.WeightsError, match="changed since it was added"):
        resolve_weights("tiny")
    source.unlink()
    with pytest.raises(weights_module.WeightsError, match="no longer exists"):
        resolve_weights("tiny")


# ---------------------------------------------------------------------------------------------
# remove, list, home


def test_remove_deletes_the_copy_and_keeps_a_link_target(home: Path, tmp_path: Path) -> None:
    copied, linked = tmp_path / "a.pt", tmp_path / "b.pt"
    tiny_checkpoint(copied)
    tiny_checkpoint(linked)
    assert run("weights", "add", str(copied)).exit_code == 0
    assert run("weights", "add", str(linked), "--link").exit_code == 0
    for name in ("a", "b"):
        result = run("weights", "remove", name)
        assert result.exit_code == 0 and str(home / f"{name}.pt") in result.output
    assert read_registry(home) == {} and not (home / "a.pt").exists()
    assert copied.is_file() and linked.is_file()  # sources untouched
    line = error_line(run("weights", "remove", "a"))
    assert "no weights named 'a'" in line


def test_list_shows_sources_hashes_and_local_files(home: Path, tmp_path: Path) -> None:
    source = tmp_path / "resnet-18-kinetics.pth"  # a published Hara 2017 name
    _write(ENTRIES["Hara 2017 resnet-18, shortcut A (file saved from DataParallel)"], source)
    extra = tmp_path / "extra.pt"
    tiny_checkpoint(extra)
    for path in (source, extra):
        assert run("weights", "add", str(path), "--link").exit_code == 0

    result = run("weights", "--json")
    assert result.exit_code == 0
    rows = {row["name"]: row for row in json.loads(result.output)}
    assert rows[NAME]["download"].startswith("https://download.pytorch.org/")
    assert rows[NAME]["sha256"] == "b3b3357e" and rows[NAME]["path"] is None
    assert rows["r3d18_K_200ep"]["download"] == "Google Drive: manual"
    hara = rows["resnet-18-kinetics"]
    assert hara["path"] == str(home / "resnet-18-kinetics.pth")
    assert hara["sha256"] == compute_sha256(source) and hara["model"] == "resnet-18"
    assert rows["extra"]["model"] == "resnet-10" and rows["extra"]["download"].startswith("added")

    table = CliRunner().invoke(cli, ["weights"], env={"COLUMNS": "300"})
    assert table.exit_code == 0
    assert "Google Drive: manual" in table.output and f"weights home: {home}" in table.output


def test_home_is_feat3d_home_else_under_the_torch_hub_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.delenv("FEAT3D_HOME", raising=False)
    assert weights_home() == tmp_path / "hub" / "feat3d"
    monkeypatch.setenv("FEAT3D_HOME", str(tmp_path / "elsewhere"))
    assert weights_home() == tmp_path / "elsewhere"
    source = tmp_path / "tiny.pt"
    tiny_checkpoint(source)
    assert run("weights", "add", str(source)).exit_code == 0
    assert (tmp_path / "elsewhere" / "weights.json").is_file()
    assert not (tmp_path / "hub" / "feat3d").exists()
    assert find_registered("tiny") is not None


def test_broken_registry_is_one_clear_line(home: Path) -> None:
    home.mkdir(parents=True)
    (home / "weights.json").write_text("{not json")
    line = error_line(run("weights", "remove", "x"))
    assert str(home / "weights.json") in line and "not a feat3d weights registry" in line


# ---------------------------------------------------------------------------------------------
# download


def test_download_offline_says_what_to_do(home: Path) -> None:
    line = error_line(run("weights", "download", NAME))
    assert "cannot reach download.pytorch.org: [Errno -3]" in line
    assert f"`feat3d weights add FILE --name {NAME}`" in line


def test_download_of_a_google_drive_name_prints_where_to_get_it(home: Path) -> None:
    line = error_line(run("weights", "download", "resnet-34-kinetics"))
    assert "drive.google.com" in line
    assert "`feat3d weights add resnet-34-kinetics.pth --name resnet-34-kinetics`" in line
    assert "unknown weights 'nope'" in error_line(run("weights", "download", "nope"))


_REAL_DOWNLOAD = torch.hub.download_url_to_file


@pytest.fixture
def upstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    """A fake r3d_18 file behind a file:// URL, the real downloader restored."""
    monkeypatch.setattr(torch.hub, "download_url_to_file", _REAL_DOWNLOAD)
    torch.manual_seed(0)
    path = tmp_path / "upstream.pth"
    torch.save(get_backbone("r3d_18").state_dict(), path)
    return path, compute_sha256(path)


def _serve(monkeypatch: pytest.MonkeyPatch, path: Path, hash_prefix: str) -> Path:
    entry = catalog_module.CATALOG[NAME]
    url = f"file://{path}".replace("upstream.pth", f"r3d_18-{hash_prefix}.pth")
    Path(url[len("file://") :]).write_bytes(path.read_bytes())
    served = replace(entry, url=url, sha256=hash_prefix)
    monkeypatch.setitem(catalog_module.CATALOG, NAME, served)
    return catalog_module.weights_cache_path(served)


def test_download_from_a_file_url_checks_the_hash(
    home: Path, upstream: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sha = upstream
    cached = _serve(monkeypatch, path, sha[:8])
    result = run("weights", "download", NAME)
    assert result.exit_code == 0, result.output
    assert cached.is_file() and compute_sha256(cached) == sha
    rows = {row["name"]: row for row in json.loads(run("weights", "--json").output)}
    assert rows[NAME]["path"] == str(cached)
    arch, _, meta = resolve_weights(NAME)  # from the cache, offline
    assert (arch, meta.sha256) == ("r3d_18", sha)

    assert run("weights", "remove", NAME).exit_code == 0 and not cached.exists()


def test_download_with_the_wrong_hash_stores_nothing(
    home: Path, upstream: tuple[Path, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path, sha = upstream
    wrong = "00000000" if not sha.startswith("00000000") else "11111111"
    cached = _serve(monkeypatch, path, wrong)
    line = error_line(run("weights", "download", NAME))
    assert "checksum mismatch" in line and wrong in line and sha in line
    assert not cached.exists()
