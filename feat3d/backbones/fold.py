"""Batch norm folded into the convolution before it, for inference.

In eval mode ``BatchNorm3d(Conv3d(x))`` is one convolution with scaled weights and a bias, so
a network runs one pass over its activations less per such pair (resnet-50: 53 of them).
Pairs are found by watching one forward pass (a batch norm whose input *is* a convolution's
output), not by module names, so every family is handled alike; the folded copy's outputs
are compared with the original's before it is used.
"""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

#: Largest relative L2 difference (per output layer) accepted between folded and original.
TOLERANCE = 1e-4


def _conv_bn_pairs(
    network: nn.Module, example: torch.Tensor
) -> tuple[list[tuple[str, str]], dict[str, torch.Tensor]]:
    """``(conv name, batch-norm name)`` for each batch norm fed directly by a convolution,
    both called exactly once in a pass over ``example``; and that pass's outputs."""
    made_by: dict[int, tuple[str, torch.Tensor]] = {}  # id(output) → (conv, output kept alive)
    calls: dict[str, int] = {}
    fed: list[tuple[str | None, str]] = []

    def conv_hook(name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> None:
            calls[name] = calls.get(name, 0) + 1
            made_by[id(output)] = (name, output)

        return hook

    def bn_hook(name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, inputs: tuple) -> None:
            calls[name] = calls.get(name, 0) + 1
            producer = made_by.get(id(inputs[0]))
            fed.append((producer[0] if producer else None, name))

        return hook

    handles = []
    for name, module in network.named_modules():
        if isinstance(module, nn.Conv3d):  # torchvision: Conv3DSimple, Conv3DNoTemporal
            handles.append(module.register_forward_hook(conv_hook(name)))
        elif type(module) is nn.BatchNorm3d and module.running_mean is not None:
            handles.append(module.register_forward_pre_hook(bn_hook(name)))
    try:
        outputs = _outputs(network, example)
    finally:
        for handle in handles:
            handle.remove()
    pairs = [
        (conv, bn) for conv, bn in fed if conv is not None and calls[conv] == 1 and calls[bn] == 1
    ]
    return pairs, outputs


def _outputs(network: nn.Module, example: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        return network.forward_layers(example, tuple(network.feature_layers()))  # type: ignore[operator]


def fold_batchnorm(network: nn.Module, example: torch.Tensor) -> nn.Module | None:
    """A copy of ``network`` (in eval mode) with each batch norm that directly follows a
    convolution folded into it and replaced by ``nn.Identity``.

    Args:
        network: A backbone with ``forward_layers``/``feature_layers``; left unchanged
            (copied first if it is in training mode).
        example: A float input batch of the shape the network takes (values do not matter).

    Returns:
        The folded copy, or ``None`` when nothing could be folded or the folded copy's
        outputs differ from the original's by more than :data:`TOLERANCE` (relative L2):
        a convolution whose output is also used elsewhere cannot be folded.
    """
    # a pass in training mode would update the running statistics
    original = copy.deepcopy(network).eval() if network.training else network
    pairs, want = _conv_bn_pairs(original, example)
    if not pairs:
        return None
    folded = copy.deepcopy(original)
    for conv_name, bn_name in pairs:
        conv = folded.get_submodule(conv_name)
        bn = folded.get_submodule(bn_name)
        for name, module in ((conv_name, fuse_conv_bn_eval(conv, bn)), (bn_name, nn.Identity())):
            parent, _, leaf = name.rpartition(".")
            setattr(folded.get_submodule(parent) if parent else folded, leaf, module)
    got = _outputs(folded, example)
    for name, value in want.items():
        scale = value.norm().clamp_min(torch.finfo(value.dtype).tiny)
        if not (got[name] - value).norm() / scale <= TOLERANCE:
            return None
    return folded
