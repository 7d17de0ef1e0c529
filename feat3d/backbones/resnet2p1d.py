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

The network is :class:`~feat3d.backbones.hara_resnet.HaraResNet` with the (2+1)D conv maker
:data:`~feat3d.backbones.blocks.CONV_2PLUS1D` in the stem and every block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from feat3d.backbones.blocks import CONV_2PLUS1D, mid_planes
from feat3d.backbones.hara_resnet import (
    DEPTHS as _RESNET_DEPTHS,
)
from feat3d.backbones.hara_resnet import (
    BasicBlock,
    Block,
    Bottleneck,
    HaraResNet,
    StemOptions,
    from_depth,
    register_depths,
)

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = [
    "DEPTHS",
    "BasicBlock2p1d",
    "Bottleneck2p1d",
    "mid_planes",
    "resnet2p1d",
]


class BasicBlock2p1d(BasicBlock):
    """:class:`~feat3d.backbones.hara_resnet.BasicBlock` with (2+1)D convs.

    Keys ``conv1_s, bn1_s, conv1_t, bn1_t, conv2_s, ..., bn2_t``; ``conv1_s`` (H, W) and
    ``conv1_t`` (T) carry the stride.
    """

    conv_maker = CONV_2PLUS1D


class Bottleneck2p1d(Bottleneck):
    """:class:`~feat3d.backbones.hara_resnet.Bottleneck` with a (2+1)D middle conv.

    Keys ``conv1, bn1, conv2_s, bn2_s, conv2_t, bn2_t, conv3, bn3``; ``conv2_s`` (H, W) and
    ``conv2_t`` (T) carry the stride.
    """

    conv_maker = CONV_2PLUS1D


#: Depth → (block, blocks per stage), as in Hara's ``models/resnet2p1d.py``.
DEPTHS: dict[int, tuple[Block, tuple[int, int, int, int]]] = {
    depth: (BasicBlock2p1d if block is BasicBlock else Bottleneck2p1d, layers)
    for depth, (block, layers) in _RESNET_DEPTHS.items()
}


def resnet2p1d(
    depth: int, *, widen_factor: float = 1.0, **options: Unpack[StemOptions]
) -> HaraResNet:
    """Build Hara et al.'s R(2+1)D ResNet of a given depth (registered as ``resnet2p1d-{depth}``).

    A :class:`~feat3d.backbones.hara_resnet.HaraResNet` whose stem and blocks use
    :data:`~feat3d.backbones.blocks.CONV_2PLUS1D`.

    Args:
        depth: One of :data:`DEPTHS` (10, 18, 34, 50, 101, 152, 200).
        widen_factor: Multiplies every width (64, 128, 256, 512), the stem's included
            (Hara's ``--resnet_widen_factor``).
        **options: :class:`~feat3d.backbones.hara_resnet.StemOptions`; the stem's temporal
            conv is ``conv1_t`` (the published ``r2p1d*_K_200ep.pth``: 700 classes,
            shortcut B).

    Returns:
        A randomly initialized CPU model.

    Raises:
        ValueError: Unknown depth.
    """
    widths = tuple(int(w * widen_factor) for w in (64, 128, 256, 512))
    model = from_depth(
        DEPTHS, depth, "R(2+1)D ResNet", widths=widths, stem_width=widths[0],
        stem_conv=CONV_2PLUS1D, **options,
    )  # fmt: skip
    model.arch_kwargs.update(widen_factor=widen_factor)
    return model


# Parameter counts (400 classes, shortcut B) and multiply-accumulates per 16×112×112 clip,
# measured with torch.utils.flop_counter and checked by tests/backbones/test_models.py.
_STATS: dict[int, tuple[int, float]] = {  # depth: (parameters, GMACs)
    10: (14608044, 5.823), 18: (33421164, 8.477), 34: (63747500, 12.865),
    50: (47035382, 10.524), 101: (86101110, 14.345), 152: (118277110, 19.066),
    200: (127485942, 26.259),
}  # fmt: skip

register_depths(
    "resnet2p1d", resnet2p1d, DEPTHS, _STATS, blocks=("basic-2+1d", "bottleneck-2+1d"),
    default_meta="hara2020", formats=("hara2020", "feat3d"),
    stem="conv 1×7×7 /(1,2,2) + 7×1×1, BN, ReLU each, max-pool 3×3×3 /2",
    paper="Tran et al., CVPR 2018, arXiv:1711.11248; Hara's 3D-ResNets-PyTorch (2020), "
    "Kataoka et al., arXiv:2004.04968",
)  # fmt: skip
