"""X3D and Slow-R50 in the key layout of PyTorchVideo's hub checkpoints, written without it.

C. Feichtenhofer. "X3D: Expanding Architectures for Efficient Video Recognition." CVPR 2020
(arXiv:2004.04730). C. Feichtenhofer, H. Fan, J. Malik, K. He. "SlowFast Networks for Video
Recognition." ICCV 2019 (arXiv:1812.03982): the Slow-only pathway.

The modules carry the attribute names of ``pytorchvideo.models`` (``create_x3d``,
``create_resnet``; ``Net``, ``ResNetBasicStem``, ``ResStage``, ``ResBlock``,
``BottleneckBlock``, ``ProjectedPool``, ``ResNetBasicHead``), so the ``model_state`` of the
hub files (``X3D_XS.pyth`` .. ``X3D_L.pyth``, ``SLOW_8x8_R50.pyth``) loads with
``strict=True``: ``blocks.0`` is the stem, ``blocks.1``–``blocks.4`` the four stages
(``res_blocks.N.branch1_conv``/``branch1_norm``/``branch2.conv_a`` ...), ``blocks.5`` the head
(``proj``; X3D's ``pool.pre_conv``, ``pool.pre_norm``, ``pool.post_conv``)::

    X3D-M   stem 24 ─ 24 ×3 ─ 48 ×5 ─ 96 ×11 ─ 192 ×7 (conv5) ─ 432 ─ pool ─ 2048 (pool5) ─ proj
    Slow    stem 64 ─ 256 ×3 ─ 512 ×4 ─ 1024 ×6 ─ 2048 ×3 (conv5) ─ pool (pool5) ─ proj

The heads average over a fixed window (PyTorchVideo's ``AvgPool3d`` of stride 1, its size set
by the clip length and crop each network was trained at) and then over whatever positions are
left; at the published input the window covers the whole map. Here a window larger than the
map shrinks to the map, so smaller clips and crops pool globally instead of failing.
``pool5`` is the pooled head input to ``proj`` (X3D: after ``post_conv`` and its ReLU, the
2048-d vector people take by replacing ``proj`` with an identity); ``logits`` are ``proj`` of
it, which equals PyTorchVideo's per-position projection then average (to float rounding),
before the softmax the X3D hub model applies.

Example:
    >>> from feat3d.backbones import get_backbone
    >>> model = get_backbone("x3d-xs").eval()
    >>> model.feature_layers()
    {'conv5': 192, 'pool5': 2048, 'logits': 400}
"""

from __future__ import annotations

import abc
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from feat3d.backbones.blocks import init_weights
from feat3d.backbones.registry import Backbone, register_backbone

__all__ = [
    "X3D",
    "X3D_VARIANTS",
    "BottleneckBlock",
    "PtvNet",
    "ResBlock",
    "ResNetBasicHead",
    "ResNetBasicStem",
    "ResStage",
    "SlowR50",
    "conv_padded",
    "init_ptv_weights",
    "resnet_stages",
    "slow_r50",
    "window_pool",
    "x3d_l",
    "x3d_m",
    "x3d_s",
    "x3d_xs",
]

Triple = tuple[int, int, int]


def window_pool(x: torch.Tensor, kernel: Triple) -> torch.Tensor:
    """Average over ``kernel`` windows at stride 1 (each side at most the map's), unflattened.

    Args:
        x: ``(N, C, T, H, W)``.
        kernel: The published window ``(t, h, w)``.

    Returns:
        ``(N, C, t', h', w')``: one average per window position.
    """
    size = tuple(min(k, s) for k, s in zip(kernel, x.shape[2:], strict=True))
    return F.avg_pool3d(x, size, stride=1)


def conv_padded(
    c_in: int, c_out: int, kernel: Triple, stride: Triple = (1, 1, 1), groups: int = 1
) -> nn.Conv3d:
    """Bias-free conv padded by half its kernel, as PyTorchVideo's builders make them."""
    padding = tuple(k // 2 for k in kernel)
    return nn.Conv3d(c_in, c_out, kernel, stride=stride, padding=padding, groups=groups,
                     bias=False)  # fmt: skip


class Swish(nn.Module):
    """``x · sigmoid(x)`` (PyTorchVideo's ``Swish``, X3D's inner activation)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(x)


class SqueezeExcitation(nn.Module):
    """fvcore's 3D squeeze-excitation: ``block`` = conv 1×1×1 (bias), ReLU, conv, sigmoid."""

    def __init__(self, channels: int, reduced: int) -> None:
        super().__init__()
        self.block = nn.Sequential(
            nn.Conv3d(channels, reduced, 1), nn.ReLU(), nn.Conv3d(reduced, channels, 1),
            nn.Sigmoid(),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.block(x.mean(dim=(2, 3, 4), keepdim=True))


class Conv2plus1d(nn.Module):
    """X3D's stem conv: ``conv_t`` then ``conv_xy``, as PyTorchVideo names them.

    ``create_x3d_stem`` passes the spatial 1×3×3 conv as ``conv_t`` and the depthwise temporal
    conv as ``conv_xy``; the keys keep those names, the order of application is theirs.
    """

    def __init__(self, c_out: int, t_kernel: int) -> None:
        super().__init__()
        self.conv_t = nn.Conv3d(3, c_out, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1),
                                bias=False)  # fmt: skip
        self.conv_xy = conv_padded(c_out, c_out, (t_kernel, 1, 1), groups=c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_xy(self.conv_t(x))


class ResNetBasicStem(nn.Module):
    """``conv`` → ``norm`` → ``activation`` → optional ``pool`` (max 1×3×3 /(1,2,2))."""

    def __init__(self, conv: nn.Module, width: int, *, pool: bool) -> None:
        super().__init__()
        self.conv = conv
        self.norm = nn.BatchNorm3d(width)
        self.activation = nn.ReLU()
        self.pool = nn.MaxPool3d((1, 3, 3), (1, 2, 2), (0, 1, 1)) if pool else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.activation(self.norm(self.conv(x)))
        return x if self.pool is None else self.pool(x)


class BottleneckBlock(nn.Module):
    """``conv_a`` (1×1×1 or 3×1×1), ``conv_b`` (spatial or depthwise 3D), ``conv_c`` (1×1×1).

    Args:
        c_in, inner, c_out: Widths.
        a_kernel: ``conv_a``'s kernel.
        b_kernel: ``conv_b``'s kernel.
        stride: ``conv_b``'s stride.
        se: Squeeze-excitation width after ``norm_b`` (X3D; ``norm_b`` becomes
            ``Sequential(BN, SE or Identity)``), ``None`` for a plain ResNet block.
        depthwise: ``conv_b`` grouped per channel (X3D).
        inner_act: Activation after ``norm_b`` (X3D: Swish).
    """

    def __init__(
        self, c_in: int, inner: int, c_out: int, *, a_kernel: Triple, b_kernel: Triple,
        stride: Triple, se: int | None = None, depthwise: bool = False,
        inner_act: type[nn.Module] = nn.ReLU,
    ) -> None:  # fmt: skip
        super().__init__()
        self.conv_a = conv_padded(c_in, inner, a_kernel)
        self.norm_a = nn.BatchNorm3d(inner)
        self.act_a = nn.ReLU()
        self.conv_b = conv_padded(inner, inner, b_kernel, stride, groups=inner if depthwise else 1)
        self.norm_b: nn.Module = nn.BatchNorm3d(inner)
        if depthwise:  # X3D: BN then SE (or nothing) in one Sequential
            squeeze = SqueezeExcitation(inner, se) if se else nn.Identity()
            self.norm_b = nn.Sequential(self.norm_b, squeeze)
        self.act_b = inner_act()
        self.conv_c = conv_padded(inner, c_out, (1, 1, 1))
        self.norm_c = nn.BatchNorm3d(c_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act_a(self.norm_a(self.conv_a(x)))
        x = self.act_b(self.norm_b(self.conv_b(x)))
        return self.norm_c(self.conv_c(x))


class ResBlock(nn.Module):
    """``branch2`` plus the shortcut (``branch1_conv``/``branch1_norm`` when present), ReLU.

    Args:
        branch2: The bottleneck.
        c_in, c_out: Widths.
        stride: The bottleneck's stride (the shortcut conv's).
        shortcut_norm: Whether a shortcut conv gets a BN; X3D gives it one only when the
            width changes (its first stage keeps 24 channels but strides).
    """

    def __init__(
        self, branch2: BottleneckBlock, c_in: int, c_out: int, stride: Triple,
        *, shortcut_norm: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.branch1_conv = None
        self.branch1_norm = None
        if c_in != c_out or math.prod(stride) > 1:
            self.branch1_conv = nn.Conv3d(c_in, c_out, 1, stride=stride, bias=False)
            if shortcut_norm or c_in != c_out:
                self.branch1_norm = nn.BatchNorm3d(c_out)
        self.branch2 = branch2
        self.activation = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x if self.branch1_conv is None else self.branch1_conv(x)
        if self.branch1_norm is not None:
            shortcut = self.branch1_norm(shortcut)
        return self.activation(shortcut + self.branch2(x))


class ResStage(nn.Module):
    """``res_blocks`` applied in turn."""

    def __init__(self, blocks: list[ResBlock]) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList(blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.res_blocks:
            x = block(x)
        return x


class ProjectedPool(nn.Module):
    """X3D's head pool: ``pre_conv`` 1×1×1, BN, ReLU, window average, ``post_conv``, ReLU."""

    def __init__(self, c_in: int, inner: int, c_out: int, kernel: Triple) -> None:
        super().__init__()
        self.kernel = kernel
        self.pre_conv = nn.Conv3d(c_in, inner, 1, bias=False)
        self.pre_norm = nn.BatchNorm3d(inner)
        self.pre_act = nn.ReLU()
        self.post_conv = nn.Conv3d(inner, c_out, 1, bias=False)
        self.post_act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = window_pool(self.pre_act(self.pre_norm(self.pre_conv(x))), self.kernel)
        return self.post_act(self.post_conv(x))


class ResNetBasicHead(nn.Module):
    """``pool`` (X3D's :class:`ProjectedPool`, else none), ``dropout``, ``proj``."""

    def __init__(self, c_in: int, num_classes: int, *, pool: nn.Module | None = None) -> None:
        super().__init__()
        self.pool = pool
        self.dropout = nn.Dropout(0.5)
        self.proj = nn.Linear(c_in, num_classes)


class PtvNet(Backbone):
    """A PyTorchVideo ``Net``: ``blocks`` (stem, four stages, head), the head last.

    Subclasses build ``self.blocks`` and implement :meth:`_pool5`; :meth:`_stages` runs every
    block but the head. Attributes as in :class:`~feat3d.backbones.registry.Backbone`; ``fc`` is
    the head's ``proj``.
    """

    blocks: nn.ModuleList
    #: Width of the last stage (``conv5``).
    conv5_dim: int

    @property
    def head(self) -> ResNetBasicHead:
        """The last block."""
        return self.blocks[-1]  # type: ignore[return-value]

    @property
    def fc(self) -> nn.Linear:  # type: ignore[override]
        """The classifier, ``head.proj``."""
        return self.head.proj

    def _stages(self, x: torch.Tensor) -> Any:
        """Every block but the head: the last stage's output (one map, or one per pathway)."""
        for block in self.blocks[:-1]:
            x = block(x)
        return x

    @abc.abstractmethod
    def _pool5(self, stages: Any) -> torch.Tensor:
        """The head's pooled input to ``proj``, ``(N, feature_dim)``, from :meth:`_stages`."""

    def _conv5(self, stages: Any, *, pool: bool) -> torch.Tensor:
        """The last stage's map, ``(N, conv5_dim, t, h, w)``, or its global average."""
        return stages.mean(dim=(2, 3, 4)) if pool else stages

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and stages: the last stage's map ``(N, conv5_dim, t, h, w)``."""
        return self._conv5(self._stages(x), pool=False)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``pool5``: the pooled input of the classifier, ``(N, feature_dim)``."""
        return self._pool5(self._stages(x))

    def forward_head(self, feats: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """``proj(dropout(feats))`` (dropout only in training); ``feats`` when ``pre_logits``."""
        return feats if pre_logits else self.head.proj(self.head.dropout(feats))

    def feature_layers(self) -> dict[str, int]:
        """``conv5`` (last stage, globally averaged unless ``pool=False``), ``pool5`` (the
        classifier's input), ``logits``."""
        return {"conv5": self.conv5_dim, "pool5": self.feature_dim, "logits": self.num_classes}

    def forward_layers(
        self, x: torch.Tensor, layers: tuple[str, ...], *, pool: bool = True
    ) -> dict[str, torch.Tensor]:
        """Several layers in one pass (see :meth:`feature_layers`).

        Raises:
            ValueError: A layer this network does not have.
        """
        self.check_layers(layers)
        stages = self._stages(x)
        out: dict[str, torch.Tensor] = {}
        if "conv5" in layers:
            out["conv5"] = self._conv5(stages, pool=pool)
        if "pool5" in layers or "logits" in layers:
            out["pool5"] = self._pool5(stages)
        if "logits" in layers:
            out["logits"] = self.forward_head(out["pool5"])
        return {name: out[name] for name in layers}

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``proj`` by a fresh ``Linear(feature_dim, num_classes)``."""
        self.head.proj = nn.Linear(self.feature_dim, num_classes)
        self.num_classes = num_classes
        self.arch_kwargs = {**self.arch_kwargs, "num_classes": num_classes}


# --------------------------------------------------------------------------------------------
# X3D


def round_width(width: float, multiplier: float, divisor: int = 8) -> int:
    """PyTorchVideo's ``round_width``: ``width · multiplier`` to a multiple of ``divisor``
    (at least ``divisor``), raised by one step when rounding lost more than 10%."""
    width *= multiplier
    out = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return int(out + divisor if out < 0.9 * width else out)


#: Variant → (stage depth factor, clip length and crop its head's window was sized for).
X3D_VARIANTS: dict[str, tuple[float, int, int]] = {
    "xs": (2.2, 4, 160),
    "s": (2.2, 13, 160),
    "m": (2.2, 16, 224),
    "l": (5.0, 16, 312),
}


class X3D(PtvNet):
    """X3D with ``create_x3d``'s defaults (width factor 2, bottleneck factor 2.25, SE ratio
    1/16 on every other block, Swish, head 2048).

    Args:
        variant: ``"xs"``, ``"s"``, ``"m"`` or ``"l"``.
        num_classes: Rows of ``proj``.
    """

    def __init__(self, variant: str = "m", num_classes: int = 400) -> None:
        super().__init__()
        depth_factor, frames, crop = X3D_VARIANTS[variant]
        self.arch_kwargs = {"num_classes": num_classes}
        self.num_classes, self.feature_dim, self.conv5_dim = num_classes, 2048, 192
        blocks: list[nn.Module] = [ResNetBasicStem(Conv2plus1d(24, 5), 24, pool=False)]
        c_in = 24
        for i, base in enumerate((1, 2, 5, 3)):
            c_out = round_width(12 * 2**i, 2.0)
            inner = int(2.25 * c_out)
            depth = math.ceil(depth_factor * base)
            stage = []
            for j in range(depth):
                stride = (1, 2, 2) if j == 0 else (1, 1, 1)
                se = round_width(inner, 0.0625) if j % 2 == 0 else None
                bottleneck = BottleneckBlock(
                    c_in, inner, c_out, a_kernel=(1, 1, 1), b_kernel=(3, 3, 3), stride=stride,
                    se=se, depthwise=True, inner_act=Swish,
                )  # fmt: skip
                stage.append(ResBlock(bottleneck, c_in, c_out, stride, shortcut_norm=False))
                c_in = c_out
            blocks.append(ResStage(stage))
        side = math.ceil(crop / 32)
        pool = ProjectedPool(192, inner, 2048, (frames, side, side))
        blocks.append(ResNetBasicHead(2048, num_classes, pool=pool))
        self.blocks = nn.ModuleList(blocks)
        init_ptv_weights(self)

    def _pool5(self, stages: torch.Tensor) -> torch.Tensor:
        return self.head.pool(stages).mean(dim=(2, 3, 4))  # type: ignore[misc]


# --------------------------------------------------------------------------------------------
# Slow-R50


class SlowR50(PtvNet):
    """Slow-only ResNet-50 (``create_resnet(stem_conv_kernel_size=(1, 7, 7),
    head_pool_kernel_size=(8, 7, 7), model_depth=50)``): 1×7×7 stem, temporal 3×1×1 ``conv_a``
    in the last two stages only, no temporal striding.

    Args:
        num_classes: Rows of ``proj``.
    """

    #: The head's window: 8 frames of a 224 crop's 7×7 map.
    head_kernel: Triple = (8, 7, 7)

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.arch_kwargs = {"num_classes": num_classes}
        self.num_classes, self.feature_dim, self.conv5_dim = num_classes, 2048, 2048
        stem = ResNetBasicStem(conv_padded(3, 64, (1, 7, 7), (1, 2, 2)), 64, pool=True)
        self.blocks = nn.ModuleList(
            [stem, *resnet_stages(64, (1, 1, 3, 3)), ResNetBasicHead(2048, num_classes)]
        )
        init_ptv_weights(self)

    def _pool5(self, stages: torch.Tensor) -> torch.Tensor:
        return window_pool(stages, self.head_kernel).mean(dim=(2, 3, 4))


def resnet_stages(c_in: int, t_kernels: tuple[int, ...], *, scale: int = 1,
                  extra_in: tuple[int, ...] = (0, 0, 0, 0)) -> list[ResStage]:  # fmt: skip
    """The four bottleneck stages of a PyTorchVideo ResNet-50 pathway.

    Args:
        c_in: Input width of the first stage.
        t_kernels: Temporal size of ``conv_a`` per stage (1: 1×1×1, 3: 3×1×1).
        scale: Width divisor (SlowFast's Fast pathway: 8).
        extra_in: Channels added to each stage's input by a lateral fusion.
    """
    stages = []
    for i, depth in enumerate((3, 4, 6, 3)):
        c_out, inner = 256 * 2**i // scale, 64 * 2**i // scale
        c_in += extra_in[i]
        blocks = []
        for j in range(depth):
            stride = (1, 2, 2) if j == 0 and i > 0 else (1, 1, 1)
            bottleneck = BottleneckBlock(
                c_in, inner, c_out, a_kernel=(t_kernels[i], 1, 1), b_kernel=(1, 3, 3),
                stride=stride,
            )  # fmt: skip
            blocks.append(ResBlock(bottleneck, c_in, c_out, stride))
            c_in = c_out
        stages.append(ResStage(blocks))
    return stages


def init_ptv_weights(model: nn.Module) -> None:
    """PyTorchVideo's ``init_net_weights``: Kaiming-normal convs, BN ones/zeros, head std 0.01."""
    init_weights(model)
    for m in model.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)


# --------------------------------------------------------------------------------------------
# Registrations. num_params with 400 classes; gmacs: multiply-accumulates ×1e9 for one clip of
# the preset's input (torch.utils.flop_counter); both re-measured in
# tests/backbones/test_pytorchvideo.py.

_X3D_PAPER = "Feichtenhofer, CVPR 2020, arXiv:2004.04730"
_X3D_COMMON: dict[str, Any] = {
    "family": "x3d",
    "block": "x3d-bottleneck",
    "feature_dim": 2048,
    "widths": (24, 48, 96, 192),
    "formats": ("pytorchvideo", "feat3d"),
    "stem": "conv 1×3×3 /(1,2,2) to 24, depthwise conv 5×1×1, BN, ReLU",
    "paper": _X3D_PAPER,
}


def x3d_xs(*, num_classes: int = 400) -> X3D:
    """X3D-XS (4 frames, head window for 160 px): a randomly initialized CPU model."""
    return X3D("xs", num_classes)


def x3d_s(*, num_classes: int = 400) -> X3D:
    """X3D-S (13 frames, head window for 160 px): a randomly initialized CPU model."""
    return X3D("s", num_classes)


def x3d_m(*, num_classes: int = 400) -> X3D:
    """X3D-M (16 frames, head window for 224 px): a randomly initialized CPU model."""
    return X3D("m", num_classes)


def x3d_l(*, num_classes: int = 400) -> X3D:
    """X3D-L (16 frames, head window for 312 px, 5× deeper stages): a randomly initialized
    CPU model."""
    return X3D("l", num_classes)


def slow_r50(*, num_classes: int = 400) -> SlowR50:
    """Slow-R50 (8 frames, 8 apart): a randomly initialized CPU model."""
    return SlowR50(num_classes)


for _builder, _name, _layers, _params, _gmacs in (
    (x3d_xs, "x3d-xs", (3, 5, 11, 7), 3794274, 0.605),
    (x3d_s, "x3d-s", (3, 5, 11, 7), 3794274, 1.963),
    (x3d_m, "x3d-m", (3, 5, 11, 7), 3794274, 4.732),
    (x3d_l, "x3d-l", (5, 10, 25, 15), 6153384, 18.368),
):
    register_backbone(
        _name, layers=_layers, default_meta=_name, num_params=_params, gmacs=_gmacs,
        **_X3D_COMMON,
    )(_builder)  # fmt: skip

register_backbone(
    "slow-r50",
    family="slow",
    block="bottleneck",
    layers=(3, 4, 6, 3),
    widths=(64, 128, 256, 512),
    feature_dim=2048,
    default_meta="slow-r50",
    formats=("pytorchvideo", "feat3d"),
    stem="conv 1×7×7 /(1,2,2), BN, ReLU, max-pool 1×3×3 /(1,2,2)",
    num_params=32454096,
    gmacs=41.741,
    paper="Feichtenhofer et al., ICCV 2019, arXiv:1812.03982 (Slow pathway)",
)(slow_r50)
