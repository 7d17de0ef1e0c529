"""Every published checkpoint layout in tests/data/checkpoint_layouts.json is recognised."""

from __future__ import annotations

import json
from collections import Counter, OrderedDict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from feat3d.backbones import (
    WeightsError,
    get_backbone,
    load_checkpoint,
    resolve_weights,
)
from tests.legacy_pickle import save_like_pytorch_03

LAYOUTS: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "checkpoint_layouts.json").read_text()
)
ENTRIES = {k: v for k, v in LAYOUTS.items() if not k.startswith("_")}

# What each layout must be recognised as: (format, arch, num_classes, shortcut type).
SUPPORTED: dict[str, tuple[str, str, int, str | None]] = {
    "torchvision r3d_18 (400 classes)": ("torchvision", "r3d_18", 400, None),
    "torchvision mc3_18 (400 classes)": ("torchvision", "mc3_18", 400, None),
    "torchvision r2plus1d_18 (400 classes)": ("torchvision", "r2plus1d_18", 400, None),
    "Hara 2017 resnet-18, shortcut A (file saved from DataParallel)": (
        "hara2017",
        "resnet-18",
        400,
        "A",
    ),
    "Hara 2017 resnet-34, shortcut A (file saved from DataParallel)": (
        "hara2017",
        "resnet-34",
        400,
        "A",
    ),
    "Hara 2017 resnet-50, shortcut B (file saved from DataParallel)": (
        "hara2017",
        "resnet-50",
        400,
        "B",
    ),
    "Hara 2020 r3d18_K_200ep (resnet-18, shortcut B, 700 classes)": (
        "hara2020",
        "resnet-18",
        700,
        "B",
    ),
    "Hara 2020 r3d50_K_200ep (resnet-50, shortcut B, 700 classes)": (
        "hara2020",
        "resnet-50",
        700,
        "B",
    ),
    "Hara 2017 resnext-101, cardinality 32, shortcut B (file saved from DataParallel)": (
        "hara2017",
        "resnext-101",
        400,
        "B",
    ),
    "Hara 2020 r2p1d18_K_200ep (resnet2p1d-18, 700 classes)": (
        "hara2020",
        "resnet2p1d-18",
        700,
        "B",
    ),
}
# Further builder arguments each layout must be recognised with.
EXTRA_KWARGS: dict[str, dict[str, Any]] = {
    "Hara 2017 resnext-101, cardinality 32, shortcut B (file saved from DataParallel)": {
        "cardinality": 32,
        "stem_width": 64,
    },
    "Hara 2020 r2p1d18_K_200ep (resnet2p1d-18, 700 classes)": {
        "conv1_t_size": 7,
        "widen_factor": 1.0,
    },
}

# Top-level entries of the published files besides 'arch' and 'state_dict'.
_DUMMIES: dict[str, Any] = {
    "epoch": 200,
    "optimizer": {
        "state": {},
        "param_groups": [{"lr": 0.1, "momentum": 0.9, "nesterov": False, "params": [0, 1]}],
    },
    # MultiStepLR.state_dict() holds a collections.Counter.
    "scheduler": {"milestones": Counter({50: 1, 100: 1}), "last_epoch": 200, "_last_lr": [0.1]},
}


def _strip(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module.") :]
    return key


def _write(
    entry: dict[str, Any],
    path: Path,
    *,
    extra_prefix: str = "",
    extra_top: tuple[str, ...] = (),
    save: Callable[[Any, Path], Any] = torch.save,
) -> dict[str, torch.Tensor]:
    """Save a checkpoint in exactly the entry's layout, with random tensors."""
    g = torch.Generator().manual_seed(0)
    sd: dict[str, torch.Tensor] = OrderedDict()
    for key, shape in entry["state_dict"].items():
        if key.endswith("num_batches_tracked"):
            if save is not torch.save:
                continue  # PyTorch 0.4.1 added it
            value = torch.tensor(123, dtype=torch.long)
        else:
            value = torch.randn(shape, generator=g)
        sd[extra_prefix + key] = value
    if entry["top_level_keys"] is None:
        obj: Any = sd
    else:
        obj = {k: (entry["arch"] if k == "arch" else _DUMMIES[k]) for k in entry["top_level_keys"]}
        obj.update({k: _DUMMIES[k] for k in extra_top})
        obj["state_dict"] = sd
    save(obj, path)
    return {_strip(k): v for k, v in sd.items()}


def test_every_layout_has_an_expectation() -> None:
    assert set(SUPPORTED) == set(ENTRIES)


@pytest.mark.parametrize("key", list(SUPPORTED))
def test_supported_layout_loads_strictly(key: str, tmp_path: Path) -> None:
    fmt, arch, num_classes, shortcut = SUPPORTED[key]
    entry = ENTRIES[key]
    path = tmp_path / "weights.pth"
    saved = _write(entry, path)

    ckpt = load_checkpoint(path)
    assert (ckpt.format, ckpt.arch, ckpt.arch_kwargs["num_classes"]) == (fmt, arch, num_classes)
    assert ckpt.arch_kwargs.get("shortcut_type") == shortcut
    for name, value in EXTRA_KWARGS.get(key, {}).items():
        assert ckpt.arch_kwargs[name] == value
    assert arch in ckpt.description and f"{num_classes} classes" in ckpt.description
    layout = {_strip(k): tuple(v) for k, v in entry["state_dict"].items()}
    assert {k: tuple(v.shape) for k, v in ckpt.state_dict.items()} == layout

    # Our freshly built model has exactly the layout's keys and shapes.
    kwargs = {"shortcut_type": shortcut} if shortcut else {}
    fresh = get_backbone(arch, num_classes=num_classes, **kwargs)
    assert {k: tuple(v.shape) for k, v in fresh.state_dict().items()} == layout

    # Loading through the model-selection rule: no --model, then the right --model.
    resolved = resolve_weights(path)
    assert resolved.arch == arch
    model = get_backbone(arch, weights=resolved)
    assert model.num_classes == num_classes
    assert model.meta.format == fmt and model.meta.sha256 == ckpt.meta.sha256
    assert model.meta.preset == fmt  # each format's own normalization preset
    for name in ("fc.weight", next(iter(saved))):
        torch.testing.assert_close(model.state_dict()[name], saved[name], rtol=0, atol=0)
    model = get_backbone(arch, weights=path, num_classes=num_classes)
    assert model.meta.arch_kwargs["num_classes"] == num_classes


def test_hara_2017_with_doubled_prefix_and_training_state(tmp_path: Path) -> None:
    key = "Hara 2017 resnet-34, shortcut A (file saved from DataParallel)"
    path = tmp_path / "resnet-34-kinetics.pth"
    _write(ENTRIES[key], path, extra_prefix="module.", extra_top=("epoch", "optimizer"))
    raw = torch.load(path, weights_only=True)
    assert next(iter(raw["state_dict"])).startswith("module.module.")

    ckpt = load_checkpoint(path)
    assert ckpt.format == "hara2017" and ckpt.arch == "resnet-34"
    assert "module.module." in ckpt.description
    model = get_backbone("resnet-34", weights=path)
    assert model.meta.arch_kwargs["shortcut_type"] == "A"
    assert model.meta.name == "resnet-34-kinetics"


def test_hara_2017_metadata(tmp_path: Path) -> None:
    path = tmp_path / "r.pth"
    _write(ENTRIES["Hara 2017 resnet-18, shortcut A (file saved from DataParallel)"], path)
    meta = load_checkpoint(path).meta
    assert meta.value_scale == 255.0 and meta.std == (1.0, 1.0, 1.0)
    assert meta.mean == (114.7748, 107.7354, 99.4750)
    assert meta.categories[0] == "abseiling" and len(meta.categories) == 400


def test_hara_2020_metadata(tmp_path: Path) -> None:
    path = tmp_path / "r3d18_K_200ep.pth"
    _write(ENTRIES["Hara 2020 r3d18_K_200ep (resnet-18, shortcut B, 700 classes)"], path)
    meta = load_checkpoint(path).meta
    assert meta.value_scale == 1.0 and meta.mean == (0.4345, 0.4051, 0.3775)
    assert meta.categories[:2] == ["class_0", "class_1"] and len(meta.categories) == 700
    assert meta.name == "r3d18_K_200ep" and meta.format == "hara2020"


def test_torchvision_metadata(tmp_path: Path) -> None:
    path = tmp_path / "r2.pth"
    _write(ENTRIES["torchvision r2plus1d_18 (400 classes)"], path)
    meta = load_checkpoint(path).meta
    assert meta.resize == (128, 171) and meta.crop == 112 and meta.frame_rate == 15.0
    assert meta.std == (0.22803, 0.22145, 0.216989)


def test_model_mismatch_names_the_checkpoint_arch(tmp_path: Path) -> None:
    path = tmp_path / "weights.pth"
    _write(ENTRIES["Hara 2020 r3d50_K_200ep (resnet-50, shortcut B, 700 classes)"], path)
    with pytest.raises(WeightsError, match="use --model resnet-50 or leave it out"):
        resolve_weights(path, model="resnet-18")
    with pytest.raises(WeightsError, match="holds resnet-50"):
        get_backbone("resnet-101", weights=path)


HARA_2017 = [key for key in SUPPORTED if SUPPORTED[key][0] == "hara2017"]


@pytest.mark.parametrize("key", HARA_2017)
def test_hara_2017_files_saved_by_pytorch_03_load_without_unpickling(
    key: str, tmp_path: Path
) -> None:
    # The 2017 files were written by PyTorch 0.2/0.3 from GPU models: legacy (non-zip) format,
    # torch.cuda.FloatStorage, _rebuild_tensor, no num_batches_tracked.
    path = tmp_path / "weights.pth"
    saved = _write(ENTRIES[key], path, extra_top=("epoch", "optimizer"), save=save_like_pytorch_03)
    assert path.read_bytes()[:2] != b"PK"  # not the zip container of PyTorch >= 1.6

    fmt, arch, num_classes, shortcut = SUPPORTED[key]
    ckpt = load_checkpoint(path)  # weights_only: no code from the file runs
    assert (ckpt.format, ckpt.arch, ckpt.arch_kwargs["num_classes"]) == (fmt, arch, num_classes)
    model = get_backbone(arch, weights=path)  # strict: BN counters may be absent
    assert model.meta.arch_kwargs.get("shortcut_type") == shortcut
    for name, value in saved.items():
        torch.testing.assert_close(model.state_dict()[name], value, rtol=0, atol=0)
    counters = [k for k in model.state_dict() if k.endswith("num_batches_tracked")]
    assert counters and all(k not in saved for k in counters)
