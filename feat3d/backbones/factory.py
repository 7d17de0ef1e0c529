"""The one factory of networks: a registered backbone, built on the CPU, with its weights.

Example:
    >>> from feat3d.backbones import get_backbone
    >>> model = get_backbone("resnet-18", num_classes=5)
    >>> model.feature_dim, model.num_classes, model.meta.preset
    (512, 5, 'hara2020')
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from feat3d.backbones.checkpoints import LoadedCheckpoint, build_model
from feat3d.backbones.meta import default_meta
from feat3d.backbones.registry import Backbone, get_spec
from feat3d.backbones.weights import resolve_weights

__all__ = ["get_backbone"]


def get_backbone(
    name: str,
    *,
    weights: str | Path | LoadedCheckpoint | None = None,
    num_classes: int | None = None,
    **kwargs: Any,
) -> Backbone:
    """Build a registered backbone on the CPU, optionally with weights.

    With weights, the layout (``num_classes``, Hara's ``shortcut_type``, ...) comes from the
    checkpoint: the builder trusts the weights, and a conflicting explicit argument raises.

    Args:
        name: Registry name, see :func:`~feat3d.backbones.registry.list_backbones`.
        weights: ``None`` or ``"none"`` for random initialization; ``"DEFAULT"`` or a named
            weights string (``"r3d_18.kinetics400_v1"``); a checkpoint path; or the result of
            :func:`~feat3d.backbones.weights.resolve_weights`.
        num_classes: Classifier rows. Defaults to 400 without weights; with weights it must
            match the checkpoint when given.
        **kwargs: Further builder options (e.g. ``shortcut_type="A"`` for Hara's ResNets).

    Returns:
        The model in training mode, on the CPU, with ``model.meta`` set to a
        :class:`~feat3d.backbones.meta.WeightsMeta`.

    Raises:
        ValueError: Unknown name, or an argument conflicting with the checkpoint.
        feat3d.backbones.checkpoints.WeightsError: The weights cannot be found, read or loaded.

    Example:
        >>> model = get_backbone("r3d_18", weights="DEFAULT")  # doctest: +SKIP
        >>> logits = model(torch.randn(1, 3, 16, 112, 112))  # doctest: +SKIP
    """
    spec = get_spec(name)
    if weights is None or (isinstance(weights, str) and weights.lower() == "none"):
        n = 400 if num_classes is None else num_classes
        model = spec.builder(num_classes=n, **kwargs)
        model.meta = default_meta(name, arch_kwargs=model.arch_kwargs)
        return model

    loaded = (
        weights if isinstance(weights, LoadedCheckpoint) else resolve_weights(weights, model=name)
    )
    if loaded.arch != name:
        raise ValueError(
            f"weights hold {loaded.arch}, not {name}; use {loaded.arch!r} or leave it out"
        )
    requested = dict(kwargs)
    if num_classes is not None:
        requested["num_classes"] = num_classes
    _check_conflicts(requested, loaded.meta.arch_kwargs, source=loaded.meta.source)
    return build_model(loaded, **requested)


def _check_conflicts(
    requested: Mapping[str, Any], recorded: Mapping[str, Any], *, source: str
) -> None:
    for key, value in requested.items():
        if key in recorded and recorded[key] != value:
            raise ValueError(
                f"{key}={value!r} conflicts with the weights {source} ({key}={recorded[key]!r}); "
                f"leave {key} out, or fine-tune with reset_classifier()"
            )
