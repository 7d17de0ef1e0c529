"""The backbone registry."""

from __future__ import annotations

import pytest
import torch

from feat3d.backbones import BackboneSpec, get_backbone, get_spec, list_backbones, register_backbone
from feat3d.backbones import registry as registry_module


def test_names() -> None:
    names = list_backbones()
    assert names == sorted(names)
    # Each model module's own test pins its names (tests/backbones/test_hara_zoo.py, ...).
    assert {
        "mc3_18",
        "r2plus1d_18",
        "r3d_18",
        "resnet-10",
        "resnet-101",
        "resnet-152",
        "resnet-18",
        "resnet-200",
        "resnet-34",
        "resnet-50",
    } <= set(names)
    assert list_backbones("resnet-1*") == ["resnet-10", "resnet-101", "resnet-152", "resnet-18"]
    assert list_backbones("*_18") == ["mc3_18", "r2plus1d_18", "r3d_18"]
    assert list_backbones("nothing*") == []


def test_specs() -> None:
    spec = get_spec("resnet-50")
    assert isinstance(spec, BackboneSpec)
    assert (spec.family, spec.block, spec.layers, spec.feature_dim) == (
        "hara-resnet",
        "bottleneck",
        (3, 4, 6, 3),
        2048,
    )
    assert set(spec.formats) == {"hara2017", "hara2020", "feat3d"}
    assert get_spec("resnet-34").block == "basic"
    assert get_spec("resnet-200").layers == (3, 24, 36, 3)
    tv = get_spec("r2plus1d_18")
    assert (tv.family, tv.default_meta, tv.num_params) == ("torchvision", "torchvision", 31505325)


def test_unknown_name_lists_valid_ones() -> None:
    with pytest.raises(
        ValueError, match=r"unknown backbone 'resnet-19'; valid names: .*mc3_18, .*resnet-50"
    ):
        get_backbone("resnet-19")


def test_duplicate_registration_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(registry_module, "_REGISTRY", dict(registry_module._REGISTRY))
    spec = {
        "family": "torchvision",
        "block": "basic",
        "layers": (1, 1, 1, 1),
        "feature_dim": 512,
        "default_meta": "torchvision",
        "formats": ("feat3d",),
    }
    builder = register_backbone("tiny-test", **spec)(lambda **kw: None)
    assert builder is not None and "tiny-test" in list_backbones()
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("tiny-test", **spec)(lambda **kw: None)
    with pytest.raises(ValueError, match="already registered"):
        register_backbone("r3d_18", **spec)(lambda **kw: None)


def test_models_are_cpu_and_in_training_mode() -> None:
    model = get_backbone("mc3_18", num_classes=2)
    assert model.training
    assert {p.device.type for p in model.parameters()} == {"cpu"}
    assert model.meta.arch == "mc3_18"


@pytest.mark.parametrize(
    ("name", "published_millions"),
    [("r3d_18", 33.4), ("mc3_18", 11.7), ("r2plus1d_18", 31.5)],  # torchvision's model docs
)
def test_torchvision_published_parameter_counts(name: str, published_millions: float) -> None:
    with torch.device("meta"):
        model = get_spec(name).builder(num_classes=400)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == get_spec(name).num_params
    assert abs(counted / 1e6 - published_millions) / published_millions < 0.01
