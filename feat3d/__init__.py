"""feat3d: spatio-temporal features and action labels from videos with 3D residual networks.

The Python API under the CLI::

    import feat3d
    model = feat3d.load_model("resnet-34", weights="resnet-34-kinetics.pth")
    report = feat3d.extract(["videos/"], "feats.h5", model=model)
    labels = feat3d.classify(["clip.mp4"], model=model)
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_model": ("feat3d.model", "load_model"),
    "VideoModel": ("feat3d.model", "VideoModel"),
    "extract": ("feat3d.run.extract", "extract"),
    "ExtractReport": ("feat3d.run.extract", "ExtractReport"),
    "classify": ("feat3d.run.classify", "classify"),
    "ClassifyReport": ("feat3d.run.classify", "ClassifyReport"),
    "ModelOptions": ("feat3d.options", "ModelOptions"),
    "ClipOptions": ("feat3d.options", "ClipOptions"),
    "OutputOptions": ("feat3d.options", "OutputOptions"),
    "RunOptions": ("feat3d.options", "RunOptions"),
    "TwoStreamOptions": ("feat3d.options", "TwoStreamOptions"),
    "Feat3dError": ("feat3d.errors", "Feat3dError"),
    "get_backbone": ("feat3d.backbones", "get_backbone"),
    "list_backbones": ("feat3d.backbones", "list_backbones"),
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    # Importing torch takes seconds: load the API on first use so `feat3d --help` stays quick.
    if name in _LAZY:
        module, attribute = _LAZY[name]
        return getattr(importlib.import_module(module), attribute)
    raise AttributeError(f"module 'feat3d' has no attribute {name!r}")
