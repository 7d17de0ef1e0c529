"""torchvision's video ResNets (R3D, MC3, R(2+1)D) with torchvision's exact key names.

D. Tran, H. Wang, L. Torresani, J. Ray, Y. LeCun, M. Paluri. "A Closer Look at
Spatiotemporal Convolutions for Action Recognition." CVPR 2018 (arXiv:1711.11248).
Layout follows ``torchvision/models/video/resnet.py``, so torchvision's Kinetics-400 files
(``r3d_18-b3b3357e.pth``, ...) load strictly.

There is one network class, :class:`VideoResNet`; the variants are data. A conv maker
(:class:`Conv3DSimple`, :class:`Conv3DNoTemporal`, :class:`Conv2Plus1D`) builds the 3×3×3 (or
factorised) convolution of a block and says, through ``get_downsample_stride``, how the 1×1×1
shortcut must stride to match it, so a single ``_make_layer`` builds every variant, including
R(2+1)D-34 in the layout of the IG-65M files of moabitcoin/ig65m-pytorch (converted from
Caffe2, whose first block of stages 2–4 computes ``conv2``'s middle width from its own input,
not from the block's: ``caffe2_mid=True``)::

    stem ─ layer1 ─ layer2 /2 ─ layer3 /2 ─ layer4 /2 ─ avgpool (global) ─ fc
    (N, 3, T, H, W)                        (N, 512·e, t, h, w)    (N, 512·e)   (N, classes)
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from feat3d.backbones.blocks import ResidualBlock, conv1x1x1, init_weights, mid_planes
from feat3d.backbones.registry import Backbone, register_backbone

__all__ = [
    "BasicBlock",
    "BasicStem",
    "Bottleneck",
    "Conv2Plus1D",
    "Conv3DNoTemporal",
    "Conv3DSimple",
    "R2Plus1dStem",
    "VideoResNet",
    "mc3_18",
    "r2plus1d_18",
    "r2plus1d_34",
    "r3d_18",
]

StrideTriple = tuple[int, int, int]


class Conv3DSimple(nn.Conv3d):
    """Full 3×3×3 convolution (R3D).

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        midplanes: Unused; shared signature with :class:`Conv2Plus1D`.
        stride: Stride in T, H and W (in H and W only, for :class:`Conv3DNoTemporal`).
        padding: Padding in T, H and W (likewise).
    """

    #: Whether the conv reaches across frames (3×3×3) or stays in one (1×3×3).
    temporal = True

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        midplanes: int | None = None,
        stride: int = 1,
        padding: int = 1,
    ) -> None:
        t = 1 if self.temporal else 0  # the kernel's temporal half-width
        super().__init__(
            in_planes, out_planes, kernel_size=(1 + 2 * t, 3, 3),
            stride=self.get_downsample_stride(stride), padding=(t * padding, padding, padding),
            bias=False,
        )  # fmt: skip

    @classmethod
    def get_downsample_stride(cls, stride: int) -> StrideTriple:
        """Shortcut stride matching this conv: ``(stride, stride, stride)``, or
        ``(1, stride, stride)`` when it does not reach across frames."""
        return (stride if cls.temporal else 1), stride, stride


class Conv3DNoTemporal(Conv3DSimple):
    """Spatial-only 1×3×3 convolution (the 2D stages of MC3), with the arguments of
    :class:`Conv3DSimple`."""

    temporal = False


class Conv2Plus1D(nn.Sequential):
    """(2+1)D factorisation: 1×3×3 spatial conv to ``midplanes``, BN, ReLU, 3×1×1 temporal conv.

    Keys: ``0`` (spatial conv), ``1`` (BN), ``3`` (temporal conv).

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        midplanes: Channels between the spatial and the temporal conv.
        stride: Stride in T (temporal conv) and H, W (spatial conv).
        padding: Padding in T, H and W.
    """

    def __init__(
        self, in_planes: int, out_planes: int, midplanes: int, stride: int = 1, padding: int = 1
    ) -> None:
        super().__init__(
            nn.Conv3d(
                in_planes,
                midplanes,
                kernel_size=(1, 3, 3),
                stride=(1, stride, stride),
                padding=(0, padding, padding),
                bias=False,
            ),
            nn.BatchNorm3d(midplanes),
            nn.ReLU(inplace=True),
            nn.Conv3d(
                midplanes,
                out_planes,
                kernel_size=(3, 1, 1),
                stride=(stride, 1, 1),
                padding=(padding, 0, 0),
                bias=False,
            ),
        )

    @staticmethod
    def get_downsample_stride(stride: int) -> StrideTriple:
        """Shortcut stride matching this conv: ``(stride, stride, stride)``."""
        return stride, stride, stride


ConvMaker = type[Conv3DSimple] | type[Conv3DNoTemporal] | type[Conv2Plus1D]


class BasicBlock(ResidualBlock):
    """Two convs from ``conv_maker``: keys ``conv1.0``/``conv1.1`` and ``conv2.0``/``conv2.1``.

    Arguments: see :class:`~feat3d.backbones.blocks.ResidualBlock`, with ``conv_maker`` a
    torchvision conv class for both convs (default :class:`Conv3DSimple`) and
    ``planes`` the output channels.
    """

    conv_maker: ConvMaker = Conv3DSimple  # type: ignore[assignment]

    def build_branch(
        self, in_planes: int, planes: int, stride: int, *, caffe2_mid: bool = False
    ) -> None:
        """``conv1`` (conv, BN, ReLU; strided) and ``conv2`` (conv, BN).

        Args:
            in_planes: Input channels.
            planes: Output channels.
            stride: Stride of ``conv1``.
            caffe2_mid: Give ``conv2`` the middle width of its own ``planes → planes`` conv
                (Caffe2's R(2+1)D, layer2.0: 230 and 288) instead of torchvision's one width
                for both convs, computed from the block's input (230 and 230).
        """
        mid = mid_planes(in_planes, planes)
        mid2 = mid_planes(planes, planes) if caffe2_mid else mid
        self.conv1 = nn.Sequential(
            self.conv_maker(in_planes, planes, mid, stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv2 = nn.Sequential(self.conv_maker(planes, planes, mid2), nn.BatchNorm3d(planes))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """``conv2(conv1(x))``."""
        return self.conv2(self.conv1(x))


class Bottleneck(ResidualBlock):
    """1×1×1 → ``conv_maker`` → 1×1×1 ×4, keys ``conv1``/``conv2``/``conv3`` (each ``.0``/``.1``).

    Arguments: see :class:`~feat3d.backbones.blocks.ResidualBlock`, with ``conv_maker`` a
    torchvision conv class for the middle conv (default :class:`Conv3DSimple`) and
    ``planes`` its width.
    """

    expansion = 4
    conv_maker: ConvMaker = Conv3DSimple  # type: ignore[assignment]

    def build_branch(self, in_planes: int, planes: int, stride: int) -> None:
        """``conv1`` (1×1×1), ``conv2`` (conv maker, strided), ``conv3`` (1×1×1)."""
        mid = mid_planes(in_planes, planes)
        out = planes * self.expansion
        self.conv1 = nn.Sequential(
            conv1x1x1(in_planes, planes), nn.BatchNorm3d(planes), nn.ReLU(inplace=True)
        )
        self.conv2 = nn.Sequential(
            self.conv_maker(planes, planes, mid, stride),
            nn.BatchNorm3d(planes),
            nn.ReLU(inplace=True),
        )
        self.conv3 = nn.Sequential(conv1x1x1(planes, out), nn.BatchNorm3d(out))

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """``conv3(conv2(conv1(x)))``."""
        return self.conv3(self.conv2(self.conv1(x)))


Block = type[BasicBlock] | type[Bottleneck]


class BasicStem(nn.Sequential):
    """R3D/MC3 stem: conv 3×7×7 /(1,2,2) to 64 channels, BN, ReLU (keys ``0``, ``1``)."""

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(
                3, 64, kernel_size=(3, 7, 7), stride=(1, 2, 2), padding=(1, 3, 3), bias=False
            ),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


class R2Plus1dStem(nn.Sequential):
    """R(2+1)D stem: conv 1×7×7 /(1,2,2) to 45, BN, ReLU, conv 3×1×1 to 64, BN, ReLU.

    Keys ``0``, ``1``, ``3``, ``4``.
    """

    def __init__(self) -> None:
        super().__init__(
            nn.Conv3d(
                3, 45, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False
            ),
            nn.BatchNorm3d(45),
            nn.ReLU(inplace=True),
            nn.Conv3d(
                45, 64, kernel_size=(3, 1, 1), stride=(1, 1, 1), padding=(1, 0, 0), bias=False
            ),
            nn.BatchNorm3d(64),
            nn.ReLU(inplace=True),
        )


class VideoResNet(Backbone):
    """Generic video ResNet; R3D, MC3 and R(2+1)D differ only in the data passed here.

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        conv_makers: One conv class per stage.
        layers: Blocks per stage.
        stem: Stem class (:class:`BasicStem` or :class:`R2Plus1dStem`).
        num_classes: Rows of ``fc``.
        zero_init_residual: Zero the last BN of each bottleneck.
        caffe2_mid: Caffe2's middle widths in the first block of each stage (basic blocks
            only; see :meth:`BasicBlock.build_branch`).
        bn_eps: ``eps`` of every batch norm (Caffe2's models: 1e-3).
    """

    def __init__(
        self,
        block: Block,
        conv_makers: Sequence[ConvMaker],
        layers: Sequence[int],
        stem: type[nn.Module],
        num_classes: int = 400,
        *,
        zero_init_residual: bool = False,
        caffe2_mid: bool = False,
        bn_eps: float = 1e-5,
    ) -> None:
        super().__init__()
        if len(conv_makers) != 4 or len(layers) != 4:
            raise ValueError("conv_makers and layers need one entry per stage (4)")
        if caffe2_mid and block is not BasicBlock:
            raise ValueError("caffe2_mid applies to basic blocks only")
        self._first_options = {"caffe2_mid": True} if caffe2_mid else {}
        self.arch_kwargs = {"num_classes": num_classes}
        self.num_classes = num_classes
        self.feature_dim = 512 * block.expansion
        self._in_planes = 64

        self.stem = stem()
        self.layer1 = self._make_layer(block, conv_makers[0], 64, layers[0], stride=1)
        self.layer2 = self._make_layer(block, conv_makers[1], 128, layers[1], stride=2)
        self.layer3 = self._make_layer(block, conv_makers[2], 256, layers[2], stride=2)
        self.layer4 = self._make_layer(block, conv_makers[3], 512, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool3d((1, 1, 1))
        self.fc = nn.Linear(self.feature_dim, num_classes)

        init_weights(self)
        nn.init.normal_(self.fc.weight, 0, 0.01)
        nn.init.zeros_(self.fc.bias)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, Bottleneck):
                    nn.init.zeros_(m.conv3[1].weight)
        for m in self.modules():
            if isinstance(m, nn.BatchNorm3d):
                m.eps = bn_eps

    def _make_layer(
        self, block: Block, conv_maker: ConvMaker, planes: int, blocks: int, *, stride: int
    ) -> nn.Sequential:
        out_planes = planes * block.expansion
        downsample: nn.Module | None = None
        if stride != 1 or self._in_planes != out_planes:
            downsample = nn.Sequential(
                nn.Conv3d(
                    self._in_planes,
                    out_planes,
                    kernel_size=1,
                    stride=conv_maker.get_downsample_stride(stride),
                    bias=False,
                ),
                nn.BatchNorm3d(out_planes),
            )
        first = block(
            in_planes=self._in_planes,
            planes=planes,
            stride=stride,
            downsample=downsample,
            conv_maker=conv_maker,
            **self._first_options,
        )
        self._in_planes = out_planes
        rest = [
            block(in_planes=out_planes, planes=planes, conv_maker=conv_maker)
            for _ in range(1, blocks)
        ]
        return nn.Sequential(first, *rest)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` → layer4 output ``(N, D, t, h, w)``."""
        x = self.stem(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


_COMMON = {
    "family": "torchvision",
    "block": "basic",
    "layers": (2, 2, 2, 2),
    "feature_dim": 512,
    "default_meta": "torchvision",
    "formats": ("torchvision", "feat3d"),
    "paper": "Tran et al., CVPR 2018, arXiv:1711.11248",
}

# num_params from torchvision's weights metadata; gmacs (multiply-accumulates ×1e9 per
# 16×112×112 clip) from its ``_ops`` field; both re-measured in tests/backbones.


def r3d_18(*, num_classes: int = 400) -> VideoResNet:
    """R3D-18: full 3×3×3 convs in every stage (Tran et al., 2018).

    A randomly initialized CPU model with ``num_classes`` rows in ``fc``.
    """
    return VideoResNet(BasicBlock, [Conv3DSimple] * 4, [2, 2, 2, 2], BasicStem, num_classes)


def mc3_18(*, num_classes: int = 400) -> VideoResNet:
    """MC3-18: 3D convs in layer1, spatial-only 1×3×3 convs after (Tran et al., 2018).

    A randomly initialized CPU model with ``num_classes`` rows in ``fc``.
    """
    makers = [Conv3DSimple] + [Conv3DNoTemporal] * 3
    return VideoResNet(BasicBlock, makers, [2, 2, 2, 2], BasicStem, num_classes)


def r2plus1d_18(*, num_classes: int = 400) -> VideoResNet:
    """R(2+1)D-18: every 3×3×3 conv factorised into 1×3×3 then 3×1×1 (Tran et al., 2018).

    A randomly initialized CPU model with ``num_classes`` rows in ``fc``.
    """
    return VideoResNet(BasicBlock, [Conv2Plus1D] * 4, [2, 2, 2, 2], R2Plus1dStem, num_classes)


def r2plus1d_34(*, num_classes: int = 400) -> VideoResNet:
    """R(2+1)D-34 in the layout of the IG-65M weights (Ghadiyaram et al., CVPR 2019).

    Stages (3, 4, 6, 3) of (2+1)D basic blocks; the first block of stages 2–4 has Caffe2's
    middle widths in ``conv2`` (288, 576, 1152), and every batch norm Caffe2's ``eps`` 1e-3,
    as in moabitcoin/ig65m-pytorch's ``r2plus1d_34``, whose files load strictly.

    A randomly initialized CPU model with ``num_classes`` rows in ``fc`` (the 32-frame IG-65M
    weights have 487, the 8-frame ones 359, the Kinetics fine-tuned ones 400).
    """
    return VideoResNet(
        BasicBlock, [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem, num_classes,
        caffe2_mid=True, bn_eps=1e-3,
    )  # fmt: skip


_STEM_3D = "conv 3×7×7 /(1,2,2), BN, ReLU"
_STEM_2PLUS1D = "conv 1×7×7 /(1,2,2) to 45, BN, ReLU, conv 3×1×1 to 64, BN, ReLU"
for _builder, _stem, _params, _gmacs in (
    (r3d_18, _STEM_3D, 33371472, 40.697),
    (mc3_18, _STEM_3D, 11695440, 43.343),
    (r2plus1d_18, _STEM_2PLUS1D, 31505325, 40.519),
):
    register_backbone(_builder.__name__, stem=_stem, num_params=_params, gmacs=_gmacs, **_COMMON)(
        _builder
    )

# R(2+1)D-34: parameters counted with 400 classes (the closed form in
# tests/backbones/test_r2plus1d34_s3d.py); gmacs per 32×112×112 clip (the ig65m-32 preset),
# torch.utils.flop_counter.
register_backbone(
    "r2plus1d-34",
    stem=_STEM_2PLUS1D,
    num_params=63697175,
    gmacs=152.356,
    **{
        **_COMMON,
        "layers": (3, 4, 6, 3),
        "default_meta": "ig65m-32",
        "paper": "Tran et al., CVPR 2018, arXiv:1711.11248; IG-65M weights: Ghadiyaram et al., "
        "CVPR 2019, arXiv:1905.00561",
    },
)(r2plus1d_34)
