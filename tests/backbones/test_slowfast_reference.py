"""Slow-R50 and SlowFast-R50 against forwards written here with torch.nn.functional.

The references follow the published design (Feichtenhofer et al., ICCV 2019,
arXiv:1812.03982; PyTorchVideo's ``create_resnet`` and ``create_slowfast`` with the hub's
settings) and read nothing from feat3d but the weights of the model's own ``state_dict()``,
under PyTorchVideo's key names. Every kernel, stride, padding, fusion and pooling below is
spelled out from the paper's tables, so a model that got one wrong disagrees with them.
"""

from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F

from feat3d.backbones import get_backbone

Shape = tuple[int, ...]
TOL = {"rtol": 1e-4, "atol": 1e-4}

#: Bottlenecks per stage (res2 .. res5) of a ResNet-50.
DEPTHS = (3, 4, 6, 3)
#: Temporal size of ``conv_a`` per stage: the Slow pathway is non-degenerate in res4/res5
#: only, the Fast pathway in every stage (paper, Table 1).
SLOW_T, FAST_T = (1, 1, 3, 3), (3, 3, 3, 3)
ALPHA = 4


@functools.cache
def _randomized(name: str) -> tuple[torch.nn.Module, dict[str, torch.Tensor]]:
    """The model in eval mode with random convs, BN affine and statistics, and classifier
    (built once per test session; the tests only read it)."""
    torch.manual_seed(0)
    model = get_backbone(name, num_classes=7).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv3d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
            elif isinstance(m, torch.nn.BatchNorm3d):
                c = m.num_features
                m.running_mean.copy_(torch.randn(c, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(c, generator=g) + 0.5)
                m.weight.copy_(torch.rand(c, generator=g) + 0.5)
                m.bias.copy_(torch.randn(c, generator=g) * 0.1)
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features**0.5)
                m.bias.copy_(torch.randn(m.out_features, generator=g))
    return model, model.state_dict()


def _bn(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    """Eval-mode batch norm with the statistics stored under ``p``."""
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"],
                        sd[f"{p}.bias"], training=False, eps=1e-5)  # fmt: skip


def _stem(x: torch.Tensor, sd: dict, p: str, t_kernel: int) -> torch.Tensor:
    """conv t×7×7 /(1,2,2) (half padding), BN, ReLU, max-pool 1×3×3 /(1,2,2) pad (0,1,1)."""
    x = F.conv3d(x, sd[f"{p}.conv.weight"], stride=(1, 2, 2), padding=(t_kernel // 2, 3, 3))
    x = F.relu(_bn(x, sd, f"{p}.norm"))
    return F.max_pool3d(x, (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))


def _block(
    x: torch.Tensor, sd: dict, p: str, t_kernel: int, stride: int, *, project: bool
) -> torch.Tensor:
    """ResBlock: conv_a t×1×1, conv_b 1×3×3 /(1,s,s), conv_c 1×1×1 (each BN, ReLU but the
    last), plus the identity, or in a stage's first block a 1×1×1 /(1,s,s) projection + BN;
    then ReLU."""
    q = f"{p}.branch2"
    y = F.conv3d(x, sd[f"{q}.conv_a.weight"], padding=(t_kernel // 2, 0, 0))
    y = F.relu(_bn(y, sd, f"{q}.norm_a"))
    y = F.conv3d(y, sd[f"{q}.conv_b.weight"], stride=(1, stride, stride), padding=(0, 1, 1))
    y = F.relu(_bn(y, sd, f"{q}.norm_b"))
    y = _bn(F.conv3d(y, sd[f"{q}.conv_c.weight"]), sd, f"{q}.norm_c")
    shortcut = x
    if project:
        shortcut = F.conv3d(x, sd[f"{p}.branch1_conv.weight"], stride=(1, stride, stride))
        shortcut = _bn(shortcut, sd, f"{p}.branch1_norm")
    return F.relu(shortcut + y)


def _stage(x: torch.Tensor, sd: dict, p: str, stage: int, t_kernel: int) -> torch.Tensor:
    """Stage ``stage`` (0 = res2): spatial stride 2 in the first block of res3 .. res5."""
    for b in range(DEPTHS[stage]):
        stride = 2 if b == 0 and stage > 0 else 1
        x = _block(x, sd, f"{p}.res_blocks.{b}", t_kernel, stride, project=b == 0)
    return x


def _head_pool(x: torch.Tensor, window: Shape) -> torch.Tensor:
    """AvgPool3d(window, stride 1), the window cut to the map, then the average over what is
    left (the per-position projection of PyTorchVideo's head, averaged, is the projection of
    this average)."""
    window = tuple(min(k, s) for k, s in zip(window, x.shape[2:], strict=True))
    return F.avg_pool3d(x, window, stride=1).mean(dim=(2, 3, 4))


def _reference_slow(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Slow-R50 (create_resnet, stem 1×7×7, head window 8×7×7): (conv5, pool5, logits)."""
    x = _stem(x, sd, "blocks.0", 1)
    for s in range(4):
        x = _stage(x, sd, f"blocks.{s + 1}", s, SLOW_T[s])
    pool5 = _head_pool(x, (8, 7, 7))
    return x, pool5, F.linear(pool5, sd["blocks.5.proj.weight"], sd["blocks.5.proj.bias"])


def _fuse(slow: torch.Tensor, fast: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    """Fast → Slow lateral: conv 7×1×1 /(α,1,1) pad (3,0,0) to 2βC, BN, ReLU, concatenated
    after the Slow channels."""
    f = F.conv3d(fast, sd[f"{p}.conv_fast_to_slow.weight"], stride=(ALPHA, 1, 1),
                 padding=(3, 0, 0))  # fmt: skip
    return torch.cat([slow, F.relu(_bn(f, sd, f"{p}.norm"))], dim=1)


def _reference_slowfast(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """SlowFast-R50 (create_slowfast, α 4, β 1/8, fusion 7×1×1): (slow conv5, fast conv5,
    pool5, logits) from one Fast-rate clip."""
    frames = x.shape[2]
    index = torch.linspace(0, frames - 1, frames // ALPHA).long()  # PackPathway
    slow, fast = x[:, :, index], x
    slow = _stem(slow, sd, "blocks.0.multipathway_blocks.0", 1)
    fast = _stem(fast, sd, "blocks.0.multipathway_blocks.1", 5)
    slow = _fuse(slow, fast, sd, "blocks.0.multipathway_fusion")
    for s in range(4):
        p = f"blocks.{s + 1}"
        slow = _stage(slow, sd, f"{p}.multipathway_blocks.0", s, SLOW_T[s])
        fast = _stage(fast, sd, f"{p}.multipathway_blocks.1", s, FAST_T[s])
        if s < 3:
            slow = _fuse(slow, fast, sd, f"{p}.multipathway_fusion")
    pool5 = torch.cat([_head_pool(slow, (8, 7, 7)), _head_pool(fast, (32, 7, 7))], dim=1)
    logits = F.linear(pool5, sd["blocks.6.proj.weight"], sd["blocks.6.proj.bias"])
    return slow, fast, pool5, logits


def _close(actual: torch.Tensor, expected: torch.Tensor) -> None:
    torch.testing.assert_close(actual, expected, **TOL)


# 12 frames: the 8-frame head window takes 5 positions in time before the final average;
# 40 px: odd maps (20 → 10 → 5 → 3 → 2), where a wrong padding or stride shows.
@pytest.mark.parametrize(("frames", "size"), [(12, 40), (8, 32)])
def test_slow_r50_matches_the_reference(frames: int, size: int) -> None:
    model, sd = _randomized("slow-r50")
    x = torch.randn(1, 3, frames, size, size, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        out = model.forward_layers(x, ("conv5", "pool5", "logits"), pool=False)
        conv5, pool5, logits = _reference_slow(sd, x)
        direct = model(x)
    assert conv5.shape[2] == frames  # no temporal striding anywhere
    _close(out["conv5"], conv5)
    _close(out["pool5"], pool5)
    _close(out["logits"], logits)
    _close(direct, logits)
    assert logits.std() > 0.1  # a randomized head: the logits are not all near zero


# 16 frames: Slow 0, 5, 10, 15; 36 frames: 9 Slow frames (0, 4, 8, 13, ...), more than the
# Slow window (8) and the Fast one (32), so both take several positions in time.
@pytest.mark.parametrize(("frames", "size"), [(16, 40), (36, 32)])
def test_slowfast_r50_matches_the_reference(frames: int, size: int) -> None:
    model, sd = _randomized("slowfast-r50")
    x = torch.randn(1, 3, frames, size, size, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = model.forward_layers(x, ("conv5", "pool5", "logits"), pool=False)
        slow, fast, pool5, logits = _reference_slowfast(sd, x)
    assert slow.shape[2] == frames // ALPHA and fast.shape[2] == frames
    assert (slow.shape[1], fast.shape[1]) == (2048, 256)
    n, c, t, h, w = fast.shape
    fast_at_slow_rate = fast.reshape(n, c, t // ALPHA, ALPHA, h, w).mean(dim=3)
    _close(out["conv5"], torch.cat([slow, fast_at_slow_rate], dim=1))
    _close(out["pool5"], pool5)
    _close(out["logits"], logits)
    assert logits.std() > 0.1
