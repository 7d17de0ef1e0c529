"""The one registry of backbones, keyed by stable names.

Every network feat3d can build is registered here by its builder module
(:mod:`feat3d.backbones.hara_resnet`, :mod:`feat3d.backbones.video_resnet`) with a
:class:`BackboneSpec` describing it. :func:`feat3d.backbones.factory.get_backbone` is the only
factory: it builds a CPU module, loads weights when asked, and attaches their metadata.

Every registered model implements the :class:`Backbone` interface::

    x (N, 3, T, H, W) ─► forward_trunk ─► (N, D, t, h, w) ─► forward_features ─► (N, D)
                                                               forward_head ─► (N, num_classes)

Example:
    >>> from feat3d.backbones import get_spec, list_backbones
    >>> list_backbones("*_18")
    ['mc3_18', 'r2plus1d_18', 'r3d_18']
    >>> get_spec("res3d-18").default_input, get_spec("res3d-18").frame_stride
    ((8, 112), 2)
"""

from __future__ import annotations

import abc
import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from feat3d.backbones.presets import PRESETS, Preset

if TYPE_CHECKING:
    from feat3d.backbones.meta import WeightsMeta

__all__ = [
    "Backbone",
    "BackboneSpec",
    "get_spec",
    "is_registered",
    "list_backbones",
    "register_backbone",
]

Builder = Callable[..., "Backbone"]


class Backbone(nn.Module, abc.ABC):
    """Interface shared by every registered network: a trunk, global pooling and a head.

    Subclasses build ``self.avgpool`` and ``self.fc`` and implement :meth:`forward_trunk`.

    Attributes:
        feature_dim: Width ``D`` of the pooled features (512 basic, 2048 bottleneck).
        num_classes: Rows of the classifier ``fc``.
        arch_kwargs: The builder keyword arguments that rebuild this exact layout
            (``num_classes`` included); recorded in the weights metadata.
        meta: The weights' metadata; set by :func:`get_backbone`.
    """

    feature_dim: int
    num_classes: int
    #: The layer the network's paper uses as its clip feature (``extract``'s default).
    default_feature_layer: str = "pool5"
    #: The name of the last stage's layer (``conv5``; I3D keeps its paper's ``mixed_5c``).
    stage_layer: str = "conv5"
    arch_kwargs: dict[str, Any]
    meta: WeightsMeta
    avgpool: nn.Module
    fc: nn.Linear

    @abc.abstractmethod
    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and residual stages.

        Args:
            x: Normalized clips, float ``(N, 3, T, H, W)``.

        Returns:
            The last stage's feature map, ``(N, D, t, h, w)``.
        """

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled trunk features ("pool5").

        Args:
            x: Normalized clips, float ``(N, 3, T, H, W)``.

        Returns:
            ``(N, D)`` features after global average pooling, ``D == self.feature_dim``.
        """
        return torch.flatten(self.avgpool(self.forward_trunk(x)), 1)

    def forward_head(self, feats: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Classifier on pooled features.

        Args:
            feats: ``(N, D)`` output of :meth:`forward_features`.
            pre_logits: Return ``feats`` unchanged (timm's convention).

        Returns:
            Logits ``(N, num_classes)``, or ``feats`` when ``pre_logits``.
        """
        return feats if pre_logits else self.fc(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for normalized clips.

        Args:
            x: Normalized clips, float ``(N, 3, T, H, W)``.

        Returns:
            Logits ``(N, num_classes)``.
        """
        return self.forward_head(self.forward_features(x))

    def feature_layers(self) -> dict[str, int]:
        """Layers :meth:`forward_layers` can return, with their pooled width per clip.

        ``conv5`` is the last stage's map (average-pooled over time and space to ``D`` unless
        ``pool=False``), ``pool5`` the pooled features, ``logits`` the classifier output.
        """
        return {"conv5": self.feature_dim, "pool5": self.feature_dim, "logits": self.num_classes}

    def check_layers(self, layers: tuple[str, ...]) -> None:
        """Raise ``ValueError`` naming the choices for a layer not in :meth:`feature_layers`."""
        unknown = [name for name in layers if name not in self.feature_layers()]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no layer {unknown[0]!r}; "
                f"choose from {', '.join(self.feature_layers())}"
            )

    def forward_layers(
        self, x: torch.Tensor, layers: tuple[str, ...], *, pool: bool = True
    ) -> dict[str, torch.Tensor]:
        """Several layers in one pass.

        Args:
            x: Normalized clips, float ``(N, 3, T, H, W)``.
            layers: Names from :meth:`feature_layers`.
            pool: With ``False``, ``conv5`` (:attr:`stage_layer`) is returned unpooled,
                ``(N, D, t, h, w)``.

        Returns:
            One tensor per requested layer.

        Raises:
            ValueError: A layer this network does not have.
        """
        self.check_layers(layers)
        trunk = self.forward_trunk(x)
        pooled = torch.flatten(self.avgpool(trunk), 1)
        out: dict[str, torch.Tensor] = {}
        if self.stage_layer in layers:
            out[self.stage_layer] = pooled if pool else trunk
        if "pool5" in layers:
            out["pool5"] = pooled
        if "logits" in layers:
            out["logits"] = self.logits_of(trunk, pooled)
        return out

    def logits_of(self, trunk: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """The logits of a pass, from the last stage's map or its pooled features
        (:meth:`forward_head` of ``pooled``; a network whose head pools otherwise overrides it)."""
        return self.forward_head(pooled)

    def reset_classifier(self, num_classes: int) -> None:
        """Replace ``fc`` by a freshly initialized ``Linear(feature_dim, num_classes)``.

        Args:
            num_classes: Rows of the new classifier.
        """
        self.fc = nn.Linear(self.feature_dim, num_classes)
        self.num_classes = num_classes
        self.arch_kwargs = {**self.arch_kwargs, "num_classes": num_classes}


@dataclass(frozen=True)
class BackboneSpec:
    """What the registry knows about one backbone.

    The clip protocol (frames, crop, frame stride) is not stored here: it is the preset's
    (:data:`feat3d.backbones.presets.PRESETS`), read through :attr:`preset`.

    Attributes:
        name: Registry name (``"resnet-18"``, ``"r3d_18"``).
        family: ``"hara-resnet"``, ``"hara-densenet"``, ``"torchvision"``, ``"res3d"``,
            ``"c3d"``, ``"st-resnet"`` or ``"i3d"``.
        block: ``"basic"``, ``"bottleneck"`` or a family-specific variant
            (``"preact-bottleneck"``, ``"resnext-bottleneck"``, ``"basic-2+1d"``, ...).
        layers: Residual blocks per stage (conv2_x .. conv5_x); for other families the
            units per stage their builder names (I3D: Inception modules per stage).
        feature_dim: Width of the pooled features.
        default_meta: Name of the preset of the published weights, used without weights too.
        formats: Checkpoint formats :func:`~feat3d.backbones.checkpoints.load_checkpoint` can
            read into this layout.
        builder: Keyword-only callable returning a CPU :class:`Backbone`.
        widths: Channels of the 3×3×3 convs per stage (I3D: each stage's output width).
        stem: One-line description of the stem.
        num_params: Parameter count with 400 classes.
        gmacs: Multiply-accumulates (×1e9) for one :attr:`default_input` clip, torchvision's
            convention for its ``_ops`` field.
        paper: Citation of the architecture.
        streams: Inputs the network takes: ``("rgb",)``, or ``("rgb", "flow")`` for a
            two-stream network fed RGB chunks and optical flow.
    """

    name: str
    family: str
    block: str
    layers: tuple[int, ...]
    feature_dim: int
    default_meta: str
    formats: tuple[str, ...]
    builder: Builder
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem: str = ""
    num_params: int | None = None
    gmacs: float | None = None
    paper: str = ""
    streams: tuple[str, ...] = ("rgb",)

    @property
    def preset(self) -> Preset:
        """The preset of :attr:`default_meta`: the one source of the clip protocol."""
        return PRESETS[self.default_meta]

    @property
    def default_input(self) -> tuple[int, int]:
        """``(frames, crop)`` the published weights expect, from the preset."""
        return self.preset.clip_len, self.preset.crop

    @property
    def frame_stride(self) -> int:
        """Temporal stride at which those frames are sampled, from the preset."""
        return self.preset.frame_stride


_REGISTRY: dict[str, BackboneSpec] = {}


def _spec_fields(name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The :class:`BackboneSpec` fields of a registration, its preset checked: the preset is
    the one source of the clip protocol, so a registration names it and states none."""
    preset_name = spec.get("default_meta")
    if preset_name not in PRESETS:
        raise ValueError(f"backbone {name!r}: unknown preset {preset_name!r}")
    return spec


def register_backbone(name: str, **spec: Any) -> Callable[[Builder], Builder]:
    """Decorator registering a builder under ``name``.

    Args:
        name: Registry name; must be new.
        **spec: The remaining :class:`BackboneSpec` fields (all but ``name`` and ``builder``);
            the clip protocol comes from the preset ``default_meta`` names.

    Returns:
        A decorator that records the builder and returns it unchanged.

    Raises:
        ValueError: ``name`` is already registered, or an unknown preset.

    Example:
        >>> @register_backbone("tiny", family="torchvision", block="basic",
        ...                    layers=(1, 1, 1, 1), feature_dim=512,
        ...                    default_meta="torchvision", formats=("feat3d",))
        ... def tiny(*, num_classes: int = 400) -> Backbone: ...
    """
    fields = _spec_fields(name, dict(spec))

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = BackboneSpec(name=name, builder=builder, **fields)
        return builder

    return decorator


def is_registered(name: str) -> bool:
    """Whether ``name`` is a registered backbone."""
    return name in _REGISTRY


def list_backbones(pattern: str | None = None) -> list[str]:
    """Registered names, sorted.

    Args:
        pattern: Optional fnmatch pattern (``"resnet-*"``).

    Returns:
        The matching names in sorted order.
    """
    names = sorted(_REGISTRY)
    if pattern is None:
        return names
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)]


def get_spec(name: str) -> BackboneSpec:
    """The :class:`BackboneSpec` registered as ``name``.

    Raises:
        ValueError: Unknown name; the message lists the valid ones.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(
            f"unknown backbone {name!r}; valid names: {', '.join(list_backbones())}"
        ) from None
