"""A backbone with its weights' metadata, placed on a device: uint8 clips in, outputs out.

Normalization lives here, on the device, taken from the weights' metadata; callers hand over
clips exactly as the decoder produced them, ``(N, T, H, W, 3)`` uint8.
"""

from __future__ import annotations

import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
from torch import nn

from .backbones import WeightsMeta, get_backbone, list_backbones, resolve_weights

Layer = Literal["pool5", "logits", "probs"]
LAYERS: tuple[str, ...] = ("pool5", "logits", "probs")
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
        """uint8 ``(N, T, H, W, 3)`` clips → normalized float ``(N, 3, T, H, W)`` on the device."""
        clips = clips.to(self.device, non_blocking=True)
        x = clips.permute(0, 4, 1, 2, 3).float()
        return x * self._mul + self._add

    def _autocast(self):  # type: ignore[no-untyped-def]
        if self.precision == "fp32":
            return nullcontext()
        return torch.autocast(self.device.type, dtype=_AUTOCAST_DTYPES[self.precision])

    @torch.inference_mode()
    def run(
        self, clips: torch.Tensor, layers: tuple[str, ...] = ("pool5",)
    ) -> dict[str, np.ndarray]:
        """Run a batch and return the requested layers as float32 arrays.

        Args:
            clips: uint8 ``(N, T, H, W, 3)`` (CPU, pinned when the device is CUDA, or already
                on the device).
            layers: Any of ``pool5`` (the pooled trunk features), ``logits``, ``probs``.

        Returns:
            One ``(N, D)`` array per requested layer.
        """
        unknown = set(layers) - set(LAYERS)
        if unknown:
            raise ValueError(f"unknown layer(s) {sorted(unknown)}: choose from {LAYERS}")
        x = self.normalize(clips)
        outputs: dict[str, torch.Tensor] = {}
        with self._autocast():
            features = self.backbone.forward_features(x)
            outputs["pool5"] = features
            if "logits" in layers or "probs" in layers:
                logits = self.backbone.forward_head(features).float()
                outputs["logits"] = logits
                outputs["probs"] = torch.softmax(logits, dim=1)
        return {name: outputs[name].float().cpu().numpy() for name in layers}


def load_model(
    model: str | None = None,
    weights: str | None = "DEFAULT",
    *,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    trust_checkpoint: bool = False,
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
    backbone = get_backbone(resolved.arch, weights=resolved)
    return VideoModel(backbone=backbone, meta=resolved.meta, device=chosen, precision=precision)
