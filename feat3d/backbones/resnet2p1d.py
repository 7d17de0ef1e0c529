"""R(2+1)D ResNets in the layout of Hara et al.'s 2020 code, with its state-dict key names.

D. Tran et al., "A Closer Look at Spatiotemporal Convolutions for Action Recognition",
CVPR 2018 (arXiv:1711.11248), as implemented in github.com/kenshohara/3D-ResNets-PyTorch
``models/resnet2p1d.py`` (checkpoints ``r2p1d18_K_200ep.pth``, ... ; H. Kataoka et al.,
arXiv:2004.04968). Unlike torchvision's ``r2plus1d_18`` (keys ``stem.0``, ``conv1.0.0``), each
factorized conv is a pair of attributes ``convN_s`` (1×k×k, spatial) and ``convN_t``
(k×1×1, temporal), each followed by BN and ReLU.

Data flow (``(N, C, T, H, W)``, 16×112×112 input)::

    conv1_s 1×7×7 /(1,2,2) ─ bn1_s ─ relu ─ conv1_t 7×1×1 ─ bn1_t ─ relu ─ maxpool 3 /2
    layer1 ─ layer2 /2 ─ layer3 /2 ─ layer4 /2            512·e × 1 × 4 × 4
    avgpool (global) ─ fc                                  (N, num_classes)

Every (2+1)D pair has ``M = ⌊in·out·t·k² / (in·k² + t·out)⌋`` middle channels, so that it has
about as many weights as the full ``t×k×k`` conv it replaces (64 → 144 → 64 in layer1 of
R(2+1)D-18, 3 → 110 → 64 in the stem). The first block of layer2-4 strides in T, H and W:
``conv1_s``/``conv1_t`` (basic) or ``conv2_s``/``conv2_t`` (bottleneck) carry it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial

import torch
from torch import nn

from feat3d.backbones.hara_resnet import (
    DEPTHS as _RESNET_DEPTHS,
)
from feat3d.backbones.hara_resnet import (
    BasicBlock,
    Block,
    ShortcutType,
    _conv1x1x1,
    init_weights,
    make_stages,
)
from feat3d.backbones.registry import Backbone, register_backbone

__all__ = [
    "DEPTHS",
    "BasicBlock2p1d",
    "Bottleneck2p1d",
    "HaraResNet2p1d",
    "mid_planes",
    "resnet2p1d",
]


def mid_planes(in_planes: int, out_planes: int, *, t: int = 3, k: int = 3) -> int:
    """Middle channels of a (2+1)D factorization of a ``t×k×k`` conv (Tran et al., Eq. 5)."""
    return (in_planes * out_planes * t * k * k) // (in_planes * k * k + t * out_planes)


def _conv_s(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(
        in_planes,
        out_planes,
        kernel_size=(1, 3, 3),
        stride=(1, stride, stride),
        padding=(0, 1, 1),
        bias=False,
    )


def _conv_t(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(
        in_planes,
        out_planes,
        kernel_size=(3, 1, 1),
        stride=(stride, 1, 1),
        padding=(1, 0, 0),
        bias=False,
    )


class BasicBlock2p1d(nn.Module):
    """Two (2+1)D convs; keys ``conv1_s, bn1_s, conv1_t, bn1_t, conv2_s, ..., bn2_t``.

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of ``conv1_s`` (H, W) and ``conv1_t`` (T).
        downsample: Shortcut module, or ``None`` for the identity.
    """

    expansion = 1

    def __init__(
        self, *, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        mid1 = mid_planes(in_planes, planes)
        self.conv1_s = _conv_s(in_planes, mid1, stride)
        self.bn1_s = nn.BatchNorm3d(mid1)
        self.conv1_t = _conv_t(mid1, planes, stride)
        self.bn1_t = nn.BatchNorm3d(planes)
        mid2 = mid_planes(planes, planes)
        self.conv2_s = _conv_s(planes, mid2)
        self.bn2_s = nn.BatchNorm3d(mid2)
        self.conv2_t = _conv_t(mid2, planes)
        self.bn2_t = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block on ``(N, C, T, H, W)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1_s(self.conv1_s(x)))
        out = self.relu(self.bn1_t(self.conv1_t(out)))
        out = self.relu(self.bn2_s(self.conv2_s(out)))
        out = self.bn2_t(self.conv2_t(out))
        return self.relu(out + identity)


class Bottleneck2p1d(nn.Module):
    """1×1×1 → (2+1)D 3×3×3 (strided) → 1×1×1 ×4; keys ``conv1, bn1, conv2_s, bn2_s, conv2_t,
    bn2_t, conv3, bn3``.

    Args:
        in_planes: Input channels.
        planes: Width of the (2+1)D conv; the block outputs ``4 * planes``.
        stride: Stride of ``conv2_s`` (H, W) and ``conv2_t`` (T).
        downsample: Shortcut module, or ``None`` for the identity.
    """

    expansion = 4

    def __init__(
        self, *, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        mid = mid_planes(planes, planes)
        self.conv2_s = _conv_s(planes, mid, stride)
        self.bn2_s = nn.BatchNorm3d(mid)
        self.conv2_t = _conv_t(mid, planes, stride)
        self.bn2_t = nn.BatchNorm3d(planes)
        self.conv3 = _conv1x1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block on ``(N, C, T, H, W)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2_s(self.conv2_s(out)))
        out = self.relu(self.bn2_t(self.conv2_t(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: Depth → (block, blocks per stage), as in Hara's ``models/resnet2p1d.py``.
DEPTHS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    depth: (BasicBlock2p1d if block is BasicBlock else Bottleneck2p1d, layers)
    for depth, (block, layers) in _RESNET_DEPTHS.items()
}


class HaraResNet2p1d(Backbone):
    """Hara et al.'s R(2+1)D ResNet (see the module docstring for the data flow).

    Args:
        block: :class:`BasicBlock2p1d` or :class:`Bottleneck2p1d`.
        layers: Blocks in layer1..layer4.
        num_classes: Rows of ``fc``.
        shortcut_type: ``"A"`` (zero-padded identity) or ``"B"`` (1×1×1 conv + BN).
        conv1_t_size: Temporal kernel of ``conv1_t`` (padding ``conv1_t_size // 2``).
        conv1_t_stride: Temporal stride of ``conv1_t``.
        no_max_pool: Skip the max-pool after the stem.
        widen_factor: Multiplies every width (64, 128, 256, 512), the stem's included.
    """

    def __init__(
        self,
        *,
        block: Block,
        layers: Sequence[int],
        num_classes: int = 400,
        shortcut_type: ShortcutType = "B",
        conv1_t_size: int = 7,
        conv1_t_stride: int = 1,
        no_max_pool: bool = False,
        widen_factor: float = 1.0,
    ) -> None:
        super().__init__()
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"shortcut_type must be 'A' or 'B', got {shortcut_type!r}")
        if len(layers) != 4:
            raise ValueError("layers needs one entry per stage (4)")
        self.arch_kwargs = {
            "num_classes": num_classes,
            "shortcut_type": shortcut_type,
            "conv1_t_size": conv1_t_size,
            "conv1_t_stride": conv1_t_stride,
            "no_max_pool": no_max_pool,
            "widen_factor": widen_factor,
        }
        widths = [int(w * widen_factor) for w in (64, 128, 256, 512)]
        self.num_classes = num_classes
        self.feature_dim = widths[3] * block.expansion
        self.no_max_pool = no_max_pool

        stem_mid = mid_planes(3, widths[0], t=conv1_t_size, k=7)
        self.conv1_s = nn.Conv3d(
            3, stem_mid, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False
        )
        self.bn1_s = nn.BatchNorm3d(stem_mid)
        self.conv1_t = nn.Conv3d(
            stem_mid,
            widths[0],
            kernel_size=(conv1_t_size, 1, 1),
            stride=(conv1_t_stride, 1, 1),
            padding=(conv1_t_size // 2, 0, 0),
            bias=False,
        )
        self.bn1_t = nn.BatchNorm3d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = make_stages(
            block, in_planes=widths[0], widths=widths, layers=layers, shortcut_type=shortcut_type
        )
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        init_weights(self)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` → layer4 output ``(N, D, t, h, w)``."""
        x = self.relu(self.bn1_s(self.conv1_s(x)))
        x = self.relu(self.bn1_t(self.conv1_t(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def resnet2p1d(
    depth: int,
    *,
    num_classes: int = 400,
    shortcut_type: ShortcutType = "B",
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
    widen_factor: float = 1.0,
) -> HaraResNet2p1d:
    """Build Hara et al.'s R(2+1)D ResNet of a given depth (registered as ``resnet2p1d-{depth}``).

    Args:
        depth: One of :data:`DEPTHS` (10, 18, 34, 50, 101, 152, 200).
        num_classes: Rows of ``fc`` (the published ``r2p1d*_K_200ep.pth``: 700).
        shortcut_type: ``"A"`` or ``"B"`` (the published files: B).
        conv1_t_size: Temporal kernel of ``conv1_t``.
        conv1_t_stride: Temporal stride of ``conv1_t``.
        no_max_pool: Skip the max-pool after the stem.
        widen_factor: Multiplies every width (Hara's ``--resnet_widen_factor``).

    Returns:
        A randomly initialized CPU model.

    Raises:
        ValueError: Unknown depth.
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth {depth} is not one of {sorted(DEPTHS)}")
    block, layers = DEPTHS[depth]
    return HaraResNet2p1d(
        block=block,
        layers=layers,
        num_classes=num_classes,
        shortcut_type=shortcut_type,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
        widen_factor=widen_factor,
    )


# Parameter counts (400 classes, shortcut B) and multiply-accumulates per 16×112×112 clip,
# measured with torch.utils.flop_counter and checked by tests/backbones/test_models.py.
_STATS: dict[int, tuple[int, float]] = {
    10: (14608044, 5.823),
    18: (33421164, 8.477),
    34: (63747500, 12.865),
    50: (47035382, 10.524),
    101: (86101110, 14.345),
    152: (118277110, 19.066),
    200: (127485942, 26.259),
}

for _depth, (_block, _layers) in DEPTHS.items():
    _params, _gmacs = _STATS[_depth]
    register_backbone(
        f"resnet2p1d-{_depth}",
        family="hara-resnet",
        block="basic-2+1d" if _block is BasicBlock2p1d else "bottleneck-2+1d",
        layers=_layers,
        feature_dim=512 * _block.expansion,
        default_meta="hara2020",
        formats=("hara2020", "feat3d"),
        stem="conv 1×7×7 /(1,2,2) + 7×1×1, BN, ReLU each, max-pool 3×3×3 /2",
        num_params=_params,
        gflops=_gmacs,
        paper=(
            "Tran et al., CVPR 2018, arXiv:1711.11248; Hara's 3D-ResNets-PyTorch (2020), "
            "Kataoka et al., arXiv:2004.04968"
        ),
    )(partial(resnet2p1d, _depth))
