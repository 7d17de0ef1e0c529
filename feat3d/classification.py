"""``classify``: top-k action labels per video (mean of clip softmax scores) and per clip."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .extraction import RunEvents, clip_options_for
from .io.discover import discover_videos
from .io.writers import VideoFailure
from .model import VideoModel, load_model
from .pipeline import run_videos
from .two_stream import TwoStreamOptions, is_two_stream, two_stream_videos


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
    model: str | VideoModel | None = None,
    weights: str | None = "DEFAULT",
    top_k: int = 5,
    clip_len: int | None = None,
    stride: int | None = None,
    tail: str = "pad",
    size: int | tuple[int, int] | None = None,
    crop: int | tuple[int, int] | None = None,
    frame_stride: int | None = None,
    fps: float | None = None,
    start: float | None = None,
    end: float | None = None,
    max_clips: int | None = None,
    max_frames: int | None = None,
    timeout: float | None = None,
    flow: str | os.PathLike[str] | None = None,
    flow_method: str = "tvl1",
    chunks: int = 25,
    batch_size: int = 8,
    workers: int | str = 0,
    device: str = "auto",
    precision: str = "fp32",
    events: RunEvents | None = None,
) -> ClassifyReport:
    """Classify videos: video-level top-k from the mean of clip softmax scores, and per clip.

    Args:
        inputs: Video files, folders or ``@list.txt`` files.
        model, weights, device, precision: See ``load_model``.
        top_k: Labels per video and per clip.
        clip_len, stride, tail, size, crop, frame_stride, fps, start, end, max_clips,
            max_frames, timeout,
            batch_size, workers, flow, flow_method, chunks: As for ``extract``.
        events: Progress hooks.

    Returns:
        A ``ClassifyReport`` with one ``VideoPrediction`` per video that decoded.

    Example:
        >>> report = classify(["clip.mp4"], weights="r3d_18.kinetics400_v1")
        >>> report.videos[0].top_k[0].label
        'playing guitar'
    """
    if top_k < 1:
        raise ValueError("top-k must be at least 1")
    events = events or RunEvents()
    if not isinstance(model, VideoModel):
        model = load_model(model, weights, device=device, precision=precision)
    clips = clip_options_for(
        model, clip_len=clip_len, stride=stride, tail=tail, size=size, crop=crop,
        frame_stride=frame_stride, fps=fps, start=start, end=end, max_clips=max_clips,
        max_frames=max_frames, timeout=timeout,
    )  # fmt: skip
    sources = discover_videos(inputs)
    categories = model.categories
    report = ClassifyReport(
        arch=model.meta.arch, weights=model.meta.reference, random_weights=model.random_weights
    )
    events.on_start(total=len(sources), skipped=0)
    if is_two_stream(model):
        options = TwoStreamOptions(flow=flow, chunks=chunks, method=flow_method)
        results = two_stream_videos(
            model, sources, options=options, layers=("logits", "probs"), on_clips=events.on_clips
        )
    else:
        results = run_videos(
            model, sources, clips=clips, layers=("logits", "probs"), batch_size=batch_size,
            workers=workers, on_clips=events.on_clips,
        )  # fmt: skip
    for result in results:
        if isinstance(result, VideoFailure):
            report.failures.append(result)
            events.on_failure(result)
            continue
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
        report.videos.append(
            VideoPrediction(
                video=result.source.key,
                source=str(result.source.path),
                top_k=top_k_labels(video_scores, categories, top_k),
                scores=video_scores,
                clips=clip_predictions,
            )
        )
        events.on_video(result.source.key, len(clip_predictions))
    return report


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
