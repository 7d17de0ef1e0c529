"""Ghost batch normalization: batch statistics per small sub-batch inside a large SGD batch.

Feichtenhofer et al. (NIPS 2016) trained ST-ResNet with batches of 128 videos split into 32
sub-batches (``opts.train.batchSize = 128``, ``numSubBatches = 32`` in the authors'
``STResNet_stage1.m``), so every BN layer saw the statistics of 4 videos × 5 chunks only.
:class:`GhostBatchNorm3d` reproduces that inside one forward pass of a large batch: in
training, every ``virtual_batch`` consecutive samples are normalized with their own mean and
variance; in evaluation it is exactly :class:`torch.nn.BatchNorm3d`.

It subclasses ``BatchNorm3d``, so its state-dict keys (``weight``, ``bias``,
``running_mean``, ``running_var``, ``num_batches_tracked``) are BatchNorm3d's and checkpoints
load strictly in either direction.

Example:
    >>> model = get_backbone("st-resnet-50", num_classes=101)  # doctest: +SKIP
    >>> use_ghost_batch_norm(model, virtual_batch=4)  # doctest: +SKIP
    106
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["GhostBatchNorm3d", "use_ghost_batch_norm"]


class GhostBatchNorm3d(nn.BatchNorm3d):
    """BatchNorm3d whose training statistics come from sub-batches of ``virtual_batch`` samples.

    Running statistics are updated once per forward pass (so ``momentum`` keeps its meaning
    per SGD step) with the average over sub-batches of each sub-batch's mean and unbiased
    variance, the statistics the sub-batches were normalized with.

    Args:
        num_features: Channels ``C`` of the ``(N, C, T, H, W)`` input.
        virtual_batch: Samples per normalization group; the last group may be smaller.
        eps, momentum, affine, track_running_stats: As in :class:`torch.nn.BatchNorm3d`.
    """

    def __init__(
        self,
        num_features: int,
        *,
        virtual_batch: int = 4,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
    ) -> None:
        super().__init__(
            num_features,
            eps=eps,
            momentum=momentum,
            affine=affine,
            track_running_stats=track_running_stats,
        )
        if virtual_batch < 1:
            raise ValueError(f"virtual_batch must be at least 1, got {virtual_batch}")
        self.virtual_batch = virtual_batch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalize ``(N, C, T, H, W)``; per sub-batch statistics in training mode."""
        self._check_input_dim(x)
        use_batch_stats = self.training or not self.track_running_stats
        if not use_batch_stats or x.shape[0] <= self.virtual_batch:
            return super().forward(x)

        chunks = torch.split(x, self.virtual_batch, dim=0)
        out = torch.cat(
            [
                F.batch_norm(chunk, None, None, self.weight, self.bias, True, 0.0, self.eps)
                for chunk in chunks
            ],
            dim=0,
        )
        if self.training and self.track_running_stats:
            self._update_running_stats(chunks)
        return out

    @torch.no_grad()
    def _update_running_stats(self, chunks: tuple[torch.Tensor, ...]) -> None:
        means, variances = [], []
        for chunk in chunks:
            flat = chunk.transpose(0, 1).reshape(chunk.shape[1], -1).float()
            means.append(flat.mean(dim=1))
            # A one-value group has no unbiased variance; BatchNorm3d would refuse it outright.
            variances.append(flat.var(dim=1, unbiased=flat.shape[1] > 1))
        assert self.num_batches_tracked is not None
        self.num_batches_tracked.add_(1)
        momentum = 1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum
        mean = torch.stack(means).mean(dim=0).to(self.running_mean.dtype)
        var = torch.stack(variances).mean(dim=0).to(self.running_var.dtype)
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(var, momentum)

    def extra_repr(self) -> str:
        """Shown by ``print(model)``."""
        return f"{super().extra_repr()}, virtual_batch={self.virtual_batch}"


def use_ghost_batch_norm(model: nn.Module, *, virtual_batch: int) -> int:
    """Switch every BatchNorm3d of ``model`` to :class:`GhostBatchNorm3d`, in place.

    Parameters and running statistics are kept (the same tensors), so a state dict saved
    before or after loads strictly either way. Layers that already are ghost BN get the new
    ``virtual_batch``.

    Args:
        model: Any module.
        virtual_batch: Samples per normalization group (the paper's code: 4).

    Returns:
        How many layers were replaced or updated.
    """
    count = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, GhostBatchNorm3d):
                child.virtual_batch = virtual_batch
                count += 1
            elif isinstance(child, nn.BatchNorm3d):
                setattr(parent, name, _ghost_from(child, virtual_batch))
                count += 1
    return count


def _ghost_from(bn: nn.BatchNorm3d, virtual_batch: int) -> GhostBatchNorm3d:
    with torch.device("meta"):  # the tensors are taken over from ``bn`` below
        ghost = GhostBatchNorm3d(
            bn.num_features,
            virtual_batch=virtual_batch,
            eps=bn.eps,
            momentum=bn.momentum,
            affine=bn.affine,
            track_running_stats=bn.track_running_stats,
        )
    ghost.weight, ghost.bias = bn.weight, bn.bias
    ghost.running_mean, ghost.running_var = bn.running_mean, bn.running_var
    ghost.num_batches_tracked = bn.num_batches_tracked
    ghost.train(bn.training)
    return ghost
