"""Weights: metadata that travels with them, named downloads, checkpoint formats, strict loading.

A checkpoint is read with ``torch.load(..., weights_only=True)`` (no arbitrary code), its
format is detected and stated (feat3d's own, Hara et al. 2017, Hara et al. 2020, torchvision),
``module.`` prefixes are stripped, and the architecture is inferred from the keys and shapes.
The normalization the weights were trained with comes along as a :class:`WeightsMeta`.

Example:
    >>> from feat3d.backbones import get_backbone, load_checkpoint
    >>> ckpt = load_checkpoint("resnet-34-kinetics.pth")  # doctest: +SKIP
    >>> ckpt.description  # doctest: +SKIP
    "Hara et al. 2017 checkpoint, 'module.' prefix stripped: resnet-34, shortcut A, 400 classes"
    >>> model = get_backbone(ckpt.arch, weights="resnet-34-kinetics.pth")  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import hashlib
import http.client
import os
import pickle
import re
import urllib.error
import urllib.parse
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import torch
from torch import nn

from feat3d.backbones.registry import _REGISTRY, get_spec, list_backbones
from feat3d.backbones.safetensors_io import (
    SafetensorsError,
    is_safetensors,
    read_safetensors,
    write_safetensors,
)
from feat3d.errors import RunError

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "LoadedCheckpoint",
    "NamedWeights",
    "Preset",
    "ResolvedWeights",
    "WeightsError",
    "WeightsMeta",
    "categories_for",
    "compute_sha256",
    "convert_checkpoint",
    "default_meta",
    "fetch_weights",
    "kinetics400_categories",
    "list_weights",
    "load_checkpoint",
    "load_state_dict_strict",
    "resolve_weights",
    "save_checkpoint",
    "weights_cache_path",
]

#: Model used when neither ``--model`` nor a checkpoint names one.
DEFAULT_MODEL = "r3d_18"


class WeightsError(RunError):
    """Weights cannot be found, downloaded, read, recognised or loaded; one-line message."""


# --------------------------------------------------------------------------------------------
# Normalization presets


@dataclass(frozen=True)
class Preset:
    """How clips must be prepared for a family of weights.

    Attributes:
        name: Preset name (``"hara2017"``, ``"hara2020"``, ``"torchvision"``).
        mean: Per-channel RGB mean, in the units of ``value_scale``.
        std: Per-channel RGB standard deviation, same units.
        value_scale: 255.0 when pixels enter as 0–255, 1.0 when they enter as 0–1.
        resize: Short side (int) or exact ``(H, W)`` before the centre crop.
        crop: Side of the square centre crop.
        clip_len: Frames per clip.
        frame_rate: Frames per second the weights were evaluated at, ``None`` for native.
        reference: Where the values come from.
        channel_order: ``"RGB"``, or ``"BGR"`` for weights trained on OpenCV/Caffe frames
            (mean and std are always listed in RGB order).
        frame_stride: Every ``frame_stride``-th frame of a window of
            ``clip_len * frame_stride`` frames makes a clip (Res3D: 2).
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_scale: float
    resize: int | tuple[int, int]
    crop: int
    clip_len: int
    frame_rate: float | None
    reference: str
    channel_order: str = "RGB"
    frame_stride: int = 1


PRESETS: dict[str, Preset] = {
    # kenshohara/video-classification-3d-cnn-pytorch: mean.py get_mean() returns
    # [114.7748, 107.7354, 99.4750] (ActivityNet); classify.py applies Scale(112) (short side),
    # CenterCrop(112), ToTensor() without /255, Normalize(mean, [1, 1, 1]). The 2017-era
    # 3D-ResNets-PyTorch opts.py: "--norm_value 1: range of inputs is [0-255]".
    "hara2017": Preset(
        name="hara2017",
        mean=(114.7748, 107.7354, 99.4750),
        std=(1.0, 1.0, 1.0),
        value_scale=255.0,
        resize=112,
        crop=112,
        clip_len=16,
        frame_rate=None,
        reference="kenshohara/video-classification-3d-cnn-pytorch mean.py, classify.py",
    ),
    # kenshohara/3D-ResNets-PyTorch: mean.py get_mean_std(value_scale, 'kinetics') gives
    # mean [0.4345, 0.4051, 0.3775], std [0.2768, 0.2713, 0.2737]; main.py
    # get_inference_utils: Resize(sample_size=112), CenterCrop(112), ToTensor() (0-1),
    # ScaleValue(value_scale=1), Normalize(mean, std).
    "hara2020": Preset(
        name="hara2020",
        mean=(0.4345, 0.4051, 0.3775),
        std=(0.2768, 0.2713, 0.2737),
        value_scale=1.0,
        resize=112,
        crop=112,
        clip_len=16,
        frame_rate=None,
        reference="kenshohara/3D-ResNets-PyTorch mean.py, main.py get_inference_utils",
    ),
    # pytorch/vision: transforms/_presets.py VideoClassification defaults mean
    # (0.43216, 0.394666, 0.37645), std (0.22803, 0.22145, 0.216989), input scaled to 0-1;
    # models/video/resnet.py KINETICS400_V1: resize_size=(128, 171), crop_size=(112, 112);
    # docs: "estimated on video-level with frame_rate=15, clips_per_video=5, clip_len=16".
    "torchvision": Preset(
        name="torchvision",
        mean=(0.43216, 0.394666, 0.37645),
        std=(0.22803, 0.22145, 0.216989),
        value_scale=1.0,
        resize=(128, 171),
        crop=112,
        clip_len=16,
        frame_rate=15.0,
        reference="pytorch/vision transforms/_presets.py VideoClassification",
    ),
    # facebookarchive/C3D C3D-v1.0 examples/c3d_feature_extraction/prototxt/
    # c3d_sport1m_feature_extractor_frm.prototxt: frames resized to 128×171 (new_height,
    # new_width), the Sports-1M mean cube sport1m_train16_128_mean.binaryproto subtracted,
    # centre crop 112, 16 frames, 0-255 values. The per-channel means are the averages of that
    # mean cube as quoted in public C3D preprocessing code, BGR (90.2516, 97.6570, 101.4083),
    # listed here in RGB order. Caffe read frames with OpenCV, so the original weights expect
    # BGR; axon-research/c3d-keras convert_caffe_model.py copies conv1 without a channel flip
    # and tests with cv2 (BGR) frames, and DavideA/c3d-pytorch documents no flip either.
    "c3d-sports1m": Preset(
        name="c3d-sports1m",
        mean=(101.4083, 97.6570, 90.2516),
        std=(1.0, 1.0, 1.0),
        value_scale=255.0,
        resize=(128, 171),
        crop=112,
        clip_len=16,
        frame_rate=None,
        reference="facebookarchive/C3D C3D-v1.0 c3d_sport1m_feature_extractor_frm.prototxt",
        channel_order="BGR",
    ),
    # facebookarchive/C3D C3D-v1.1 examples/c3d_ucf101_feature_extraction/
    # c3d_resnet18_ucf101_feature_extraction.prototxt (Res3D-18, Sports-1M): mean_value 128
    # on 0-255 values, new_height 128, new_width 171, crop_size 112, new_length 8 frames at
    # sampling_rate 2 (see BackboneSpec.frame_stride). Caffe/OpenCV frames: BGR.
    "res3d-sports1m": Preset(
        name="res3d-sports1m",
        mean=(128.0, 128.0, 128.0),
        std=(1.0, 1.0, 1.0),
        value_scale=255.0,
        resize=(128, 171),
        crop=112,
        clip_len=8,
        frame_rate=None,
        reference="facebookarchive/C3D C3D-v1.1 c3d_resnet18_ucf101_feature_extraction.prototxt",
        channel_order="BGR",
        frame_stride=2,
    ),
    # ST-ResNet-50 (feat3d/backbones/st_resnet.py) initialized from a torchvision ImageNet
    # ResNet-50: torchvision's ImageNet normalization (transforms/_presets.py
    # ImageClassification: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), 0-1),
    # resize 256, crop 224. A clip is 5 chunks (stage 2 of Feichtenhofer et al., NIPS 2016)
    # 10 frames apart (the middle of the training stride range 5-15). The RGB statistics
    # apply to channels 0-2 only; the flow channels are scaled by the caller.
    "st-resnet": Preset(
        name="st-resnet",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        value_scale=1.0,
        resize=256,
        crop=224,
        clip_len=5,
        frame_rate=None,
        reference="pytorch/vision ImageClassification preset; Feichtenhofer et al. NIPS 2016",
        frame_stride=10,
    ),
}

# Checkpoint format → preset of the weights stored in it.
_FORMAT_PRESET = {
    "hara2017": "hara2017",
    "hara2020": "hara2020",
    "torchvision": "torchvision",
    "c3d": "c3d-sports1m",
}

_FORMAT_TEXT = {
    "feat3d": "feat3d checkpoint",
    "hara2017": "Hara et al. 2017 checkpoint",
    "hara2020": "Hara et al. 2020 checkpoint",
    "torchvision": "torchvision state dict",
    "c3d": "C3D Sports-1M state dict (the c3d.pickle of DavideA/c3d-pytorch)",
}


@cache
def _kinetics400() -> tuple[str, ...]:
    text = resources.files("feat3d").joinpath("data/kinetics400_classes.txt").read_text("utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != 400:
        raise RuntimeError(f"kinetics400_classes.txt has {len(labels)} labels, expected 400")
    return labels


def kinetics400_categories() -> list[str]:
    """The 400 Kinetics labels in checkpoint (alphabetical) order."""
    return list(_kinetics400())


def categories_for(num_classes: int) -> list[str]:
    """Labels for a classifier of ``num_classes`` rows.

    Kinetics-400 for 400; ``class_0 .. class_{n-1}`` otherwise (no label file is shipped for
    Kinetics-700 or fine-tuned heads).
    """
    if num_classes == 400:
        return kinetics400_categories()
    return [f"class_{i}" for i in range(num_classes)]


# --------------------------------------------------------------------------------------------
# Metadata


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
        parts = [_summary(self.arch, self.arch_kwargs), _FORMAT_TEXT.get(self.format, self.format)]
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


def _preset_meta(
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
    return _preset_meta(
        spec.default_meta,
        name="random",
        arch=arch,
        num_classes=kwargs["num_classes"],
        source="random",
        format="random",
        arch_kwargs=kwargs,
    )


# --------------------------------------------------------------------------------------------
# Named weights


@dataclass(frozen=True)
class NamedWeights:
    """A downloadable set of weights (torchvision's ``WeightsEnum`` members, as data).

    Attributes:
        name: ``"<arch>.<tag>"``, e.g. ``"r3d_18.kinetics400_v1"``.
        arch: Registry name.
        url: Download address; the file name carries the SHA-256 prefix.
        hash_prefix: Leading hex digits of the file's SHA-256.
        preset: Normalization preset.
        num_classes: Classifier rows.
        metrics: Published accuracy.
        default: What ``"DEFAULT"`` resolves to for ``arch``.
    """

    name: str
    arch: str
    url: str
    hash_prefix: str
    preset: str = "torchvision"
    num_classes: int = 400
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    default: bool = True

    @property
    def filename(self) -> str:
        """Basename of the URL, also the cache file name."""
        return self.url.rsplit("/", 1)[-1]


# URLs and metrics: pytorch/vision torchvision/models/video/resnet.py (R3D_18_Weights,
# MC3_18_Weights, R2Plus1D_18_Weights .KINETICS400_V1) and the torchvision model docs;
# video-level accuracy at frame_rate=15, clips_per_video=5, clip_len=16.
_NAMED_WEIGHTS: dict[str, NamedWeights] = {
    w.name: w
    for w in (
        NamedWeights(
            name="r3d_18.kinetics400_v1",
            arch="r3d_18",
            url="https://download.pytorch.org/models/r3d_18-b3b3357e.pth",
            hash_prefix="b3b3357e",
            metrics={"Kinetics-400": {"acc@1": 63.2, "acc@5": 83.479}},
        ),
        NamedWeights(
            name="mc3_18.kinetics400_v1",
            arch="mc3_18",
            url="https://download.pytorch.org/models/mc3_18-a90a0ba3.pth",
            hash_prefix="a90a0ba3",
            metrics={"Kinetics-400": {"acc@1": 63.96, "acc@5": 84.13}},
        ),
        NamedWeights(
            name="r2plus1d_18.kinetics400_v1",
            arch="r2plus1d_18",
            url="https://download.pytorch.org/models/r2plus1d_18-91a641e6.pth",
            hash_prefix="91a641e6",
            metrics={"Kinetics-400": {"acc@1": 67.463, "acc@5": 86.175}},
        ),
    )
}


def list_weights(model: str | None = None) -> list[NamedWeights]:
    """The named weights table.

    Args:
        model: Only the weights of this registry name.

    Returns:
        Entries in name order.
    """
    return [w for _, w in sorted(_NAMED_WEIGHTS.items()) if model is None or w.arch == model]


def weights_cache_path(named: NamedWeights) -> Path:
    """Where named weights are cached: ``torch.hub.get_dir()/checkpoints/<filename>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / named.filename


def compute_sha256(path: str | Path, *, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_weights(name: str, *, progress: bool = True) -> Path:
    """Path of named weights in the cache, downloading them if absent.

    Args:
        name: A name from :func:`list_weights`.
        progress: Show a download progress bar on stderr.

    Returns:
        The cached file, its SHA-256 checked against the name's hash prefix.

    Raises:
        WeightsError: Unknown name, download failure (offline) or a hash mismatch.
    """
    named = _NAMED_WEIGHTS.get(name.lower())
    if named is None:
        raise WeightsError(f"unknown named weights {name!r}; known: {', '.join(_NAMED_WEIGHTS)}")
    return _fetch(named, progress=progress)[0]


def _fetch(named: NamedWeights, *, progress: bool) -> tuple[Path, str]:
    dst = weights_cache_path(named)
    if not dst.is_file():
        dst.parent.mkdir(parents=True, exist_ok=True)
        host = urllib.parse.urlparse(named.url).netloc or named.url
        try:
            # Writes a temporary file next to dst, checks the hash prefix, then renames.
            torch.hub.download_url_to_file(
                named.url, str(dst), hash_prefix=named.hash_prefix, progress=progress
            )
        except (OSError, http.client.HTTPException) as exc:
            reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
            raise WeightsError(
                f"cannot reach {host}: {str(reason).strip() or type(exc).__name__}; if this "
                f"machine is offline, download {named.url} elsewhere and run `feat3d weights "
                f"add FILE --name {named.name}` (or put the file at {dst})"
            ) from None
        except RuntimeError as exc:  # download_url_to_file's hash check
            raise WeightsError(
                f"checksum mismatch: the download of {named.name} from {named.url} is corrupt "
                f"({_first_line(exc)}); nothing was stored, try again"
            ) from None
    sha = compute_sha256(dst)
    if not sha.startswith(named.hash_prefix):
        raise WeightsError(
            f"cached file {dst} is not {named.name}: checksum mismatch, sha256 {sha}, expected "
            f"one starting {named.hash_prefix}; run `feat3d weights remove {named.name}` and "
            "download again"
        )
    return dst, sha


def _no_default_message(arch: str) -> str:
    spec = get_spec(arch)
    if spec.family.startswith("hara-"):
        return (
            f"{arch} has no downloadable default weights: Hara et al.'s checkpoints are on "
            "Google Drive (links in github.com/kenshohara/3D-ResNets-PyTorch); download one "
            "(e.g. r3d18_K_200ep.pth or resnet-34-kinetics.pth) and pass --weights PATH, "
            "or --weights none for random initialization"
        )
    return f"{arch} has no default weights; pass --weights PATH, or --weights none"


def _lookup_named(spec: str, *, model: str | None) -> NamedWeights | None:
    key = spec.strip()
    named: NamedWeights | None = None
    if key.upper() == "DEFAULT":
        arch = model or DEFAULT_MODEL
        named = next((w for w in list_weights(arch) if w.default), None)
        if named is None:
            raise WeightsError(_no_default_message(arch))
    else:
        named = _NAMED_WEIGHTS.get(key.lower())
        if named is None and model is not None:  # "--model r3d_18 --weights KINETICS400_V1"
            named = _NAMED_WEIGHTS.get(f"{model}.{key.lower()}")
    if named is not None and model is not None and named.arch != model:
        raise WeightsError(
            f"named weights {named.name} are for {named.arch}, not {model}; "
            f"use --model {named.arch} or leave it out"
        )
    return named


# --------------------------------------------------------------------------------------------
# Reading checkpoints


@dataclass
class LoadedCheckpoint:
    """A checkpoint read and understood.

    Attributes:
        arch: Registry name inferred from the keys (or recorded, for feat3d files).
        arch_kwargs: Builder arguments for that layout (``num_classes``, ``shortcut_type``, ...).
        state_dict: Tensors with ``module.`` prefixes stripped.
        meta: Metadata, including the normalization of the format's preset.
        format: ``"feat3d"``, ``"hara2017"``, ``"hara2020"`` or ``"torchvision"``.
        description: One line saying what was recognised, for logs.
    """

    arch: str
    arch_kwargs: dict[str, Any]
    state_dict: dict[str, torch.Tensor]
    meta: WeightsMeta
    format: str
    description: str = ""


class _Unsupported(Exception):
    """A layout recognised as an architecture that is not registered."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


# Hara et al.'s --model values → feat3d's names for them.
_HARA_FAMILIES = {
    "resnet": "resnet",
    "preresnet": "preact-resnet",
    "wideresnet": "wide-resnet",
    "resnext": "resnext",
    "densenet": "densenet",
    "resnet2p1d": "resnet2p1d",
}

_LAYER_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:200]


def _load_reason(exc: BaseException) -> str:
    match = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
    if match:
        return (
            f"it contains a pickled Python object ({match.group(1)}), which weights-only "
            "loading refuses for safety"
        )
    if isinstance(exc, pickle.UnpicklingError | EOFError | RuntimeError):
        return f"not a readable PyTorch checkpoint ({_first_line(exc)})"
    return _first_line(exc)


def _strip_prefixes(sd: Mapping[str, Any], *, source: str) -> tuple[dict[str, Any], int]:
    out: dict[str, Any] = {}
    depth = 0
    for key, value in sd.items():
        k, n = str(key), 0
        while True:
            if k.startswith("module."):
                k, n = k[len("module.") :], n + 1
            elif k.startswith("_orig_mod."):
                k = k[len("_orig_mod.") :]
            else:
                break
        if k in out:
            raise WeightsError(f"{source}: key {key!r} collides with another after stripping")
        out[k] = value
        depth = max(depth, n)
    return out, depth


def _is_state_dict(obj: Any) -> bool:
    return (
        isinstance(obj, Mapping)
        and len(obj) > 0
        and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())
    )


def _blocks_per_layer(sd: Mapping[str, Any]) -> tuple[int, ...]:
    counts = [0, 0, 0, 0]
    for key in sd:
        m = _LAYER_KEY.match(key)
        if m:
            stage, index = int(m.group(1)) - 1, int(m.group(2))
            counts[stage] = max(counts[stage], index + 1)
    return tuple(counts)


def _parse_hara_arch(arch: Any) -> tuple[str | None, int | None]:
    if not isinstance(arch, str):
        return None, None
    m = re.fullmatch(r"([a-z0-9]+?)(?:-(\d+))?", arch.strip().lower())
    if not m:
        return None, None
    return m.group(1), (int(m.group(2)) if m.group(2) else None)


def _hara_registry_name(prefix: str, *, bottleneck: bool, layers: tuple[int, ...]) -> str | None:
    """``"{prefix}-{depth}"`` for a Hara-style ResNet with these blocks per stage, or ``None``.

    The depth comes from :data:`feat3d.backbones.hara_resnet.DEPTHS`, the table every Hara
    ResNet family shares (pre-activation, wide, ResNeXt and (2+1)D use the same stage counts);
    the name may or may not be registered.
    """
    from feat3d.backbones.hara_resnet import DEPTHS, BasicBlock  # late: avoid import cycles

    for depth, (block, stage_layers) in DEPTHS.items():
        if tuple(stage_layers) == tuple(layers) and (block is not BasicBlock) == bottleneck:
            return f"{prefix}-{depth}"
    return None


def _require(sd: Mapping[str, torch.Tensor], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise WeightsError(f"{what} without {', '.join(missing)}")


def _hara_common_kwargs(sd: Mapping[str, torch.Tensor], *, stem: str, head: str) -> dict:
    return {
        "num_classes": int(sd[head].shape[0]),
        "shortcut_type": "B" if any(".downsample." in k for k in sd) else "A",
        "conv1_t_size": int(sd[stem].shape[2]),
        # Not visible in the keys; Hara's defaults, which all published files use.
        "conv1_t_stride": 1,
        "no_max_pool": False,
    }


def _registered(name: str | None, description: str) -> str:
    if name is None:
        raise WeightsError(description)
    if name not in _REGISTRY:
        raise _Unsupported(name)
    return name


def _infer_hara(sd: Mapping[str, torch.Tensor]) -> tuple[str, dict]:
    """Hara's ResNet, pre-activation ResNet, Wide ResNet or ResNeXt (stem ``conv1``/``bn1``).

    The variant is read from the shapes, not from the file's ``arch``: pre-activation blocks
    normalize their input (``layer2.0.bn1`` as wide as ``conv1``'s input, not its output),
    ResNeXt's 3×3×3 conv is grouped, a Wide ResNet's bottleneck expands 2× instead of 4×.
    """
    _require(sd, ("conv1.weight", "layer1.0.conv1.weight", "fc.weight"), "a Hara-style ResNet")
    layers = _blocks_per_layer(sd)
    bottleneck = "layer1.0.conv3.weight" in sd
    kind = "bottleneck" if bottleneck else "basic"
    kwargs = _hara_common_kwargs(sd, stem="conv1.weight", head="fc.weight")
    stem_width = int(sd["conv1.weight"].shape[0])
    planes = int(sd["layer1.0.conv1.weight"].shape[0])  # layer1's mid width

    bn1, conv1 = sd.get("layer2.0.bn1.weight"), sd.get("layer2.0.conv1.weight")
    conv2 = sd.get("layer1.0.conv2.weight")
    conv3 = sd.get("layer1.0.conv3.weight")
    groups = planes // int(conv2.shape[1]) if conv2 is not None and conv2.ndim == 5 else 1
    if (
        bn1 is not None
        and conv1 is not None
        and bn1.shape[0] == conv1.shape[1]
        and bn1.shape[0] != conv1.shape[0]
    ):
        prefix = "preact-resnet"  # BN before the conv: it normalizes the block input
    elif bottleneck and groups > 1:
        prefix = "resnext"
        kwargs.update(cardinality=groups, stem_width=stem_width)
    elif bottleneck and conv3 is not None and conv3.shape[0] == 2 * conv3.shape[1]:
        prefix = "wide-resnet"
        kwargs.update(widen_factor=planes // 64, stem_width=stem_width)
    else:
        prefix = "resnet"
    name = _hara_registry_name(prefix, bottleneck=bottleneck, layers=layers)
    if name is not None and prefix in ("resnet", "preact-resnet") and planes != 64:
        # Hara's 2020 --resnet_widen_factor; only Wide ResNets and ResNeXts are wider here.
        raise _Unsupported(f"{name} with widen_factor {planes / 64:g}")
    description = f"a Hara-style {prefix} with {kind} blocks {list(layers)}"
    return _registered(name, description), kwargs


def _infer_resnet2p1d(sd: Mapping[str, torch.Tensor]) -> tuple[str, dict]:
    """Hara's 2020 R(2+1)D ResNet (stem ``conv1_s``/``conv1_t``)."""
    _require(sd, ("conv1_s.weight", "conv1_t.weight", "fc.weight"), "an R(2+1)D ResNet")
    layers = _blocks_per_layer(sd)
    bottleneck = "layer1.0.conv3.weight" in sd
    name = _hara_registry_name("resnet2p1d", bottleneck=bottleneck, layers=layers)
    kind = "bottleneck" if bottleneck else "basic"
    name = _registered(name, f"an R(2+1)D ResNet with {kind} blocks {list(layers)}")
    kwargs = _hara_common_kwargs(sd, stem="conv1_t.weight", head="fc.weight")
    kwargs["widen_factor"] = int(sd["conv1_t.weight"].shape[0]) / 64
    return name, kwargs


# Hara's DenseNet keys as written by PyTorch < 0.4 (2017 files: "denselayer1.norm.1.weight")
# and by his 2020 code (stem "features.conv1", "features.norm1").
_DENSE_LAYER_LEGACY = re.compile(r"(\.denselayer\d+\.)(norm|conv)\.([12])\.")
_DENSE_STEM_2020 = re.compile(r"^features\.(conv|norm)1\.")
_DENSE_LAYER_KEY = re.compile(r"^features\.denseblock([1-4])\.denselayer(\d+)\.")


def _canonical_densenet_keys(sd: Mapping[str, torch.Tensor]) -> None:
    """Rename Hara's older DenseNet key spellings to feat3d's, in place (a ``dict`` only).

    ``denselayerN.norm.1`` → ``norm1`` (and ``conv.1``, ``norm.2``, ``conv.2``); the 2020
    stem ``features.conv1``/``features.norm1`` → ``features.conv0``/``features.norm0``.
    """
    if not isinstance(sd, dict):
        return
    stem_2020 = "features.conv0.weight" not in sd and "features.conv1.weight" in sd
    renamed = {}
    for key in list(sd):
        new = _DENSE_LAYER_LEGACY.sub(r"\1\2\3.", key)
        if stem_2020:
            new = _DENSE_STEM_2020.sub(r"features.\g<1>0.", new)
        if new != key:
            renamed[new] = sd.pop(key)
    sd.update(renamed)


def _infer_densenet(sd: Mapping[str, torch.Tensor]) -> tuple[str, dict]:
    """Hara's 3D DenseNet (keys ``features.*`` and ``classifier``), canonical keys."""
    from feat3d.backbones.densenet import DEPTHS  # late: avoid import cycles

    _require(sd, ("features.conv0.weight", "classifier.weight"), "a DenseNet")
    counts = [0, 0, 0, 0]
    for key in sd:
        m = _DENSE_LAYER_KEY.match(key)
        if m:
            block = int(m.group(1)) - 1
            counts[block] = max(counts[block], int(m.group(2)))
    depth = next((d for d, config in DEPTHS.items() if tuple(config) == tuple(counts)), None)
    name = f"densenet-{depth}" if depth is not None else None
    name = _registered(name, f"a DenseNet with dense blocks {counts}")
    kwargs = _hara_common_kwargs(sd, stem="features.conv0.weight", head="classifier.weight")
    del kwargs["shortcut_type"]
    return name, kwargs


def _infer_torchvision(sd: Mapping[str, torch.Tensor]) -> tuple[str, dict]:
    stem = tuple(sd["stem.0.weight"].shape)
    if stem[2:] == (1, 7, 7):
        variant = "r2plus1d"
    else:
        conv = sd.get("layer2.0.conv1.0.weight")
        variant = "mc3" if conv is not None and conv.ndim == 5 and conv.shape[2] == 1 else "r3d"
    layers = _blocks_per_layer(sd)
    bottleneck = "layer1.0.conv3.0.weight" in sd
    if bottleneck or layers != (2, 2, 2, 2):
        kind = "bottleneck" if bottleneck else "basic"
        raise _Unsupported(f"torchvision {variant} with {kind} blocks {list(layers)}")
    return f"{variant}_18", {"num_classes": int(sd["fc.weight"].shape[0])}


def _infer_layout(sd: Mapping[str, torch.Tensor], *, arch_hint: Any = None) -> tuple[str, dict]:
    """Registry name and builder kwargs for a stripped state dict.

    Hara's older DenseNet key spellings are renamed in place first (see
    :func:`_canonical_densenet_keys`), so the state dict :func:`load_checkpoint` returns loads
    strictly into :class:`~feat3d.backbones.densenet.HaraDenseNet`.

    Raises:
        _Unsupported: A known architecture that is not registered.
        WeightsError: Unrecognised keys (the message is the layout description only).
    """
    family, _ = _parse_hara_arch(arch_hint)
    if "stem.0.weight" in sd:
        return _infer_torchvision(sd)
    if "conv3a.weight" in sd and "fc8.weight" in sd:
        return "c3d", {"num_classes": int(sd["fc8.weight"].shape[0])}
    if family == "densenet" or "features.conv0.weight" in sd or "features.conv1.weight" in sd:
        _canonical_densenet_keys(sd)
        return _infer_densenet(sd)
    if "conv1_s.weight" in sd or family == "resnet2p1d":
        return _infer_resnet2p1d(sd)
    if "conv1.weight" in sd:
        return _infer_hara(sd)
    keys = ", ".join(list(sd)[:3])
    expected = f" for Hara's {_HARA_FAMILIES[family]}" if family in _HARA_FAMILIES else ""
    raise WeightsError(f"unrecognised keys{expected} ({keys}, ...)")


def _detect_format(obj: Mapping[str, Any], sd: Mapping[str, Any], depth: int) -> str:
    if "feat3d_version" in obj:
        return "feat3d"
    if "stem.0.weight" in sd:
        return "torchvision"
    if "conv3a.weight" in sd and "fc8.weight" in sd:
        return "c3d"  # DavideA/c3d-pytorch's c3d.pickle: a flat state dict
    family, number = _parse_hara_arch(obj.get("arch"))
    if "scheduler" in obj or (family is not None and number is None):
        return (
            "hara2020"  # 3D-ResNets-PyTorch (2020) saves epoch/arch/state_dict/optimizer/scheduler
        )
    if "arch" in obj:
        return "hara2017"  # saved from nn.DataParallel, arch like "resnet-34"
    stems = ("conv1.weight", "conv1_s.weight", "features.conv0.weight", "features.conv1.weight")
    if not any(k in sd for k in stems):
        return "unknown"
    return "hara2017" if depth > 0 else "hara2020"


def _read_file(path: Path, *, trust: bool) -> Any:
    """The object stored in a checkpoint file, read without running code unless ``trust``."""
    if is_safetensors(path):
        try:
            return read_safetensors(path)
        except SafetensorsError as exc:
            raise WeightsError(f"cannot load weights file {path}: {exc}") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch.load raises many types for foreign or unsafe files
        reason = _load_reason(exc)
        if not trust or "pickled Python object" not in reason:
            hint = (
                "; if you trust whoever made it, --trust-checkpoint (trust=True) loads it with "
                "full unpickling, which can run arbitrary code"
                if "pickled Python object" in reason
                else ""
            )
            raise WeightsError(f"cannot load weights file {path}: {reason}{hint}") from None
    warnings.warn(
        f"{path}: loading with full unpickling (--trust-checkpoint): this can run code stored "
        "in the file",
        stacklevel=3,
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise WeightsError(f"cannot load weights file {path}: {_first_line(exc)}") from None


def load_checkpoint(
    path: str | Path, *, sha256: str | None = None, trust: bool = False
) -> LoadedCheckpoint:
    """Read a checkpoint safely and work out what it holds.

    Recognised formats:

    - ``feat3d``: ``{"feat3d_version", "arch", "state_dict", "meta"}`` (:func:`save_checkpoint`);
    - ``hara2017``: ``{"arch": "resnet-34", "state_dict"}`` with ``module.`` prefixes, maybe
      ``epoch``/``optimizer`` (kenshohara/video-classification-3d-cnn-pytorch);
    - ``hara2020``: ``{"epoch", "arch", "state_dict", "optimizer", "scheduler"}``
      (kenshohara/3D-ResNets-PyTorch);
    - ``torchvision``: a plain state dict with ``stem.0.weight``.

    ``.safetensors`` files (feat3d's own, with the metadata in the header, or a bare state
    dict) are read with safetensors; everything else with ``torch.load(weights_only=True)``,
    which refuses pickled Python objects because unpickling them can run code.

    Args:
        path: The file.
        sha256: Its SHA-256 when already known (skips hashing it again).
        trust: Fall back to full unpickling (``weights_only=False``) for a file that holds
            pickled Python objects. Only for files from a source you trust: unpickling can
            execute arbitrary code.

    Returns:
        A :class:`LoadedCheckpoint`; ``meta.sha256`` holds the file's hash.

    Raises:
        WeightsError: Missing or unreadable file (including pickled Python objects, refused by
            ``weights_only`` loading), unrecognised layout, or a recognised architecture that
            this version does not provide.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    obj = _read_file(path, trust=trust)
    source = str(path)

    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        raw = obj["state_dict"]
        top: Mapping[str, Any] = obj
    elif _is_state_dict(obj):
        raw, top = obj, {}
    else:
        raise WeightsError(
            f"{path} is not a model checkpoint: expected a state dict or a dict with "
            f"'state_dict', got {type(obj).__name__}"
        )
    sd, depth = _strip_prefixes(raw, source=source)
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise WeightsError(f"{path}: state_dict entry {bad[0]!r} is not a tensor")
    fmt = _detect_format(top, sd, depth)
    if fmt == "unknown":
        raise WeightsError(
            f"{path}: unrecognised checkpoint layout (keys {', '.join(list(sd)[:3])}, ...); "
            "feat3d reads feat3d, Hara et al. 2017/2020 and torchvision checkpoints"
        )
    sha = sha256 or compute_sha256(path)

    if fmt == "feat3d":
        arch = top.get("arch")
        if not isinstance(arch, str) or not isinstance(top.get("meta"), Mapping):
            raise WeightsError(f"{path}: feat3d checkpoint without 'arch' or 'meta'")
        if arch not in _REGISTRY:
            raise WeightsError(
                f"{path}: recognised as {arch} (format feat3d) but that architecture is not "
                "available in this version"
            )
        try:
            meta = WeightsMeta.from_dict(top["meta"])
        except ValueError as exc:
            raise WeightsError(f"{path}: {exc}") from None
        meta = replace(meta, arch=arch, source=source, sha256=sha, format="feat3d")
        kwargs = dict(meta.arch_kwargs)
        description = f"{_FORMAT_TEXT[fmt]}: {_summary(arch, kwargs)}"
        return LoadedCheckpoint(arch, kwargs, sd, meta, fmt, description)

    arch_hint = top.get("arch")
    try:
        arch, kwargs = _infer_layout(sd, arch_hint=arch_hint)
    except _Unsupported as exc:
        raise WeightsError(
            f"{path}: recognised as {exc.name} (format {fmt}) but that architecture is not "
            f"available in this version (available: {', '.join(list_backbones())})"
        ) from None
    except WeightsError as exc:
        raise WeightsError(f"{path} ({_FORMAT_TEXT[fmt]}): unsupported layout: {exc}") from None

    notes = []
    assumed = fmt not in ("torchvision", "c3d") and "arch" not in top and "scheduler" not in top
    if depth:
        notes.append("'module.' prefix stripped" if depth == 1 else "'module.module.' stripped")
    hint_family, hint_depth = _parse_hara_arch(arch_hint)
    if hint_depth is not None and hint_family == "resnet" and arch != f"resnet-{hint_depth}":
        notes.append(f"its 'arch' says {arch_hint!r} but the keys are {arch}")
    if assumed:
        note = f"no 'arch' recorded, normalization assumed to be {fmt}'s"
        notes.append(note)
        warnings.warn(f"{path}: {note}; check the results", stacklevel=2)
    meta = _preset_meta(
        _FORMAT_PRESET[fmt],
        name=path.stem,
        arch=arch,
        num_classes=kwargs["num_classes"],
        source=source,
        format=fmt,
        sha256=sha,
        arch_kwargs=kwargs,
    )
    head = _FORMAT_TEXT[fmt] + (f", {', '.join(notes)}" if notes else "")
    return LoadedCheckpoint(arch, kwargs, sd, meta, fmt, f"{head}: {_summary(arch, kwargs)}")


def _summary(arch: str, kwargs: Mapping[str, Any]) -> str:
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
    parts.append(f"{kwargs.get('num_classes')} classes")
    return ", ".join(parts)


# --------------------------------------------------------------------------------------------
# Strict loading


def _listing(keys: list[str], what: str) -> str:
    shown = ", ".join(keys[:5])
    more = f" (+{len(keys) - 5} more)" if len(keys) > 5 else ""
    return f"{len(keys)} {what}: {shown}{more}"


def load_state_dict_strict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str,
    model_name: str | None = None,
) -> None:
    """Load weights requiring every key and shape to match; explain any mismatch.

    ``num_batches_tracked`` buffers absent from files saved before PyTorch 0.4.1 are filled
    with zeros rather than reported.

    Args:
        model: Target module.
        state_dict: Tensors, prefixes already stripped.
        source: Where they came from, for the message.
        model_name: Registry name of ``model``, for the message.

    Raises:
        WeightsError: Listing up to 5 missing and 5 unexpected keys, shape mismatches, and
            ``likely --model NAME`` when the keys fit another registered layout.
    """
    expected = model.state_dict()
    sd = dict(state_dict)
    for key, value in expected.items():
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = torch.zeros_like(value)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in sd and sd[k].shape != expected[k].shape
    ]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(_listing(missing, "missing keys"))
        if unexpected:
            parts.append(_listing(unexpected, "unexpected keys"))
        if mismatched:
            parts.append(_listing(mismatched, "shape mismatches (weights vs model)"))
        target = model_name or getattr(getattr(model, "meta", None), "arch", type(model).__name__)
        raise WeightsError(
            f"weights {source} do not fit {target}: {'; '.join(parts)}"
            f"{_suggest(state_dict, target)}"
        )
    model.load_state_dict(sd, strict=True)


def _suggest(sd: Mapping[str, torch.Tensor], target: str) -> str:
    try:
        arch, kwargs = _infer_layout(sd)
    except (_Unsupported, WeightsError):
        return ""
    if arch != target:
        return f"; likely --model {arch}"
    options = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
    return f"; the weights are {arch} with {options}"


# --------------------------------------------------------------------------------------------
# Writing checkpoints


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        inner = getattr(model, "module", None) or getattr(model, "_orig_mod", None)
        if not isinstance(inner, nn.Module):
            return model
        model = inner


def save_checkpoint(model: nn.Module, path: str | Path, *, meta: WeightsMeta | None = None) -> Path:
    """Write feat3d's checkpoint format, readable with ``weights_only=True``.

    Layout: ``{"feat3d_version": str, "arch": str, "state_dict": {key: tensor},
    "meta": WeightsMeta.to_dict()}``. DataParallel/DDP/compiled wrappers are unwrapped so
    keys carry no prefix. The file is written to a temporary name and renamed. A path ending
    in ``.safetensors`` gets a safetensors file with the same fields in its header.

    Args:
        model: A registry model (its ``arch_kwargs`` are recorded).
        path: Destination file (``.pt``/``.pth``, or ``.safetensors``).
        meta: Metadata to store; defaults to ``model.meta``.

    Returns:
        The written path.

    Raises:
        ValueError: No metadata, unknown ``meta.arch``, or labels that do not match the
            classifier (update ``meta.categories`` after ``reset_classifier``).
    """
    from feat3d import __version__  # late: feat3d/__init__ may import this package

    module = _unwrap(model)
    meta = meta if meta is not None else getattr(module, "meta", None)
    if not isinstance(meta, WeightsMeta):
        raise ValueError("no weights metadata: pass meta= or build the model with get_backbone()")
    get_spec(meta.arch)
    arch_kwargs = dict(getattr(module, "arch_kwargs", meta.arch_kwargs))
    num_classes = arch_kwargs.get("num_classes")
    if num_classes is not None and len(meta.categories) != num_classes:
        raise ValueError(
            f"meta has {len(meta.categories)} categories but the classifier has {num_classes} "
            "rows; pass meta with matching categories"
        )
    record = replace(meta, arch_kwargs=arch_kwargs, sha256=None).to_dict()
    state = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    payload = {
        "feat3d_version": __version__,
        "arch": meta.arch,
        "state_dict": state,
        "meta": record,
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        if is_safetensors(path):
            write_safetensors(tmp, payload)
        else:
            torch.save(payload, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def convert_checkpoint(src: str | Path, dst: str | Path, *, trust: bool = False) -> WeightsMeta:
    """Convert any supported checkpoint into feat3d's format (``.safetensors`` or ``.pt``).

    The weights are loaded strictly into their architecture first, so a converted file is
    known to work; its metadata (classes, normalization, clip length, input size) comes along.

    Args:
        src: A checkpoint in any format :func:`load_checkpoint` reads.
        dst: Destination; ``.safetensors`` for a file that can never run code when loaded.
        trust: Allow full unpickling of ``src`` (see :func:`load_checkpoint`).

    Returns:
        The metadata written.
    """
    from feat3d.backbones.registry import get_backbone

    resolved = resolve_weights(Path(src), trust=trust)
    model = get_backbone(resolved.arch, weights=resolved)
    save_checkpoint(model, dst, meta=resolved.meta)
    return resolved.meta


# --------------------------------------------------------------------------------------------
# The --weights / --model rule


_CHECKPOINT_SUFFIXES = {".pth", ".pt", ".tar", ".ckpt", ".bin", ".pkl"}


class ResolvedWeights(NamedTuple):
    """What ``--weights`` (and ``--model``) resolved to; unpacks as ``(arch, state_dict, meta)``.

    Pass it as ``weights=`` to :func:`~feat3d.backbones.registry.get_backbone` to build the
    model without reading the file again.
    """

    arch: str
    state_dict: dict[str, torch.Tensor] | None
    meta: WeightsMeta


def resolve_weights(
    weights: str | Path | None,
    *,
    model: str | None = None,
    progress: bool = True,
    trust: bool = False,
) -> ResolvedWeights:
    """Apply feat3d's model-selection rule to ``--weights`` and ``--model``.

    - ``None`` / ``"none"``: random init of ``model`` (default :data:`DEFAULT_MODEL`) with its
      family's default metadata (format ``"random"``, ``state_dict`` ``None``);
    - ``"DEFAULT"`` or a named weights (``"r3d_18.kinetics400_v1"``, or its tag
      ``"KINETICS400_V1"`` with ``model``): downloaded to / read from the torch hub cache;
    - an existing path: :func:`load_checkpoint`; the checkpoint decides the architecture.

    Args:
        weights: The ``--weights`` value.
        model: The ``--model`` value, if given.
        progress: Show a progress bar when downloading.
        trust: Allow full unpickling of a checkpoint file (see :func:`load_checkpoint`).

    Returns:
        ``(arch, state_dict or None, meta)``.

    Raises:
        ValueError: Unknown ``model``.
        WeightsError: Unknown name or missing file, no default weights for ``model``, offline
            without a cached file, unreadable checkpoint, or a checkpoint of another
            architecture than ``model``.
    """
    if model is not None:
        get_spec(model)
    if weights is None or (isinstance(weights, str) and weights.strip().lower() in ("", "none")):
        arch = model or DEFAULT_MODEL
        return ResolvedWeights(arch, None, default_meta(arch))

    local = None
    if isinstance(weights, str):
        from feat3d.backbones.hub import find_registered  # late: hub imports this module

        named = _lookup_named(weights, model=model)
        local = find_registered(named.name if named is not None else weights)
        if named is not None:
            if local is not None:  # added with `feat3d weights add FILE --name NAME`
                path, sha = local.path, _check_unchanged(local.path, local.sha256)
            else:
                path, sha = _fetch(named, progress=progress)
            ckpt = load_checkpoint(path, sha256=sha)
            if ckpt.arch != named.arch:
                raise WeightsError(f"{path} holds {ckpt.arch}, expected {named.arch}")
            meta = _preset_meta(
                named.preset,
                name=named.name,
                arch=named.arch,
                num_classes=ckpt.arch_kwargs["num_classes"],
                source=named.url,
                format=ckpt.format,
                sha256=sha,
                arch_kwargs=ckpt.arch_kwargs,
                metrics=named.metrics,
            )
            return ResolvedWeights(named.arch, ckpt.state_dict, meta)

    path = local.path if local is not None else Path(weights).expanduser()
    if not path.is_file():
        text = str(weights)
        if os.sep in text or "/" in text or path.suffix.lower() in _CHECKPOINT_SUFFIXES:
            raise WeightsError(f"weights file not found: {path}")
        raise WeightsError(
            f"unknown weights {text!r}: not a file, and not one of the named weights "
            f"({', '.join(_NAMED_WEIGHTS)}, DEFAULT, none)"
        )
    ckpt = load_checkpoint(path, trust=trust)
    if model is not None and ckpt.arch != model:
        raise WeightsError(
            f"{path} holds {ckpt.arch} weights ({_FORMAT_TEXT[ckpt.format]}) but the model is "
            f"{model}; use --model {ckpt.arch} or leave it out"
        )
    if local is None:
        return ResolvedWeights(ckpt.arch, ckpt.state_dict, ckpt.meta)
    _check_unchanged(path, local.sha256, sha256=ckpt.meta.sha256)
    return ResolvedWeights(ckpt.arch, ckpt.state_dict, replace(ckpt.meta, name=local.name))


def _check_unchanged(path: Path, registered: str, *, sha256: str | None = None) -> str:
    """The file's SHA-256, which must still be the one recorded when it was registered."""
    sha = sha256 or compute_sha256(path)
    if sha != registered:
        raise WeightsError(
            f"{path} changed since it was added (sha256 {sha}, registered {registered}); "
            "add it again with `feat3d weights add FILE --name NAME --force`"
        )
    return sha
