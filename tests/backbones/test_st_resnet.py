"""ST-ResNet-50: shapes, ImageNet inflation, the skip-stream gradient, ghost BN, loading."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from feat3d.backbones import WeightsError, get_backbone, get_spec, save_checkpoint
from feat3d.backbones.ghost_bn import GhostBatchNorm3d, use_ghost_batch_norm
from feat3d.backbones.st_resnet import (
    STResNet,
    fully_convolutional_logits,
    inflate_resnet50_2d,
    load_st_resnet_from_2d,
)

CHANNELS = 3 + 2 * 10


# --------------------------------------------------------------------------------------------
# An independent 2D ResNet-50 with torchvision's key names and v1.5 layout (torchvision is not
# installed here): the reference the inflated network must reproduce.


class _Bottleneck2d(nn.Module):
    def __init__(self, cin: int, planes: int, stride: int, project: bool) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.downsample = (
            nn.Sequential(nn.Conv2d(cin, planes * 4, 1, stride, bias=False),
                          nn.BatchNorm2d(planes * 4))
            if project
            else None
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + identity)


class _ResNet50_2d(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        cin = 64
        for i, (planes, blocks) in enumerate(
            zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), 1
        ):
            units = [
                _Bottleneck2d(cin if j == 0 else planes * 4, planes,
                              (1 if i == 1 else 2) if j == 0 else 1, j == 0)
                for j in range(blocks)
            ]  # fmt: skip
            setattr(self, f"layer{i}", nn.Sequential(*units))
            cin = planes * 4
        self.fc = nn.Linear(2048, 1000)

    def conv5(self, x: torch.Tensor) -> torch.Tensor:
        x = F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
        return x


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


@pytest.fixture(scope="module")
def net2d() -> _ResNet50_2d:
    torch.manual_seed(0)
    net = _ResNet50_2d()
    _randomize_bn(net)
    return net.eval().double()


@pytest.fixture(scope="module")
def model() -> STResNet:
    torch.manual_seed(1)
    m = get_backbone("st-resnet-50", num_classes=5)
    _randomize_bn(m)
    return m.eval()


# --------------------------------------------------------------------------------------------


def test_registry_entry_counts_params_and_macs() -> None:
    spec = get_spec("st-resnet-50")
    assert (spec.family, spec.feature_dim, spec.default_input) == ("st-resnet", 4096, (5, 224))
    with torch.device("meta"):
        big = spec.builder(num_classes=400)
        x = torch.empty(1, CHANNELS, *spec.default_input[:1], 224, 224)
    assert sum(p.numel() for p in big.parameters()) == spec.num_params
    counter = FlopCounterMode(display=False)
    with counter:
        big(x)
    assert round(counter.get_total_flops() / 2e9, 3) == pytest.approx(spec.gmacs, abs=1e-3)
    # The 3×1×1 temporal convs are exactly conv1/conv3 of each stage's second unit.
    temporal = sorted(n for n, m in big.named_modules() if isinstance(m, nn.Conv3d)
                      and m.kernel_size[0] == 3)  # fmt: skip
    assert temporal == sorted(
        f"{s}.layer{i}.1.conv{k}" for s in ("appearance", "motion") for i in range(1, 5)
        for k in (1, 3)
    )  # fmt: skip
    assert big.motion.conv1.in_channels == 20 and big.appearance.conv1.in_channels == 3


def test_shapes_and_layers_agree(model: STResNet) -> None:
    x = torch.randn(2, CHANNELS, 5, 64, 64)
    with torch.no_grad():
        out = model.forward_streams(x)
        layers = model.forward_layers(x, ("conv5", "pool5_motion", "logits"), pool=False)
        logits = model(x)
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "appearance": (2, 5), "motion": (2, 5), "fused": (2, 5),
        "pool5_appearance": (2, 2048), "pool5_motion": (2, 2048), "pool5": (2, 4096),
    }  # fmt: skip
    torch.testing.assert_close(out["fused"], (out["appearance"] + out["motion"]) / 2)
    torch.testing.assert_close(logits, out["fused"])
    torch.testing.assert_close(model.forward_head(out["pool5"]), out["fused"])
    torch.testing.assert_close(layers["logits"], out["fused"])
    torch.testing.assert_close(layers["pool5_motion"], out["pool5_motion"])
    assert layers["conv5"].shape == (2, 4096, 5, 2, 2)
    # pool5 = max over the chunks (5 ≤ window), then the spatial mean.
    expected = layers["conv5"][:, 2048:].amax(dim=2).mean(dim=(2, 3))
    torch.testing.assert_close(out["pool5_motion"], expected)
    assert model.feature_layers() == {"conv5": 4096, "pool5": 4096, "pool5_appearance": 2048,
                                      "pool5_motion": 2048, "logits": 5}  # fmt: skip
    with pytest.raises(ValueError, match=r"\(N, 23, T, H, W\).*got \(1, 3, 4, 32, 32\)"):
        model(torch.randn(1, 3, 4, 32, 32))


def test_fully_convolutional_logits_average_every_position(model: STResNet) -> None:
    x = torch.randn(1, CHANNELS, 7, 48, 80)  # no crop: any size, here not square
    with torch.no_grad():
        full = fully_convolutional_logits(model, x)
        streams = model.forward_streams(x)
    # 7 chunks, max-pool window 5 stride 2 → 2 temporal positions; 48×80 / 32 → 2×3.
    assert full["fused_map"].shape == (1, 5, 2, 2, 3)
    torch.testing.assert_close(full["fused"], full["fused_map"].mean(dim=(2, 3, 4)))
    for name in ("appearance", "motion", "fused"):
        torch.testing.assert_close(full[name], streams[name], rtol=1e-4, atol=1e-5)


def _inflated(net2d: nn.Module, **kwargs: object) -> STResNet:
    sd2d = {k: v.float() for k, v in net2d.state_dict().items()}
    model = STResNet(num_classes=7, motion_skip="none", **kwargs)  # type: ignore[arg-type]
    model.load_state_dict(inflate_resnet50_2d(sd2d, num_classes=7), strict=True)
    return model.eval().double()


def test_inflation_is_the_2d_network_on_constant_input(net2d: _ResNet50_2d) -> None:
    model = _inflated(net2d, temporal_padding="replicate")
    g = torch.Generator().manual_seed(2)
    frames = 3
    rgb = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
    flow = torch.randn(2, 20, 32, 32, generator=g, dtype=torch.float64)
    with torch.no_grad():
        conv5_a = model.appearance(rgb[:, :, None].expand(-1, -1, frames, -1, -1))
        conv5_m = model.motion(flow[:, :, None].expand(-1, -1, frames, -1, -1))
        ref_a = net2d.conv5(rgb)
        # Motion conv1 = mean RGB filter on each of the 20 channels = the 2D conv1 on a grey
        # image whose value is the channel sum / 3.
        ref_m = net2d.conv5((flow.sum(dim=1, keepdim=True) / 3).expand(-1, 3, -1, -1))
    for t in range(frames):  # replicate padding: exact at every chunk, the ends included
        torch.testing.assert_close(conv5_a[:, :, t], ref_a, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(conv5_m[:, :, t], ref_m, rtol=1e-5, atol=1e-6)

    sd = model.state_dict()
    w2d = net2d.layer3[1].conv3.weight
    assert sd["appearance.layer3.1.conv3.weight"].shape == (*w2d.shape[:2], 3, 1, 1)
    torch.testing.assert_close(sd["appearance.layer3.1.conv3.weight"].sum(dim=2)[..., 0, 0],
                               w2d[..., 0, 0], rtol=1e-6, atol=1e-7)  # fmt: skip
    assert sd["motion.conv1.weight"].shape == (64, 20, 1, 7, 7)


def test_inflation_with_zero_padding_is_exact_away_from_the_ends(net2d: _ResNet50_2d) -> None:
    # Eight 3×1×1 convs per stream: chunk t is exact when it is ≥ 8 chunks from both ends.
    model = _inflated(net2d)
    rgb = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(3)).double()
    with torch.no_grad():
        conv5 = model.appearance(rgb[:, :, None].expand(-1, -1, 17, -1, -1))
        ref = net2d.conv5(rgb)
    torch.testing.assert_close(conv5[:, :, 8], ref, rtol=1e-5, atol=1e-6)
    assert not torch.allclose(conv5[:, :, 0], ref, rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("motion_skip", ["residual", "sum", "none"])
def test_appearance_loss_reaches_the_motion_stream_through_the_skip(motion_skip: str) -> None:
    torch.manual_seed(0)
    model = get_backbone("st-resnet-50", num_classes=3, motion_skip=motion_skip).train()
    x = torch.randn(2, CHANNELS, 2, 32, 32)
    F.cross_entropy(model.forward_streams(x)["appearance"], torch.tensor([0, 2])).backward()

    def grad(p: torch.Tensor) -> float:
        return 0.0 if p.grad is None else float(p.grad.abs().sum())

    motion = model.motion
    assert grad(model.appearance.conv1.weight) > 0
    if motion_skip == "none":
        assert all(p.grad is None for p in motion.parameters())
        return
    # Every stage's first motion unit feeds the appearance stream; units after the last skip
    # (layer4.1, layer4.2) and the motion fc do not.
    assert grad(motion.conv1.weight) > 0
    assert grad(motion.layer4[0].conv3.weight) > 0
    assert motion.layer4[1].conv1.weight.grad is None and motion.fc.weight.grad is None


def test_ghost_batch_norm_matches_a_manual_computation() -> None:
    g = torch.Generator().manual_seed(4)
    x = torch.randn(7, 4, 2, 3, 3, generator=g) * 3 + 1
    bn = GhostBatchNorm3d(4, virtual_batch=3, momentum=0.2)
    with torch.no_grad():
        bn.weight.copy_(torch.rand(4, generator=g) + 0.5)
        bn.bias.copy_(torch.randn(4, generator=g))
    start_mean, start_var = bn.running_mean.clone(), bn.running_var.clone()
    out = bn(x)

    means, variances, pieces = [], [], []
    for chunk in (x[0:3], x[3:6], x[6:7]):  # groups of 3, the last one smaller
        mean = chunk.mean(dim=(0, 2, 3, 4))
        var = chunk.var(dim=(0, 2, 3, 4), unbiased=False)
        shape = (1, 4, 1, 1, 1)
        normed = (chunk - mean.view(shape)) / torch.sqrt(var.view(shape) + bn.eps)
        pieces.append(normed * bn.weight.view(shape) + bn.bias.view(shape))
        means.append(mean)
        n = chunk.numel() / 4
        variances.append(var * n / (n - 1))
    torch.testing.assert_close(out, torch.cat(pieces), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_mean, 0.8 * start_mean + 0.2 * torch.stack(means).mean(0))
    torch.testing.assert_close(
        bn.running_var, 0.8 * start_var + 0.2 * torch.stack(variances).mean(0)
    )
    assert int(bn.num_batches_tracked) == 1

    plain = nn.BatchNorm3d(4)
    plain.load_state_dict(bn.state_dict(), strict=True)  # the same keys
    bn.eval(), plain.eval()
    torch.testing.assert_close(bn(x), plain(x), rtol=0, atol=0)


def test_use_ghost_batch_norm_keeps_weights_and_keys(model: STResNet) -> None:
    small = nn.Sequential(nn.Conv3d(2, 4, 1), nn.BatchNorm3d(4), nn.Sequential(nn.BatchNorm3d(4)))
    _randomize_bn(small)
    before = {k: v.clone() for k, v in small.state_dict().items()}
    assert use_ghost_batch_norm(small, virtual_batch=2) == 2
    assert isinstance(small[1], GhostBatchNorm3d) and isinstance(small[2][0], GhostBatchNorm3d)
    after = small.state_dict()
    assert list(after) == list(before)
    for key, value in before.items():
        torch.testing.assert_close(after[key], value, rtol=0, atol=0)
    # Training on 4 samples now normalizes pairs: each pair has zero mean per channel.
    small.train()
    out = small[1](torch.randn(4, 4, 1, 2, 2))
    pair_means = out[:2].mean(dim=(0, 2, 3, 4)) - small[1].bias
    torch.testing.assert_close(pair_means, torch.zeros(4), rtol=0, atol=1e-5)
    # The whole ST-ResNet has 2 × 53 BN layers; its state dict keys do not change.
    keys = list(model.state_dict())
    ghost = STResNet(num_classes=5)
    assert use_ghost_batch_norm(ghost, virtual_batch=4) == 106
    ghost.load_state_dict(model.state_dict(), strict=True)
    assert list(ghost.state_dict()) == keys


def test_load_from_a_2d_file_and_round_trip(net2d: _ResNet50_2d, tmp_path: Path) -> None:
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save({k: v.float() for k, v in net2d.state_dict().items()}, path)
    model = load_st_resnet_from_2d(path, num_classes=4)
    assert model.num_classes == 4 and model.meta.format == "imagenet2d"
    assert model.meta.categories == [f"class_{i}" for i in range(4)]
    torch.testing.assert_close(
        model.appearance.layer2[0].conv2.weight[:, :, 0], net2d.layer2[0].conv2.weight.float()
    )
    saved = save_checkpoint(model, tmp_path / "st.pt")
    again = get_backbone("st-resnet-50", weights=saved)  # strict load through the registry
    assert again.arch_kwargs == model.arch_kwargs
    for (key, a), (_, b) in zip(
        again.state_dict().items(), model.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), key

    broken = tmp_path / "resnet18.pth"
    torch.save({k: v for k, v in net2d.state_dict().items() if "layer4" not in k}, broken)
    with pytest.raises(WeightsError, match=r"resnet18\.pth is not a torchvision ResNet-50"):
        load_st_resnet_from_2d(broken, num_classes=4)
