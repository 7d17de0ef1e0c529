"""Weights metadata, feat3d checkpoints, strict loading, safe loading and named downloads."""

from __future__ import annotations

import json
import urllib.error
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch import nn

from feat3d.backbones import (
    PRESETS,
    WeightsError,
    WeightsMeta,
    compute_sha256,
    get_backbone,
    list_weights,
    load_checkpoint,
    load_state_dict_strict,
    resolve_weights,
    save_checkpoint,
)
from feat3d.backbones import catalog as catalog_module

NAME = "r3d_18.kinetics400_v1"


# ---------------------------------------------------------------------------------------------
# Metadata


def test_meta_dict_round_trip_through_json() -> None:
    meta = get_backbone("r3d_18").meta
    meta = replace(meta, metrics={"Kinetics-400": {"acc@1": 63.2}}, sha256="ab" * 32)
    data = json.loads(json.dumps(meta.to_dict()))
    assert data["resize"] == [128, 171] and data["mean"] == [0.43216, 0.394666, 0.37645]
    assert WeightsMeta.from_dict(data) == meta
    assert WeightsMeta.from_dict({**data, "unknown_future_field": 1}) == meta
    with pytest.raises(ValueError, match="malformed"):
        WeightsMeta.from_dict({"name": "x"})


def test_random_init_meta_per_family() -> None:
    r3d = get_backbone("r3d_18").meta
    assert (r3d.format, r3d.source, r3d.preset) == ("random", "random", "torchvision")
    assert r3d.arch == "r3d_18" and len(r3d.categories) == 400
    hara = get_backbone("resnet-50", num_classes=3).meta
    assert hara.preset == "hara2020" and hara.categories == ["class_0", "class_1", "class_2"]
    assert hara.arch_kwargs == {
        "num_classes": 3,
        "shortcut_type": "B",
        "conv1_t_size": 7,
        "conv1_t_stride": 1,
        "no_max_pool": False,
    }


def test_presets_match_their_sources() -> None:
    hara2017, hara2020, tv = PRESETS["hara2017"], PRESETS["hara2020"], PRESETS["torchvision"]
    assert (hara2017.value_scale, hara2017.mean, hara2017.std) == (
        255.0,
        (114.7748, 107.7354, 99.4750),
        (1.0, 1.0, 1.0),
    )
    assert (hara2020.value_scale, hara2020.mean, hara2020.std) == (
        1.0,
        (0.4345, 0.4051, 0.3775),
        (0.2768, 0.2713, 0.2737),
    )
    assert (tv.value_scale, tv.mean, tv.std) == (
        1.0,
        (0.43216, 0.394666, 0.37645),
        (0.22803, 0.22145, 0.216989),
    )
    assert (tv.resize, tv.crop, tv.frame_rate, tv.clip_len) == ((128, 171), 112, 15.0, 16)
    assert (hara2017.resize, hara2020.resize) == (112, 112)


# ---------------------------------------------------------------------------------------------
# feat3d checkpoints


def test_save_load_round_trip_keeps_meta(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = get_backbone("resnet-18", num_classes=3, shortcut_type="A").eval()
    model.meta = replace(
        model.meta, name="my-finetune", categories=["a", "b", "c"], metrics={"val": {"acc@1": 1.0}}
    )
    path = save_checkpoint(nn.DataParallel(model), tmp_path / "sub" / "ft.pt")
    assert sorted(path.parent.iterdir()) == [path]  # no temporary file left behind

    raw = torch.load(path, weights_only=True)
    assert set(raw) == {"feat3d_version", "arch", "state_dict", "meta"}
    assert not any(k.startswith("module.") for k in raw["state_dict"])

    ckpt = load_checkpoint(path)
    assert (ckpt.format, ckpt.arch) == ("feat3d", "resnet-18")
    assert ckpt.arch_kwargs["shortcut_type"] == "A"
    loaded = get_backbone("resnet-18", weights=path).eval()
    meta = loaded.meta
    assert (meta.name, meta.categories, meta.metrics) == (
        "my-finetune",
        ["a", "b", "c"],
        {"val": {"acc@1": 1.0}},
    )
    assert (meta.format, meta.source, meta.sha256) == ("feat3d", str(path), compute_sha256(path))
    assert (meta.mean, meta.preset) == (model.meta.mean, "hara2020")
    x = torch.randn(1, 3, 4, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)


def test_save_refuses_labels_that_do_not_fit(tmp_path: Path) -> None:
    model = get_backbone("r3d_18")
    model.reset_classifier(5)
    with pytest.raises(ValueError, match="400 categories but the classifier has 5 rows"):
        save_checkpoint(model, tmp_path / "x.pt")
    save_checkpoint(model, tmp_path / "x.pt", meta=replace(model.meta, categories=list("abcde")))
    assert load_checkpoint(tmp_path / "x.pt").arch_kwargs["num_classes"] == 5


def test_num_classes_conflict_with_weights(tmp_path: Path) -> None:
    path = save_checkpoint(
        get_backbone("mc3_18", num_classes=4),
        tmp_path / "m.pt",
        meta=replace(get_backbone("mc3_18", num_classes=4).meta),
    )
    assert get_backbone("mc3_18", weights=path, num_classes=4).num_classes == 4
    with pytest.raises(ValueError, match="num_classes=400 conflicts"):
        get_backbone("mc3_18", weights=path, num_classes=400)


# ---------------------------------------------------------------------------------------------
# Strict loading


def test_mismatch_names_keys_and_suggests_model() -> None:
    r34 = get_backbone("resnet-34").state_dict()
    with pytest.raises(WeightsError) as info:
        load_state_dict_strict(
            get_backbone("resnet-18"), r34, source="w.pth", model_name="resnet-18"
        )
    message = str(info.value)
    assert "unexpected keys: layer1.2.conv1.weight" in message
    assert "(+" in message  # more than five, summarized
    assert "likely --model resnet-34" in message

    r18 = get_backbone("resnet-18").state_dict()
    with pytest.raises(
        WeightsError, match=r"missing keys: layer1\.2\.conv1\.weight.*likely --model resnet-18"
    ):
        load_state_dict_strict(
            get_backbone("resnet-34"), r18, source="w.pth", model_name="resnet-34"
        )

    r18_700 = get_backbone("resnet-18", num_classes=700).state_dict()
    with pytest.raises(WeightsError) as info:
        load_state_dict_strict(
            get_backbone("resnet-18"), r18_700, source="w.pth", model_name="resnet-18"
        )
    assert "fc.weight (700, 512) vs (400, 512)" in str(info.value)
    assert "num_classes=700" in str(info.value)


def test_missing_num_batches_tracked_is_tolerated() -> None:
    source = get_backbone("resnet-10")
    sd = {k: v for k, v in source.state_dict().items() if not k.endswith("num_batches_tracked")}
    target = get_backbone("resnet-10")
    load_state_dict_strict(target, sd, source="old.pth")
    torch.testing.assert_close(target.state_dict()["conv1.weight"], sd["conv1.weight"])


# ---------------------------------------------------------------------------------------------
# Safe loading

TRIGGERED: list[str] = []


def _payload() -> str:
    TRIGGERED.append("code ran")
    return "gotcha"


class Malicious:
    def __reduce__(self) -> tuple:
        return (_payload, ())


def test_pickled_objects_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "evil.pth"
    torch.save(
        {"arch": "resnet-18", "state_dict": {"fc.bias": torch.zeros(2)}, "x": Malicious()}, path
    )
    with pytest.raises(
        WeightsError,
        match=r"cannot load weights file .*evil\.pth: it contains a pickled Python object",
    ):
        load_checkpoint(path)
    assert TRIGGERED == []


def test_unreadable_and_missing_files(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"definitely not a checkpoint")
    with pytest.raises(WeightsError, match=r"cannot load weights file .*junk\.pth"):
        load_checkpoint(junk)
    with pytest.raises(WeightsError, match="weights file not found"):
        resolve_weights(tmp_path / "absent.pth")
    with pytest.raises(WeightsError, match="not one of the named weights"):
        resolve_weights("r3d_18.imagenet")
    tensors = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], tensors)
    with pytest.raises(WeightsError, match="not a model checkpoint"):
        load_checkpoint(tensors)
    odd = tmp_path / "odd.pth"
    torch.save({"encoder.weight": torch.zeros(1)}, odd)
    with pytest.raises(WeightsError, match="unrecognised checkpoint layout"):
        load_checkpoint(odd)


# ---------------------------------------------------------------------------------------------
# Named weights and the model-selection rule


@pytest.fixture
def hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty torch hub cache; downloads fail as if offline unless a test says otherwise."""
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))

    def offline(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torch.hub, "download_url_to_file", offline)
    return tmp_path / "hub" / "checkpoints"


def _fake_r3d_18_file(path: Path) -> tuple[dict, str]:
    torch.manual_seed(0)
    sd = get_backbone("r3d_18").state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(sd, path)
    return sd, compute_sha256(path)


def test_named_weights_table() -> None:
    names = [w.name for w in list_weights()]
    assert names == [
        "mc3_18.kinetics400_v1", "r2plus1d_18.kinetics400_v1", NAME, "s3d.kinetics400_v1",
    ]  # fmt: skip
    w = list_weights("r3d_18")[0]
    assert w.url == "https://download.pytorch.org/models/r3d_18-b3b3357e.pth"
    assert w.filename.startswith("r3d_18-" + w.sha256)
    assert all(x.filename.split("-")[-1].startswith(x.sha256) for x in list_weights())


def test_offline_names_the_cache_path(hub: Path) -> None:
    with pytest.raises(WeightsError) as info:
        resolve_weights(NAME)
    message = str(info.value)
    assert str(hub / "r3d_18-b3b3357e.pth") in message
    assert "offline" in message and "\n" not in message


def test_cached_file_with_wrong_hash_is_rejected(hub: Path) -> None:
    hub.mkdir(parents=True)
    (hub / "r3d_18-b3b3357e.pth").write_bytes(b"truncated download")
    with pytest.raises(
        WeightsError, match=r"cached file .*r3d_18-b3b3357e\.pth is not r3d_18\.kinetics400_v1"
    ):
        resolve_weights("DEFAULT")


def test_cached_file_loads_without_network(hub: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    sd, sha = _fake_r3d_18_file(hub / "r3d_18-b3b3357e.pth")
    entry = catalog_module.CATALOG[NAME]
    monkeypatch.setitem(catalog_module.CATALOG, NAME, replace(entry, sha256=sha[:8]))

    for spec, model in (("DEFAULT", None), (NAME, None), ("KINETICS400_V1", "r3d_18")):
        arch, state_dict, meta = resolve_weights(spec, model=model)
        assert arch == "r3d_18"
        torch.testing.assert_close(state_dict["fc.weight"], sd["fc.weight"])
    assert (meta.name, meta.source, meta.sha256) == (NAME, entry.url, sha)
    assert meta.metrics == {"Kinetics-400": {"acc@1": 63.2, "acc@5": 83.479}}
    assert meta.categories[-1] == "zumba" and meta.frame_rate == 15.0

    model = get_backbone("r3d_18", weights="DEFAULT")
    assert model.meta.name == NAME
    with pytest.raises(WeightsError, match="are for r3d_18, not mc3_18; use --model r3d_18"):
        resolve_weights(NAME, model="mc3_18")


def test_download_goes_to_the_cache(
    hub: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    _, sha = _fake_r3d_18_file(tmp_path / "upstream.pth")
    calls = []

    def download(url: str, dst: str, hash_prefix: str | None = None, progress: bool = True) -> None:
        calls.append((url, dst, hash_prefix))
        Path(dst).write_bytes((tmp_path / "upstream.pth").read_bytes())

    monkeypatch.setattr(torch.hub, "download_url_to_file", download)
    entry = catalog_module.CATALOG[NAME]
    monkeypatch.setitem(catalog_module.CATALOG, NAME, replace(entry, sha256=sha[:8]))
    resolve_weights(NAME, progress=False)
    assert calls == [(entry.url, str(hub / "r3d_18-b3b3357e.pth"), sha[:8])]
    resolve_weights(NAME, progress=False)
    assert len(calls) == 1  # second time from the cache


def test_default_for_hara_explains_where_weights_are() -> None:
    with pytest.raises(WeightsError, match=r"Google Drive.*--weights PATH, or --weights none"):
        resolve_weights("DEFAULT", model="resnet-34")


def test_random_init_rule() -> None:
    arch, state_dict, meta = resolve_weights(None)
    assert (arch, state_dict, meta.format) == ("r3d_18", None, "random")
    arch, state_dict, meta = resolve_weights("none", model="resnet-50")
    assert (arch, meta.preset, meta.arch_kwargs["shortcut_type"]) == ("resnet-50", "hara2020", "B")
    with pytest.raises(ValueError, match="unknown backbone 'resnet-9'"):
        resolve_weights(None, model="resnet-9")
