"""Hara et al.'s other architectures: pre-activation, Wide, ResNeXt, DenseNet, R(2+1)D.

Parameter counts are checked against closed forms written here from the layer tables (not by
calling the model code). Checkpoints of the large networks are written with stride-0 tensors
(one zero expanded to each shape), so a 150M-parameter file takes a few kilobytes and the
models they are compared with are built on the meta device.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from feat3d.backbones import (
    WeightsError,
    get_backbone,
    get_spec,
    list_backbones,
    load_checkpoint,
    load_state_dict_strict,
    resolve_weights,
)
from feat3d.backbones.blocks import CONV_2PLUS1D, CONV_3D
from feat3d.backbones.densenet import DenseLayer, Transition, densenet
from feat3d.backbones.hara_resnet import BasicBlock, Bottleneck, HaraResNet
from feat3d.backbones.hara_variants import (
    PreActBottleneck,
    ResNeXtBottleneck,
    WideBottleneck,
    resnext,
)
from feat3d.backbones.resnet2p1d import BasicBlock2p1d

PREACT = [f"preact-resnet-{d}" for d in (10, 18, 34, 50, 101, 152, 200)]
R2P1D = [f"resnet2p1d-{d}" for d in (10, 18, 34, 50, 101, 152, 200)]
RESNEXT = ["resnext-50", "resnext-101", "resnext-152"]
WIDE = ["wide-resnet-50"]
DENSENET = ["densenet-121", "densenet-201"]
NEW = PREACT + WIDE + RESNEXT + DENSENET + R2P1D

# --------------------------------------------------------------------------------------------
# Closed-form parameter counts from the layer tables (Hara's models/*.py, arXiv:1711.09577)

#: Blocks per stage, shared by every Hara ResNet family.
STAGES = {
    10: (1, 1, 1, 1),
    18: (2, 2, 2, 2),
    34: (3, 4, 6, 3),
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
    200: (3, 24, 36, 3),
}
#: Dense layers per block (growth 32, bn_size 4, 64 initial features).
DENSE_BLOCKS = {121: (6, 12, 24, 16), 201: (6, 12, 48, 32)}


def conv(cin: int, cout: int, k: int, groups: int = 1) -> int:
    """Weights of a bias-free conv with ``k`` kernel elements."""
    return cin // groups * cout * k


def bn(c: int) -> int:
    return 2 * c


def linear(cin: int, cout: int) -> int:
    return cin * cout + cout


def mid(cin: int, cout: int, t: int, k: int) -> int:
    """(2+1)D middle width: the t×k×k conv's weights over those of one spatial + one temporal."""
    return cin * cout * t * k * k // (cin * k * k + t * cout)


def preact_basic(cin: int, p: int) -> int:
    return bn(cin) + conv(cin, p, 27) + bn(p) + conv(p, p, 27)


def preact_bottleneck(cin: int, p: int) -> int:
    return bn(cin) + conv(cin, p, 1) + bn(p) + conv(p, p, 27) + bn(p) + conv(p, 4 * p, 1)


def wide_bottleneck(cin: int, p: int) -> int:
    return conv(cin, p, 1) + bn(p) + conv(p, p, 27) + bn(p) + conv(p, 2 * p, 1) + bn(2 * p)


def resnext_bottleneck(cin: int, p: int, cardinality: int = 32) -> int:
    m = cardinality * (p // 32)
    return (
        conv(cin, m, 1)
        + bn(m)
        + conv(m, m, 27, cardinality)
        + bn(m)
        + conv(m, 2 * p, 1)
        + bn(2 * p)
    )


def r2p1d_basic(cin: int, p: int) -> int:
    m1, m2 = mid(cin, p, 3, 3), mid(p, p, 3, 3)
    first = conv(cin, m1, 9) + bn(m1) + conv(m1, p, 3) + bn(p)
    return first + conv(p, m2, 9) + bn(m2) + conv(m2, p, 3) + bn(p)


def r2p1d_bottleneck(cin: int, p: int) -> int:
    m = mid(p, p, 3, 3)
    factored = conv(p, m, 9) + bn(m) + conv(m, p, 3) + bn(p)
    return conv(cin, p, 1) + bn(p) + factored + conv(p, 4 * p, 1) + bn(4 * p)


def residual_params(
    depth: int,
    block: Callable[[int, int], int],
    *,
    expansion: int,
    widths: tuple[int, ...],
    stem: int,
    classes: int,
) -> int:
    """Stages with shortcut B (strided 1×1×1 conv + BN where the shape changes) and ``fc``."""
    total, cin = 0, stem
    for i, (p, n) in enumerate(zip(widths, STAGES[depth], strict=True)):
        cout = p * expansion
        for j in range(n):
            total += block(cin, p)
            if j == 0 and (i > 0 or cin != cout):
                total += conv(cin, cout, 1) + bn(cout)
            cin = cout
    return total + linear(cin, classes)


def expected_params(name: str, classes: int = 400) -> int:
    """Parameter count of a registry entry with default options, from the tables above."""
    family, depth = name.rsplit("-", 1)
    d = int(depth)
    stem_3d = conv(3, 64, 7 * 7 * 7) + bn(64)
    base = (64, 128, 256, 512)
    if family == "preact-resnet":
        block, e = (preact_basic, 1) if d < 50 else (preact_bottleneck, 4)
        return stem_3d + residual_params(
            d, block, expansion=e, widths=base, stem=64, classes=classes
        )
    if family == "wide-resnet":
        widths = tuple(2 * w for w in base)
        return stem_3d + residual_params(
            d, wide_bottleneck, expansion=2, widths=widths, stem=64, classes=classes
        )
    if family == "resnext":
        widths = (128, 256, 512, 1024)
        return stem_3d + residual_params(
            d, resnext_bottleneck, expansion=2, widths=widths, stem=64, classes=classes
        )
    if family == "resnet2p1d":
        m = mid(3, 64, 7, 7)  # 110
        stem = conv(3, m, 49) + bn(m) + conv(m, 64, 7) + bn(64)
        block, e = (r2p1d_basic, 1) if d < 50 else (r2p1d_bottleneck, 4)
        return stem + residual_params(d, block, expansion=e, widths=base, stem=64, classes=classes)
    if family == "densenet":
        total, c = conv(3, 64, 7 * 7 * 7) + bn(64), 64
        for i, n in enumerate(DENSE_BLOCKS[d]):
            for _ in range(n):
                total += bn(c) + conv(c, 128, 1) + bn(128) + conv(128, 32, 27)
                c += 32
            if i < 3:
                total += bn(c) + conv(c, c // 2, 1)
                c //= 2
        return total + bn(c) + linear(c, classes)
    raise AssertionError(name)


FEATURE_DIM = {
    **{n: 512 for n in PREACT[:3] + R2P1D[:3]},
    **{n: 2048 for n in PREACT[3:] + R2P1D[3:] + WIDE + RESNEXT},
    "densenet-121": 1024,
    "densenet-201": 1920,
}


def test_names_and_specs() -> None:
    assert list_backbones("preact-resnet-*") == sorted(PREACT)
    assert list_backbones("resnet2p1d-*") == sorted(R2P1D)
    assert list_backbones("resnext-*") == sorted(RESNEXT)
    assert list_backbones("wide-resnet-*") == WIDE
    assert list_backbones("densenet-*") == DENSENET
    for name in NEW:
        spec = get_spec(name)
        assert spec.num_params == expected_params(name), name
        assert spec.feature_dim == FEATURE_DIM[name]
        assert spec.default_input == (16, 112) and spec.gmacs is not None
        assert spec.family == ("hara-densenet" if name in DENSENET else "hara-resnet")
        assert spec.default_meta == ("hara2020" if name in R2P1D else "hara2017")
        assert "hara2020" in spec.formats and "feat3d" in spec.formats
        assert ("hara2017" in spec.formats) == (name not in R2P1D)
    assert get_spec("densenet-201").layers == (6, 12, 48, 32)
    assert get_spec("resnext-101").widths == (128, 256, 512, 1024)


def test_published_layouts_match_the_closed_forms() -> None:
    """The formulas agree with the key/shape listings of files made by Hara's own code."""
    layouts = json.loads(
        (Path(__file__).parents[1] / "data" / "checkpoint_layouts.json").read_text()
    )
    for key, name, classes in (
        ("Hara 2017 resnext-101, cardinality 32, shortcut B", "resnext-101", 400),
        ("Hara 2020 r2p1d18_K_200ep", "resnet2p1d-18", 700),
    ):
        entry = next(v for k, v in layouts.items() if k.startswith(key))
        learned = sum(
            torch.Size(shape).numel()
            for k, shape in entry["state_dict"].items()
            if not k.endswith(("running_mean", "running_var", "num_batches_tracked"))
        )
        assert learned == expected_params(name, classes)


# --------------------------------------------------------------------------------------------
# Every new entry: forward, shapes, parameter count, strict round trip


def _clip(name: str) -> torch.Tensor:
    # DenseNet's stem and three transitions halve T four times: it needs >= 15 frames.
    return torch.randn(1, 3, 16 if name in DENSENET else 4, 32, 32)


@pytest.mark.parametrize("name", NEW)
def test_entry_forward_params_and_round_trip(name: str) -> None:
    torch.manual_seed(0)
    spec = get_spec(name)
    model = get_backbone(name, num_classes=5).eval()
    x = _clip(name)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        trunk = model.forward_trunk(x)
    assert logits.shape == (1, 5) and torch.isfinite(logits).all()
    assert feats.shape == (1, FEATURE_DIM[name]) and model.feature_dim == spec.feature_dim
    assert trunk.ndim == 5 and trunk.shape[:2] == (1, FEATURE_DIM[name])
    assert sum(p.numel() for p in model.parameters()) == expected_params(name, classes=5)
    assert (
        spec.num_params
        == expected_params(name)
        == expected_params(name, 5) + 395 * (FEATURE_DIM[name] + 1)
    )

    with torch.device("meta"):
        twin = spec.builder(num_classes=5).eval()
    twin.load_state_dict(model.state_dict(), strict=True, assign=True)
    with torch.no_grad():
        torch.testing.assert_close(twin(x), logits, rtol=0, atol=0)


# --------------------------------------------------------------------------------------------
# Blocks against torch.nn.functional, written from Hara's forward()s


def _randomize_bn(module: nn.Module) -> None:
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm3d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _bn(x: torch.Tensor, m: nn.BatchNorm3d) -> torch.Tensor:
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, training=False)


def _shortcut_b(cin: int, cout: int) -> nn.Sequential:
    conv1 = nn.Conv3d(cin, cout, kernel_size=1, stride=2, bias=False)
    return nn.Sequential(conv1, nn.BatchNorm3d(cout))


def test_preact_bottleneck_matches_functional_reference() -> None:
    torch.manual_seed(1)
    block = PreActBottleneck(
        in_planes=32, planes=16, stride=2, downsample=_shortcut_b(32, 64)
    ).eval()
    _randomize_bn(block)
    x = torch.randn(2, 32, 5, 9, 9)
    b = block
    out = F.conv3d(F.relu(_bn(x, b.bn1)), b.conv1.weight)
    out = F.conv3d(F.relu(_bn(out, b.bn2)), b.conv2.weight, stride=2, padding=1)
    out = F.conv3d(F.relu(_bn(out, b.bn3)), b.conv3.weight)
    residual = _bn(F.conv3d(x, b.downsample[0].weight, stride=2), b.downsample[1])
    with torch.no_grad():
        torch.testing.assert_close(block(x), out + residual)  # no ReLU after the sum


def test_resnext_bottleneck_is_grouped() -> None:
    torch.manual_seed(2)
    block = ResNeXtBottleneck(in_planes=128, planes=64, cardinality=8).eval()
    # cardinality · planes / 32 = 16 channels in 8 groups of 2; output 2 · planes = 128.
    assert block.conv2.groups == 8 and block.conv2.weight.shape == (16, 2, 3, 3, 3)
    _randomize_bn(block)
    x = torch.randn(1, 128, 3, 6, 6)
    b = block
    out = F.relu(_bn(F.conv3d(x, b.conv1.weight), b.bn1))
    out = F.relu(_bn(F.conv3d(out, b.conv2.weight, padding=1, groups=8), b.bn2))
    out = _bn(F.conv3d(out, b.conv3.weight), b.bn3)
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(out + x))


def test_r2p1d_basic_block_strides_both_halves() -> None:
    torch.manual_seed(3)
    block = BasicBlock2p1d(in_planes=16, planes=32, stride=2, downsample=_shortcut_b(16, 32))
    block.eval()
    _randomize_bn(block)
    assert block.conv1_s.weight.shape == (mid(16, 32, 3, 3), 16, 1, 3, 3)
    assert block.conv1_s.stride == (1, 2, 2) and block.conv1_t.stride == (2, 1, 1)
    x = torch.randn(1, 16, 4, 8, 8)
    b = block
    out = F.relu(_bn(F.conv3d(x, b.conv1_s.weight, stride=(1, 2, 2), padding=(0, 1, 1)), b.bn1_s))
    out = F.relu(_bn(F.conv3d(out, b.conv1_t.weight, stride=(2, 1, 1), padding=(1, 0, 0)), b.bn1_t))
    out = F.relu(_bn(F.conv3d(out, b.conv2_s.weight, padding=(0, 1, 1)), b.bn2_s))
    out = _bn(F.conv3d(out, b.conv2_t.weight, padding=(1, 0, 0)), b.bn2_t)
    residual = _bn(F.conv3d(x, b.downsample[0].weight, stride=2), b.downsample[1])
    with torch.no_grad():
        torch.testing.assert_close(block(x), F.relu(out + residual))


def test_conv_makers_per_stage() -> None:
    # One class, one conv maker per stage: 3D stem and layer1/3, (2+1)D layer2/4.
    model = HaraResNet(
        block=BasicBlock,
        layers=(1, 1, 1, 1),
        num_classes=3,
        conv_makers=(CONV_3D, CONV_2PLUS1D, CONV_3D, CONV_2PLUS1D),
    ).eval()
    sd = model.state_dict()
    assert sd["conv1.weight"].shape == (64, 3, 7, 7, 7)
    assert sd["layer1.0.conv2.weight"].shape == (64, 64, 3, 3, 3)
    assert sd["layer2.0.conv1_s.weight"].shape == (mid(64, 128, 3, 3), 64, 1, 3, 3)
    assert "layer2.0.conv1.weight" not in sd and "layer3.0.conv1.weight" in sd
    assert model.layer4[0].conv1_t.stride == (2, 1, 1)
    with torch.no_grad():
        assert model(torch.randn(1, 3, 8, 32, 32)).shape == (1, 3)
    with pytest.raises(ValueError, match="not grouped"):
        Bottleneck(in_planes=64, planes=64, conv_maker=CONV_2PLUS1D, groups=2)
    with pytest.raises(ValueError, match="conv_makers"):
        HaraResNet(block=BasicBlock, layers=(1, 1, 1, 1), conv_makers=(CONV_3D,))


def test_dense_layer_and_transition() -> None:
    torch.manual_seed(4)
    layer = DenseLayer(in_channels=8, growth_rate=4, bn_size=2).eval()
    trans = Transition(in_channels=12, out_channels=6).eval()
    _randomize_bn(layer)
    _randomize_bn(trans)
    x = torch.randn(1, 8, 4, 6, 6)
    new = F.conv3d(F.relu(_bn(x, layer.norm1)), layer.conv1.weight)
    new = F.conv3d(F.relu(_bn(new, layer.norm2)), layer.conv2.weight, padding=1)
    with torch.no_grad():
        y = layer(x)
        torch.testing.assert_close(y, torch.cat([x, new], dim=1))
        z = F.avg_pool3d(F.conv3d(F.relu(_bn(y, trans.norm)), trans.conv.weight), 2)
        torch.testing.assert_close(trans(y), z)
    assert set(layer.state_dict()) >= {"norm1.weight", "conv1.weight", "norm2.bias", "conv2.weight"}


def test_densenet_head_is_classifier_and_trunk_is_activated() -> None:
    torch.manual_seed(5)
    model = get_backbone("densenet-121", num_classes=3).eval()
    sd = model.state_dict()
    assert not any(k.startswith("fc.") for k in sd) and sd["classifier.weight"].shape == (3, 1024)
    assert "features.conv0.weight" in sd and "features.norm5.running_var" in sd
    assert "features.denseblock1.denselayer1.norm1.weight" in sd
    assert model.fc is model.classifier
    x = _clip("densenet-121")
    with torch.no_grad():
        trunk = model.forward_trunk(x)
        torch.testing.assert_close(trunk, F.relu(model.features(x)))
        logits = model(x)
        torch.testing.assert_close(logits, model.classifier(trunk.mean(dim=(2, 3, 4))))
        layers = model.forward_layers(x, ("conv5", "logits"), pool=False)
    assert trunk.shape == (1, 1024, 1, 1, 1) and trunk.min() >= 0
    torch.testing.assert_close(layers["logits"], logits)
    model.reset_classifier(7)
    assert model.fc.out_features == 7 and model.arch_kwargs["num_classes"] == 7
    assert model.state_dict()["classifier.weight"].shape == (7, 1024)
    assert not any(k.startswith("fc.") for k in model.state_dict())


def test_preact_trunk_has_no_final_activation() -> None:
    torch.manual_seed(6)
    model = get_backbone("preact-resnet-10", num_classes=3).eval()
    with torch.no_grad():
        trunk = model.forward_trunk(torch.randn(2, 3, 4, 32, 32))
    assert trunk.min() < 0  # the last residual sum, as Hara pools it


def test_layout_options() -> None:
    with torch.device("meta"):
        pre = get_backbone("preact-resnet-10", conv1_t_size=3, conv1_t_stride=2, no_max_pool=True)
        wide = get_backbone("wide-resnet-50", widen_factor=1, shortcut_type="A")
        rx = get_backbone("resnext-50", cardinality=16, num_classes=7)
        r21 = get_backbone("resnet2p1d-18", conv1_t_size=3, widen_factor=2.0)
        dn = get_backbone("densenet-121", conv1_t_size=3, no_max_pool=True)
    assert pre.conv1.kernel_size == (3, 7, 7) and pre.conv1.stride == (2, 2, 2)
    assert wide.feature_dim == 1024 and not any("downsample" in k for k in wide.state_dict())
    assert rx.layer1[0].conv2.groups == 16 and rx.layer1[0].conv2.weight.shape == (64, 4, 3, 3, 3)
    assert rx.arch_kwargs["cardinality"] == 16 and rx.fc.weight.shape == (7, 2048)
    stem_mid = mid(3, 128, 3, 7)
    assert r21.state_dict()["conv1_s.weight"].shape == (stem_mid, 3, 1, 7, 7)
    assert r21.state_dict()["conv1_t.weight"].shape == (128, stem_mid, 3, 1, 1)
    assert r21.feature_dim == 1024
    assert "pool0" not in dict(dn.features.named_children())
    assert dn.features.conv0.kernel_size == (3, 7, 7) and dn.arch_kwargs["no_max_pool"] is True
    with pytest.raises(ValueError, match="ResNeXt depth 77 is not one of"):
        resnext(77)
    with pytest.raises(ValueError, match="cardinality must be a positive integer"):
        resnext(50, cardinality=0)


# --------------------------------------------------------------------------------------------
# Checkpoints in Hara's 2017 and 2020 forms

_OPTIMIZER = {"state": {}, "param_groups": [{"lr": 0.1, "momentum": 0.9, "params": [0, 1]}]}
_SCHEDULER = {"milestones": Counter({50: 1, 100: 1}), "last_epoch": 200, "_last_lr": [0.1]}


def _dummy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's keys and shapes with stride-0 zeros (a few bytes per tensor on disk)."""
    return {
        k: torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in model.state_dict().items()
    }


def _legacy_densenet_2017(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as PyTorch 0.2/0.3 saved Hara's DenseNet: ``norm.1``, no ``num_batches_tracked``."""
    out = {}
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        for old in ("norm1", "conv1", "norm2", "conv2"):
            k = k.replace(f".{old}.", f".{old[:-1]}.{old[-1]}.") if ".denselayer" in k else k
        out[k] = v
    return out


def _densenet_2020(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Keys as Hara's 2020 ``models/densenet.py`` names its stem: ``features.conv1``/``norm1``."""
    return {
        k.replace("features.conv0.", "features.conv1.").replace(
            "features.norm0.", "features.norm1."
        ): v
        for k, v in sd.items()
    }


def _save(path: Path, form: str, arch: str, sd: dict[str, torch.Tensor]) -> Path:
    if form == "hara2017":  # saved from nn.DataParallel by 3D-ResNets-PyTorch (2017)
        obj: dict[str, Any] = {
            "arch": arch,
            "state_dict": {f"module.{k}": v for k, v in sd.items()},
        }
    else:  # 3D-ResNets-PyTorch (2020) main.py save_checkpoint
        obj = {
            "epoch": 200,
            "arch": arch,
            "state_dict": sd,
            "optimizer": _OPTIMIZER,
            "scheduler": _SCHEDULER,
        }
    torch.save(obj, path)
    return path


_HARA_NAME = {
    "preact-resnet": "preresnet",
    "wide-resnet": "wideresnet",
    "resnext": "resnext",
    "densenet": "densenet",
    "resnet2p1d": "resnet2p1d",
}

# (registry name, builder kwargs, checkpoint form). 2017: the published Kinetics-400 layouts
# (and the other depths Hara's 2017 code defines); 2020: options of Hara's 2020 code.
ROUND_TRIPS: list[tuple[str, dict[str, Any], str]] = [
    *[(n, {}, "hara2017") for n in PREACT + WIDE + RESNEXT + DENSENET],
    *[(n, {"num_classes": 700}, "hara2020") for n in PREACT[1:] + RESNEXT[:2] + R2P1D[1:]],
    (
        "preact-resnet-10",
        {"num_classes": 1039, "shortcut_type": "A", "conv1_t_size": 3},
        "hara2020",
    ),
    # Hara's 2020 wide_resnet.generate_model widens the stem too: conv1 has 64·k channels.
    ("wide-resnet-50", {"num_classes": 700, "stem_width": 128}, "hara2020"),
    ("wide-resnet-50", {"num_classes": 1139, "widen_factor": 3, "stem_width": 64}, "hara2017"),
    ("resnext-152", {"num_classes": 700, "cardinality": 16}, "hara2020"),
    ("densenet-121", {"num_classes": 700, "conv1_t_size": 3}, "hara2020"),
    ("densenet-201", {"num_classes": 1139}, "hara2020"),
    ("resnet2p1d-10", {"num_classes": 1039, "conv1_t_size": 3, "widen_factor": 2.0}, "hara2020"),
    ("resnet2p1d-34", {"num_classes": 700, "shortcut_type": "A"}, "hara2020"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "form"),
    ROUND_TRIPS,
    ids=[f"{n}-{f}-{'-'.join(f'{k}={v}' for k, v in kw.items())}" for n, kw, f in ROUND_TRIPS],
)
def test_hara_checkpoint_round_trip(
    name: str, kwargs: dict[str, Any], form: str, tmp_path: Path
) -> None:
    spec = get_spec(name)
    with torch.device("meta"):
        reference = spec.builder(**{"num_classes": 400, **kwargs})
    expected_sd = _dummy_state(reference)
    sd = dict(expected_sd)
    family, depth = name.rsplit("-", 1)
    if family == "densenet":
        sd = _legacy_densenet_2017(sd) if form == "hara2017" else _densenet_2020(sd)
    arch = f"{_HARA_NAME[family]}-{depth}" if form == "hara2017" else _HARA_NAME[family]
    path = _save(tmp_path / "ckpt.pth", form, arch, sd)

    ckpt = load_checkpoint(path)
    assert (ckpt.format, ckpt.arch) == (form, name)
    assert ckpt.arch_kwargs == reference.arch_kwargs
    assert ckpt.meta.preset == form and len(ckpt.meta.categories) == reference.num_classes
    assert name in ckpt.description and f"{reference.num_classes} classes" in ckpt.description
    for key, text in (("cardinality", "cardinality"), ("widen_factor", "widen factor")):
        if kwargs.get(key, 1) != 1:
            assert f"{text} {kwargs[key]:g}" in ckpt.description
    # Exactly the model's keys and shapes: strict loading needs nothing else (the missing
    # num_batches_tracked of pre-0.4.1 files are filled in by load_state_dict_strict).
    got = {k: tuple(v.shape) for k, v in ckpt.state_dict.items()}
    want = {k: tuple(v.shape) for k, v in expected_sd.items()}
    if form == "hara2017" and family == "densenet":
        want = {k: s for k, s in want.items() if not k.endswith("num_batches_tracked")}
    assert got == want
    assert resolve_weights(path, model=name).arch == name


@pytest.mark.parametrize(
    ("name", "form"),
    [("preact-resnet-10", "hara2017"), ("densenet-121", "hara2017"), ("resnet2p1d-10", "hara2020")],
)
def test_hara_checkpoint_loads_values_strictly(name: str, form: str, tmp_path: Path) -> None:
    torch.manual_seed(8)
    source = get_backbone(name, num_classes=700)
    _randomize_bn(source)
    sd = {k: v.clone() for k, v in source.state_dict().items()}
    family, depth = name.rsplit("-", 1)
    on_disk = _legacy_densenet_2017(sd) if family == "densenet" else sd
    arch = f"{_HARA_NAME[family]}-{depth}" if form == "hara2017" else _HARA_NAME[family]
    path = _save(tmp_path / f"{name}.pth", form, arch, on_disk)

    model = get_backbone(name, weights=path).eval()
    assert model.num_classes == 700 and model.meta.format == form and model.meta.preset == form
    loaded = model.state_dict()
    for key, value in sd.items():
        if key.endswith("num_batches_tracked") and key not in on_disk:
            continue
        torch.testing.assert_close(loaded[key], value, rtol=0, atol=0)
    with torch.no_grad():
        x = _clip(name)
        torch.testing.assert_close(model(x), source.eval()(x))


def test_wide_and_resnext_load_into_real_models(tmp_path: Path) -> None:
    for name, kwargs in (("wide-resnet-50", {"stem_width": 128}), ("resnext-50", {})):
        with torch.device("meta"):
            reference = get_spec(name).builder(num_classes=400, **kwargs)
        path = _save(
            tmp_path / f"{name}.pth", "hara2020", name.split("-")[0], _dummy_state(reference)
        )
        model = get_backbone(name, weights=path)
        assert model.arch_kwargs == reference.arch_kwargs
        assert torch.count_nonzero(model.fc.weight.detach()) == 0  # the file's zeros loaded


# --------------------------------------------------------------------------------------------
# Wrong --model, and layouts that are recognised but not provided


def test_wrong_model_names_the_right_one(tmp_path: Path) -> None:
    with torch.device("meta"):
        resnet = get_spec("resnet-101").builder(num_classes=400)
        rx = get_spec("resnext-101").builder(num_classes=400)
    path = _save(
        tmp_path / "resnet-101-kinetics.pth", "hara2017", "resnet-101", _dummy_state(resnet)
    )
    with pytest.raises(WeightsError, match=r"holds resnet-101 weights .*use --model resnet-101"):
        resolve_weights(path, model="resnext-101")
    with pytest.raises(WeightsError, match="holds resnet-101 weights"):
        get_backbone("resnext-101", weights=path)
    state = load_checkpoint(path).state_dict
    with pytest.raises(WeightsError, match=r"do not fit resnext-101: .*likely --model resnet-101"):
        load_state_dict_strict(rx, state, source=str(path), model_name="resnext-101")

    path = _save(tmp_path / "rx.pth", "hara2017", "resnext-101", _dummy_state(rx))
    with pytest.raises(WeightsError, match="use --model resnext-101 or leave it out"):
        resolve_weights(path, model="wide-resnet-50")


def _meta_state(build: Callable[[], nn.Module]) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return _dummy_state(build())


@pytest.mark.parametrize(
    ("arch", "build", "recognised"),
    [
        ("densenet-169", lambda: densenet(169), "densenet-169"),
        (
            "wideresnet-101",
            lambda: HaraResNet(
                block=WideBottleneck, layers=(3, 4, 23, 3), widths=(128, 256, 512, 1024)
            ),
            "wide-resnet-101",
        ),
        (
            "resnext-200",
            lambda: HaraResNet(
                block=ResNeXtBottleneck,
                layers=(3, 24, 36, 3),
                widths=(128, 256, 512, 1024),
                block_kwargs={"cardinality": 32},
            ),
            "resnext-200",
        ),
        (  # Hara's 2020 --resnet_widen_factor 2
            "resnet-50",
            lambda: HaraResNet(
                block=Bottleneck, layers=(3, 4, 6, 3), widths=(128, 256, 512, 1024), stem_width=128
            ),
            "resnet-50 with widen_factor 2",
        ),
    ],
)
def test_recognised_but_not_provided(
    arch: str, build: Callable[[], nn.Module], recognised: str, tmp_path: Path
) -> None:
    path = _save(tmp_path / "x.pth", "hara2017", arch, _meta_state(build))
    with pytest.raises(
        WeightsError,
        match=rf"recognised as {recognised} \(format hara2017\) but that architecture is not "
        "available in this version",
    ):
        resolve_weights(path)


def test_unrecognisable_layouts_say_what_they_are(tmp_path: Path) -> None:
    odd = HaraResNet(block=PreActBottleneck, layers=(1, 1, 1, 1))  # no such depth
    path = _save(tmp_path / "a.pth", "hara2020", "preresnet", _dummy_state(odd))
    with pytest.raises(WeightsError, match=r"preact-resnet with bottleneck blocks \[1, 1, 1, 1\]"):
        load_checkpoint(path)
    path = _save(tmp_path / "b.pth", "hara2017", "densenet-121", {"foo.weight": torch.zeros(2)})
    with pytest.raises(WeightsError, match=r"a DenseNet without features\.conv0\.weight"):
        load_checkpoint(path)
