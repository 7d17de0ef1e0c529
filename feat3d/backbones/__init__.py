"""Backbones: the registry, the networks, and their weights (catalog, presets, checkpoints).

Modules, lowest first (none imports one listed after it): :mod:`~feat3d.backbones.presets`
(normalization and clip protocol), :mod:`~feat3d.backbones.registry`,
:mod:`~feat3d.backbones.meta` (what travels with weights),
:mod:`~feat3d.backbones.layouts` and :mod:`~feat3d.backbones.checkpoints` (reading, saving,
converting files), :mod:`~feat3d.backbones.catalog` (known checkpoints, the weights home,
downloads), :mod:`~feat3d.backbones.weights` (``--weights`` resolution),
:mod:`~feat3d.backbones.factory` (:func:`get_backbone`), :mod:`~feat3d.backbones.hub`
(add/remove/download) and :mod:`~feat3d.backbones.published` (``feat3d models``).

Example:
    >>> from feat3d.backbones import get_backbone, list_backbones
    >>> model = get_backbone("r3d_18", weights="DEFAULT")  # doctest: +SKIP
    >>> model.meta.mean, model.meta.categories[:2]  # doctest: +SKIP
"""

# Importing the model modules registers their builders.
from feat3d.backbones import (
    c3d,
    densenet,
    hara_resnet,
    hara_variants,
    i3d,
    pytorchvideo,
    res3d,
    resnet2p1d,
    s3d,
    slowfast,
    st_resnet,
    video_resnet,
)
from feat3d.backbones.catalog import (
    CheckpointEntry,
    fetch_weights,
    list_weights,
    weights_cache_path,
)
from feat3d.backbones.checkpoints import (
    LoadedCheckpoint,
    WeightsError,
    compute_sha256,
    convert_checkpoint,
    load_checkpoint,
    load_state_dict_strict,
    save_checkpoint,
)
from feat3d.backbones.factory import get_backbone
from feat3d.backbones.meta import WeightsMeta, default_meta
from feat3d.backbones.presets import PRESETS, Preset, categories_for, kinetics400_categories
from feat3d.backbones.registry import (
    Backbone,
    BackboneSpec,
    get_spec,
    list_backbones,
    register_backbone,
)
from feat3d.backbones.weights import DEFAULT_MODEL, resolve_weights

#: Former names, kept for callers: a downloadable catalog row, a resolved ``--weights``.
NamedWeights = CheckpointEntry
ResolvedWeights = LoadedCheckpoint

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "Backbone",
    "BackboneSpec",
    "CheckpointEntry",
    "LoadedCheckpoint",
    "NamedWeights",
    "Preset",
    "ResolvedWeights",
    "WeightsError",
    "WeightsMeta",
    "c3d",
    "categories_for",
    "compute_sha256",
    "convert_checkpoint",
    "default_meta",
    "densenet",
    "fetch_weights",
    "get_backbone",
    "get_spec",
    "hara_resnet",
    "hara_variants",
    "i3d",
    "kinetics400_categories",
    "list_backbones",
    "list_weights",
    "load_checkpoint",
    "load_state_dict_strict",
    "pytorchvideo",
    "register_backbone",
    "res3d",
    "resnet2p1d",
    "resolve_weights",
    "s3d",
    "save_checkpoint",
    "slowfast",
    "st_resnet",
    "video_resnet",
    "weights_cache_path",
]
