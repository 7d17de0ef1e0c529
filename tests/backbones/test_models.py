"""Every registered backbone: shapes, round trips, and independent reference forwards."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from feat3d.backbones import get_backbone, get_spec, list_backbones
from feat3d.backbones.hara_resnet import ZeroPadShortcut
from feat3d.backbones.video_resnet import Bottleneck, Conv3DSimple, R2Plus1dStem, VideoResNet

# C3D needs its full 16×112×112 input and its feature (fc6) is not the trunk's width; ST-ResNet
# takes 3 + 20 channels: they have their own checks (test_res3d_c3d.py, test_st_resnet.py).
ALL = [
    name
    for name in list_backbones()
    if get_spec(name).family not in ("c3d", "st-resnet", "x3d", "slowfast")
]


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial statistics so that eval-mode checks mean something."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.mark.parametrize("name", ALL)
def test_forward_shapes_and_round_trip(name: str) -> None:
    torch.manual_seed(0)
    model = get_backbone(name, num_classes=5).eval()
    spec = get_spec(name)
    assert model.num_classes == 5
    assert model.feature_dim == spec.feature_dim
    if spec.block in ("basic", "bottleneck"):
        assert spec.feature_dim == (512 if spec.block == "basic" else 2048)
    # DenseNet's three 2×2×2 average pools need at least 15 frames, S3D's halvings of time 8;
    # the others take 4. I3D's flow network takes 2 channels (dx, dy).
    channels = getattr(model, "in_channels", 3)
    frames = {"hara-densenet": 16, "s3d": 8}.get(spec.family, 4)
    x = torch.randn(1, channels, frames, 32, 32)
    with torch.no_grad():
        logits = model(x)
        feats = model.forward_features(x)
        trunk = model.forward_trunk(x)
    assert logits.shape == (1, 5)
    assert feats.shape == (1, model.feature_dim)
    assert trunk.shape[:2] == (1, model.feature_dim)
    assert torch.isfinite(logits).all() and torch.isfinite(feats).all()
    torch.testing.assert_close(model.forward_head(feats), logits)
    assert model.forward_head(feats, pre_logits=True) is feats

    # Parameter count in the registry is for 400 classes.
    n_params = sum(p.numel() for p in model.parameters())
    assert n_params == spec.num_params - (400 - 5) * (spec.feature_dim + 1)

    with torch.device("meta"):  # no time spent initializing weights that are overwritten
        fresh = spec.builder(num_classes=5).eval()
    fresh.load_state_dict(model.state_dict(), strict=True, assign=True)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x), logits, rtol=0, atol=0)


@pytest.mark.parametrize("name", ALL)
def test_registered_gmacs(name: str) -> None:
    spec = get_spec(name)
    frames, size = spec.default_input
    with torch.device("meta"):
        model = spec.builder(num_classes=400)
        x = torch.empty(1, getattr(model, "in_channels", 3), frames, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        model(x)
    assert round(counter.get_total_flops() / 2e9, 3) == pytest.approx(spec.gmacs, abs=1e-3)


def test_reset_classifier() -> None:
    model = get_backbone("r3d_18")
    model.reset_classifier(7)
    assert model.fc.out_features == 7 and model.num_classes == 7
    assert model.arch_kwargs["num_classes"] == 7


# ---------------------------------------------------------------------------------------------
# Reference forwards written with torch.nn.functional directly from the state dict


def _bn(x: torch.Tensor, sd: dict, prefix: str) -> torch.Tensor:
    return F.batch_norm(
        x,
        sd[f"{prefix}.running_mean"],
        sd[f"{prefix}.running_var"],
        sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"],
        training=False,
        eps=1e-5,
    )


def _reference_r3d_18(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.relu(
        _bn(F.conv3d(x, sd["stem.0.weight"], stride=(1, 2, 2), padding=(1, 3, 3)), sd, "stem.1")
    )
    for layer in range(1, 5):
        for block in range(2):
            p = f"layer{layer}.{block}"
            stride = 2 if layer > 1 and block == 0 else 1
            out = F.conv3d(x, sd[f"{p}.conv1.0.weight"], stride=stride, padding=1)
            out = F.relu(_bn(out, sd, f"{p}.conv1.1"))
            out = _bn(F.conv3d(out, sd[f"{p}.conv2.0.weight"], padding=1), sd, f"{p}.conv2.1")
            if f"{p}.downsample.0.weight" in sd:
                identity = F.conv3d(x, sd[f"{p}.downsample.0.weight"], stride=stride)
                identity = _bn(identity, sd, f"{p}.downsample.1")
            else:
                identity = x
            x = F.relu(out + identity)
    feats = x.mean(dim=(2, 3, 4))
    return feats, F.linear(feats, sd["fc.weight"], sd["fc.bias"])


def _hara_shortcut_a(x: torch.Tensor, planes: int, stride: int) -> torch.Tensor:
    # As written in Hara's code: a 1×1×1 average pool with a stride, then zero channels.
    out = F.avg_pool3d(x, kernel_size=1, stride=stride)
    zeros = torch.zeros(out.shape[0], planes - out.shape[1], *out.shape[2:])
    return torch.cat([out, zeros], dim=1)


def _reference_hara_resnet_18_a(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.conv3d(x, sd["conv1.weight"], stride=(1, 2, 2), padding=(3, 3, 3))
    x = F.max_pool3d(F.relu(_bn(x, sd, "bn1")), kernel_size=3, stride=2, padding=1)
    for layer, planes in zip(range(1, 5), (64, 128, 256, 512), strict=True):
        for block in range(2):
            p = f"layer{layer}.{block}"
            stride = 2 if layer > 1 and block == 0 else 1
            out = F.relu(
                _bn(F.conv3d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1), sd, f"{p}.bn1")
            )
            out = _bn(F.conv3d(out, sd[f"{p}.conv2.weight"], padding=1), sd, f"{p}.bn2")
            identity = (
                _hara_shortcut_a(x, planes, stride) if x.shape[1] != planes or stride != 1 else x
            )
            x = F.relu(out + identity)
    feats = x.mean(dim=(2, 3, 4))
    return feats, F.linear(feats, sd["fc.weight"], sd["fc.bias"])


def test_r3d_18_matches_functional_reference() -> None:
    torch.manual_seed(1)
    model = get_backbone("r3d_18", num_classes=10)
    _randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 8, 32, 32)
    ref_feats, ref_logits = _reference_r3d_18(model.state_dict(), x)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), ref_feats, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x), ref_logits, rtol=1e-4, atol=1e-5)


def test_hara_resnet_18_shortcut_a_matches_functional_reference() -> None:
    torch.manual_seed(2)
    model = get_backbone("resnet-18", num_classes=10, shortcut_type="A")
    assert not any("downsample" in k for k in model.state_dict())
    _randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 8, 32, 32)
    ref_feats, ref_logits = _reference_hara_resnet_18_a(model.state_dict(), x)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), ref_feats, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x), ref_logits, rtol=1e-4, atol=1e-5)


def test_shortcut_a_block_is_zero_padded_strided_identity() -> None:
    torch.manual_seed(3)
    model = get_backbone("resnet-18", shortcut_type="A")
    _randomize_bn(model)
    model.eval()
    block = model.layer2[0]
    assert isinstance(block.downsample, ZeroPadShortcut)
    x = torch.randn(1, 64, 5, 9, 9)  # odd sizes: the stride keeps the first of each pair
    with torch.no_grad():
        residual = block.bn2(block.conv2(block.relu(block.bn1(block.conv1(x)))))
        expected = F.relu(residual + _hara_shortcut_a(x, 128, 2))
        torch.testing.assert_close(block(x), expected)
        shortcut = block.downsample(x)
    assert shortcut.shape == (1, 128, 3, 5, 5)
    torch.testing.assert_close(shortcut[:, :64], x[:, :, ::2, ::2, ::2])
    assert shortcut[:, 64:].abs().sum() == 0


def test_shortcut_b_has_downsample_conv() -> None:
    model = get_backbone("resnet-18", shortcut_type="B")
    sd = model.state_dict()
    assert sd["layer2.0.downsample.0.weight"].shape == (128, 64, 1, 1, 1)
    assert model.layer2[0].downsample[0].stride == (2, 2, 2)


def test_hara_options() -> None:
    model = get_backbone("resnet-10", conv1_t_size=3, conv1_t_stride=2, no_max_pool=True).eval()
    assert model.conv1.kernel_size == (3, 7, 7)
    assert model.conv1.stride == (2, 2, 2)
    assert model.conv1.padding == (1, 3, 3)
    with torch.no_grad():
        trunk = model.forward_trunk(torch.randn(1, 3, 8, 32, 32))
    assert trunk.shape == (1, 512, 1, 2, 2)  # no max-pool: 32 → 16 → 8 → 4 → 2
    with pytest.raises(ValueError, match="shortcut_type"):
        get_backbone("resnet-10", shortcut_type="C")


def test_video_resnet_strides_per_conv_maker() -> None:
    mc3 = get_backbone("mc3_18")
    assert mc3.layer2[0].downsample[0].stride == (1, 2, 2)
    assert mc3.layer2[0].conv1[0].kernel_size == (1, 3, 3)
    r3d = get_backbone("r3d_18")
    assert r3d.layer2[0].downsample[0].stride == (2, 2, 2)
    r21 = get_backbone("r2plus1d_18")
    assert r21.state_dict()["layer1.0.conv1.0.0.weight"].shape == (144, 64, 1, 3, 3)
    assert r21.state_dict()["layer2.0.conv2.0.0.weight"].shape == (230, 128, 1, 3, 3)


def test_video_resnet_bottleneck_variant() -> None:
    model = VideoResNet(Bottleneck, [Conv3DSimple] * 4, [1, 1, 1, 1], R2Plus1dStem, 3).eval()
    assert model.feature_dim == 2048
    with torch.no_grad():
        assert model(torch.randn(1, 3, 4, 32, 32)).shape == (1, 3)
