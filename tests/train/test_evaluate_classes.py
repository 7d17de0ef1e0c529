"""Evaluation refuses a model whose classes are not the dataset's, in the same order."""

from __future__ import annotations

import pytest

from feat3d.model import load_model
from feat3d.options import fill_clip_defaults
from feat3d.train import DatasetError, evaluate_videos


def test_a_model_trained_on_other_classes_is_refused_before_any_video() -> None:
    with pytest.warns(UserWarning, match="random weights"):
        model = load_model("resnet-10", None, device="cpu", num_classes=3)
    clips = fill_clip_defaults(None, model.meta)
    with pytest.raises(DatasetError, match="must be the same, in the same order"):
        evaluate_videos(model, [], ["left", "right", "up"], clips=clips)
    same = evaluate_videos(model, [], list(model.categories), clips=clips)
    assert same.failures == []
