"""``classify``: top-k action labels per video (mean of clip softmax scores) and per clip."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.writers import VideoFailure
from ..model import VideoModel
from ..options import ClipOptions, ModelOptions, RunOptions, TwoStreamOptions, group_options
from .events import RunEvents
from .extract import as_model_options, sources_of
from .messages import VideoOutputs
from .pipeline import run_network


@dataclass(frozen=True)
class Label:
    """One of the top-k classes: its name, index in the weights' classes, and score."""

    label: str
    index: int
    score: float


@dataclass
class ClipPrediction:
    """Scores of one clip: ``segment`` (frames, one-past-last) and ``time`` (seconds)."""

    segment: tuple[int, int]
    time: tuple[float, float]
    top_k: list[Label]
    logits: np.ndarray


@dataclass
class VideoPrediction:
    """Video-level top-k (mean of the clips' softmax scores) and the per-clip predictions."""

    video: str
    source: str
    top_k: list[Label]
    scores: np.ndarray
    clips: list[ClipPrediction]


@dataclass
class ClassifyReport:
    """Predictions of a run, the model that made them, and the videos that failed."""

    arch: str
    weights: str
    random_weights: bool
    videos: list[VideoPrediction] = field(default_factory=list)
    failures: list[VideoFailure] = field(default_factory=list)

    def to_json(self, *, per_clip: bool = True) -> dict[str, Any]:
        """The design notes' schema: ``{"model": {...}, "videos": [...]}``."""
        return {
            "model": {
                "arch": self.arch,
                "weights": self.weights,
                "random_weights": self.random_weights,
            },
            "videos": [
                {
                    "video": v.video,
                    "top_k": [label.__dict__ for label in v.top_k],
                    **(
                        {
                            "clips": [
                                {
                                    "segment": list(c.segment),
                                    "time": [round(c.time[0], 6), round(c.time[1], 6)],
                                    "top_k": [label.__dict__ for label in c.top_k],
                                }
                                for c in v.clips
                            ]
                        }
                        if per_clip
                        else {}
                    ),
                }
                for v in self.videos
            ],
            "failures": [
                {"video": f.key, "source": f.source, "error": f.message} for f in self.failures
            ],
        }

    def to_hara(self, categories: list[str]) -> list[dict[str, Any]]:
        """The schema of Hara et al.'s classify tool: segments are 1-based and inclusive, and
        ``scores`` are the network's raw outputs (logits), as that tool wrote them."""
        return [
            {
                "video": v.video,
                "clips": [
                    {
                        "segment": [c.segment[0] + 1, c.segment[1]],
                        "label": categories[int(np.argmax(c.logits))],
                        "scores": [float(x) for x in c.logits],
                    }
                    for c in v.clips
                ],
            }
            for v in self.videos
        ]


def top_k_labels(scores: np.ndarray, categories: list[str], k: int) -> list[Label]:
    """The ``k`` highest scores, best first (ties keep the lower class index first)."""
    k = min(k, scores.shape[0])
    order = np.argsort(-scores, kind="stable")[:k]
    return [Label(categories[i], int(i), float(scores[i])) for i in order]


def classify(
    inputs: Iterable[str | os.PathLike[str]],
    *,
    model: str | ModelOptions | VideoModel | None = None,
    top_k: int = 5,
    clips: ClipOptions | None = None,
    run: RunOptions | None = None,
    two_stream: TwoStreamOptions | None = None,
    events: RunEvents | None = None,
    **options: Any,
) -> ClassifyReport:
    """Classify videos: video-level top-k from the mean of clip softmax scores, and per clip.
    With ``crops`` above 1 a clip's scores (softmax, and logits) are the mean over its views.

    Args:
        inputs: Video files, folders or ``@list.txt`` files.
        model: A loaded ``VideoModel``, a registry name, or :class:`ModelOptions`.
        top_k: Labels per video and per clip.
        clips, run, two_stream, events: As for :func:`feat3d.extract`.
        **options: Any field of those groups by name, as a shortcut (``weights``, ``device``,
            ``precision``, ``clip_len``, ``batch_size``, ``workers``, ``flow``, ...).

    Returns:
        A ``ClassifyReport`` with one ``VideoPrediction`` per video that decoded.

    Example:
        >>> report = classify(["clip.mp4"], weights="r3d_18.kinetics400_v1")
        >>> report.videos[0].top_k[0].label
        'playing guitar'
    """
    if top_k < 1:
        raise ValueError("top-k must be at least 1")
    groups = group_options(
        {"model": as_model_options(model), "clips": clips, "run": run, "two_stream": two_stream},
        **options,
    )
    network = model if isinstance(model, VideoModel) else groups["model"].load()
    sources = sources_of(inputs, frame_rate=groups["clips"].frame_rate)
    report = ClassifyReport(
        arch=network.meta.arch, weights=network.meta.reference,
        random_weights=network.random_weights,
    )  # fmt: skip
    events = events or RunEvents()
    events.on_start(total=len(sources), skipped=0)
    results = run_network(
        network, sources, clips=groups["clips"], layers=("logits", "probs"), run=groups["run"],
        two_stream=groups["two_stream"], on_clips=events.on_clips, crop_reduce="mean",
    )  # fmt: skip
    for result in results:
        if isinstance(result, VideoFailure):
            report.failures.append(result)
            events.on_failure(result)
            continue
        prediction = predict_video(result, network.categories, top_k)
        report.videos.append(prediction)
        events.on_video(prediction.video, len(prediction.clips))
    return report


def predict_video(result: VideoOutputs, categories: list[str], top_k: int) -> VideoPrediction:
    """One video's predictions: the mean of its clips' softmax scores, and each clip's."""
    probs = result.outputs["probs"]
    video_scores = probs.mean(axis=0)
    clip_predictions = [
        ClipPrediction(
            segment=(int(seg[0]), int(seg[1])),
            time=(float(t[0]), float(t[1])),
            top_k=top_k_labels(p, categories, top_k),
            logits=logits,
        )
        for seg, t, p, logits in zip(
            result.segments, result.timestamps, probs, result.outputs["logits"], strict=True
        )
    ]
    return VideoPrediction(
        video=result.source.key,
        source=result.source.display,
        top_k=top_k_labels(video_scores, categories, top_k),
        scores=video_scores,
        clips=clip_predictions,
    )


def write_json(
    report: ClassifyReport,
    path: str | os.PathLike[str],
    *,
    format: str,
    categories: list[str],
    per_clip: bool = True,
) -> None:
    """Write predictions as feat3d's JSON schema (``format="feat3d"``) or Hara's (``"hara"``)."""
    data = report.to_hara(categories) if format == "hara" else report.to_json(per_clip=per_clip)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(data, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
