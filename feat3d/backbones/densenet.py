"""3D DenseNet-BC in the layout of Hara et al., with their state-dict key names.

K. Hara, H. Kataoka, Y. Satoh, CVPR 2018 (arXiv:1711.09577), after G. Huang et al.,
"Densely Connected Convolutional Networks", CVPR 2017 (arXiv:1608.06993). Checkpoints
``densenet-121-kinetics.pth`` / ``densenet-201-kinetics.pth`` come from
github.com/kenshohara/3D-ResNets-PyTorch (``models/densenet.py``).

Data flow (``(N, C, T, H, W)``, 16×112×112 input, DenseNet-121)::

    features.conv0 7×7×7 /(1,2,2) ─ norm0 ─ relu0 ─ pool0 3 /2       64 × 8 × 28 × 28
    denseblock1 (6 layers)   ─ transition1 (BN-ReLU-1×1×1 conv, 2×2×2 avg-pool)
    denseblock2 (12 layers)  ─ transition2
    denseblock3 (24 layers)  ─ transition3
    denseblock4 (16 layers)  ─ norm5 ─ ReLU                           1024 × 1 × 3 × 3
    avgpool (global) ─ classifier                                     (N, num_classes)

A dense layer is pre-activation (BN → ReLU → 1×1×1 conv to ``bn_size · growth`` channels →
BN → ReLU → 3×3×3 conv to ``growth`` channels) and concatenates its output to its input.
A transition halves the channels and the T, H, W sizes. The classifier is stored as
``classifier`` (not ``fc``) so that Hara's checkpoints load strictly.

Key names: Hara's 2017 files predate PyTorch 0.4 and name dense-layer modules ``norm.1``,
``conv.1``, ...; his 2020 code names the stem ``features.conv1``/``norm1``. Neither can be
a module name here, so this module uses torchvision's names (``features.conv0``, ``norm0``,
``denselayerN.norm1``, ``conv1``, ``norm2``, ``conv2``) and
:func:`~feat3d.backbones.weights.load_checkpoint` renames both older spellings on reading.
Clips need at least 15 frames (8 with ``no_max_pool``): the three transitions halve T.
"""

from __future__ import annotations

from collections import OrderedDict
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from feat3d.backbones.blocks import init_weights
from feat3d.backbones.registry import Backbone, register_backbone

__all__ = ["DEPTHS", "DenseLayer", "HaraDenseNet", "Transition", "densenet"]


class DenseLayer(nn.Module):
    """Pre-activation bottleneck layer whose output is concatenated to its input.

    Args:
        in_channels: Channels entering the layer.
        growth_rate: Channels it adds.
        bn_size: Width of the 1×1×1 bottleneck, in multiples of ``growth_rate``.
    """

    def __init__(self, *, in_channels: int, growth_rate: int, bn_size: int) -> None:
        super().__init__()
        width = bn_size * growth_rate
        self.norm1 = nn.BatchNorm3d(in_channels)
        self.conv1 = nn.Conv3d(in_channels, width, kernel_size=1, bias=False)
        self.norm2 = nn.BatchNorm3d(width)
        self.conv2 = nn.Conv3d(width, growth_rate, kernel_size=3, padding=1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, T, H, W)`` → ``(N, C + growth_rate, T, H, W)``."""
        out = self.conv1(F.relu(self.norm1(x)))
        out = self.conv2(F.relu(self.norm2(out)))
        return torch.cat([x, out], dim=1)


class Transition(nn.Sequential):
    """BN → ReLU → 1×1×1 conv → 2×2×2 average pool; keys ``norm``, ``conv``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels (half the input in DenseNet-BC).
    """

    def __init__(self, *, in_channels: int, out_channels: int) -> None:
        super().__init__(
            OrderedDict(
                [
                    ("norm", nn.BatchNorm3d(in_channels)),
                    ("relu", nn.ReLU(inplace=True)),
                    ("conv", nn.Conv3d(in_channels, out_channels, kernel_size=1, bias=False)),
                    ("pool", nn.AvgPool3d(kernel_size=2, stride=2)),
                ]
            )
        )


class HaraDenseNet(Backbone):
    """Hara et al.'s 3D DenseNet-BC (see the module docstring for the data flow).

    ``classifier`` is the head; ``fc`` is a read-only alias so that code written for the
    :class:`~feat3d.backbones.registry.Backbone` interface works unchanged.

    Args:
        block_config: Dense layers in each of the four dense blocks.
        num_classes: Rows of ``classifier``.
        growth_rate: Channels each dense layer adds.
        bn_size: Bottleneck width of a dense layer, in multiples of ``growth_rate``.
        num_init_features: Channels of ``features.conv0``.
        conv1_t_size: Temporal kernel of ``features.conv0`` (padding ``conv1_t_size // 2``).
        conv1_t_stride: Temporal stride of ``features.conv0``.
        no_max_pool: Skip ``features.pool0``.
    """

    def __init__(
        self,
        *,
        block_config: tuple[int, int, int, int],
        num_classes: int = 400,
        growth_rate: int = 32,
        bn_size: int = 4,
        num_init_features: int = 64,
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
    ) -> None:
        super().__init__()
        self.arch_kwargs = {
            "num_classes": num_classes,
            "conv1_t_size": conv1_t_size,
            "conv1_t_stride": conv1_t_stride,
            "no_max_pool": no_max_pool,
        }
        self.num_classes = num_classes
        stem: list[tuple[str, nn.Module]] = [
            (
                "conv0",
                nn.Conv3d(
                    3,
                    num_init_features,
                    kernel_size=(conv1_t_size, 7, 7),
                    stride=(conv1_t_stride, 2, 2),
                    padding=(conv1_t_size // 2, 3, 3),
                    bias=False,
                ),
            ),
            ("norm0", nn.BatchNorm3d(num_init_features)),
            ("relu0", nn.ReLU(inplace=True)),
        ]
        if not no_max_pool:
            stem.append(("pool0", nn.MaxPool3d(kernel_size=3, stride=2, padding=1)))
        self.features = nn.Sequential(OrderedDict(stem))

        channels = num_init_features
        for i, n_layers in enumerate(block_config, start=1):
            block = nn.Sequential()
            for j in range(1, n_layers + 1):
                layer = DenseLayer(in_channels=channels, growth_rate=growth_rate, bn_size=bn_size)
                block.add_module(f"denselayer{j}", layer)
                channels += growth_rate
            self.features.add_module(f"denseblock{i}", block)
            if i != len(block_config):
                transition = Transition(in_channels=channels, out_channels=channels // 2)
                self.features.add_module(f"transition{i}", transition)
                channels //= 2
        self.features.add_module("norm5", nn.BatchNorm3d(channels))

        self.feature_dim = channels
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.classifier = nn.Linear(channels, num_classes)

        init_weights(self)
        nn.init.zeros_(self.classifier.bias)

    @property
    def fc(self) -> nn.Linear:  # type: ignore[override]
        """The classifier (stored under Hara's key name ``classifier``)."""
        return self.classifier

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` → ``ReLU(norm5(...))``, ``(N, D, t, h, w)``, as Hara pools it."""
        return F.relu(self.features(x))

    def forward_head(self, feats: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Classifier on pooled features (see :meth:`Backbone.forward_head`)."""
        return feats if pre_logits else self.classifier(feats)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``classifier`` by a freshly initialized ``Linear(feature_dim, num_classes)``.

        Args:
            num_classes: Rows of the new classifier.
        """
        self.classifier = nn.Linear(self.feature_dim, num_classes)
        self.num_classes = num_classes
        self.arch_kwargs = {**self.arch_kwargs, "num_classes": num_classes}


#: Depth → dense layers per block, as in Hara's ``models/densenet.py`` (growth rate 32,
#: 64 initial features, bn_size 4). 121 and 201 are registered (they have Kinetics weights).
DEPTHS: dict[int, tuple[int, int, int, int]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}
_REGISTERED = (121, 201)


def densenet(
    depth: int,
    *,
    num_classes: int = 400,
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
) -> HaraDenseNet:
    """Build Hara et al.'s 3D DenseNet-BC (registered as ``densenet-{depth}``).

    Args:
        depth: One of :data:`DEPTHS` (121, 169, 201, 264).
        num_classes: Rows of ``classifier``.
        conv1_t_size: Temporal kernel of ``features.conv0`` (Hara's 2020 option).
        conv1_t_stride: Temporal stride of ``features.conv0``.
        no_max_pool: Skip ``features.pool0``.

    Returns:
        A randomly initialized CPU model.

    Raises:
        ValueError: Unknown depth.
    """
    if depth not in DEPTHS:
        raise ValueError(f"DenseNet depth {depth} is not one of {sorted(DEPTHS)}")
    return HaraDenseNet(
        block_config=DEPTHS[depth],
        num_classes=num_classes,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
    )


def _feature_dim(block_config: tuple[int, ...], *, init: int = 64, growth: int = 32) -> int:
    channels = init
    for i, n in enumerate(block_config):
        channels += n * growth
        if i != len(block_config) - 1:
            channels //= 2
    return channels


# Parameter counts (400 classes) and multiply-accumulates per 16×112×112 clip, measured with
# torch.utils.flop_counter and checked by tests/backbones/test_models.py.
_STATS: dict[int, tuple[int, float]] = {121: (11696528, 10.404), 201: (26143120, 11.243)}

for _depth in _REGISTERED:
    _params, _gmacs = _STATS[_depth]
    register_backbone(
        f"densenet-{_depth}",
        family="hara-densenet",
        block="dense",
        layers=DEPTHS[_depth],
        feature_dim=_feature_dim(DEPTHS[_depth]),
        default_meta="hara2017",
        formats=("hara2017", "hara2020", "feat3d"),
        widths=(32, 32, 32, 32),
        stem="conv 7×7×7 /(1,2,2), BN, ReLU, max-pool 3×3×3 /2",
        num_params=_params,
        gmacs=_gmacs,
        paper=(
            "Hara et al., CVPR 2018, arXiv:1711.09577; Huang et al., CVPR 2017, arXiv:1608.06993"
        ),
    )(partial(densenet, _depth))
