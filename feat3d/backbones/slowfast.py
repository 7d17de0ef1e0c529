"""SlowFast-R50 in the key layout of PyTorchVideo's ``SLOWFAST_8x8_R50.pyth``, from one clip.

C. Feichtenhofer, H. Fan, J. Malik, K. He. "SlowFast Networks for Video Recognition." ICCV
2019 (arXiv:1812.03982). Layout of ``pytorchvideo.models.slowfast.create_slowfast`` with the
hub's ``slowfast_fusion_conv_kernel_size=(7, 1, 1)``: ``blocks.0`` .. ``blocks.4`` are
``MultiPathWayWithFuse`` modules (``multipathway_blocks.0`` the Slow pathway, ``.1`` the
Fast one, ``multipathway_fusion.conv_fast_to_slow`` the lateral 7×1×1 /(α,1,1) conv after the
stem and each of the first three stages), ``blocks.5`` the pooling (no weights) and
``blocks.6.proj`` the classifier on the 2048 + 256 = 2304 concatenated features.

The network takes the Fast pathway's clip, ``(N, 3, T, H, W)`` (32 frames 2 apart for the
published weights), and samples the Slow pathway's ``T // α`` frames from it itself, at
PyTorchVideo's ``PackPathway`` indices ``linspace(0, T - 1, T // α)``, so one decode feeds both
pathways. ``T`` must be a multiple of α (4) for the fusions' shapes to agree.

Layers: ``pool5`` the 2304-d head input (each pathway averaged over the head's window, then
over what is left, then concatenated), ``logits``, and ``conv5``: both pathways' last stage,
pooled to 2304 values, or unpooled as ``(N, 2304, T // α, h, w)`` with the Fast map averaged
over each α consecutive frames to the Slow map's time steps.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from feat3d.backbones.pytorchvideo import (
    PtvNet,
    ResNetBasicHead,
    ResNetBasicStem,
    Triple,
    conv_padded,
    init_ptv_weights,
    resnet_stages,
    window_pool,
)
from feat3d.backbones.registry import register_backbone

__all__ = ["ALPHA", "FuseFastToSlow", "MultiPathWayWithFuse", "SlowFast", "slowfast_r50"]

#: Frame-rate ratio between the pathways (α); the Fast pathway is 1/8 as wide (β).
ALPHA, BETA_INV = 4, 8


class FuseFastToSlow(nn.Module):
    """``conv_fast_to_slow`` (7×1×1, stride α in time, to twice the Fast width), BN, ReLU,
    concatenated to the Slow pathway."""

    def __init__(self, fast_width: int) -> None:
        super().__init__()
        self.conv_fast_to_slow = nn.Conv3d(
            fast_width, 2 * fast_width, (7, 1, 1), stride=(ALPHA, 1, 1), padding=(3, 0, 0),
            bias=False,
        )  # fmt: skip
        self.norm = nn.BatchNorm3d(2 * fast_width)
        self.activation = nn.ReLU()

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        fuse = self.activation(self.norm(self.conv_fast_to_slow(x[1])))
        return [torch.cat([x[0], fuse], 1), x[1]]


class MultiPathWayWithFuse(nn.Module):
    """One block per pathway (``multipathway_blocks``), then ``multipathway_fusion``."""

    def __init__(self, slow: nn.Module, fast: nn.Module, fusion: nn.Module) -> None:
        super().__init__()
        self.multipathway_blocks = nn.ModuleList([slow, fast])
        self.multipathway_fusion = fusion

    def forward(self, x: list[torch.Tensor]) -> list[torch.Tensor]:
        out = [block(p) for block, p in zip(self.multipathway_blocks, x, strict=True)]
        return self.multipathway_fusion(out)


class PoolConcatPathway(nn.Module):
    """The head's pooling (``blocks.5``, no weights): each pathway averaged over its window
    (Slow 8×7×7, Fast 32×7×7 at the published input) and what is left, then concatenated."""

    def __init__(self, kernels: tuple[Triple, Triple]) -> None:
        super().__init__()
        self.kernels = kernels

    def forward(self, x: list[torch.Tensor]) -> torch.Tensor:
        pooled = [
            window_pool(p, k).mean(dim=(2, 3, 4)) for p, k in zip(x, self.kernels, strict=True)
        ]
        return torch.cat(pooled, 1)


class SlowFast(PtvNet):
    """SlowFast-R50 (α 4, β 1/8, 7×1×1 fusions) fed one Fast-rate clip.

    Args:
        num_classes: Rows of ``proj``.
    """

    def __init__(self, num_classes: int = 400) -> None:
        super().__init__()
        self.arch_kwargs = {"num_classes": num_classes}
        self.num_classes, self.feature_dim, self.conv5_dim = num_classes, 2304, 2304
        stems = MultiPathWayWithFuse(
            ResNetBasicStem(conv_padded(3, 64, (1, 7, 7), (1, 2, 2)), 64, pool=True),
            ResNetBasicStem(conv_padded(3, 8, (5, 7, 7), (1, 2, 2)), 8, pool=True),
            FuseFastToSlow(8),
        )
        slow = resnet_stages(64, (1, 1, 3, 3), extra_in=(16, 64, 128, 256))
        fast = resnet_stages(8, (3, 3, 3, 3), scale=BETA_INV)
        fusions: list[nn.Module] = [FuseFastToSlow(w) for w in (32, 64, 128)] + [nn.Identity()]
        stages = [MultiPathWayWithFuse(*parts) for parts in zip(slow, fast, fusions, strict=True)]
        pool = PoolConcatPathway(((8, 7, 7), (32, 7, 7)))
        self.blocks = nn.ModuleList([stems, *stages, pool, ResNetBasicHead(2304, num_classes)])
        init_ptv_weights(self)

    def _stages(self, x: torch.Tensor) -> Any:
        frames = x.shape[2]
        if frames % ALPHA or frames == 0:
            raise ValueError(
                f"SlowFast needs a multiple of {ALPHA} frames (its Slow pathway takes every "
                f"{ALPHA}th), got {frames}"
            )
        index = torch.linspace(0, frames - 1, frames // ALPHA, device=x.device).long()
        pathways = [x.index_select(2, index), x]
        for block in self.blocks[:-2]:
            pathways = block(pathways)
        return pathways

    def _pool5(self, stages: Any) -> torch.Tensor:
        return self.blocks[-2](stages)

    def _conv5(self, stages: Any, *, pool: bool) -> torch.Tensor:
        slow, fast = stages
        if pool:
            return torch.cat([slow.mean(dim=(2, 3, 4)), fast.mean(dim=(2, 3, 4))], 1)
        n, c, t, h, w = fast.shape
        fast = fast.reshape(n, c, t // ALPHA, ALPHA, h, w).mean(dim=3)
        return torch.cat([slow, fast], 1)


# num_params with 400 classes; gmacs: multiply-accumulates ×1e9 for one 32×224×224 clip
# (torch.utils.flop_counter); both re-measured in tests/backbones/test_pytorchvideo.py.


@register_backbone(
    "slowfast-r50",
    family="slowfast",
    block="bottleneck",
    layers=(3, 4, 6, 3),
    widths=(64, 128, 256, 512),
    feature_dim=2304,
    default_meta="slowfast-r50",
    formats=("pytorchvideo", "feat3d"),
    stem="Slow: conv 1×7×7 to 64; Fast: conv 5×7×7 to 8; /(1,2,2), BN, ReLU, max-pool",
    num_params=34566488,
    gmacs=50.309,
    paper="Feichtenhofer et al., ICCV 2019, arXiv:1812.03982",
)
def slowfast_r50(*, num_classes: int = 400) -> SlowFast:
    """SlowFast-R50 8×8 (32 Fast frames 2 apart, 8 Slow): a randomly initialized CPU model."""
    return SlowFast(num_classes)
