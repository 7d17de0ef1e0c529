"""The option groups: validated once when made, clip defaults filled from the weights by one
function, and the API's keyword shortcuts landing in the right group."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from feat3d.backbones import default_meta
from feat3d.errors import UsageError
from feat3d.options import (
    ClipOptions,
    ModelOptions,
    OptionsError,
    OutputOptions,
    RunOptions,
    TwoStreamOptions,
    fill_clip_defaults,
    group_options,
    parse_workers,
)


@pytest.mark.parametrize(
    ("group", "values", "message"),
    [
        (ClipOptions, {"clip_len": 0}, "clip len"),
        (ClipOptions, {"tail": "loop"}, "tail"),
        (ClipOptions, {"start": 3.0, "end": 2.0}, "after start"),
        (ClipOptions, {"crop": (112,)}, "crop"),
        (ClipOptions, {"size": -1}, "size"),
        (ClipOptions, {"timeout": 0}, "timeout"),
        (OutputOptions, {"dtype": "int8"}, "dtype"),
        (OutputOptions, {"pool": False, "layer": "pool5"}, "conv5"),
        (RunOptions, {"batch_size": 0}, "batch size"),
        (RunOptions, {"workers": "many"}, "workers"),
        (RunOptions, {"shard": (3, 3)}, "shard"),
        (RunOptions, {"shard": (0, 2), "devices": ("cpu",)}, "use one"),
        (ModelOptions, {"precision": "int8"}, "precision"),
        (TwoStreamOptions, {"chunks": 0}, "chunks"),
    ],
)  # fmt: skip
def test_bad_values_fail_when_the_options_are_made(group, values, message) -> None:
    with pytest.raises(UsageError, match=message):
        group(**values)


def test_options_are_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        ClipOptions().clip_len = 8  # type: ignore[misc]


def test_clip_defaults_come_from_the_weights_metadata() -> None:
    torchvision = default_meta("r3d_18")
    filled = fill_clip_defaults(None, torchvision)
    assert filled.filled
    assert (filled.clip_len, filled.frame_stride) == (
        torchvision.clip_len,
        torchvision.frame_stride,
    )
    assert filled.stride == torchvision.clip_len * torchvision.frame_stride  # no overlap
    assert filled.size == torchvision.resize and filled.crop == torchvision.crop
    assert filled.fps == (torchvision.frame_rate or 0.0)
    given = fill_clip_defaults(ClipOptions(clip_len=8, fps=0, crop=64), torchvision)
    assert (given.clip_len, given.stride, given.fps, given.crop) == (
        8,
        8 * given.frame_stride,
        0,
        64,
    )
    assert given.decode_kwargs() == {}  # fps 0: the native rate
    assert fill_clip_defaults(given, default_meta("resnet-18")) == given  # filling is idempotent


def test_shortcuts_land_in_their_group_and_unknown_ones_are_refused() -> None:
    groups = group_options(
        {"model": ModelOptions(arch="resnet-18"), "clips": None, "output": OutputOptions(),
         "run": None, "two_stream": None},
        weights="none", clip_len=8, dtype="float16", batch_size=3, flow_method="dis",
        format="json",
    )  # fmt: skip
    assert groups["model"] == ModelOptions(arch="resnet-18", weights="none")
    assert groups["clips"] == ClipOptions(clip_len=8)
    assert groups["output"] == OutputOptions(dtype="float16", format="json")
    assert groups["run"] == RunOptions(batch_size=3)
    assert groups["two_stream"] == TwoStreamOptions(method="dis")
    with pytest.raises(TypeError, match="clip_length"):
        group_options({"clips": None}, clip_length=8)


def test_workers_parse_in_one_place() -> None:
    assert parse_workers("auto") == "auto" and parse_workers("3") == 3 and parse_workers(0) == 0
    assert RunOptions(workers="2").workers == 2
    with pytest.raises(OptionsError):
        parse_workers(-1)


def test_extract_takes_option_objects_or_the_same_shortcuts(tiny_video_folder) -> None:
    import feat3d

    model = feat3d.load_model("resnet-10", None, device="cpu")
    by_objects = feat3d.extract(
        [tiny_video_folder], model=model, clips=ClipOptions(clip_len=4, size=32, crop=32),
        run=RunOptions(batch_size=2),
    )  # fmt: skip
    by_keywords = feat3d.extract(
        [tiny_video_folder], model=model, clip_len=4, size=32, crop=32, batch_size=2
    )
    assert sorted(by_objects.videos) == sorted(by_keywords.videos) != []
    for key, video in by_objects.videos.items():
        assert np.array_equal(video.features, by_keywords.videos[key].features)
        assert video.features.shape[1] == 512


@pytest.fixture(scope="module")
def tiny_video_folder(tmp_path_factory):
    from tests.videos import write_video

    root = tmp_path_factory.mktemp("options_videos")
    for name, frames in {"a.mp4": 9, "b.mp4": 5}.items():
        write_video(root / name, n_frames=frames, width=40, height=32, pattern="texture")
    return str(root)
