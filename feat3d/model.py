"""A backbone with its weights' metadata, placed on a device: uint8 clips in, outputs out.

Normalization lives here, on the device, taken from the weights' metadata; callers hand over
clips exactly as the decoder produced them, ``(N, T, H, W, 3)`` uint8.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .backbones import WeightsMeta, get_backbone, list_backbones, resolve_weights

#: Every layer name some network provides; each network lists its own in ``VideoModel.layers``.
LAYERS: tuple[str, ...] = ("conv5", "pool5", "fc6", "fc7", "logits", "probs")
PRECISIONS: tuple[str, ...] = ("fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def select_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` → the first CUDA device when there is one, else the CPU.

    Raises:
        ValueError: An unknown device, or CUDA asked for on a machine without it.
    """
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        chosen = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}: use auto, cpu, cuda or cuda:N") from error
    if chosen.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {device!r} asked for, but CUDA is not available here")
        if chosen.index is not None and chosen.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {device!r} asked for, but only {torch.cuda.device_count()} CUDA "
                "device(s) are visible"
            )
    elif chosen.type != "cpu":
        raise ValueError(f"device {device!r} is not supported: use auto, cpu, cuda or cuda:N")
    return chosen


@dataclass
class VideoModel:
    """A network ready for inference.

    Attributes:
        backbone: The CPU-built network, moved to ``device`` and in eval mode.
        meta: Metadata of its weights (classes, normalization, clip length, input size).
        device: Where it runs.
        precision: ``fp32``, ``bf16`` or ``fp16`` (the last two through autocast).
    """

    backbone: nn.Module
    meta: WeightsMeta
    device: torch.device
    precision: str = "fp32"

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, not {self.precision!r}")
        if self.precision == "fp16" and self.device.type != "cuda":
            raise ValueError("fp16 needs a CUDA device; on the CPU use --precision bf16")
        self.backbone = self.backbone.to(self.device).eval()
        scale = self.meta.value_scale / 255.0
        mean = torch.tensor(self.meta.mean, dtype=torch.float32)
        std = torch.tensor(self.meta.std, dtype=torch.float32)
        # (x * value_scale/255 - mean) / std folded into one multiply-add.
        self._mul = (scale / std).view(1, 3, 1, 1, 1).to(self.device)
        self._add = (-mean / std).view(1, 3, 1, 1, 1).to(self.device)

    @property
    def categories(self) -> list[str]:
        return list(self.meta.categories)

    @property
    def random_weights(self) -> bool:
        return self.meta.format == "random"

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``(N, T, H, W, 3)`` clips → normalized float ``(N, 3, T, H, W)`` on the
        device, in the channel order the weights were trained with."""
        clips = clips.to(self.device, non_blocking=True)
        x = clips.permute(0, 4, 1, 2, 3).float() * self._mul + self._add
        return x.flip(1) if self.meta.channel_order == "BGR" else x

    def _autocast(self):  # type: ignore[no-untyped-def]
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    @property
    def layers(self) -> dict[str, int]:
        """Layers this network can output, with their width per clip (``probs``: softmax of
        ``logits``)."""
        available = dict(self.backbone.feature_layers())
        if "logits" in available:
            available["probs"] = available["logits"]
        return available

    @property
    def default_layer(self) -> str:
        """The layer the network's paper uses as its feature (``pool5``; ``fc6`` for C3D)."""
        return self.backbone.default_feature_layer

    def check_layer(self, layer: str) -> None:
        """Raise ``ValueError`` naming the choices when the network has no such layer."""
        if layer not in self.layers:
            raise ValueError(
                f"{self.meta.arch} has no layer {layer!r}; choose from {', '.join(self.layers)}"
            )

    @torch.inference_mode()
    def run(
        self, clips: torch.Tensor, layers: tuple[str, ...] = ("pool5",), *, pool: bool = True
    ) -> dict[str, np.ndarray]:
        """Run a batch and return the requested layers as float32 arrays.

        Args:
            clips: uint8 ``(N, T, H, W, 3)`` (CPU, pinned when the device is CUDA, or already
                on the device).
            layers: Names from :attr:`layers`: ``conv5`` (last stage, pooled), ``pool5``
                (pooled trunk features), ``fc6``/``fc7`` (C3D), ``logits``, ``probs``.
            pool: With ``False``, ``conv5`` keeps its ``(D, t, h, w)`` map per clip.

        Returns:
            One ``(N, ...)`` array per requested layer.
        """
        for layer in layers:
            self.check_layer(layer)
        needed = tuple(dict.fromkeys("logits" if n == "probs" else n for n in layers))
        x = self.normalize(clips)
        with self._autocast():
            outputs = self.backbone.forward_layers(x, needed, pool=pool)
        if "probs" in layers:
            outputs["probs"] = torch.softmax(outputs["logits"].float(), dim=1)
        return {name: outputs[name].float().cpu().numpy() for name in layers}


def load_model(
    model: str | None = None,
    weights: str | None = "DEFAULT",
    *,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    trust_checkpoint: bool = False,
    num_classes: int | None = None,
) -> VideoModel:
    """Build a registry network, load its weights and place it on a device.

    Args:
        model: Registry name (see ``feat3d.backbones.list_backbones()``). Leave it out to take
            the architecture a checkpoint file records; with no weights it defaults to
            ``r3d_18``.
        weights: ``"DEFAULT"`` (the model's default published weights, through the torch.hub
            cache), a named weights (``"r3d_18.kinetics400_v1"``), a checkpoint path in any
            supported format, or ``None``/``"none"`` for random initialization.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N``.
        precision: ``fp32``; ``bf16`` or ``fp16`` run under autocast.
        trust_checkpoint: Allow full unpickling of a checkpoint holding Python objects. It
            can run code stored in the file: only for files from a source you trust.
        num_classes: Classifier rows for random initialization (default 400, or the
            family's). With weights it is read from the checkpoint; a different value raises.

    Returns:
        A ``VideoModel`` whose metadata says how to decode and normalize its input.

    Example:
        >>> model = load_model("resnet-18", weights=None, device="cpu")
        >>> model.meta.clip_len
        16
    """
    if model is not None and model not in list_backbones():
        raise ValueError(f"unknown model {model!r}; available: {', '.join(list_backbones())}")
    chosen = select_device(device)
    resolved = resolve_weights(weights, model=model, trust=trust_checkpoint)
    if resolved.meta.format == "random":
        warnings.warn(
            f"{resolved.arch} has random weights (--weights none): its features and labels "
            "mean nothing",
            stacklevel=2,
        )
    if resolved.state_dict is None:
        backbone = get_backbone(resolved.arch, num_classes=num_classes)
    else:
        backbone = get_backbone(resolved.arch, weights=resolved, num_classes=num_classes)
    return VideoModel(backbone=backbone, meta=backbone.meta, device=chosen, precision=precision)
