"""Res3D (Tran et al. 2017) and C3D (Tran et al. 2015): layouts, counts, strides, layers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from feat3d.backbones import PRESETS, default_meta, get_backbone, get_spec, list_backbones
from feat3d.backbones.c3d import C3D

RES3D = [
    "res3d-18",
    "res3d-18-2.5d",
    "res3d-18-mc2",
    "res3d-18-mc3",
    "res3d-18-mc4",
    "res3d-18-mc5",
    "res3d-34",
]

# ---------------------------------------------------------------------------------------------
# Layer tables, written out independently of the model code

# Blocks per stage (conv2_x .. conv5_x), Tran et al. 2017, Table 2.
_BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}
# Name → (depth, conv type per stage). "3d" 3×3×3, "2d" 1×3×3, "2.5d" 1×3×3 + 3×1×1.
_TABLE: dict[str, tuple[int, tuple[str, str, str, str]]] = {
    "res3d-18": (18, ("3d", "3d", "3d", "3d")),
    "res3d-34": (34, ("3d", "3d", "3d", "3d")),
    "res3d-18-mc2": (18, ("2d", "2d", "2d", "2d")),
    "res3d-18-mc3": (18, ("3d", "2d", "2d", "2d")),
    "res3d-18-mc4": (18, ("3d", "3d", "2d", "2d")),
    "res3d-18-mc5": (18, ("3d", "3d", "3d", "2d")),
    "res3d-18-2.5d": (18, ("2.5d", "2.5d", "2.5d", "2.5d")),
}
_WIDTHS = (64, 128, 256, 512)

# DavideA/c3d-pytorch C3D_model.py: every key of the module, with its shape, in order.
C3D_PORT_LAYOUT: dict[str, tuple[int, ...]] = {
    "conv1.weight": (64, 3, 3, 3, 3),
    "conv1.bias": (64,),
    "conv2.weight": (128, 64, 3, 3, 3),
    "conv2.bias": (128,),
    "conv3a.weight": (256, 128, 3, 3, 3),
    "conv3a.bias": (256,),
    "conv3b.weight": (256, 256, 3, 3, 3),
    "conv3b.bias": (256,),
    "conv4a.weight": (512, 256, 3, 3, 3),
    "conv4a.bias": (512,),
    "conv4b.weight": (512, 512, 3, 3, 3),
    "conv4b.bias": (512,),
    "conv5a.weight": (512, 512, 3, 3, 3),
    "conv5a.bias": (512,),
    "conv5b.weight": (512, 512, 3, 3, 3),
    "conv5b.bias": (512,),
    "fc6.weight": (4096, 8192),
    "fc6.bias": (4096,),
    "fc7.weight": (4096, 4096),
    "fc7.bias": (4096,),
    "fc8.weight": (487, 4096),
    "fc8.bias": (487,),
}


def _res3d_params(name: str, num_classes: int) -> int:
    """Closed-form parameter count of a Res3D entry (convs without bias, each followed by BN)."""
    depth, kinds = _TABLE[name]

    def conv(kind: str, c_in: int, c_out: int, mid: int) -> int:
        if kind == "3d":
            return 27 * c_in * c_out
        if kind == "2d":
            return 9 * c_in * c_out
        return 9 * c_in * mid + 2 * mid + 3 * mid * c_out  # 1×3×3, BN, 3×1×1

    total = 3 * 64 * 3 * 7 * 7 + 2 * 64  # conv1 3×7×7 + BN
    c_in = 64
    for stage, (blocks, kind, width) in enumerate(zip(_BLOCKS[depth], kinds, _WIDTHS, strict=True)):
        for b in range(blocks):
            # (2+1)D width matching a 3×3×3 conv's parameters (Tran et al. 2018, Sec. 3.5),
            # from the block's input width for both convs, as torchvision computes it.
            mid = 27 * c_in * width // (9 * c_in + 3 * width)
            total += conv(kind, c_in, width, mid) + 2 * width
            total += conv(kind, width, width, mid) + 2 * width
            if b == 0 and (stage > 0 or c_in != width):  # strided or widening: 1×1×1 + BN
                total += c_in * width + 2 * width
            c_in = width
    return total + 512 * num_classes + num_classes


def _c3d_params(num_classes: int) -> int:
    convs = [(3, 64), (64, 128), (128, 256), (256, 256), (256, 512)] + [(512, 512)] * 3
    total = sum(27 * c_in * c_out + c_out for c_in, c_out in convs)
    return total + (8192 * 4096 + 4096) + (4096 * 4096 + 4096) + 4096 * num_classes + num_classes


def _count(name: str, num_classes: int) -> int:
    with torch.device("meta"):
        model = get_spec(name).builder(num_classes=num_classes)
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Registry entries


def test_registered_names_and_specs() -> None:
    assert list_backbones("res3d-*") == RES3D
    assert "c3d" in list_backbones()
    for name in RES3D:
        spec = get_spec(name)
        depth, _ = _TABLE[name]
        assert (spec.family, spec.block, spec.feature_dim) == ("res3d", "basic", 512)
        assert spec.layers == _BLOCKS[depth]
        assert (spec.default_input, spec.frame_stride) == ((8, 112), 2)
        assert spec.default_meta == "res3d-sports1m" and spec.formats == ("feat3d",)
        assert "1708.05038" in spec.paper
    spec = get_spec("c3d")
    assert (spec.family, spec.feature_dim, spec.default_input, spec.frame_stride) == (
        "c3d",
        4096,
        (16, 112),
        1,
    )
    assert spec.default_meta == "c3d-sports1m" and "1412.0767" in spec.paper


def test_presets() -> None:
    c3d = PRESETS["c3d-sports1m"]
    assert (c3d.value_scale, c3d.std, c3d.resize, c3d.crop, c3d.clip_len) == (
        255.0,
        (1.0, 1.0, 1.0),
        (128, 171),
        112,
        16,
    )
    assert c3d.mean == (101.4083, 97.6570, 90.2516)  # RGB order of the BGR mean cube's means
    res3d = PRESETS["res3d-sports1m"]
    assert (res3d.mean, res3d.value_scale, res3d.clip_len) == ((128.0,) * 3, 255.0, 8)
    meta = default_meta("c3d")
    assert (meta.preset, meta.arch_kwargs["num_classes"], len(meta.categories)) == (
        "c3d-sports1m",
        487,
        487,
    )
    assert default_meta("res3d-34").preset == "res3d-sports1m"


@pytest.mark.parametrize("name", [*RES3D, "c3d"])
def test_param_counts_closed_form(name: str) -> None:
    closed = _c3d_params if name == "c3d" else lambda n: _res3d_params(name, n)
    assert closed(400) == get_spec(name).num_params == _count(name, 400)
    assert closed(7) == _count(name, 7)


@pytest.mark.parametrize(("name", "millions"), [("res3d-18", 33.2), ("res3d-34", 63.5)])
def test_table3_parameter_counts(name: str, millions: float) -> None:
    # Tran et al. 2017, Table 3: 3D-ResNet18 33.2 M, 3D-ResNet34 63.5 M (UCF101, 101 classes).
    assert _res3d_params(name, 101) == _count(name, 101)
    assert _count(name, 101) == pytest.approx(millions * 1e6, rel=0.01)


def test_c3d_sports1m_parameter_count() -> None:
    # The Keras port's model summary (litao1381/C3D_Sport1M_keras README, weights converted
    # from the Caffe Sports-1M model): "Total params: 79,991,015".
    assert _c3d_params(487) == _count("c3d", 487) == 79_991_015


@pytest.mark.parametrize("name", [*RES3D, "c3d"])
def test_registered_gmacs(name: str) -> None:
    spec = get_spec(name)
    frames, size = spec.default_input
    with torch.device("meta"):
        model = spec.builder(num_classes=400)
        x = torch.empty(1, 3, frames, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    assert round(counter.get_total_flops() / 2e9, 3) == pytest.approx(spec.gmacs, abs=1e-3)


# ---------------------------------------------------------------------------------------------
# Res3D


@pytest.mark.parametrize("name", RES3D)
def test_res3d_forward_layers_and_round_trip(name: str) -> None:
    torch.manual_seed(0)
    model = get_backbone(name, num_classes=5).eval()
    x = torch.randn(1, 3, 8, 32, 32)
    widths = model.feature_layers()
    assert widths == {"conv5": 512, "pool5": 512, "logits": 5}
    with torch.no_grad():
        out = model.forward_layers(x, tuple(widths))
        conv5 = model.forward_layers(x, ("conv5",), pool=False)["conv5"]
        logits = model(x)
    for layer, width in widths.items():
        assert out[layer].shape == (1, width)
        assert torch.isfinite(out[layer]).all()
    assert conv5.shape[:2] == (1, 512)
    torch.testing.assert_close(out["logits"], logits)
    torch.testing.assert_close(conv5.mean(dim=(2, 3, 4)), out["pool5"])

    with torch.device("meta"):
        fresh = get_spec(name).builder(num_classes=5).eval()
    fresh.load_state_dict(model.state_dict(), strict=True, assign=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), logits, rtol=0, atol=0)


def test_res3d_18_table2_output_size() -> None:
    # Table 2: 8×112×112 → conv1 8×56×56 (no max-pool) → conv3_x 4×28×28 → conv4_x 2×14×14
    # → conv5_x 1×7×7.
    torch.manual_seed(0)
    model = get_backbone("res3d-18").eval()
    with torch.no_grad():
        x = torch.randn(1, 3, 8, 112, 112)
        assert model.stem(x).shape == (1, 64, 8, 56, 56)
        assert model.forward_trunk(x).shape == (1, 512, 1, 7, 7)
    assert model.stem[0].stride == (1, 2, 2) and model.stem[0].kernel_size == (3, 7, 7)
    assert model.layer1[0].downsample is None
    for layer in (model.layer2, model.layer3, model.layer4):
        assert layer[0].conv1[0].stride == (2, 2, 2)
        assert layer[0].downsample[0].stride == (2, 2, 2)


@pytest.mark.parametrize(
    ("name", "frames"),
    [
        ("res3d-34", 1),
        ("res3d-18-2.5d", 1),
        ("res3d-18-mc2", 8),  # 2D stages keep the time axis to the global pool
        ("res3d-18-mc3", 8),
        ("res3d-18-mc4", 4),
        ("res3d-18-mc5", 2),
    ],
)
def test_res3d_conv5_sizes(name: str, frames: int) -> None:
    with torch.device("meta"):
        model = get_spec(name).builder(num_classes=400)
        trunk = model.forward_trunk(torch.empty(1, 3, 8, 112, 112))
    assert trunk.shape == (1, 512, frames, 7, 7)


def test_mixed_convolutions_switch_to_2d_at_stage_n() -> None:
    for name, (_, kinds) in _TABLE.items():
        with torch.device("meta"):
            model = get_spec(name).builder(num_classes=400)
        stages = (model.layer1, model.layer2, model.layer3, model.layer4)
        for kind, stage in zip(kinds, stages, strict=True):
            conv = stage[0].conv1[0]
            first = conv[0] if kind == "2.5d" else conv
            expected = {"3d": (3, 3, 3), "2d": (1, 3, 3), "2.5d": (1, 3, 3)}[kind]
            assert first.kernel_size == expected, name
            if kind == "2.5d":
                assert conv[3].kernel_size == (3, 1, 1)


# ---------------------------------------------------------------------------------------------
# C3D: one model, one 16×112×112 forward


@pytest.fixture(scope="module")
def c3d_run() -> tuple[C3D, torch.Tensor, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    model = get_backbone("c3d", num_classes=487).eval()
    x = torch.randn(1, 3, 16, 112, 112)
    with torch.no_grad():
        out = model.forward_layers(x, tuple(model.feature_layers()), pool=False)
    return model, x, out


def test_c3d_key_layout_is_the_ports(c3d_run: tuple[C3D, torch.Tensor, dict]) -> None:
    model, _, _ = c3d_run
    layout = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert list(layout) == list(C3D_PORT_LAYOUT)
    assert layout == C3D_PORT_LAYOUT


def test_c3d_layers(c3d_run: tuple[C3D, torch.Tensor, dict]) -> None:
    model, _, out = c3d_run
    assert model.feature_layers() == {
        "conv5": 512,
        "pool5": 8192,
        "fc6": 4096,
        "fc7": 4096,
        "logits": 487,
    }
    assert out["conv5"].shape == (1, 512, 2, 7, 7)  # pool=False: the conv5b map
    for layer, width in model.feature_layers().items():
        assert torch.isfinite(out[layer]).all()
        if layer != "conv5":
            assert out[layer].shape == (1, width)
    with torch.no_grad():
        # pool5: 2×2×2 max-pool with spatial padding 1 (7×7 → 4×4), flattened to 8192.
        pool5 = F.max_pool3d(out["conv5"], kernel_size=2, stride=2, padding=(0, 1, 1))
        torch.testing.assert_close(pool5.flatten(1), out["pool5"])
        torch.testing.assert_close(F.relu(model.fc6(out["pool5"])), out["fc6"])
        torch.testing.assert_close(F.relu(model.fc7(out["fc6"])), out["fc7"])
        torch.testing.assert_close(model.fc8(out["fc7"]), out["logits"])
        torch.testing.assert_close(model.forward_head(out["fc6"]), out["logits"])
    assert model.forward_head(out["fc6"], pre_logits=True) is out["fc6"]
    assert (out["conv5"] >= 0).all() and (out["fc6"] >= 0).all() and (out["fc7"] >= 0).all()


def test_c3d_strict_round_trip(c3d_run: tuple[C3D, torch.Tensor, dict]) -> None:
    model, _, out = c3d_run
    with torch.device("meta"):
        fresh = get_spec("c3d").builder(num_classes=487).eval()
    fresh.load_state_dict(model.state_dict(), strict=True, assign=True)
    for key, value in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[key], value)
    with torch.no_grad():
        torch.testing.assert_close(fresh.forward_head(out["fc6"]), out["logits"], rtol=0, atol=0)


def test_c3d_dropout_only_in_training(c3d_run: tuple[C3D, torch.Tensor, dict]) -> None:
    model, _, out = c3d_run
    feats = out["fc6"]
    with torch.no_grad():
        try:
            model.train()
            torch.manual_seed(1)
            a = model.forward_head(feats)
            b = model.forward_head(feats)
            assert not torch.equal(a, b)
        finally:
            model.eval()
        torch.testing.assert_close(model.forward_head(feats), model.forward_head(feats))


def test_c3d_shapes_and_errors_on_meta() -> None:
    with torch.device("meta"):
        model = get_spec("c3d").builder().eval()
        x = torch.empty(2, 3, 16, 112, 112)
        assert model.forward_features(x).shape == (2, 4096)
        assert model(x).shape == (2, 487)
        pooled = model.forward_layers(x, ("conv5", "fc7"))
        assert pooled["conv5"].shape == (2, 512) and pooled["fc7"].shape == (2, 4096)
        assert model.forward_layers(x, ()) == {}
        with pytest.raises(ValueError, match="no layer 'fc9'; choose from conv5, pool5"):
            model.forward_layers(x, ("fc9",))
        with pytest.raises(ValueError, match=r"needs pool5 of 512×1×4×4 = 8192 .* gives 512×1×2×2"):
            model(torch.empty(1, 3, 16, 56, 56))


def test_c3d_reset_classifier() -> None:
    with torch.device("meta"):
        model = get_spec("c3d").builder()
    model.reset_classifier(7)
    assert (model.fc8.in_features, model.fc8.out_features, model.num_classes) == (4096, 7, 7)
    assert model.arch_kwargs["num_classes"] == 7
    assert model.feature_layers()["logits"] == 7
    assert "fc8.weight" in model.state_dict() and not hasattr(model, "fc")


def test_c3d_port_pickle_loads_with_bgr_sports1m_preset(tmp_path) -> None:
    """The port's c3d.pickle is a flat state dict (no wrapper, no arch): recognised by its keys."""
    from feat3d.backbones import load_checkpoint

    path = tmp_path / "c3d.pickle"
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in C3D().state_dict().items()}
    assert shapes == {k: torch.Size(v) for k, v in C3D_PORT_LAYOUT.items()}
    # stride-0 tensors keep the 80M-parameter file tiny
    torch.save({k: torch.zeros(()).expand(s) for k, s in shapes.items()}, path)
    loaded = load_checkpoint(path)
    assert (loaded.format, loaded.arch) == ("c3d", "c3d")
    assert loaded.arch_kwargs["num_classes"] == 487
    assert loaded.meta.preset == "c3d-sports1m" and loaded.meta.channel_order == "BGR"
    assert loaded.meta.resize == (128, 171) and loaded.meta.value_scale == 255.0
