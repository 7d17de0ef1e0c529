"""3D ResNets in the layout of Hara et al., with their exact state-dict key names.

K. Hara, H. Kataoka, Y. Satoh. "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs
and ImageNet?" CVPR 2018 (arXiv:1711.09577); "Learning Spatio-Temporal Features with 3D
Residual Networks for Action Recognition", ICCV-W 2017 (arXiv:1708.07632). Checkpoints come
from github.com/kenshohara/3D-ResNets-PyTorch (2020, ``r3d18_K_200ep.pth``, ...) and
github.com/kenshohara/video-classification-3d-cnn-pytorch (2017, ``resnet-34-kinetics.pth``).

Data flow (``(N, C, T, H, W)``, 16×112×112 input)::

    conv1 7×7×7 /(1,2,2) ─ bn1 ─ relu ─ maxpool 3 /2     64 × 8 × 28 × 28
    layer1                                                64·e × 8 × 28 × 28
    layer2 /2 ─ layer3 /2 ─ layer4 /2                    512·e × 1 × 4 × 4
    avgpool (global) ─ fc                                 (N, num_classes)

``e`` is the block expansion (1 basic, 4 bottleneck). The first block of layer2-4 strides in
T, H and W; its 3×3×3 conv carries the stride (``conv1`` in a basic block, ``conv2`` in a
bottleneck). Shortcut ``"A"`` is parameter-free (strided identity, zero-padded channels),
``"B"`` a strided 1×1×1 conv + BN stored as ``downsample.0`` / ``downsample.1``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from feat3d.backbones.registry import Backbone, register_backbone

__all__ = [
    "DEPTHS",
    "BasicBlock",
    "Bottleneck",
    "HaraResNet",
    "ZeroPadShortcut",
    "hara_resnet",
    "init_weights",
    "make_stage",
    "make_stages",
]

ShortcutType = Literal["A", "B"]


class ZeroPadShortcut(nn.Module):
    """Shortcut "A": strided identity with zero-padded channels; no parameters, no keys.

    Equivalent to Hara's ``F.avg_pool3d(x, kernel_size=1, stride=stride)`` followed by
    concatenating zeros up to ``out_channels``.

    Args:
        out_channels: Channels after padding.
        stride: Stride in T, H and W.
    """

    def __init__(self, *, out_channels: int, stride: int) -> None:
        super().__init__()
        self.out_channels = out_channels
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Subsample ``(N, C, T, H, W)`` by ``stride`` and pad channels to ``out_channels``."""
        s = self.stride
        out = x[:, :, ::s, ::s, ::s] if s != 1 else x
        return F.pad(out, (0, 0, 0, 0, 0, 0, 0, self.out_channels - out.shape[1]))

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f"out_channels={self.out_channels}, stride={self.stride}"


def _conv3x3x3(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def _conv1x1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3×3×3 convs (``conv1``/``bn1``, ``conv2``/``bn2``); ``conv1`` carries the stride.

    Args:
        in_planes: Input channels.
        planes: Output channels.
        stride: Stride of ``conv1`` in T, H and W.
        downsample: Shortcut module, or ``None`` for the identity.
    """

    expansion = 1

    def __init__(
        self, *, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv3x3x3(in_planes, planes, stride)
        self.bn1 = nn.BatchNorm3d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = _conv3x3x3(planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block on ``(N, C, T, H, W)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1×1 → 3×3×3 (strided) → 1×1×1 ×4 convs, keys ``conv1..3``/``bn1..3``.

    Args:
        in_planes: Input channels.
        planes: Width of the 3×3×3 conv; the block outputs ``4 * planes``.
        stride: Stride of ``conv2`` in T, H and W.
        downsample: Shortcut module, or ``None`` for the identity.
    """

    expansion = 4

    def __init__(
        self, *, in_planes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None
    ) -> None:
        super().__init__()
        self.conv1 = _conv1x1x1(in_planes, planes)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = _conv3x3x3(planes, planes, stride)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = _conv1x1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block on ``(N, C, T, H, W)``."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


#: A residual block class: an ``expansion`` class attribute (output channels per ``planes``)
#: and keyword arguments ``in_planes``, ``planes``, ``stride``, ``downsample`` (plus any
#: block-specific ones, e.g. ResNeXt's ``cardinality``).
Block = type[nn.Module]


def make_stage(
    block: Block,
    *,
    in_planes: int,
    planes: int,
    blocks: int,
    shortcut_type: ShortcutType,
    stride: int,
    **block_kwargs: Any,
) -> nn.Sequential:
    """One stage (``layerN``) of Hara's ResNets, their variants and their (2+1)D version.

    The first block carries the stride; it gets a shortcut when the stride or the width
    changes: :class:`ZeroPadShortcut` for ``"A"``, a strided 1×1×1 conv + BN
    (``downsample.0`` / ``downsample.1``) for ``"B"``.

    Args:
        block: The block class.
        in_planes: Channels entering the stage.
        planes: The blocks' ``planes``; the stage outputs ``planes * block.expansion``.
        blocks: Number of blocks.
        shortcut_type: ``"A"`` or ``"B"``.
        stride: Stride of the first block in T, H and W.
        **block_kwargs: Passed to every block (e.g. ``cardinality``).

    Returns:
        The blocks as an ``nn.Sequential`` (keys ``0``, ``1``, ...).
    """
    out_planes = planes * block.expansion
    downsample: nn.Module | None = None
    if stride != 1 or in_planes != out_planes:
        if shortcut_type == "A":
            downsample = ZeroPadShortcut(out_channels=out_planes, stride=stride)
        else:
            downsample = nn.Sequential(
                _conv1x1x1(in_planes, out_planes, stride), nn.BatchNorm3d(out_planes)
            )
    stage = [
        block(
            in_planes=in_planes,
            planes=planes,
            stride=stride,
            downsample=downsample,
            **block_kwargs,
        )
    ]
    stage += [block(in_planes=out_planes, planes=planes, **block_kwargs) for _ in range(1, blocks)]
    return nn.Sequential(*stage)


def make_stages(
    block: Block,
    *,
    in_planes: int,
    widths: Sequence[int],
    layers: Sequence[int],
    shortcut_type: ShortcutType,
    **block_kwargs: Any,
) -> list[nn.Sequential]:
    """The four stages (``layer1`` .. ``layer4``): stride 1 for the first, 2 for the others.

    Args:
        block: The block class.
        in_planes: Channels entering ``layer1`` (the stem's width).
        widths: The blocks' ``planes`` per stage.
        layers: Blocks per stage.
        shortcut_type: ``"A"`` or ``"B"``.
        **block_kwargs: Passed to every block.
    """
    stages = []
    for i, (planes, blocks) in enumerate(zip(widths, layers, strict=True)):
        stages.append(
            make_stage(
                block,
                in_planes=in_planes,
                planes=planes,
                blocks=blocks,
                shortcut_type=shortcut_type,
                stride=1 if i == 0 else 2,
                **block_kwargs,
            )
        )
        in_planes = planes * block.expansion
    return stages


def init_weights(model: nn.Module) -> None:
    """Hara's 2020 initialization: Kaiming-normal convs (fan-out), BN weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


#: Depth → (block, blocks per stage), as in Hara's ``models/resnet.py``.
DEPTHS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    10: (BasicBlock, (1, 1, 1, 1)),
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
    200: (Bottleneck, (3, 24, 36, 3)),
}


class HaraResNet(Backbone):
    """Hara et al.'s 3D ResNet (see the module docstring for the data flow).

    Args:
        block: :class:`BasicBlock`, :class:`Bottleneck` or a variant's block
            (:mod:`feat3d.backbones.hara_variants`).
        layers: Blocks in layer1..layer4.
        num_classes: Rows of ``fc``.
        shortcut_type: ``"A"`` (zero-padded identity) or ``"B"`` (1×1×1 conv + BN).
        conv1_t_size: Temporal kernel of ``conv1`` (padding ``conv1_t_size // 2``).
        conv1_t_stride: Temporal stride of ``conv1``.
        no_max_pool: Skip the max-pool after ``conv1``.
        widths: The blocks' ``planes`` per stage.
        stem_width: Output channels of ``conv1`` (64 in every published layout but Hara's
            2020 code for Wide ResNets, which uses ``widths[0]``).
        block_kwargs: Extra keyword arguments for every block (ResNeXt's ``cardinality``).
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
        widths: Sequence[int] = (64, 128, 256, 512),
        stem_width: int = 64,
        block_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"shortcut_type must be 'A' or 'B', got {shortcut_type!r}")
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError("layers and widths need one entry per stage (4)")
        self.arch_kwargs = {
            "num_classes": num_classes,
            "shortcut_type": shortcut_type,
            "conv1_t_size": conv1_t_size,
            "conv1_t_stride": conv1_t_stride,
            "no_max_pool": no_max_pool,
        }
        self.num_classes = num_classes
        self.feature_dim = widths[3] * block.expansion
        self.no_max_pool = no_max_pool

        self.conv1 = nn.Conv3d(
            3,
            stem_width,
            kernel_size=(conv1_t_size, 7, 7),
            stride=(conv1_t_stride, 2, 2),
            padding=(conv1_t_size // 2, 3, 3),
            bias=False,
        )
        self.bn1 = nn.BatchNorm3d(stem_width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = make_stages(
            block,
            in_planes=stem_width,
            widths=widths,
            layers=layers,
            shortcut_type=shortcut_type,
            **(block_kwargs or {}),
        )
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        init_weights(self)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` → layer4 output ``(N, D, t, h, w)``."""
        x = self.relu(self.bn1(self.conv1(x)))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def hara_resnet(
    depth: int,
    *,
    num_classes: int = 400,
    shortcut_type: ShortcutType = "B",
    conv1_t_size: int = 7,
    conv1_t_stride: int = 1,
    no_max_pool: bool = False,
) -> HaraResNet:
    """Build Hara et al.'s 3D ResNet of a given depth (registered as ``resnet-{depth}``).

    Args:
        depth: One of :data:`DEPTHS` (10, 18, 34, 50, 101, 152, 200).
        num_classes: Rows of ``fc``.
        shortcut_type: ``"A"`` (the 2017 checkpoints of depth 10/18/34) or ``"B"``.
        conv1_t_size: Temporal kernel of ``conv1``.
        conv1_t_stride: Temporal stride of ``conv1``.
        no_max_pool: Skip the max-pool after ``conv1``.

    Returns:
        A randomly initialized CPU model.

    Raises:
        ValueError: Unknown depth.
    """
    if depth not in DEPTHS:
        raise ValueError(f"depth {depth} is not one of {sorted(DEPTHS)}")
    block, layers = DEPTHS[depth]
    return HaraResNet(
        block=block,
        layers=layers,
        num_classes=num_classes,
        shortcut_type=shortcut_type,
        conv1_t_size=conv1_t_size,
        conv1_t_stride=conv1_t_stride,
        no_max_pool=no_max_pool,
    )


# Parameter counts (400 classes, shortcut B) and multiply-accumulates per 16×112×112 clip,
# measured with torch.utils.flop_counter and checked by tests/backbones/test_registry.py.
_STATS: dict[int, tuple[int, float]] = {
    10: (14604624, 5.654),
    18: (33409104, 8.308),
    34: (63718736, 12.696),
    50: (47018576, 10.069),
    101: (86064720, 13.891),
    152: (118223440, 18.611),
    200: (127423056, 25.805),
}

_PAPER = "Hara et al., CVPR 2018, arXiv:1711.09577"
_STEM = "conv 7×7×7 /(1,2,2), BN, ReLU, max-pool 3×3×3 /2"

for _depth, (_block, _layers) in DEPTHS.items():
    _params, _gmacs = _STATS[_depth]
    register_backbone(
        f"resnet-{_depth}",
        family="hara-resnet",
        block="basic" if _block is BasicBlock else "bottleneck",
        layers=_layers,
        feature_dim=512 * _block.expansion,
        default_meta="hara2020",
        formats=("hara2017", "hara2020", "feat3d"),
        stem=_STEM,
        num_params=_params,
        gflops=_gmacs,
        paper=_PAPER,
    )(partial(hara_resnet, _depth))
