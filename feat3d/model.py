"""A backbone with its weights' metadata, placed on a device: uint8 clips in, outputs out.

Normalization lives here, on the device, taken from the weights' metadata; callers hand over
clips exactly as the decoder produced them, ``(N, T, H, W, 3)`` uint8.
"""

from __future__ import annotations

import copy
import ctypes
import ctypes.util
import os
import warnings
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .backbones import WeightsMeta, get_backbone, get_spec, list_backbones, resolve_weights
from .backbones.fold import fold_batchnorm
from .precision import Precision, resolve_precision

#: Every layer name some network provides; each network lists its own in ``VideoModel.layers``.
LAYERS: tuple[str, ...] = (
    "conv5", "pool5", "fc6", "fc7", "logits", "probs", "pool5_appearance", "pool5_motion",
    "mixed_5c", "pool5_rgb", "pool5_flow",
)  # fmt: skip
#: Layers without a bf16 CPU kernel in torch (``avg_pool3d``: DenseNet's transitions); they
#: run in fp32 inside a bf16 network.
_FP32_ONLY_CPU_MODULES: tuple[type[nn.Module], ...] = (nn.AvgPool3d,)


#: See ``_HeapGuard``.
_TRIM_GROWTH, _TRIM_WARMUP, _TRIM_INTERVAL = 1.1, 4, 8


def _load_malloc_trim():  # type: ignore[no-untyped-def]
    """glibc's ``malloc_trim``, or ``None`` elsewhere."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _load_malloc_trim()


def trim_heap() -> bool:
    """Give the heap's free pages back to the system (glibc's ``malloc_trim``); ``False``
    where there is no such call."""
    if _malloc_trim is None:
        return False
    _malloc_trim(0)
    return True


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def _resident_bytes() -> int | None:
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class _HeapGuard:
    """Keeps a long run's resident memory flat on glibc.

    A CPU forward pass allocates and frees activations of megabytes each; glibc serves those
    under its self-raising mmap threshold (up to 32 MiB) from the heap, which fragments: the
    peak resident size grows with the length of the run, freed pages being kept. Trimming
    after every batch keeps it flat but costs speed (the pages are faulted in again; figures
    in the docs' speed page), so the heap is trimmed only when the resident size after a
    batch exceeds that of the first batches by ``_TRIM_GROWTH``, and at most once every
    ``_TRIM_INTERVAL`` batches.
    """

    def __init__(self) -> None:
        self.batches = 0
        self.reference = 0
        self.last_trim = 0
        self.trims = 0

    def after_batch(self) -> None:
        if _malloc_trim is None:
            return
        resident = _resident_bytes()
        if resident is None:
            return
        self.batches += 1
        if self.batches <= _TRIM_WARMUP:
            self.reference = max(self.reference, resident)
        elif (
            resident > self.reference * _TRIM_GROWTH
            and self.batches - self.last_trim >= _TRIM_INTERVAL
        ):
            _malloc_trim(0)
            self.trims += 1
            self.last_trim = self.batches


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
        backbone: The network in its checkpoint's layout, in eval mode. When a folded copy
            runs (``fold_bn``), it is left where and as it was passed (the copy is what goes
            to ``device``); otherwise it is moved to ``device`` (bf16: a bf16 copy).
        meta: Metadata of its weights (classes, normalization, clip length, input size).
        device: Where it runs.
        precision: ``fp32``; ``auto``: fp16 on CUDA, fp32 on the CPU; ``bf16``: on a CPU
            the weights themselves are converted to bf16 (a copy: the module passed in is
            left as it was), on CUDA autocast; refused on a CPU without bf16 instructions
            (:mod:`feat3d.precision`); ``fp16`` (CUDA only): autocast. Stored resolved.
        channels_last: Keep weights and activations in ``channels_last_3d`` layout (``None``:
            yes). Clips arrive channels-last already (``(N, T, H, W, 3)`` permuted), so this
            only saves the per-call reordering of the weights; fp32 results are bit-identical
            either way on the CPU.
        compile: Run the network through ``torch.compile`` (inductor, with weight freezing).
            The first batch compiles (seconds to a minute); smaller batches are padded to the
            largest batch seen so the graph is not compiled again.
        fold_bn: Run a copy of the network (:attr:`network`) in which each batch norm that
            directly follows a convolution is folded into it (:mod:`feat3d.backbones.fold`):
            the same outputs to float rounding (checked when it is made), faster (the docs'
            speed page). Made once, here: to change ``backbone``'s weights afterwards, build
            a new ``VideoModel``. On a CPU it costs one more copy of the weights in memory.
            ``False``: run ``backbone`` itself.
    """

    backbone: nn.Module
    meta: WeightsMeta
    device: torch.device
    precision: str = "fp32"
    channels_last: bool | None = None
    compile: bool = False
    fold_bn: bool = True

    def __post_init__(self) -> None:
        precision = resolve_precision(self.precision, self.device)
        self.precision = precision.value
        if self.channels_last is None:
            self.channels_last = True
        #: dtype of weights and activations; reduced precisions elsewhere go through autocast.
        self._dtype = torch.float32
        native_bf16 = precision is Precision.BF16 and self.device.type == "cpu"
        if native_bf16:
            self._dtype = torch.bfloat16
        self._precision = Precision.FP32 if native_bf16 else precision
        source = self.backbone.eval()
        folded = None
        # two-stream networks take RGB + flow stacks, not the clips the example is made of
        if self.fold_bn and get_spec(self.meta.arch).streams == ("rgb",):
            parameter = next(source.parameters(), None)
            # Folding only needs to see which conv feeds which batch norm: an example no
            # larger than 16×112² (I3D's 64×224² would cost three full passes).
            frames, side = min(self.meta.clip_len, 16), min(self.meta.crop, 112)
            example = torch.randn(
                1, 3, frames, side, side,
                device=parameter.device if parameter is not None else "cpu",
            )  # fmt: skip
            folded = fold_batchnorm(source, example)  # folded in fp32, then cast
        if folded is None:
            self.backbone = self._runtime(copy.deepcopy(source) if native_bf16 else source)
            self._network = self.backbone
        else:  # backbone stays as passed: one copy of the weights on the device, not two
            self._network = self._runtime(folded)
        self._forward = self._network.forward_layers
        self._compiled_batch = 0
        self._heap = _HeapGuard()
        if self.compile:
            self._forward = torch.compile(self._network.forward_layers, options={"freezing": True})
        scale = self.meta.value_scale / 255.0
        mean = torch.tensor(self.meta.mean, dtype=torch.float32)
        std = torch.tensor(self.meta.std, dtype=torch.float32)
        # (x * value_scale/255 - mean) / std folded into one multiply-add.
        self._mul = (scale / std).view(1, 3, 1, 1, 1).to(self.device)
        self._add = (-mean / std).view(1, 3, 1, 1, 1).to(self.device)

    def _runtime(self, module: nn.Module) -> nn.Module:
        """``module`` on the device, in the dtype and layout it runs in, in eval mode."""
        if self._dtype == torch.bfloat16:
            for layer in module.modules():
                if isinstance(layer, _FP32_ONLY_CPU_MODULES):
                    layer.register_forward_pre_hook(_inputs_to_fp32)
                    layer.register_forward_hook(_output_to_bf16)
        module = module.to(self.device, dtype=self._dtype).eval()
        if self.channels_last:
            module = module.to(memory_format=torch.channels_last_3d)
        return module

    @property
    def network(self) -> nn.Module:
        """The module that runs: ``backbone`` with its batch norms folded (a copy), or
        ``backbone`` itself when there was nothing to fold or ``fold_bn`` is off."""
        return self._network

    @property
    def categories(self) -> list[str]:
        return list(self.meta.categories)

    @property
    def random_weights(self) -> bool:
        return self.meta.format == "random"

    def normalize(self, clips: torch.Tensor) -> torch.Tensor:
        """uint8 RGB ``(N, T, H, W, 3)`` clips → normalized float ``(N, 3, T, H, W)`` on the
        device, in the channel order the weights were trained with. Inputs of fewer channels
        (I3D's flow, ``(N, T, H, W, 2)`` float pixels) take the first entries of mean/std."""
        clips = clips.to(self.device, non_blocking=True)
        channels = clips.shape[-1]
        x = clips.permute(0, 4, 1, 2, 3).float() * self._mul[:, :channels] + self._add[:, :channels]
        return x.flip(1) if self.meta.channel_order == "BGR" else x

    @property
    def execution(self) -> str:
        """How the precision is carried out here, e.g. ``bf16 weights, channels_last_3d``."""
        if self._precision is not Precision.FP32:
            how = f"fp32 weights, {self.precision} autocast"
        else:
            how = "bf16 weights" if self._dtype == torch.bfloat16 else "fp32"
        parts = [how, "channels_last_3d" if self.channels_last else "contiguous"]
        if self._network is not self.backbone:
            parts.append("batch norm folded")
        return ", ".join([*parts, "compiled"] if self.compile else parts)

    def _autocast(self):  # type: ignore[no-untyped-def]
        return self._precision.autocast(self.device)

    def _prepare(self, clips: torch.Tensor) -> torch.Tensor:
        """Normalized network input: layout and dtype the weights are kept in."""
        x = self.normalize(clips)
        x = x.contiguous(
            memory_format=torch.channels_last_3d if self.channels_last else torch.contiguous_format
        )
        return x.to(self._dtype)

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
        x = self._prepare(clips)
        count = x.shape[0]
        if self.compile:  # one batch size for the compiled graph: pad up to the largest seen
            self._compiled_batch = max(self._compiled_batch, count)
            if count < self._compiled_batch:
                padding = x[:1].expand(self._compiled_batch - count, *x.shape[1:])
                x = torch.cat([x, padding]).contiguous(memory_format=_memory_format(x))
        with self._autocast():
            outputs = self._forward(x, needed, pool=pool)
        outputs = {name: value[:count] for name, value in outputs.items()}
        if "probs" in layers:
            outputs["probs"] = torch.softmax(outputs["logits"].float(), dim=1)
        result = {name: outputs[name].float().cpu().numpy() for name in layers}
        if self.device.type == "cpu":
            self._heap.after_batch()
        return result


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    if x.dim() == 5 and x.is_contiguous(memory_format=torch.channels_last_3d):
        return torch.channels_last_3d
    return torch.contiguous_format


def _inputs_to_fp32(_module: nn.Module, inputs: tuple[torch.Tensor, ...]) -> tuple:
    return tuple(x.float() for x in inputs)


def _output_to_bf16(_module: nn.Module, _inputs: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.to(torch.bfloat16)


def load_model(
    model: str | None = None,
    weights: str | None = "DEFAULT",
    *,
    device: str | torch.device = "auto",
    precision: str = "fp32",
    trust_checkpoint: bool = False,
    num_classes: int | None = None,
    compile: bool = False,
    channels_last: bool | None = None,
    fold_bn: bool = True,
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
        precision: ``fp32`` (default everywhere: bit-reproducible); ``bf16`` (bf16 weights on
            CPUs with bf16 instructions; autocast on CUDA; refused on other CPUs, where
            PyTorch runs it in reference kernels); ``fp16`` (CUDA only, autocast).
            ``auto``: fp16 on CUDA, fp32 on the CPU. See ``feat3d.precision``.
        trust_checkpoint: Allow full unpickling of a checkpoint holding Python objects. It
            can run code stored in the file: only for files from a source you trust.
        num_classes: Classifier rows for random initialization (default 400, or the
            family's). With weights it is read from the checkpoint; a different value raises.
        compile: Run the network through ``torch.compile`` (see ``VideoModel``).
        fold_bn: Run a copy with batch norms folded into convolutions (see ``VideoModel``).
        channels_last: Weights and activations in ``channels_last_3d`` (``None``: yes).

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
        # The same random network in every process and run (seed 0): the parts of a sharded
        # run, and a resumed run, must not mix features of different networks.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            backbone = get_backbone(resolved.arch, num_classes=num_classes)
    else:
        backbone = get_backbone(resolved.arch, weights=resolved, num_classes=num_classes)
    return VideoModel(
        backbone=backbone,
        meta=backbone.meta,
        device=chosen,
        precision=precision,
        channels_last=channels_last,
        compile=compile,
        fold_bn=fold_bn,
    )
