"""Each network a test module runs through the CLI loaded once: ``load_model`` memoized by
``(model, weights)`` where the commands call it.

For tests whose runs differ in their clips, streams or outputs but never in how a network
is loaded (on the CPU, in fp32): building, loading and folding a network is what such a run
spends most of its time on, and a run changes nothing in a network (eval mode). Loading
itself is tested where it is the subject (tests/test_model.py, tests/backbones/).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

import feat3d.options
import feat3d.run.i3d_streams
from feat3d.model import VideoModel, load_model


@contextmanager
def networks_loaded_once() -> Iterator[dict[tuple[str | None, str], VideoModel]]:
    """Inside, ``load_model`` (as the commands and I3D's stream runner call it) builds each
    ``(model, weights)`` pair once; yields the loaded networks by that key."""
    loaded: dict[tuple[str | None, str], VideoModel] = {}

    def cached(model: str | None = None, weights: Any = "DEFAULT", **kwargs: Any) -> VideoModel:
        key = (model, str(weights))
        if key not in loaded:
            loaded[key] = load_model(model, weights, **kwargs)
        return loaded[key]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(feat3d.options, "load_model", cached)
        patch.setattr(feat3d.run.i3d_streams, "load_model", cached)
        yield loaded
