"""Building blocks shared by the 3D CNN builders: conv makers, the residual block, initialization.

A *conv maker* builds one "conv + BN" unit of a block (or of a stem) as attributes of the
module that owns it, under the key names of Hara et al.'s code
(github.com/kenshohara/3D-ResNets-PyTorch), and applies it in ``forward``. It plays the part of
torchvision's ``conv_makers`` (``torchvision/models/video/resnet.py``): the same block class
becomes a 3D or a (2+1)D block depending on the maker it is given.

- :data:`CONV_3D`: one ``t×k×k`` conv and a BN, keys ``conv{n}``, ``bn{n}``
  (Hara's 3D ResNets, Hara et al., CVPR 2018, arXiv:1711.09577).
- :data:`CONV_2PLUS1D`: a ``1×k×k`` spatial conv to :func:`mid_planes` channels, BN, ReLU,
  a ``t×1×1`` temporal conv and a BN, keys ``conv{n}_s``, ``bn{n}_s``, ``conv{n}_t``,
  ``bn{n}_t`` (Tran et al., CVPR 2018, arXiv:1711.11248, in Hara's ``models/resnet2p1d.py``).

The maker looks its modules up by name at every call, so code that swaps a module for another
(batch-norm folding, ghost batch norm) keeps working.

:class:`ResidualBlock` is the frame of every residual block here (Hara's, their (2+1)D and
pre-activation versions, ST-ResNet's): it builds the residual branch, then ``relu`` and
``downsample`` (that order of registration fixes the order of seeded initialization), and
adds the shortcut to the branch.
"""

from __future__ import annotations

import abc
from typing import Any, ClassVar

import torch
from torch import nn

__all__ = [
    "CONV_2PLUS1D",
    "CONV_3D",
    "Conv2Plus1DMaker",
    "Conv3DMaker",
    "ConvMaker",
    "ResidualBlock",
    "conv1x1x1",
    "conv3d",
    "init_weights",
    "mid_planes",
]

#: ``(time, space)``: a kernel ``t×k×k`` or a stride ``(s_t, s, s)``.
TimeSpace = tuple[int, int]


def conv3d(
    in_planes: int,
    out_planes: int,
    *,
    kernel: TimeSpace = (3, 3),
    stride: TimeSpace = (1, 1),
    groups: int = 1,
) -> nn.Conv3d:
    """A bias-free ``t×k×k`` conv, padded by half its kernel (``t // 2``, ``k // 2``)."""
    (t, k), (st, s) = kernel, stride
    return nn.Conv3d(
        in_planes,
        out_planes,
        kernel_size=(t, k, k),
        stride=(st, s, s),
        padding=(t // 2, k // 2, k // 2),
        groups=groups,
        bias=False,
    )


def conv1x1x1(in_planes: int, out_planes: int, stride: int = 1) -> nn.Conv3d:
    """A bias-free pointwise conv (bottleneck ends, projection shortcuts)."""
    return nn.Conv3d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


def mid_planes(in_planes: int, out_planes: int, *, t: int = 3, k: int = 3) -> int:
    """Middle channels of a (2+1)D factorization of a ``t×k×k`` conv (Tran et al., Eq. 5).

    ``⌊in·out·t·k² / (in·k² + t·out)⌋`` gives the pair about the weights of the full conv.
    """
    return (in_planes * out_planes * t * k * k) // (in_planes * k * k + t * out_planes)


class ConvMaker(abc.ABC):
    """Builds and applies conv + BN unit ``n`` of an ``owner`` module (see the module docstring).

    The owner must have a ``relu`` module (an in-place ``nn.ReLU``) when the unit uses one.
    """

    def build(
        self,
        owner: nn.Module,
        n: int,
        in_planes: int,
        out_planes: int,
        *,
        kernel: TimeSpace = (3, 3),
        stride: TimeSpace = (1, 1),
        groups: int = 1,
    ) -> None:
        """Add unit ``n``'s modules to ``owner``, in the order they run.

        Args:
            owner: The block or network that stores them.
            n: Number in the key names (``conv{n}``, ...).
            in_planes: Input channels.
            out_planes: Output channels.
            kernel: ``(t, k)`` of the ``t×k×k`` conv the unit stands for.
            stride: ``(time, space)`` stride.
            groups: Groups of the conv.
        """
        for name, module in self.modules(in_planes, out_planes, kernel, stride, groups):
            owner.add_module(name.format(n), module)

    @abc.abstractmethod
    def modules(
        self, in_planes: int, out_planes: int, kernel: TimeSpace, stride: TimeSpace, groups: int
    ) -> list[tuple[str, nn.Module]]:
        """The unit's ``(name template, module)`` pairs; ``{}`` in a name is the unit's number."""

    @abc.abstractmethod
    def __call__(self, owner: nn.Module, n: int, x: torch.Tensor) -> torch.Tensor:
        """Apply unit ``n`` of ``owner`` to ``(N, C, T, H, W)``; no activation after its BN."""


class Conv3DMaker(ConvMaker):
    """One ``t×k×k`` conv and a BN: keys ``conv{n}``, ``bn{n}``."""

    def modules(
        self, in_planes: int, out_planes: int, kernel: TimeSpace, stride: TimeSpace, groups: int
    ) -> list[tuple[str, nn.Module]]:
        """See :meth:`ConvMaker.modules`."""
        conv = conv3d(in_planes, out_planes, kernel=kernel, stride=stride, groups=groups)
        return [("conv{}", conv), ("bn{}", nn.BatchNorm3d(out_planes))]

    def __call__(self, owner: nn.Module, n: int, x: torch.Tensor) -> torch.Tensor:
        """``bn{n}(conv{n}(x))``."""
        return getattr(owner, f"bn{n}")(getattr(owner, f"conv{n}")(x))


class Conv2Plus1DMaker(ConvMaker):
    """Spatial ``1×k×k`` then temporal ``t×1×1`` conv, each with a BN, ReLU between them.

    Keys ``conv{n}_s``, ``bn{n}_s``, ``conv{n}_t``, ``bn{n}_t``; the spatial conv has
    :func:`mid_planes` outputs and strides in H and W, the temporal conv strides in T.
    """

    def modules(
        self, in_planes: int, out_planes: int, kernel: TimeSpace, stride: TimeSpace, groups: int
    ) -> list[tuple[str, nn.Module]]:
        """See :meth:`ConvMaker.modules`.

        Raises:
            ValueError: ``groups`` other than 1.
        """
        if groups != 1:
            raise ValueError("(2+1)D convs are not grouped")
        (t, k), (st, s) = kernel, stride
        mid = mid_planes(in_planes, out_planes, t=t, k=k)
        return [
            ("conv{}_s", conv3d(in_planes, mid, kernel=(1, k), stride=(1, s))),
            ("bn{}_s", nn.BatchNorm3d(mid)),
            ("conv{}_t", conv3d(mid, out_planes, kernel=(t, 1), stride=(st, 1))),
            ("bn{}_t", nn.BatchNorm3d(out_planes)),
        ]

    def __call__(self, owner: nn.Module, n: int, x: torch.Tensor) -> torch.Tensor:
        """``bn{n}_t(conv{n}_t(relu(bn{n}_s(conv{n}_s(x)))))``."""
        x = owner.relu(getattr(owner, f"bn{n}_s")(getattr(owner, f"conv{n}_s")(x)))
        return getattr(owner, f"bn{n}_t")(getattr(owner, f"conv{n}_t")(x))


#: Full 3D convs (Hara's ``resnet``).
CONV_3D = Conv3DMaker()
#: (2+1)D convs (Hara's ``resnet2p1d``).
CONV_2PLUS1D = Conv2Plus1DMaker()


def init_weights(model: nn.Module) -> None:
    """Kaiming-normal convs (fan-out, ReLU gain) with zero bias, BN weight 1 and bias 0.

    The initialization of Hara's 2020 code and of torchvision's ResNets; linear layers are left
    to the caller.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv3d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm3d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class ResidualBlock(nn.Module, abc.ABC):
    """``relu(branch(x) + shortcut(x))``; subclasses define the branch.

    Args:
        in_planes: Input channels.
        planes: The block's width; it outputs ``expansion * planes``.
        stride: Stride of the strided unit of the branch.
        downsample: Shortcut module, or ``None`` for the identity.
        conv_maker: Builds the branch's 3×3×3 units; ``None``: the class's :attr:`conv_maker`.
        **options: Block-specific arguments of :meth:`build_branch`.
    """

    #: Output channels per ``planes``.
    expansion: ClassVar[int] = 1
    #: The conv maker used when none is given.
    conv_maker: ConvMaker = CONV_3D
    #: Apply ``relu`` to the sum (pre-activation blocks do not).
    relu_after_sum: ClassVar[bool] = True

    def __init__(
        self,
        *,
        in_planes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        conv_maker: ConvMaker | None = None,
        **options: Any,
    ) -> None:
        super().__init__()
        self.conv_maker = conv_maker or type(self).conv_maker
        self.build_branch(in_planes, planes, stride, **options)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    @abc.abstractmethod
    def build_branch(self, in_planes: int, planes: int, stride: int, **options: Any) -> None:
        """Add the residual branch's modules (called before ``relu`` and ``downsample`` exist)."""

    @abc.abstractmethod
    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch on ``(N, C, T, H, W)``."""

    def shortcut(self, x: torch.Tensor) -> torch.Tensor:
        """``downsample(x)``, or ``x`` without one."""
        return x if self.downsample is None else self.downsample(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Residual block on ``(N, C, T, H, W)``."""
        out = self.branch(x) + self.shortcut(x)
        return self.relu(out) if self.relu_after_sum else out
