"""The ``feat3d models`` table: every architecture, its cost, layers and published weights.

The published checkpoints are the built-in rows of :mod:`feat3d.backbones.catalog`.
"""

from __future__ import annotations

from typing import Any

import torch

from feat3d.backbones.catalog import CheckpointEntry, catalog_entries
from feat3d.backbones.registry import get_spec, list_backbones

__all__ = ["describe_models", "published_checkpoints"]


def published_checkpoints() -> list[CheckpointEntry]:
    """Every published checkpoint feat3d reads: torchvision, Hara 2017/2020, C3D, PyTorchVideo."""
    return catalog_entries()


def describe_models(pattern: str | None = None) -> list[dict[str, Any]]:
    """One JSON-friendly row per registered architecture, for ``feat3d models``.

    Feature layers are read from a model built on the ``meta`` device (no memory, no time).
    """
    published: dict[str, list[str]] = {}
    for entry in catalog_entries():
        published.setdefault(entry.arch, []).append(entry.filename)
    rows = []
    for name in list_backbones(pattern):
        spec = get_spec(name)
        with torch.device("meta"):
            model = spec.builder()
        layers = dict(model.feature_layers())
        if "logits" in layers:
            layers["probs"] = layers["logits"]
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "block": spec.block,
                "stages": list(spec.layers),
                "widths": list(spec.widths),
                "num_params": spec.num_params,
                "gmacs": spec.gmacs,
                "feature_dim": spec.feature_dim,
                "layers": layers,
                "default_layer": getattr(model, "default_feature_layer", "pool5"),
                "default_input": list(spec.default_input),
                "frame_stride": spec.frame_stride,
                "streams": list(spec.streams),
                "formats": list(spec.formats),
                "weights": published.get(name, []),
                "paper": spec.paper,
            }
        )
    return rows
