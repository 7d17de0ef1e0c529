"""Stage layouts of Hara et al.'s ResNet and DenseNet depths, as plain data.

Shared by the builders and by checkpoint layout detection
(:mod:`feat3d.backbones.layouts`), which must recognise a depth from a file's keys without
importing any network module.
"""

from __future__ import annotations

__all__ = ["DENSENET_DEPTHS", "HARA_RESNET_DEPTHS"]

#: Depth → (bottleneck blocks?, blocks per stage) of Hara's ResNets; the pre-activation,
#: wide, ResNeXt and (2+1)D variants use the same stage counts.
HARA_RESNET_DEPTHS: dict[int, tuple[bool, tuple[int, int, int, int]]] = {
    10: (False, (1, 1, 1, 1)),
    18: (False, (2, 2, 2, 2)),
    34: (False, (3, 4, 6, 3)),
    50: (True, (3, 4, 6, 3)),
    101: (True, (3, 4, 23, 3)),
    152: (True, (3, 8, 36, 3)),
    200: (True, (3, 24, 36, 3)),
}

#: Depth → dense layers per block of Hara's (and torchvision's 2D) DenseNets.
DENSENET_DEPTHS: dict[int, tuple[int, int, int, int]] = {
    121: (6, 12, 24, 16),
    169: (6, 12, 32, 32),
    201: (6, 12, 48, 32),
    264: (6, 12, 64, 48),
}
