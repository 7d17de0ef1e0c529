"""S3D (separable 3D Inception) with the key names of torchvision's ``s3d``.

S. Xie, C. Sun, J. Huang, Z. Tu, K. Murphy. "Rethinking Spatiotemporal Feature Learning:
Speed-Accuracy Trade-offs in Video Classification." ECCV 2018 (arXiv:1712.04851). The layout
follows ``torchvision/models/video/s3d.py``, so torchvision's Kinetics-400 file
(``s3d-d76dad2f.pth``) loads strictly::

    features.0   1×7×7 /(1,2,2) then 7×1×1 /2 conv to 64         (N, 64, T/2, H/2, W/2)
    features.1   max-pool 1×3×3 /(1,2,2)
    features.2   1×1×1 conv 64
    features.3   1×3×3 then 3×1×1 conv to 192
    features.4   max-pool 1×3×3 /(1,2,2)
    features.5-6     Inception 3b, 3c                                (N, 480, T/2, H/8, W/8)
    features.7   max-pool 3×3×3 /2
    features.8-12    Inception 4b-4f                                 (N, 832, T/4, H/16, W/16)
    features.13  max-pool 2×2×2 /2
    features.14-15   Inception 5b, 5c                                (N, 1024, T/8, H/32, W/32)
    avgpool      torchvision's 2×7×7 average (stride 1), then the mean      (N, 1024)
    classifier   dropout, 1×1×1 conv to the classes                         (N, classes)

Every conv is followed by a batch norm (``eps`` 1e-3) and a ReLU, keys ``.0``/``.1``/``.2``
as torchvision's ``Conv3dNormActivation``; a separable conv is a spatial ``1×k×k`` then a
temporal ``k×1×1`` one, each with its own norm and ReLU.
"""

from __future__ import annotations

from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from feat3d.backbones.blocks import init_weights
from feat3d.backbones.registry import Backbone, register_backbone

__all__ = ["S3D", "S3DPool", "SepInceptionBlock3D", "TemporalSeparableConv", "s3d"]

# torchvision's S3D: BatchNorm3d(eps=0.001, momentum=0.001).
_norm = partial(nn.BatchNorm3d, eps=1e-3, momentum=1e-3)


class ConvNormReLU(nn.Sequential):
    """Bias-free conv, BN, ReLU: keys ``0``, ``1``, ``2`` (torchvision's Conv3dNormActivation).

    Args:
        in_planes: Input channels.
        out_planes: Output channels.
        kernel: ``(t, h, w)`` kernel.
        stride: ``(t, h, w)`` stride.
        padding: ``(t, h, w)`` padding.
    """

    def __init__(
        self,
        in_planes: int,
        out_planes: int,
        kernel: tuple[int, int, int] = (1, 1, 1),
        stride: tuple[int, int, int] = (1, 1, 1),
        padding: tuple[int, int, int] = (0, 0, 0),
    ) -> None:
        super().__init__(
            nn.Conv3d(in_planes, out_planes, kernel, stride=stride, padding=padding, bias=False),
            _norm(out_planes),
            nn.ReLU(inplace=True),
        )


class TemporalSeparableConv(nn.Sequential):
    """A ``k×k×k`` conv factorised into ``1×k×k`` (key ``0``) then ``k×1×1`` (key ``1``).

    Args:
        in_planes: Input channels.
        out_planes: Output channels of both convs.
        kernel: ``k``.
        stride: Stride in space (first conv) and time (second conv).
        padding: Padding in space and time.
    """

    def __init__(
        self, in_planes: int, out_planes: int, kernel: int, stride: int, padding: int
    ) -> None:
        super().__init__(
            ConvNormReLU(
                in_planes, out_planes, (1, kernel, kernel), (1, stride, stride),
                (0, padding, padding),
            ),
            ConvNormReLU(out_planes, out_planes, (kernel, 1, 1), (stride, 1, 1), (padding, 0, 0)),
        )  # fmt: skip


class SepInceptionBlock3D(nn.Module):
    """Inception block with separable 3×3×3 convs; its four branches are concatenated.

    Args:
        in_planes: Input channels.
        b0_out: ``branch0``: 1×1×1 conv.
        b1_mid: ``branch1``: 1×1×1 conv to ``b1_mid``, then separable 3×3×3 to ``b1_out``.
        b1_out: See ``b1_mid``.
        b2_mid: ``branch2``: as ``branch1``, to ``b2_mid`` then ``b2_out``.
        b2_out: See ``b2_mid``.
        b3_out: ``branch3``: 3×3×3 max-pool (stride 1), then 1×1×1 conv to ``b3_out``.
    """

    def __init__(
        self,
        in_planes: int,
        b0_out: int,
        b1_mid: int,
        b1_out: int,
        b2_mid: int,
        b2_out: int,
        b3_out: int,
    ) -> None:
        super().__init__()
        self.out_planes = b0_out + b1_out + b2_out + b3_out
        self.branch0 = ConvNormReLU(in_planes, b0_out)
        self.branch1 = nn.Sequential(
            ConvNormReLU(in_planes, b1_mid), TemporalSeparableConv(b1_mid, b1_out, 3, 1, 1)
        )
        self.branch2 = nn.Sequential(
            ConvNormReLU(in_planes, b2_mid), TemporalSeparableConv(b2_mid, b2_out, 3, 1, 1)
        )
        self.branch3 = nn.Sequential(
            nn.MaxPool3d(kernel_size=3, stride=1, padding=1), ConvNormReLU(in_planes, b3_out)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, in_planes, t, h, w)`` → ``(N, out_planes, t, h, w)``."""
        branches = (self.branch0, self.branch1, self.branch2, self.branch3)
        return torch.cat([branch(x) for branch in branches], dim=1)


class S3DPool(nn.Module):
    """torchvision's S3D pooling: a ``2×7×7`` average with stride 1, then the mean of those
    averages, ``(N, C, t, h, w)`` → ``(N, C, 1, 1, 1)``.

    At the weights' input (``t = 2``, ``h = w = 7``, from 16+ frames of 224²) it is the global
    average; on larger maps it weighs the centre more, exactly as torchvision's forward (whose
    classifier is linear, so averaging before it gives the same logits). A map smaller than
    the window is averaged whole, where torchvision's pool would fail.
    """

    window = (2, 7, 7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The pooled map, ``(N, C, 1, 1, 1)``."""
        kernel = tuple(min(k, size) for k, size in zip(self.window, x.shape[2:], strict=True))
        return F.avg_pool3d(x, kernel, stride=1).mean(dim=(2, 3, 4), keepdim=True)


# (in, b0, b1 mid, b1, b2 mid, b2, b3) of Inception 3b-5c, from torchvision's S3D.
_INCEPTION = {
    "3": ((192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64)),
    "4": (
        (480, 192, 96, 208, 16, 48, 64), (512, 160, 112, 224, 24, 64, 64),
        (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
        (528, 256, 160, 320, 32, 128, 128),
    ),
    "5": ((832, 256, 160, 320, 32, 128, 128), (832, 384, 192, 384, 48, 128, 128)),
}  # fmt: skip


class S3D(Backbone):
    """S3D with torchvision's key names (``features.N...``, ``classifier.1``).

    The classifier is ``classifier.1``, a 1×1×1 conv (there is no ``fc`` attribute; use
    :meth:`reset_classifier`). ``conv5`` is Inception 5c's map (``mixed_5c``), ``pool5`` its
    :class:`S3DPool` average, 1024 wide.

    Args:
        num_classes: Rows of the classifier.
        dropout: Dropout before the classifier (torchvision's 0.2).
    """

    feature_dim = 1024

    def __init__(self, num_classes: int = 400, *, dropout: float = 0.2) -> None:
        super().__init__()
        self.arch_kwargs = {"num_classes": num_classes}
        self.num_classes = num_classes
        pool_2d = partial(nn.MaxPool3d, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        self.features = nn.Sequential(
            TemporalSeparableConv(3, 64, 7, 2, 3),
            pool_2d(),
            ConvNormReLU(64, 64),
            TemporalSeparableConv(64, 192, 3, 1, 1),
            pool_2d(),
            *(SepInceptionBlock3D(*widths) for widths in _INCEPTION["3"]),
            nn.MaxPool3d(kernel_size=3, stride=2, padding=1),
            *(SepInceptionBlock3D(*widths) for widths in _INCEPTION["4"]),
            nn.MaxPool3d(kernel_size=2, stride=2),
            *(SepInceptionBlock3D(*widths) for widths in _INCEPTION["5"]),
        )
        self.avgpool = S3DPool()
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout), nn.Conv3d(self.feature_dim, num_classes, kernel_size=1)
        )
        init_weights(self)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, 3, T, H, W)`` → Inception 5c's map ``(N, 1024, t, h, w)``.

        Needs ``T ≥ 8`` frames (the two temporal halvings after the stem leave one).
        """
        return self.features(x)

    def forward_head(self, feats: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """The 1×1×1 conv classifier on ``(N, 1024)`` features (see
        :meth:`Backbone.forward_head`)."""
        if pre_logits:
            return feats
        return torch.flatten(self.classifier(feats[:, :, None, None, None]), 1)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``classifier.1`` by a freshly initialized ``Conv3d(1024, num_classes, 1)``.

        Args:
            num_classes: Rows of the new classifier.
        """
        self.classifier[1] = nn.Conv3d(self.feature_dim, num_classes, kernel_size=1)
        self.num_classes = num_classes
        self.arch_kwargs = {**self.arch_kwargs, "num_classes": num_classes}


def s3d(*, num_classes: int = 400) -> S3D:
    """S3D (Xie et al., 2018) with torchvision's key names.

    A randomly initialized CPU model with ``num_classes`` rows in ``classifier.1``.
    """
    return S3D(num_classes)


# num_params (400 classes) from torchvision's S3D_Weights.KINETICS400_V1 meta; gmacs are
# multiply-accumulates ×1e9 per 128×224×224 clip (the preset's; torchvision's _ops 17.979 is
# for 16 frames), torch.utils.flop_counter; both re-measured in
# tests/backbones/test_r2plus1d34_s3d.py. "layers" counts the 3×3×3 units of conv2
# (the stem's separable conv to 192) and the Inception blocks of mixed 3, 4 and 5.
_SPEC = {
    "family": "s3d", "block": "sep-inception", "layers": (1, 2, 5, 2),
    "widths": (192, 480, 832, 1024), "feature_dim": 1024, "default_meta": "s3d-kinetics400",
    "formats": ("torchvision", "feat3d"), "num_params": 8320048, "gmacs": 143.827,
    "stem": "conv 1×7×7 /(1,2,2) then 7×1×1 /2 to 64, max-pool 1×3×3 /(1,2,2)",
    "paper": "Xie et al., ECCV 2018, arXiv:1712.04851",
}  # fmt: skip
register_backbone("s3d", **_SPEC)(s3d)
