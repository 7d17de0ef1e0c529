"""Batch norm folded into convolutions (feat3d.backbones.fold) and VideoModel's use of it."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from feat3d.backbones import get_backbone
from feat3d.backbones.fold import fold_batchnorm
from feat3d.model import VideoModel, load_model


def _randomize_bn(network: nn.Module) -> None:
    """Statistics and affine parameters far from the identity, so that folding matters."""
    g = torch.Generator().manual_seed(1)
    for module in network.modules():
        if isinstance(module, nn.BatchNorm3d):
            size = module.num_features
            module.running_mean.copy_(torch.rand(size, generator=g) - 0.5)
            module.running_var.copy_(torch.rand(size, generator=g) * 1.5 + 0.5)
            module.weight.data.copy_(torch.rand(size, generator=g) + 0.5)
            module.bias.data.copy_(torch.rand(size, generator=g) * 0.4 - 0.2)


def _count(network: nn.Module, kind: type) -> int:
    return sum(type(module) is kind for module in network.modules())


@pytest.mark.parametrize(
    ("name", "foldable"),
    [
        ("resnet-10", 12),  # every BN follows its convolution
        ("preact-resnet-10", 8),  # pre-activation: the BN before each block's first conv stays
        ("r3d_18", 20),  # torchvision's Conv3DSimple (a Conv3d subclass) in Sequentials
        ("resnet2p1d-10", 21),  # (2+1)D: BNs after the spatial and the temporal convs
    ],
)
def test_folded_copy_gives_the_same_outputs(name: str, foldable: int) -> None:
    torch.manual_seed(0)
    network = get_backbone(name, num_classes=5).eval()
    _randomize_bn(network)
    before = {k: v.clone() for k, v in network.state_dict().items()}
    example = torch.randn(1, 3, 16, 112, 112)
    folded = fold_batchnorm(network, example)

    assert folded is not None
    assert _count(network, nn.BatchNorm3d) - _count(folded, nn.BatchNorm3d) == foldable
    assert _count(folded, nn.Identity) - _count(network, nn.Identity) == foldable
    # the original keeps its modules, key names and values
    assert network.state_dict().keys() == before.keys()
    assert all(torch.equal(network.state_dict()[k], v) for k, v in before.items())

    clips = torch.randn(2, 3, 16, 112, 112)
    with torch.no_grad():
        want = network.forward_layers(clips, ("pool5", "logits"))
        got = folded.forward_layers(clips, ("pool5", "logits"))
    for layer in want:
        torch.testing.assert_close(got[layer], want[layer], rtol=1e-4, atol=1e-5)


class _SharedOutput(nn.Module):
    """A convolution whose output feeds its batch norm and, unnormalized, a sum: folding the
    BN would change the second use, so it must not be folded."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(3, 4, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm3d(4)

    def feature_layers(self) -> dict[str, int]:
        return {"pool5": 4}

    def forward_layers(self, x: torch.Tensor, layers: tuple[str, ...]) -> dict[str, torch.Tensor]:
        y = self.conv(x)
        return {"pool5": (self.bn(y) + y).mean(dim=(2, 3, 4))}


def test_a_convolution_output_used_twice_is_not_folded() -> None:
    torch.manual_seed(0)
    network = _SharedOutput().eval()
    _randomize_bn(network)
    assert fold_batchnorm(network, torch.randn(1, 3, 4, 8, 8)) is None


def test_training_mode_network_is_not_touched() -> None:
    torch.manual_seed(0)
    network = get_backbone("resnet-10", num_classes=5)  # training mode
    _randomize_bn(network)
    stats = network.bn1.running_mean.clone()
    folded = fold_batchnorm(network, torch.randn(2, 3, 16, 112, 112))
    assert folded is not None and not folded.training
    assert network.training  # still in training mode, statistics not updated by the probe
    assert torch.equal(network.bn1.running_mean, stats)


def test_video_model_runs_the_folded_copy_and_keeps_the_checkpoint_layout() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # random weights
        model = load_model("resnet-10", None, device="cpu", num_classes=5)
    _randomize_bn(model.backbone)
    # a new VideoModel folds the statistics just set (VideoModel folds once, when made)
    folded = VideoModel(backbone=model.backbone, meta=model.meta, device=model.device)
    plain = VideoModel(backbone=model.backbone, meta=model.meta, device=model.device,
                       fold_bn=False)  # fmt: skip
    assert plain.network is plain.backbone
    assert folded.network is not folded.backbone
    assert "batch norm folded" in folded.execution
    assert "batch norm folded" not in plain.execution
    assert _count(folded.network, nn.BatchNorm3d) == 0
    assert "bn1.running_var" in folded.backbone.state_dict()  # key names of the checkpoint
    clips = torch.randint(0, 256, (3, 16, 112, 112, 3), dtype=torch.uint8)
    a, b = folded.run(clips, ("pool5", "logits")), plain.run(clips, ("pool5", "logits"))
    for layer in ("pool5", "logits"):
        torch.testing.assert_close(torch.from_numpy(a[layer]), torch.from_numpy(b[layer]),
                                   rtol=1e-4, atol=1e-5)  # fmt: skip
    # fp32 stays bit-reproducible run to run with the folded network
    assert (folded.run(clips)["pool5"] == a["pool5"]).all()


def test_two_stream_network_is_left_as_it_is() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = load_model("st-resnet-50", None, device="cpu", num_classes=3)
    assert model.network is model.backbone
