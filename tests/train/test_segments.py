"""Labelled segments (ActivityNet's ``v_<id>#k``) are evaluated on their own frames only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from feat3d.io.discover import VideoSource
from feat3d.model import load_model
from feat3d.options import ClipOptions
from feat3d.run.stream import ClipStream
from feat3d.train import evaluate_videos, load_annotation
from tests.io.test_frames import dump_frames
from tests.videos import frame_id, write_video

CLIPS = ClipOptions(clip_len=4, stride=4, frame_stride=1, size=32, crop=32)

#: Two segments per video, of different classes: frames [2, 10) and [12, 19) at 10 fps.
SEGMENTS = [
    {"label": "Running", "segment": [0.2, 1.0]},
    {"label": "Long jump", "segment": [1.2, 1.9]},
]


@pytest.fixture(scope="module")
def anet(tmp_path_factory) -> dict[str, Path]:
    """``root/v_<id>/image_%05d.png`` (20 frames each, ids = frame numbers) and an
    ActivityNet-style JSON giving each video the two labelled segments."""
    root = tmp_path_factory.mktemp("anet")
    video = write_video(root / "src.mp4", n_frames=20, fps=10, width=32, height=32, gop=4)
    for name in ("v_train", "v_val"):
        dump_frames(video, root / "frames" / name)
    data = {
        "taxonomy": [
            {"nodeId": 0, "parentId": None, "nodeName": "Root"},
            {"nodeId": 1, "parentId": 0, "nodeName": "Long jump"},
            {"nodeId": 2, "parentId": 0, "nodeName": "Running"},
        ],
        "database": {
            "train": {"subset": "training", "fps": 10.0, "annotations": SEGMENTS},
            "val": {"subset": "validation", "fps": 10.0, "annotations": SEGMENTS},
        },
    }
    (root / "activity_net.json").write_text(json.dumps(data))
    return {"root": root / "frames", "json": root / "activity_net.json", "video": video}


def clips_by_key(sources: list[VideoSource], options: ClipOptions = CLIPS) -> dict[str, list]:
    """Every clip's ``(segment, frame ids)`` and every error, per source key."""
    found: dict[str, list] = {source.key: [] for source in sources}
    for item in ClipStream(sources, options):
        key = sources[item.video].key
        if item.kind == "clip":
            ids = [frame_id(image) for image in item.frames.numpy()]
            found[key].append((item.segment, ids))
        elif item.kind == "error":
            found[key].append(("error", item.message))
    return found


def test_each_segment_item_decodes_only_its_frames(anet) -> None:
    split = load_annotation(anet["root"], anet["json"])
    assert [(i.key, split.classes[i.label], i.frames) for i in split.val] == [
        ("v_val#0", "Running", (2, 10)), ("v_val#1", "Long jump", (12, 19))]  # fmt: skip
    found = clips_by_key([item.source for item in split.val])
    assert found["v_val#0"] == [((2, 6), [2, 3, 4, 5]), ((6, 10), [6, 7, 8, 9])]
    # The last window holds frame 18 only (19 is the segment's end): looped, as a short tail.
    assert found["v_val#1"] == [
        ((12, 16), [12, 13, 14, 15]), ((16, 19), [16, 17, 18, 16])]  # fmt: skip


def test_a_video_file_segment_seeks_to_the_same_frames(anet) -> None:
    video = anet["video"]
    sources = [VideoSource(video, "a", (12, 19)), VideoSource(video, "b", (0, 3))]
    found = clips_by_key(sources)
    assert found["a"] == [((12, 16), [12, 13, 14, 15]), ((16, 19), [16, 17, 18, 16])]
    assert found["b"] == [((0, 3), [0, 1, 2, 0])]


def test_uniform_views_and_start_end_stay_inside_the_segment(anet) -> None:
    folder = anet["root"] / "v_val"
    views = ClipOptions(clip_len=4, frame_stride=1, size=32, crop=32, clips_per_video=3)
    found = clips_by_key([VideoSource(folder, "v", (2, 12))], views)
    assert [segment for segment, _ in found["v"]] == [(2, 6), (5, 9), (8, 12)]
    window = ClipOptions(
        clip_len=4, stride=4, frame_stride=1, size=32, crop=32, end=1.0, frame_rate=10
    )
    found = clips_by_key([VideoSource(folder, "v", (6, 15))], window)
    assert found["v"] == [((6, 10), [6, 7, 8, 9])]  # --end 1.0 s cuts the segment at frame 10


def test_a_segment_outside_the_video_fails_that_item_alone(anet) -> None:
    folder = anet["root"] / "v_val"
    late = ClipOptions(clip_len=4, stride=4, frame_stride=1, size=32, crop=32, start=0.5)
    sources = [VideoSource(folder, "past", (25, 30)), VideoSource(folder, "ok", (0, 4))]
    found = clips_by_key(sources)
    assert found["past"] == [("error", "segment frames [25, 30) starts past the video's 20 frames")]
    assert found["ok"] == [((0, 4), [0, 1, 2, 3])]
    outside = clips_by_key([VideoSource(folder, "early", (0, 4))], late)
    assert outside["early"][0][0] == "error" and "outside --start/--end" in outside["early"][0][1]


def test_evaluation_scores_each_segment_on_its_own_clips(anet) -> None:
    split = load_annotation(anet["root"], anet["json"])
    with pytest.warns(UserWarning, match="random weights"):
        model = load_model("resnet-10", None, device="cpu", num_classes=2)
    classes = list(model.categories)
    result = evaluate_videos(model, split.val, classes, clips=CLIPS, batch_size=4)
    assert result.failures == []
    assert [p["video"] for p in sorted(result.predictions, key=lambda p: p["video"])] == [
        "v_val#0", "v_val#1"]  # fmt: skip
    assert [p["label"] for p in result.predictions] == [classes[1], classes[0]]
    assert result.n_clips == 4  # two clips of each segment, none of the frames between them
    whole = evaluate_videos(
        model, [item.__class__(item.path, item.label, item.key) for item in split.val],
        classes, clips=CLIPS, batch_size=4,
    )  # fmt: skip
    assert whole.n_clips == 10  # the whole 20-frame video, twice
    assert np.isfinite(result.loss)
