"""The one registry of backbones, keyed by stable names.

Every network feat3d can build is registered here by its builder module
(:mod:`feat3d.backbones.hara_resnet`, :mod:`feat3d.backbones.video_resnet`) with a
:class:`BackboneSpec` describing it. :func:`get_backbone` is the only factory: it builds a
CPU module, loads weights when asked, and attaches the weights' metadata as ``model.meta``.

Every registered model implements the :class:`Backbone` interface::

    x (N, 3, T, H, W) ─► forward_trunk ─► (N, D, t, h, w) ─► forward_features ─► (N, D)
                                                               forward_head ─► (N, num_classes)

Example:
    >>> from feat3d.backbones import get_backbone, list_backbones
    >>> list_backbones("*_18")
    ['mc3_18', 'r2plus1d_18', 'r3d_18']
    >>> model = get_backbone("resnet-18", num_classes=5)
    >>> model.feature_dim, model.num_classes
    (512, 5)
"""

from __future__ import annotations

import abc
import fnmatch
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

if TYPE_CHECKING:
    from feat3d.backbones.weights import ResolvedWeights, WeightsMeta

__all__ = [
    "Backbone",
    "BackboneSpec",
    "get_backbone",
    "get_spec",
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

    def forward_layers(
        self, x: torch.Tensor, layers: tuple[str, ...], *, pool: bool = True
    ) -> dict[str, torch.Tensor]:
        """Several layers in one pass.

        Args:
            x: Normalized clips, float ``(N, 3, T, H, W)``.
            layers: Names from :meth:`feature_layers`.
            pool: With ``False``, ``conv5`` is returned unpooled, ``(N, D, t, h, w)``.

        Returns:
            One tensor per requested layer.

        Raises:
            ValueError: A layer this network does not have.
        """
        unknown = [name for name in layers if name not in self.feature_layers()]
        if unknown:
            raise ValueError(
                f"{type(self).__name__} has no layer {unknown[0]!r}; "
                f"choose from {', '.join(self.feature_layers())}"
            )
        trunk = self.forward_trunk(x)
        pooled = torch.flatten(self.avgpool(trunk), 1)
        out: dict[str, torch.Tensor] = {}
        if "conv5" in layers:
            out["conv5"] = pooled if pool else trunk
        if "pool5" in layers:
            out["pool5"] = pooled
        if "logits" in layers:
            out["logits"] = self.forward_head(pooled)
        return out

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

    Attributes:
        name: Registry name (``"resnet-18"``, ``"r3d_18"``).
        family: ``"hara-resnet"``, ``"hara-densenet"``, ``"torchvision"``, ``"res3d"`` or
            ``"c3d"``.
        block: ``"basic"``, ``"bottleneck"`` or a family-specific variant
            (``"preact-bottleneck"``, ``"resnext-bottleneck"``, ``"basic-2+1d"``, ...).
        layers: Residual blocks per stage (conv2_x .. conv5_x).
        feature_dim: Width of the pooled features.
        default_meta: Name of the normalization preset used without weights
            (see :data:`feat3d.backbones.weights.PRESETS`).
        formats: Checkpoint formats :func:`~feat3d.backbones.weights.load_checkpoint` can
            read into this layout.
        builder: Keyword-only callable returning a CPU :class:`Backbone`.
        widths: Channels of the 3×3×3 convs per stage.
        stem: One-line description of the stem.
        default_input: ``(frames, crop)`` the published weights expect.
        frame_stride: Temporal stride at which those frames are sampled from the video
            (Res3D: 8 frames, every 2nd frame of a 16-frame window).
        num_params: Parameter count with 400 classes.
        gflops: Multiply-accumulates (×1e9) for one ``default_input`` clip, torchvision's
            convention for its ``_ops`` field.
        paper: Citation of the architecture.
        streams: The inputs the network takes: ``("rgb",)``, or ``("rgb", "flow")`` for a
            two-stream network (the run layer gives it RGB frames and optical flow).
    """

    name: str
    family: str
    block: str
    layers: tuple[int, int, int, int]
    feature_dim: int
    default_meta: str
    formats: tuple[str, ...]
    builder: Builder
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    stem: str = ""
    default_input: tuple[int, int] = (16, 112)
    frame_stride: int = 1
    num_params: int | None = None
    gflops: float | None = None
    paper: str = ""
    streams: tuple[str, ...] = ("rgb",)


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(name: str, **spec: Any) -> Callable[[Builder], Builder]:
    """Decorator registering a builder under ``name``.

    Args:
        name: Registry name; must be new.
        **spec: The remaining :class:`BackboneSpec` fields (all but ``name`` and ``builder``).

    Returns:
        A decorator that records the builder and returns it unchanged.

    Raises:
        ValueError: ``name`` is already registered.

    Example:
        >>> @register_backbone("tiny", family="torchvision", block="basic",
        ...                    layers=(1, 1, 1, 1), feature_dim=512,
        ...                    default_meta="torchvision", formats=("feat3d",))
        ... def tiny(*, num_classes: int = 400) -> Backbone: ...
    """

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"backbone {name!r} is already registered")
        _REGISTRY[name] = BackboneSpec(name=name, builder=builder, **spec)
        return builder

    return decorator


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


def get_backbone(
    name: str,
    *,
    weights: str | Path | ResolvedWeights | None = None,
    num_classes: int | None = None,
    **kwargs: Any,
) -> Backbone:
    """Build a registered backbone on the CPU, optionally with weights.

    With weights, the layout (``num_classes``, Hara's ``shortcut_type``, ...) comes from the
    checkpoint: the builder trusts the weights, and a conflicting explicit argument raises.

    Args:
        name: Registry name, see :func:`list_backbones`.
        weights: ``None`` or ``"none"`` for random initialization; ``"DEFAULT"`` or a named
            weights string (``"r3d_18.kinetics400_v1"``); a checkpoint path; or the result of
            :func:`~feat3d.backbones.weights.resolve_weights`.
        num_classes: Classifier rows. Defaults to 400 without weights; with weights it must
            match the checkpoint when given.
        **kwargs: Further builder options (e.g. ``shortcut_type="A"`` for Hara's ResNets).

    Returns:
        The model in training mode, on the CPU, with ``model.meta`` set to a
        :class:`~feat3d.backbones.weights.WeightsMeta`.

    Raises:
        ValueError: Unknown name, or an argument conflicting with the checkpoint.
        feat3d.backbones.weights.WeightsError: The weights cannot be found, read or loaded.

    Example:
        >>> model = get_backbone("r3d_18", weights="DEFAULT")  # doctest: +SKIP
        >>> logits = model(torch.randn(1, 3, 16, 112, 112))  # doctest: +SKIP
    """
    from feat3d.backbones import weights as _weights  # late: weights imports this module

    spec = get_spec(name)
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        n = 400 if num_classes is None else num_classes
        model = spec.builder(num_classes=n, **kwargs)
        model.meta = _weights.default_meta(name, arch_kwargs=model.arch_kwargs)
        return model

    resolved = (
        weights
        if isinstance(weights, _weights.ResolvedWeights)
        else _weights.resolve_weights(weights, model=name)
    )
    if resolved.arch != name:
        raise ValueError(
            f"weights hold {resolved.arch}, not {name}; use {resolved.arch!r} or leave it out"
        )
    arch_kwargs = dict(resolved.meta.arch_kwargs)
    requested = dict(kwargs)
    if num_classes is not None:
        requested["num_classes"] = num_classes
    _check_conflicts(requested, arch_kwargs, source=resolved.meta.source)
    arch_kwargs.update(requested)
    model = spec.builder(**arch_kwargs)
    if resolved.state_dict is not None:
        _weights.load_state_dict_strict(
            model, resolved.state_dict, source=resolved.meta.source, model_name=name
        )
    model.meta = replace(resolved.meta, arch_kwargs=dict(model.arch_kwargs))
    return model


def _check_conflicts(
    requested: Mapping[str, Any], recorded: Mapping[str, Any], *, source: str
) -> None:
    for key, value in requested.items():
        if key in recorded and recorded[key] != value:
            raise ValueError(
                f"{key}={value!r} conflicts with the weights {source} ({key}={recorded[key]!r}); "
                f"leave {key} out, or fine-tune with reset_classifier()"
            )
