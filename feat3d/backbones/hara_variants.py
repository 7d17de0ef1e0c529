"""Hara et al.'s ResNet variants: pre-activation ResNet, Wide ResNet and ResNeXt (3D).

K. Hara, H. Kataoka, Y. Satoh. "Can Spatiotemporal 3D CNNs Retrace the History of 2D CNNs
and ImageNet?" CVPR 2018 (arXiv:1711.09577). The Kinetics checkpoints of 2017
(``preresnet-200-kinetics.pth``, ``wideresnet-50-kinetics.pth``, ``resnext-101-kinetics.pth``)
were trained with github.com/kenshohara/3D-ResNets-PyTorch; the key names here are those of its
``models/pre_act_resnet.py``, ``wide_resnet.py`` and ``resnext.py``.

All three share :class:`~feat3d.backbones.hara_resnet.HaraResNet`'s stem, stages, shortcuts
and head; only the block and the widths differ (``(N, C, T, H, W)``, 16×112×112 input)::

    conv1 7×7×7 /(1,2,2) ─ bn1 ─ relu ─ maxpool 3 /2       stem_width × 8 × 28 × 28
    layer1 ─ layer2 /2 ─ layer3 /2 ─ layer4 /2             2048 × 1 × 4 × 4
    avgpool (global) ─ fc                                   (N, num_classes)

- pre-activation (He et al. 2016): BN → ReLU → conv inside each block, keys ``bn1, conv1,
  bn2, conv2[, bn3, conv3]``; ``bn1`` normalizes the block *input*. As in Hara's code there is
  no BN/ReLU after the last block, so the trunk output is the last residual sum.
- Wide ResNet (Zagoruyko & Komodakis 2016): a bottleneck with ``planes = 64·k·2^i`` and
  expansion 2: the 3×3×3 convs are half the block output instead of a quarter, so with
  k = 2 they are twice ResNet-50's at the same output width (128 → 256 in layer1,
  1024 → 2048 in layer4).
- ResNeXt (Xie et al. 2017): expansion 2, ``planes`` 128/256/512/1024, a grouped 3×3×3 conv
  with ``cardinality`` groups over ``cardinality · planes / 32`` channels (32 × 4d in layer1).
"""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from feat3d.backbones.blocks import ResidualBlock, conv1x1x1, conv3d
from feat3d.backbones.hara_resnet import (
    Block,
    Bottleneck,
    HaraResNet,
    StemOptions,
    from_depth,
    register_depths,
)
from feat3d.backbones.registry import register_backbone

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "PREACT_DEPTHS",
    "RESNEXT_DEPTHS",
    "WIDE_DEPTHS",
    "PreActBasicBlock",
    "PreActBottleneck",
    "ResNeXtBottleneck",
    "WideBottleneck",
    "preact_resnet",
    "resnext",
    "wide_resnet",
]


class PreActBasicBlock(ResidualBlock):
    """Pre-activation basic block: ``bn1 → relu → conv1`` (strided), ``bn2 → relu → conv2``.

    ``bn1`` normalizes the block input; no activation after the sum. Arguments: see
    :class:`~feat3d.backbones.blocks.ResidualBlock` (``planes``: output channels; the convs
    are always full 3×3×3).
    """

    relu_after_sum = False

    def build_branch(self, in_planes: int, planes: int, stride: int) -> None:
        """``bn1``, ``conv1`` (strided), ``bn2``, ``conv2``."""
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv3d(in_planes, planes, stride=(stride, stride))
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """BN → ReLU → conv, twice."""
        out = self.conv1(self.relu(self.bn1(x)))
        return self.conv2(self.relu(self.bn2(out)))


class PreActBottleneck(ResidualBlock):
    """Pre-activation bottleneck: BN → ReLU before each of 1×1×1, 3×3×3 (strided), 1×1×1 ×4.

    ``bn1`` normalizes the block input; no activation after the sum. Arguments: see
    :class:`~feat3d.backbones.blocks.ResidualBlock` (``planes``: width of the 3×3×3 conv).
    """

    expansion = 4
    relu_after_sum = False

    def build_branch(self, in_planes: int, planes: int, stride: int) -> None:
        """``bn1``, ``conv1``, ``bn2``, ``conv2`` (strided), ``bn3``, ``conv3``."""
        self.bn1 = nn.BatchNorm3d(in_planes)
        self.conv1 = conv1x1x1(in_planes, planes)
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, stride=(stride, stride))
        self.bn3 = nn.BatchNorm3d(planes)
        self.conv3 = conv1x1x1(planes, planes * self.expansion)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """BN → ReLU → conv, three times."""
        out = self.conv1(self.relu(self.bn1(x)))
        out = self.conv2(self.relu(self.bn2(out)))
        return self.conv3(self.relu(self.bn3(out)))


class WideBottleneck(Bottleneck):
    """Hara's ``WideBottleneck``: :class:`~feat3d.backbones.hara_resnet.Bottleneck` with
    expansion 2 (keys ``conv1..3``/``bn1..3``)."""

    expansion = 2


class ResNeXtBottleneck(Bottleneck):
    """ResNeXt bottleneck: 1×1×1 → grouped 3×3×3 (strided) → 1×1×1 ×2, keys ``conv1..3``/``bn1..3``.

    A :class:`~feat3d.backbones.hara_resnet.Bottleneck` with expansion 2 whose middle conv
    has ``cardinality`` groups over ``cardinality * (planes // 32)`` channels.

    Args:
        planes: Stage width; the block outputs ``2 * planes``.
        cardinality: Groups of ``conv2``.
        **kwargs: ``in_planes``, ``stride``, ``downsample``, ``conv_maker`` as for
            :class:`~feat3d.backbones.hara_resnet.Bottleneck`.
    """

    expansion = 2

    def __init__(self, *, planes: int, cardinality: int = 32, **kwargs: Any) -> None:
        super().__init__(
            planes=planes, width=cardinality * (planes // 32), groups=cardinality, **kwargs
        )


#: Depth → (block, blocks per stage), as in Hara's ``models/pre_act_resnet.py``.
PREACT_DEPTHS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    10: (PreActBasicBlock, (1, 1, 1, 1)),
    18: (PreActBasicBlock, (2, 2, 2, 2)),
    34: (PreActBasicBlock, (3, 4, 6, 3)),
    50: (PreActBottleneck, (3, 4, 6, 3)),
    101: (PreActBottleneck, (3, 4, 23, 3)),
    152: (PreActBottleneck, (3, 8, 36, 3)),
    200: (PreActBottleneck, (3, 24, 36, 3)),
}
#: Depth → blocks per stage of the registered Wide ResNets (Hara's 2017 code defines 50 only).
WIDE_DEPTHS: dict[int, tuple[int, int, int, int]] = {50: (3, 4, 6, 3)}
#: Depth → blocks per stage of the registered ResNeXts (Hara's 2017 ``models/resnext.py``).
RESNEXT_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    50: (3, 4, 6, 3),
    101: (3, 4, 23, 3),
    152: (3, 8, 36, 3),
}
_RESNEXT_WIDTHS = (128, 256, 512, 1024)


def preact_resnet(depth: int, **options: Unpack[StemOptions]) -> HaraResNet:
    """Build Hara et al.'s pre-activation 3D ResNet (registered as ``preact-resnet-{depth}``).

    Args:
        depth: One of :data:`PREACT_DEPTHS` (10, 18, 34, 50, 101, 152, 200).
        **options: :class:`~feat3d.backbones.hara_resnet.StemOptions`
            (``preresnet-200-kinetics.pth``: shortcut B).

    Returns:
        A randomly initialized CPU model.

    Raises:
        ValueError: Unknown depth.
    """
    return from_depth(PREACT_DEPTHS, depth, "pre-activation ResNet", **options)


def wide_resnet(
    depth: int, *, widen_factor: int = 2, stem_width: int = 64, **options: Unpack[StemOptions]
) -> HaraResNet:
    """Build Hara et al.'s 3D Wide ResNet (registered as ``wide-resnet-{depth}``).

    Args:
        depth: One of :data:`WIDE_DEPTHS` (50).
        widen_factor: ``k``: stage widths ``64k, 128k, 256k, 512k``, outputs twice that
            (``wideresnet-50-kinetics.pth``: 2).
        stem_width: Channels of ``conv1``: 64 in Hara's 2017 code, ``64 * k`` in his 2020 code.
        **options: :class:`~feat3d.backbones.hara_resnet.StemOptions` (the published file:
            shortcut B).

    Returns:
        A randomly initialized CPU model; ``feature_dim`` is ``1024 * k``.

    Raises:
        ValueError: Unknown depth, or a widen factor below 1.
    """
    if widen_factor < 1:
        raise ValueError(f"widen_factor must be a positive integer, got {widen_factor}")
    table = {d: (WideBottleneck, layers) for d, layers in WIDE_DEPTHS.items()}
    model = from_depth(
        table, depth, "Wide ResNet", widths=tuple(w * widen_factor for w in (64, 128, 256, 512)),
        stem_width=stem_width, **options,
    )  # fmt: skip
    model.arch_kwargs.update(widen_factor=widen_factor, stem_width=stem_width)
    return model


def resnext(
    depth: int, *, cardinality: int = 32, stem_width: int = 64, **options: Unpack[StemOptions]
) -> HaraResNet:
    """Build Hara et al.'s 3D ResNeXt (registered as ``resnext-{depth}``).

    Args:
        depth: One of :data:`RESNEXT_DEPTHS` (50, 101, 152).
        cardinality: Groups of every 3×3×3 conv (``resnext-101-kinetics.pth``: 32).
        stem_width: Channels of ``conv1``: 64 in Hara's 2017 code (his 2020 code would give
            128, the first stage width).
        **options: :class:`~feat3d.backbones.hara_resnet.StemOptions` (the published files:
            shortcut B).

    Returns:
        A randomly initialized CPU model; ``feature_dim`` is 2048.

    Raises:
        ValueError: Unknown depth, or a cardinality below 1.
    """
    if cardinality < 1:
        raise ValueError(f"cardinality must be a positive integer, got {cardinality}")
    table = {d: (ResNeXtBottleneck, layers) for d, layers in RESNEXT_DEPTHS.items()}
    model = from_depth(
        table, depth, "ResNeXt", widths=_RESNEXT_WIDTHS, stem_width=stem_width,
        block_kwargs={"cardinality": cardinality}, **options,
    )  # fmt: skip
    model.arch_kwargs.update(cardinality=cardinality, stem_width=stem_width)
    return model


# Parameter counts (400 classes, default options) and multiply-accumulates per 16×112×112
# clip, measured with torch.utils.flop_counter and checked by tests/backbones/test_models.py.
_PREACT_STATS: dict[int, tuple[int, float]] = {  # depth: (parameters, GMACs)
    10: (14603728, 5.654), 18: (33408208, 8.308), 34: (63717840, 12.696),
    50: (47014608, 10.069), 101: (86060752, 13.891), 152: (118219472, 18.611),
    200: (127419088, 25.805),
}  # fmt: skip
_WIDE_STATS: dict[int, tuple[int, float]] = {50: (158248272, 26.24)}
_RESNEXT_STATS: dict[int, tuple[int, float]] = {
    50: (26685264, 7.452),
    101: (48340816, 9.568),
    152: (66178896, 12.181),
}

_PAPER = "Hara et al., CVPR 2018, arXiv:1711.09577"
_STEM = "conv 7×7×7 /(1,2,2), BN, ReLU, max-pool 3×3×3 /2"
_FORMATS = ("hara2017", "hara2020", "feat3d")


def _register(name: str, builder: Any, stats: tuple[int, float], paper: str, **spec: Any) -> None:
    """One Hara et al. variant: their stem, checkpoint formats and normalization preset."""
    params, gmacs = stats
    register_backbone(
        name, family="hara-resnet", default_meta="hara2017", formats=_FORMATS, stem=_STEM,
        num_params=params, gmacs=gmacs, paper=f"{_PAPER}; {paper}", **spec,
    )(builder)  # fmt: skip


register_depths(
    "preact-resnet", preact_resnet, PREACT_DEPTHS, _PREACT_STATS,
    blocks=("preact-basic", "preact-bottleneck"), default_meta="hara2017", formats=_FORMATS,
    stem=_STEM, paper=f"{_PAPER}; He et al., ECCV 2016, arXiv:1603.05027",
)  # fmt: skip
for _depth, _layers in WIDE_DEPTHS.items():
    _register(
        f"wide-resnet-{_depth}", partial(wide_resnet, _depth), _WIDE_STATS[_depth],
        "Zagoruyko & Komodakis, BMVC 2016, arXiv:1605.07146", layers=_layers,
        block="wide-bottleneck", feature_dim=2048, widths=(128, 256, 512, 1024),
    )  # fmt: skip
for _depth, _layers in RESNEXT_DEPTHS.items():
    _register(
        f"resnext-{_depth}", partial(resnext, _depth), _RESNEXT_STATS[_depth],
        "Xie et al., CVPR 2017, arXiv:1611.05431", layers=_layers,
        block="resnext-bottleneck", feature_dim=2048, widths=_RESNEXT_WIDTHS,
    )  # fmt: skip
