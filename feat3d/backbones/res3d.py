"""Res3D: the 3D ResNets of Tran et al.'s architecture search, and their mixed-convolution kin.

D. Tran, J. Ray, Z. Shou, S.-F. Chang, M. Paluri. "ConvNet Architecture Search for
Spatiotemporal Feature Learning." arXiv:1708.05038, 2017.

Table 2 of the paper (8-frame clips at temporal stride 2, 112×112 crops)::

    conv1    3×7×7, 64, stride 1×2×2          (N, 64, 8, 56, 56)   no max-pool
    conv2_x  [3×3×3, 64] ×2 per block          (N, 64, 8, 56, 56)   stride 1
    conv3_x  [3×3×3, 128], conv3_1 /2×2×2      (N, 128, 4, 28, 28)
    conv4_x  [3×3×3, 256], conv4_1 /2×2×2      (N, 256, 2, 14, 14)
    conv5_x  [3×3×3, 512], conv5_1 /2×2×2      (N, 512, 1, 7, 7)
    global average pool, fc

That is torchvision's R3D layout (:class:`~feat3d.backbones.video_resnet.BasicStem`, no
max-pool, strided first block from ``layer2`` on), so every network here is *data* passed to
:class:`~feat3d.backbones.video_resnet.VideoResNet`: basic blocks, blocks per stage, and one
conv maker per stage (conv2_x .. conv5_x). Keys are torchvision's (``stem.0``, ``layer1.0.conv1.0``,
..., ``fc``).

Registered names:

============== ======================== ==========================================
name           blocks per stage          conv2_x, conv3_x, conv4_x, conv5_x
============== ======================== ==========================================
res3d-18       2, 2, 2, 2               3D, 3D, 3D, 3D (Table 2, 3D-ResNet18)
res3d-34       3, 4, 6, 3               3D, 3D, 3D, 3D (Table 2, 3D-ResNet34)
res3d-18-mc2   2, 2, 2, 2               2D, 2D, 2D, 2D
res3d-18-mc3   2, 2, 2, 2               3D, 2D, 2D, 2D
res3d-18-mc4   2, 2, 2, 2               3D, 3D, 2D, 2D
res3d-18-mc5   2, 2, 2, 2               3D, 3D, 3D, 2D
res3d-18-2.5d  2, 2, 2, 2               (2+1)D in every stage
============== ======================== ==========================================

- ``mcN`` ("mixed convolutions"): 3D convolutions below layer group ``convN`` and 2D
  (1×3×3) convolutions from ``convN_1`` on; conv1 stays 3×7×7. 2D stages stride only in space
  (:class:`~feat3d.backbones.video_resnet.Conv3DNoTemporal`), so the time axis they receive is
  kept to the global pool. This is the naming of Tran et al. 2017/2018 and of torchvision's
  ``mc3_18`` (equal to ``res3d-18-mc3``).
- ``2.5d``: each 3×3×3 conv of a block factorised into 1×3×3 to ``M`` channels, BN, ReLU,
  3×1×1 (:class:`~feat3d.backbones.video_resnet.Conv2Plus1D`), ``M`` chosen to keep the
  parameter count of the 3×3×3 conv; the stem stays Table 2's 3×7×7 conv.

The published Res3D weights are Caffe files (facebookarchive/C3D, C3D-v1.1, Sports-1M, 487
classes) with their own key names and a projection shortcut in ``res2a`` that this layout
lacks; no loader for them exists here (formats: ``feat3d`` only). Their preprocessing is the
``res3d-sports1m`` preset: 128×171 resize, 112 crop, 0-255 values minus 128.

Example:
    >>> from feat3d.backbones import get_backbone, get_spec
    >>> model = get_backbone("res3d-18", num_classes=101)
    >>> get_spec("res3d-18").default_input, get_spec("res3d-18").frame_stride
    ((8, 112), 2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from feat3d.backbones.registry import register_backbone
from feat3d.backbones.video_resnet import (
    BasicBlock,
    BasicStem,
    Conv2Plus1D,
    Conv3DNoTemporal,
    Conv3DSimple,
    ConvMaker,
    VideoResNet,
)

__all__ = [
    "CONV_MAKERS",
    "DEPTHS",
]

#: Basic blocks per stage (conv2_x .. conv5_x), Table 2.
DEPTHS: dict[int, tuple[int, int, int, int]] = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}

_3D, _2D = Conv3DSimple, Conv3DNoTemporal

#: Conv maker per stage (conv2_x .. conv5_x) for each convolution type.
CONV_MAKERS: dict[str, tuple[ConvMaker, ConvMaker, ConvMaker, ConvMaker]] = {
    "3d": (_3D, _3D, _3D, _3D),
    "mc2": (_2D, _2D, _2D, _2D),
    "mc3": (_3D, _2D, _2D, _2D),
    "mc4": (_3D, _3D, _2D, _2D),
    "mc5": (_3D, _3D, _3D, _2D),
    "2.5d": (Conv2Plus1D, Conv2Plus1D, Conv2Plus1D, Conv2Plus1D),
}


def _res3d(*, layers: Sequence[int], convs: str, num_classes: int) -> VideoResNet:
    return VideoResNet(BasicBlock, CONV_MAKERS[convs], layers, BasicStem, num_classes)


_STEM = "conv 3×7×7 /(1,2,2), BN, ReLU; no max-pool"
_PAPER = "Tran et al., arXiv:1708.05038 (2017)"
_COMMON: dict[str, Any] = {
    "family": "res3d",
    "block": "basic",
    "feature_dim": 512,
    "default_meta": "res3d-sports1m",
    "formats": ("feat3d",),
    "stem": _STEM,
}

# num_params: 400 classes (Table 3 quotes 101 classes: 33.2 M and 63.5 M for 18 and 34).
# gmacs: multiply-accumulates ×1e9 for one 8×112×112 clip, torch.utils.flop_counter.
# Both re-measured in tests/backbones/test_res3d_c3d.py.


#: Registry name → (depth, convs, parameters, GMACs, where in the paper, what it is).
_VARIANTS: dict[str, tuple[int, str, int, float, str, str]] = {
    "res3d-18": (18, "3d", 33371472, 20.348, "Table 2", "3×3×3 convs in every stage"),
    "res3d-34": (34, "3d", 63681104, 37.689, "Table 2", "3×3×3 convs, [3, 4, 6, 3] blocks"),
    "res3d-18-mc2": (18, "mc2", 11400528, 14.273, "Table 6 (mixed convolutions)",
                     "3D conv1 only; 2D (1×3×3) convs from conv2_x on"),
    "res3d-18-mc3": (18, "mc3", 11695440, 21.671, "Table 6 (mixed convolutions)",
                     "3D convs in conv1 and conv2_x; 2D from conv3_x on (torchvision's mc3_18)"),
    "res3d-18-mc4": (18, "mc4", 12727632, 19.976, "Table 6 (mixed convolutions)",
                     "3D convs up to conv3_x; 2D in conv4_x and conv5_x"),
    "res3d-18-mc5": (18, "mc5", 16856400, 19.950, "Table 6 (mixed convolutions)",
                     "3D convs up to conv4_x; 2D in conv5_x only"),
    "res3d-18-2.5d": (18, "2.5d", 31518204, 20.585, "Table 6 (2.5D convolutions)",
                      "every block conv factorised as 1×3×3 then 3×1×1, its intermediate width "
                      "keeping a 3×3×3 conv's parameter count (torchvision's Conv2Plus1D rule); "
                      "the stem keeps Table 2's 3×7×7 conv"),
}  # fmt: skip


def _register(name: str, depth: int, convs: str, num_params: int, gmacs: float, table: str,
              what: str) -> None:  # fmt: skip
    def build(*, num_classes: int = 400) -> VideoResNet:
        return _res3d(layers=DEPTHS[depth], convs=convs, num_classes=num_classes)

    build.__name__ = build.__qualname__ = name.replace("-", "_").replace(".", "p")
    build.__doc__ = (
        f"{name}: {what} (Tran et al., 2017, {table}).\n\n"
        "Args:\n    num_classes: Rows of ``fc``.\n\n"
        "Returns:\n    A randomly initialized CPU model.\n"
    )
    register_backbone(
        name, layers=DEPTHS[depth], num_params=num_params, gmacs=gmacs,
        paper=f"{_PAPER}, {table}", **_COMMON,
    )(build)  # fmt: skip


for _name, _row in _VARIANTS.items():
    _register(_name, *_row)
