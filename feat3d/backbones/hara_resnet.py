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

:class:`HaraResNet` is the one network class of Hara's ResNet family: the stem and the
blocks' 3×3×3 convs come from conv makers (:mod:`feat3d.backbones.blocks`), like torchvision's
``VideoResNet``, so the same class also builds the R(2+1)D ResNets
(:mod:`feat3d.backbones.resnet2p1d`) and, with other blocks, the pre-activation, Wide and
ResNeXt variants (:mod:`feat3d.backbones.hara_variants`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any, Literal, TypedDict

import torch
import torch.nn.functional as F
from torch import nn

from feat3d.backbones.blocks import (
    CONV_3D,
    ConvMaker,
    ResidualBlock,
    conv1x1x1,
    init_weights,
)
from feat3d.backbones.registry import Backbone, register_backbone

if TYPE_CHECKING:
    from typing_extensions import Unpack

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


class BasicBlock(ResidualBlock):
    """Two conv + BN units from a conv maker; the first carries the stride.

    Keys ``conv1``/``bn1``, ``conv2``/``bn2`` with :data:`~feat3d.backbones.blocks.CONV_3D`
    (the class default), ``conv1_s``/``bn1_s``/``conv1_t``/``bn1_t``, ... with
    :data:`~feat3d.backbones.blocks.CONV_2PLUS1D`. Arguments: see
    :class:`~feat3d.backbones.blocks.ResidualBlock` (``planes``: output channels).
    """

    def build_branch(self, in_planes: int, planes: int, stride: int) -> None:
        """``conv_maker`` units 1 (strided) and 2."""
        self.conv_maker.build(self, 1, in_planes, planes, stride=(stride, stride))
        self.conv_maker.build(self, 2, planes, planes)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """unit 1 → ReLU → unit 2."""
        return self.conv_maker(self, 2, self.relu(self.conv_maker(self, 1, x)))


class Bottleneck(ResidualBlock):
    """1×1×1 → conv maker's unit (strided) → 1×1×1 ×4 convs, keys ``conv1..3``/``bn1..3``.

    The middle unit's keys are the conv maker's (``conv2``/``bn2`` for the default
    :data:`~feat3d.backbones.blocks.CONV_3D`, ``conv2_s``/``bn2_s``/``conv2_t``/``bn2_t`` for
    :data:`~feat3d.backbones.blocks.CONV_2PLUS1D`). Arguments: see
    :class:`~feat3d.backbones.blocks.ResidualBlock` (``planes``: the stage width), and
    ``width`` (channels of the middle unit, default ``planes``) and ``groups`` (of the middle
    conv, ResNeXt's cardinality).
    """

    expansion = 4

    def build_branch(
        self, in_planes: int, planes: int, stride: int, *, width: int | None = None, groups: int = 1
    ) -> None:
        """``conv1``/``bn1``, the conv maker's unit 2 (strided, grouped), ``conv3``/``bn3``."""
        width = planes if width is None else width
        out_planes = planes * self.expansion
        self.conv1 = conv1x1x1(in_planes, width)
        self.bn1 = nn.BatchNorm3d(width)
        self.conv_maker.build(self, 2, width, width, stride=(stride, stride), groups=groups)
        self.conv3 = conv1x1x1(width, out_planes)
        self.bn3 = nn.BatchNorm3d(out_planes)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """1×1×1 → ReLU → unit 2 → ReLU → 1×1×1."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.conv_maker(self, 2, out))
        return self.bn3(self.conv3(out))


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
    conv_maker: ConvMaker | None = None,
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
        conv_maker: Passed to every block when given (blocks that take one); ``None``
            leaves each block its default.
        **block_kwargs: Passed to every block (e.g. ``cardinality``).

    Returns:
        The blocks as an ``nn.Sequential`` (keys ``0``, ``1``, ...).
    """
    if conv_maker is not None:
        block_kwargs["conv_maker"] = conv_maker
    out_planes = planes * block.expansion
    downsample: nn.Module | None = None
    if stride != 1 or in_planes != out_planes:
        if shortcut_type == "A":
            downsample = ZeroPadShortcut(out_channels=out_planes, stride=stride)
        else:
            downsample = nn.Sequential(
                conv1x1x1(in_planes, out_planes, stride), nn.BatchNorm3d(out_planes)
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
    conv_makers: Sequence[ConvMaker] | None = None,
    **block_kwargs: Any,
) -> list[nn.Sequential]:
    """The four stages (``layer1`` .. ``layer4``): stride 1 for the first, 2 for the others.

    Args:
        block: The block class.
        in_planes: Channels entering ``layer1`` (the stem's width).
        widths: The blocks' ``planes`` per stage.
        layers: Blocks per stage.
        shortcut_type: ``"A"`` or ``"B"``.
        conv_makers: One conv maker per stage, or ``None`` for the block's own.
        **block_kwargs: Passed to every block.
    """
    makers = [None] * len(layers) if conv_makers is None else conv_makers
    stages = []
    for i, (planes, blocks, maker) in enumerate(zip(widths, layers, makers, strict=True)):
        stages.append(
            make_stage(
                block,
                in_planes=in_planes,
                planes=planes,
                blocks=blocks,
                shortcut_type=shortcut_type,
                stride=1 if i == 0 else 2,
                conv_maker=maker,
                **block_kwargs,
            )
        )
        in_planes = planes * block.expansion
    return stages


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
    """Hara et al.'s 3D ResNet, its variants and its (2+1)D version (see the module docstring).

    The stem and the blocks' 3×3×3 units come from conv makers, as in torchvision's
    ``VideoResNet``: :data:`~feat3d.backbones.blocks.CONV_3D` gives the 3D ResNet
    (``conv1``/``bn1``), :data:`~feat3d.backbones.blocks.CONV_2PLUS1D` the R(2+1)D ResNet
    (``conv1_s``/``bn1_s``/``conv1_t``/``bn1_t``, the stem's spatial conv to
    ``mid_planes(3, stem_width, t=conv1_t_size, k=7)`` channels).

    Args:
        block: :class:`BasicBlock`, :class:`Bottleneck` or a variant's block
            (:mod:`feat3d.backbones.hara_variants`, :mod:`feat3d.backbones.resnet2p1d`).
        layers: Blocks in layer1..layer4.
        num_classes: Rows of ``fc``.
        shortcut_type: ``"A"`` (zero-padded identity) or ``"B"`` (1×1×1 conv + BN).
        conv1_t_size: Temporal kernel of the stem (padding ``conv1_t_size // 2``).
        conv1_t_stride: Temporal stride of the stem.
        no_max_pool: Skip the max-pool after the stem.
        widths: The blocks' ``planes`` per stage.
        stem_width: Output channels of the stem (64 in every published layout but Hara's
            2020 code for Wide ResNets and widened (2+1)D nets, which use ``widths[0]``).
        block_kwargs: Extra keyword arguments for every block (ResNeXt's ``cardinality``).
        conv_makers: One conv maker per stage for the blocks, or ``None`` for each block
            class's own (:attr:`BasicBlock.conv_maker`).
        stem_conv: The stem's conv maker (kernel ``conv1_t_size×7×7``, stride
            ``(conv1_t_stride, 2, 2)``).
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
        conv_makers: Sequence[ConvMaker] | None = None,
        stem_conv: ConvMaker = CONV_3D,
    ) -> None:
        super().__init__()
        if shortcut_type not in ("A", "B"):
            raise ValueError(f"shortcut_type must be 'A' or 'B', got {shortcut_type!r}")
        if len(layers) != 4 or len(widths) != 4:
            raise ValueError("layers and widths need one entry per stage (4)")
        if conv_makers is not None and len(conv_makers) != 4:
            raise ValueError("conv_makers needs one entry per stage (4)")
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

        self.stem_conv = stem_conv
        stem_conv.build(
            self, 1, 3, stem_width, kernel=(conv1_t_size, 7), stride=(conv1_t_stride, 2)
        )
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d(kernel_size=3, stride=2, padding=1)
        self.layer1, self.layer2, self.layer3, self.layer4 = make_stages(
            block,
            in_planes=stem_width,
            widths=widths,
            layers=layers,
            shortcut_type=shortcut_type,
            conv_makers=conv_makers,
            **(block_kwargs or {}),
        )
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.fc = nn.Linear(self.feature_dim, num_classes)
        init_weights(self)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` → layer4 output ``(N, D, t, h, w)``."""
        x = self.relu(self.stem_conv(self, 1, x))
        if not self.no_max_pool:
            x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


class StemOptions(TypedDict, total=False):
    """The options every builder of Hara et al.'s family takes, recorded in ``arch_kwargs``;
    the defaults are :class:`HaraResNet`'s.

    Attributes:
        num_classes: Rows of ``fc`` (400).
        shortcut_type: ``"A"`` (the 2017 checkpoints of depth 10/18/34) or ``"B"`` (default).
        conv1_t_size: Temporal kernel of the stem's conv (7).
        conv1_t_stride: Temporal stride of the stem's conv (1).
        no_max_pool: Skip the max-pool after the stem (``False``).
    """

    num_classes: int
    shortcut_type: ShortcutType
    conv1_t_size: int
    conv1_t_stride: int
    no_max_pool: bool


def from_depth(
    table: Mapping[int, tuple[Block, Sequence[int]]], depth: int, what: str, **options: Any
) -> HaraResNet:
    """A :class:`HaraResNet` of the block and stage depths ``table`` lists for ``depth``.

    Raises:
        ValueError: ``depth`` is not in ``table`` (``what`` names the family).
    """
    if depth not in table:
        raise ValueError(f"{what} depth {depth} is not one of {sorted(table)}")
    block, layers = table[depth]
    return HaraResNet(block=block, layers=layers, **options)


def hara_resnet(depth: int, **options: Unpack[StemOptions]) -> HaraResNet:
    """Build Hara et al.'s 3D ResNet of a given depth (registered as ``resnet-{depth}``).

    Args:
        depth: One of :data:`DEPTHS` (10, 18, 34, 50, 101, 152, 200).
        **options: :class:`StemOptions`.

    Returns:
        A randomly initialized CPU model.

    Raises:
        ValueError: Unknown depth.
    """
    return from_depth(DEPTHS, depth, "ResNet", **options)


# Parameter counts (400 classes, shortcut B) and multiply-accumulates per 16×112×112 clip,
# measured with torch.utils.flop_counter and checked by tests/backbones/test_registry.py.
_STATS: dict[int, tuple[int, float]] = {  # depth: (parameters, GMACs)
    10: (14604624, 5.654), 18: (33409104, 8.308), 34: (63718736, 12.696),
    50: (47018576, 10.069), 101: (86064720, 13.891), 152: (118223440, 18.611),
    200: (127423056, 25.805),
}  # fmt: skip

_PAPER = "Hara et al., CVPR 2018, arXiv:1711.09577"
_STEM = "conv 7×7×7 /(1,2,2), BN, ReLU, max-pool 3×3×3 /2"


def register_depths(
    prefix: str,
    builder: Callable[..., HaraResNet],
    table: Mapping[int, tuple[Block, Sequence[int]]],
    stats: Mapping[int, tuple[int, float]],
    *,
    blocks: tuple[str, str],
    **spec: Any,
) -> None:
    """Register ``builder`` as ``{prefix}-{depth}`` at every depth of ``table``, with that
    depth's parameter count and GMACs from ``stats``; ``blocks`` names the basic and the
    bottleneck block."""
    for depth, (block, layers) in table.items():
        params, gmacs = stats[depth]
        register_backbone(
            f"{prefix}-{depth}", family="hara-resnet", block=blocks[block.expansion > 1],
            layers=layers, feature_dim=512 * block.expansion, num_params=params, gmacs=gmacs,
            **spec,
        )(partial(builder, depth))  # fmt: skip


register_depths(
    "resnet", hara_resnet, DEPTHS, _STATS, blocks=("basic", "bottleneck"),
    default_meta="hara2020", formats=("hara2017", "hara2020", "feat3d"), stem=_STEM,
    paper=_PAPER,
)  # fmt: skip
