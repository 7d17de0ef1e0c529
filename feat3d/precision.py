"""Numeric precision: one vocabulary (``auto``/``fp32``/``bf16``/``fp16``), resolved per
device, checked once, and carried out by one autocast builder.

``auto`` means fp16 autocast on CUDA (with loss scaling in training) and fp32 on the CPU.
``bf16`` on a CPU needs bf16 instructions: without them PyTorch runs bf16 convolutions in
reference kernels, over 100x slower than fp32 (figures in the docs' speed page), so it is
refused there. ``fp16`` needs CUDA.
"""

from __future__ import annotations

import contextlib
from contextlib import AbstractContextManager
from enum import Enum

import torch

from .errors import RunError, UsageError


class PrecisionError(RunError, ValueError):
    """A precision this device cannot run at a useful speed."""


class UnknownPrecision(UsageError, ValueError):
    """A name that is not a precision."""


class Precision(str, Enum):
    """How a network computes. A ``str`` enum: ``Precision("bf16") == "bf16"``."""

    AUTO = "auto"
    FP32 = "fp32"
    BF16 = "bf16"
    FP16 = "fp16"

    @classmethod
    def parse(cls, value: str | Precision) -> Precision:
        """``value`` as a Precision; an unknown name is an :class:`UnknownPrecision`."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise UnknownPrecision(f"precision must be one of {names}, not {value!r}") from None

    def resolve(self, device: torch.device) -> Precision:
        """``auto`` → fp16 on CUDA, fp32 elsewhere; the other values stay as they are."""
        if self is not Precision.AUTO:
            return self
        return Precision.FP16 if torch.device(device).type == "cuda" else Precision.FP32

    def check(self, device: torch.device) -> None:
        """Refuse what ``device`` cannot run at a useful speed (see the module docstring)."""
        device = torch.device(device)
        if device.type == "cuda" or self in (Precision.FP32, Precision.AUTO):
            return
        if self is Precision.FP16:
            raise PrecisionError(
                "fp16 needs a CUDA device; on the CPU use fp32 (or bf16 where the CPU has "
                "bf16 instructions)"
            )
        if device.type == "cpu" and not cpu_has_native_bf16():
            raise PrecisionError(
                "bf16 needs a CUDA device or a CPU with bf16 instructions (AVX512-BF16, "
                "AMX-BF16 or Arm BF16); this CPU has none, and PyTorch's bf16 convolutions "
                "fall back to reference kernels on it, over 100x slower than fp32: use "
                "--precision fp32"
            )

    @property
    def dtype(self) -> torch.dtype:
        """The dtype of the reduced-precision arithmetic (fp32 for ``fp32``)."""
        return _DTYPES[self]

    def autocast(self, device: torch.device) -> AbstractContextManager[object]:
        """The autocast context for this precision on ``device`` (none for fp32)."""
        if self in (Precision.FP32, Precision.AUTO):
            return contextlib.nullcontext()
        return torch.autocast(torch.device(device).type, dtype=self.dtype)


_DTYPES = {
    Precision.AUTO: torch.float32,
    Precision.FP32: torch.float32,
    Precision.BF16: torch.bfloat16,
    Precision.FP16: torch.float16,
}

#: The names ``--precision`` takes, ``auto`` first.
PRECISIONS: tuple[str, ...] = tuple(p.value for p in Precision)


def cpu_has_native_bf16() -> bool:
    """Whether this CPU has bf16 dot-product instructions (AVX512-BF16 or AMX-BF16 on x86,
    BF16 on Arm), which make bf16 convolutions about twice as fast as fp32 ones."""
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is None:  # torch < 2.8
        return False
    try:
        found = capabilities()
    except Exception:  # pragma: no cover - a CPU the probe does not know
        return False
    return any(bool(found.get(name)) for name in ("avx512_bf16", "amx_bf16", "bf16", "sve_bf16"))


def resolve_precision(precision: str | Precision, device: torch.device) -> Precision:
    """Parse, resolve ``auto`` for ``device`` and check: the precision a run uses."""
    resolved = Precision.parse(precision).resolve(device)
    resolved.check(device)
    return resolved


def check_precision(precision: str | Precision, device: torch.device) -> None:
    """Refuse a precision that ``device`` cannot run at a useful speed.

    Raises:
        UnknownPrecision: Not a precision's name.
        PrecisionError: fp16 off CUDA, or bf16 on a CPU without bf16 instructions.
    """
    Precision.parse(precision).check(device)
