"""Evaluation the papers' way: non-overlapping clips, centre crop, clip softmax averaged per video.

Used after every training epoch (validation) and by ``feat3d evaluate``; it runs the same
streaming pipeline as ``extract``, so a checkpoint is judged on exactly the clips it would see
in use.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..io.writers import VideoFailure
from ..model import VideoModel
from ..options import ClipOptions, RunOptions, TwoStreamOptions
from ..run.pipeline import run_network
from .datasets import DatasetError, VideoItem


@dataclass
class EvalResult:
    """Accuracy of a model on a set of labelled videos.

    Attributes:
        loss: Mean cross-entropy over clips.
        clip_accuracy: Fraction of clips whose argmax is the label.
        top1, top5: Video-level accuracy from the mean of clip softmax scores.
        per_class: Video top-1 accuracy per class name (classes without videos are absent).
        confusion: ``(n_classes, n_classes)`` counts, rows = true class, columns = predicted.
        predictions: One record per video: key, label, predicted, top-5 and their scores.
        n_clips: Clips evaluated.
        failures: Videos that could not be decoded (left out of every figure).
    """

    loss: float
    clip_accuracy: float
    top1: float
    top5: float
    per_class: dict[str, float]
    confusion: np.ndarray
    predictions: list[dict[str, Any]]
    n_clips: int
    failures: list[VideoFailure] = field(default_factory=list)

    @property
    def n_videos(self) -> int:
        return len(self.predictions)

    def summary(self) -> str:
        return (
            f"video top-1 {self.top1:.4f}, top-5 {self.top5:.4f}, clip accuracy "
            f"{self.clip_accuracy:.4f}, loss {self.loss:.4f} ({self.n_videos} videos, "
            f"{self.n_clips} clips, {len(self.failures)} failed)"
        )


@dataclass
class _Sums:
    """Additive statistics, so ranks of a distributed run can sum them."""

    loss: float = 0.0
    clips: int = 0
    clips_correct: int = 0
    top1: int = 0
    top5: int = 0
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def add(
        self, key: str, label: int, outputs: dict[str, np.ndarray], classes: Sequence[str]
    ) -> int:
        """Count one video's clips; returns the predicted class."""
        logits = outputs["logits"].astype(np.float64)
        log_probs = logits - logits.max(1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(1, keepdims=True))
        self.loss += float(-log_probs[:, label].sum())
        self.clips += logits.shape[0]
        self.clips_correct += int((logits.argmax(1) == label).sum())
        scores = outputs["probs"].mean(0)
        ranked = np.argsort(-scores, kind="stable")
        self.top1 += int(ranked[0] == label)
        self.top5 += int(label in ranked[:5])
        self.predictions.append(
            {
                "video": key,
                "label": classes[label],
                "predicted": classes[int(ranked[0])],
                "top5": [classes[int(i)] for i in ranked[:5]],
                "scores": [round(float(scores[i]), 6) for i in ranked[:5]],
            }
        )
        return int(ranked[0])


def evaluate_videos(
    model: VideoModel,
    items: Sequence[VideoItem],
    classes: Sequence[str],
    *,
    clips: ClipOptions,
    batch_size: int = 8,
    workers: int | str = 0,
    reduce: Any = None,
    two_stream: TwoStreamOptions | None = None,
) -> EvalResult:
    """Evaluate ``model`` (put in eval mode by the caller) on labelled videos.

    Args:
        model: The network, its metadata and device.
        items: Labelled videos; an item with a segment (:attr:`VideoItem.frames`, several
            per ActivityNet video) is scored on the clips of that segment only.
        classes: Class names, index = label.
        clips: Clip options (non-overlapping, centre crop: the papers' protocol; with
            ``clips_per_video``, that many views spread uniformly over each video); with
            ``crops`` above 1 a clip's softmax scores and logits are the mean over its views.
        batch_size: Clips per forward pass.
        workers: Decoding processes (a count or ``"auto"``, as for ``extract``).
        reduce: Optional callable summing a list of floats across processes (distributed
            validation: each rank passes its own shard of ``items``).
        two_stream: For a backbone that takes flow (``st-resnet-50``): the flow file and
            chunks; the paper's fully convolutional test, one "clip" per video.

    Returns:
        An :class:`EvalResult`.

    Raises:
        DatasetError: The model's classes are not ``classes`` in the same order.
    """
    if list(model.categories) != list(classes):
        raise DatasetError(
            f"{model.meta.reference} was trained on classes {list(model.categories)[:3]}…, the "
            f"dataset has {list(classes)[:3]}…: they must be the same, in the same order"
        )
    by_key = {item.key: item for item in items}
    sources = [item.source for item in items]  # a segment's clips come from it alone
    sums = _Sums()
    failures: list[VideoFailure] = []
    n_classes = len(classes)
    confusion = np.zeros((n_classes, n_classes), dtype=np.int64)
    results = run_network(
        model, sources, clips=clips, layers=("logits", "probs"), two_stream=two_stream,
        run=RunOptions(batch_size=batch_size, workers=workers), crop_reduce="mean",
    )  # fmt: skip
    for result in results:
        if isinstance(result, VideoFailure):
            failures.append(result)
            continue
        label = by_key[result.source.key].label
        confusion[label, sums.add(result.source.key, label, result.outputs, classes)] += 1
    totals = [sums.loss, sums.clips, sums.clips_correct, sums.top1, sums.top5]
    if reduce is not None:
        totals = reduce(totals)
        confusion = np.asarray(reduce(confusion.ravel().tolist()), dtype=np.int64).reshape(
            n_classes, n_classes
        )
    loss, n_clips, clips_correct, top1, top5 = totals
    n_videos = int(confusion.sum())
    per_class = {
        classes[c]: float(confusion[c, c] / confusion[c].sum())
        for c in range(n_classes)
        if confusion[c].sum()
    }
    return EvalResult(
        loss=float(loss / max(n_clips, 1)),
        clip_accuracy=float(clips_correct / max(n_clips, 1)),
        top1=float(top1 / max(n_videos, 1)),
        top5=float(top5 / max(n_videos, 1)),
        per_class=per_class,
        confusion=confusion,
        predictions=sums.predictions,
        n_clips=int(n_clips),
        failures=failures,
    )


def write_evaluation(
    result: EvalResult, classes: Sequence[str], folder: str | os.PathLike[str]
) -> Path:
    """Write ``metrics.json``, ``per_class.csv``, ``confusion.csv`` and ``predictions.json``."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    metrics = {
        "video_top1": result.top1,
        "video_top5": result.top5,
        "clip_accuracy": result.clip_accuracy,
        "loss": result.loss,
        "n_videos": result.n_videos,
        "n_clips": result.n_clips,
        "failures": [{"video": f.key, "error": f.message} for f in result.failures],
    }
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1) + "\n", encoding="utf-8")
    with (out / "per_class.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "videos", "top1"])
        for index, name in enumerate(classes):
            count = int(result.confusion[index].sum())
            writer.writerow([name, count, f"{result.per_class[name]:.6f}" if count else ""])
    with (out / "confusion.csv").open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *classes])
        for index, name in enumerate(classes):
            writer.writerow([name, *result.confusion[index].tolist()])
    (out / "predictions.json").write_text(
        json.dumps(result.predictions, indent=1, ensure_ascii=False) + "\n", encoding="utf-8"
    )
    return out
