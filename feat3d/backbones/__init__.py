"""Backbones: the registry, Hara's and torchvision's 3D ResNets, and their weights.

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
    res3d,
    resnet2p1d,
    st_resnet,
    video_resnet,
)
from feat3d.backbones.registry import (
    Backbone,
    BackboneSpec,
    get_backbone,
    get_spec,
    list_backbones,
    register_backbone,
)
from feat3d.backbones.weights import (
    DEFAULT_MODEL,
    PRESETS,
    LoadedCheckpoint,
    NamedWeights,
    Preset,
    ResolvedWeights,
    WeightsError,
    WeightsMeta,
    categories_for,
    compute_sha256,
    convert_checkpoint,
    default_meta,
    fetch_weights,
    kinetics400_categories,
    list_weights,
    load_checkpoint,
    load_state_dict_strict,
    resolve_weights,
    save_checkpoint,
    weights_cache_path,
)

__all__ = [
    "DEFAULT_MODEL",
    "PRESETS",
    "Backbone",
    "BackboneSpec",
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
    "kinetics400_categories",
    "list_backbones",
    "list_weights",
    "load_checkpoint",
    "load_state_dict_strict",
    "register_backbone",
    "res3d",
    "resnet2p1d",
    "resolve_weights",
    "save_checkpoint",
    "st_resnet",
    "video_resnet",
    "weights_cache_path",
]
