"""PNG figures of feat3d's results: per-clip class timelines, training curves, SVM accuracy
against PCA size, and confusion matrices.

matplotlib is an optional extra (``pip install 'feat3d[plot]'``). It is imported on first use,
and figures are drawn with its object API on the Agg canvas, so pyplot's global state and the
user's interactive backend are never touched. Every PNG is written to a temporary name and
renamed, so a reader (or a training run redrawing ``curves.png`` each epoch) never sees half a
file.
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import RunError
from .io.discover import check_key

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .run.classify import VideoPrediction
    from .train.svm import SvmReport

MISSING_MATPLOTLIB = "plots need matplotlib: pip install 'feat3d[plot]'"
DPI = 120
_ANNOTATE_UP_TO = 25  # classes; above this, confusion cells are too small for numbers


class PlotError(RunError):
    """A figure cannot be drawn: matplotlib is missing, or there is nothing to plot."""


def _new_figure(width: float, height: float) -> Figure:
    """A figure attached to an Agg canvas (raises :class:`PlotError` without matplotlib)."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise PlotError(MISSING_MATPLOTLIB) from None
    figure = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def require_matplotlib() -> None:
    """Fail early, before a long run whose figure could not be drawn.

    Raises:
        PlotError: matplotlib is not installed.
    """
    _new_figure(1, 1)


def matplotlib_available() -> bool:
    """Whether figures can be drawn (matplotlib is importable)."""
    try:
        require_matplotlib()
    except PlotError:
        return False
    return True


def _save(figure: Figure, out_png: str | os.PathLike[str]) -> Path:
    target = Path(out_png)
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    try:
        figure.savefig(temporary, format="png", dpi=DPI)
        os.replace(temporary, target)
    finally:
        temporary.unlink(missing_ok=True)
    return target


def timeline_path(folder: str | os.PathLike[str], key: str) -> Path:
    """Where ``classify --plot FOLDER`` puts a video's timeline: ``FOLDER/<key>.png``, with
    the key's sub-folders kept (keys are relative paths that cannot leave ``FOLDER``)."""
    check_key(key)
    return Path(folder) / f"{key}.png"


# ----------------------------------------------------------------------------- clip timeline


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.asarray(logits, dtype=np.float64) - np.max(logits)
    exp = np.exp(shifted)
    return exp / exp.sum()


def plot_clip_timeline(
    video: VideoPrediction,
    out_png: str | os.PathLike[str],
    *,
    top: int = 5,
    categories: Sequence[str] | None = None,
    title: str | None = None,
) -> Path:
    """Per-clip softmax probabilities of a video's top classes over time.

    Each clip is a marker at the centre of the seconds it covers (its timestamps, so variable
    frame rates show as they are), joined to the next clip's; non-overlapping clips also get a
    bar over their whole span.

    Args:
        video: A prediction of :func:`feat3d.classify`.
        out_png: The PNG to write.
        top: Classes drawn: the video's ``top`` highest mean scores.
        categories: Class names of the model (``VideoModel.categories``); without them only
            the classes in ``video.top_k`` can be named, so at most that many are drawn.
        title: Figure title; defaults to the video's key.

    Returns:
        The written path.

    Raises:
        PlotError: matplotlib is missing, or the video has no clips.
    """
    if not video.clips:
        raise PlotError(f"{video.video}: no clips to plot")
    named = {label.index: label.label for label in video.top_k}
    ranked = [int(i) for i in np.argsort(-np.asarray(video.scores), kind="stable")]
    if categories is None:
        ranked = [i for i in ranked if i in named]
    classes = ranked[: max(1, top)]
    names = [categories[i] if categories is not None else named[i] for i in classes]
    probs = np.stack([_softmax(clip.logits)[classes] for clip in video.clips])  # (clips, top)
    starts = np.array([clip.time[0] for clip in video.clips])
    ends = np.array([clip.time[1] for clip in video.clips])
    centres = (starts + ends) / 2

    # Spans are drawn only when clips do not overlap: overlapping bars would hide each other.
    show_spans = bool(np.all(starts[1:] >= ends[:-1] - 1e-6))
    figure = _new_figure(9, 4.8)
    axes = figure.add_subplot()
    colors = [f"C{i % 10}" for i in range(len(classes))]
    for column, (index, name, color) in enumerate(zip(classes, names, colors, strict=True)):
        score = float(video.scores[index])
        axes.plot(
            centres,
            probs[:, column],
            "o-",
            color=color,
            lw=1.2,
            ms=4,
            label=f"{name} (video {score:.3f})",
        )
        if show_spans:
            axes.hlines(probs[:, column], starts, ends, color=color, lw=3, alpha=0.35)
    axes.set_xlim(min(0.0, float(starts.min())), float(ends.max()))
    peak = float(probs.max())
    axes.set_ylim(0, 1.02 if peak > 0.4 else peak * 1.25)  # small scores (400 classes) stay visible
    span = "bars: each clip's span" if show_spans else "overlapping clips"
    axes.set_xlabel(f"time (s); points at clip centres, {span}")
    axes.set_ylabel("clip softmax probability")
    axes.grid(alpha=0.3)
    axes.set_title(
        title or f"{video.video}: class probability per clip",
        loc="left",
    )
    axes.legend(
        title="class (mean over clips)",
        fontsize="small",
        loc="upper left",
        bbox_to_anchor=(1.01, 1.0),
        borderaxespad=0,
    )
    return _save(figure, out_png)


# --------------------------------------------------------------------------- training curves


def _read_metrics(metrics_csv: Path) -> dict[str, np.ndarray]:
    try:
        with metrics_csv.open(newline="", encoding="utf-8") as handle:
            rows = list(csv.DictReader(handle))
    except OSError as error:
        raise PlotError(f"{metrics_csv}: cannot read ({error.strerror or error})") from None
    if not rows or "epoch" not in rows[0]:
        raise PlotError(f"{metrics_csv}: no epochs recorded yet")

    def column(name: str) -> np.ndarray:
        values = []
        for row in rows:
            text = (row.get(name) or "").strip()
            try:
                values.append(float(text) if text else math.nan)
            except ValueError:
                raise PlotError(f"{metrics_csv}: {name}={text!r} is not a number") from None
        return np.asarray(values)

    return {name: column(name) for name in rows[0]}


def _chance(run_dir: Path) -> float | None:
    """1 / classes, from the run's ``config.json`` when it is there."""
    try:
        classes = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))["classes"]
        return 1.0 / len(classes) if classes else None
    except (OSError, ValueError, KeyError, TypeError):
        return None


def plot_training_curves(
    metrics_csv: str | os.PathLike[str], out_png: str | os.PathLike[str]
) -> Path:
    """Loss and accuracy per epoch, training and validation, from a run's ``metrics.csv``.

    Left: training and validation loss (cross-entropy per clip). Right: training clip
    accuracy, validation clip accuracy and video top-1/top-5, with chance (from the run's
    ``config.json``) and the best epoch (highest validation top-1, the one ``best.pt`` holds).
    Epochs where the learning rate dropped are marked on both panels.

    Returns:
        The written path.

    Raises:
        PlotError: matplotlib is missing, or the file is unreadable or has no epochs.
    """
    metrics_csv = Path(metrics_csv)
    data = _read_metrics(metrics_csv)
    epochs = data["epoch"]
    figure = _new_figure(11, 4.4)
    loss_axes, accuracy_axes = figure.subplots(1, 2)

    def draw(axes: Any, name: str, label: str, style: str) -> None:
        values = data.get(name)
        if values is None or np.all(np.isnan(values)):
            return
        present = ~np.isnan(values)
        axes.plot(epochs[present], values[present], style, label=label, ms=4)

    draw(loss_axes, "train_loss", "train", "o-")
    draw(loss_axes, "val_loss", "validation", "s-")
    draw(accuracy_axes, "train_clip_acc", "train (clips)", "o-")
    draw(accuracy_axes, "val_clip_acc", "validation (clips)", "s-")
    draw(accuracy_axes, "val_top1", "validation video top-1", "D-")
    draw(accuracy_axes, "val_top5", "validation video top-5", "^--")
    chance = _chance(metrics_csv.parent)
    if chance is not None:
        accuracy_axes.axhline(chance, color="gray", ls=":", label=f"chance ({chance:.2f})")
    top1 = data.get("val_top1")
    if top1 is not None and not np.all(np.isnan(top1)):
        best = int(np.nanargmax(top1))  # the first of ties: the epoch best.pt was saved at
        accuracy_axes.axvline(
            epochs[best],
            color="k",
            ls="--",
            lw=0.8,
            label=f"best: epoch {epochs[best]:g}, top-1 {top1[best]:.3f}",
        )
    lr = data.get("lr")
    if lr is not None and len(lr) > 1:
        drops = epochs[1:][lr[1:] < lr[:-1]]
        for axes in (loss_axes, accuracy_axes):
            for number, epoch in enumerate(drops):
                axes.axvline(
                    epoch,
                    color="tab:red",
                    alpha=0.4,
                    lw=0.8,
                    label="learning-rate drop" if number == 0 else None,
                )
    loss_axes.set_ylabel("cross-entropy loss per clip")
    loss_axes.set_ylim(bottom=0)
    accuracy_axes.set_ylabel("accuracy")
    accuracy_axes.set_ylim(0, 1.02)
    for axes in (loss_axes, accuracy_axes):
        axes.set_xlabel("epoch")
        axes.xaxis.get_major_locator().set_params(integer=True)
        axes.grid(alpha=0.3)
        axes.legend(fontsize="small")
    loss_axes.set_title("loss", loc="left")
    accuracy_axes.set_title("accuracy", loc="left")
    figure.suptitle(f"training curves of {metrics_csv.parent.name}/ ({len(epochs)} epochs)")
    return _save(figure, out_png)


# ------------------------------------------------------------------------------ SVM and PCA


def plot_svm_pca(report: SvmReport, out_png: str | os.PathLike[str]) -> Path:
    """Linear-SVM accuracy (mean ± std over splits) against PCA dimensions, log-x, as in Tran
    et al.'s Fig. 3, with the full-dimensional accuracy and chance as reference lines.

    Args:
        report: An :func:`feat3d.train.svm_evaluate` report run with ``pca_dims``.
        out_png: The PNG to write.

    Returns:
        The written path.

    Raises:
        PlotError: matplotlib is missing, or the report has no PCA results.
    """
    if not report.pca and report.pca_skipped:
        raise PlotError(
            "every PCA size was skipped (each must be below the number of training videos and "
            f"the feature size {report.dim}): nothing to plot"
        )
    if not report.pca:
        raise PlotError("the SVM report has no PCA results: run it with --pca D1,D2,...")
    results = sorted(report.pca, key=lambda result: result.dim)
    dims = np.array([result.dim for result in results])
    means = np.array([100 * result.mean for result in results])
    stds = np.array([100 * result.std for result in results])
    figure = _new_figure(7.5, 4.8)
    axes = figure.add_subplot()
    axes.errorbar(dims, means, yerr=stds, fmt="o-", capsize=4, label="after PCA (mean ± std)")
    full, full_std = 100 * report.mean, 100 * report.std
    axes.axhline(
        full,
        color="C1",
        ls="--",
        label=f"all {report.dim} dimensions: {full:.1f} ± {full_std:.1f}%",
    )
    if full_std > 0:
        axes.axhspan(full - full_std, full + full_std, color="C1", alpha=0.12)
    axes.axhline(
        100 * report.chance,
        color="gray",
        ls=":",
        label=f"chance (1/{report.n_classes}): {100 * report.chance:.1f}%",
    )
    axes.set_xscale("log")
    axes.set_xticks(dims, [str(d) for d in dims])
    axes.minorticks_off()
    axes.set_xlabel("PCA dimensions (log scale)")
    axes.set_ylabel("accuracy (%)")
    axes.set_ylim(0, 102)
    axes.grid(alpha=0.3)
    splits = "given train/test split" if report.protocol == "split" else f"{report.folds}-fold"
    axes.set_title(
        f"Linear SVM accuracy after PCA\n{Path(report.features_path).name}: "
        f"{report.n_videos} videos, {report.n_classes} classes, {splits}",
        loc="left",
        fontsize="medium",
    )
    handles, labels = axes.get_legend_handles_labels()  # the PCA curve (a container) first
    axes.legend(
        handles[-1:] + handles[:-1], labels[-1:] + labels[:-1], fontsize="small", loc="lower right"
    )
    return _save(figure, out_png)


# -------------------------------------------------------------------------- confusion matrix


def plot_confusion(
    matrix: np.ndarray,
    classes: Sequence[str],
    out_png: str | os.PathLike[str],
    *,
    normalize: bool = True,
    title: str | None = None,
) -> Path:
    """The confusion matrix: rows are true classes, columns predicted ones.

    Args:
        matrix: ``(n_classes, n_classes)`` video counts (``EvalResult.confusion``).
        classes: Class names in index order.
        out_png: The PNG to write.
        normalize: Show each row as fractions of its class's videos (classes without videos
            stay blank); otherwise the counts.
        title: Figure title; defaults to one with the overall top-1 accuracy.

    Returns:
        The written path.

    Raises:
        PlotError: matplotlib is missing, or the matrix does not match the classes.
    """
    counts = np.asarray(matrix, dtype=np.float64)
    n = len(classes)
    if counts.shape != (n, n):
        raise PlotError(f"confusion matrix of shape {counts.shape} for {n} classes")
    totals = counts.sum(axis=1, keepdims=True)
    values = counts
    if normalize:
        values = np.divide(counts, totals, out=np.full_like(counts, np.nan), where=totals > 0)
    side = float(np.clip(0.32 * n + 3.5, 5.5, 26))
    figure = _new_figure(side + 1.2, side)
    axes = figure.add_subplot()
    import matplotlib

    colormap = matplotlib.colormaps["Blues"].with_extremes(bad="#f2f2f2")
    vmax = 1.0 if normalize else max(1.0, float(np.nanmax(values)))
    image = axes.imshow(values, cmap=colormap, vmin=0, vmax=vmax, interpolation="nearest")
    colorbar = figure.colorbar(image, ax=axes, shrink=0.8)
    colorbar.set_label("fraction of the true class's videos" if normalize else "videos")
    font = "small" if n <= _ANNOTATE_UP_TO else max(3.0, 9 - n / 15)
    axes.set_xticks(
        range(n),
        list(classes),
        rotation=90 if n > 8 else 45,
        ha="center" if n > 8 else "right",
        fontsize=font,
    )
    axes.set_yticks(range(n), list(classes), fontsize=font)
    axes.set_xlabel("predicted class")
    axes.set_ylabel("true class")
    if n <= _ANNOTATE_UP_TO:
        for row in range(n):
            for col in range(n):
                value = values[row, col]
                if np.isnan(value) or counts[row, col] == 0:
                    continue
                text = f"{value:.2f}" if normalize else f"{int(value)}"
                axes.text(
                    col,
                    row,
                    text,
                    ha="center",
                    va="center",
                    fontsize="small",
                    color="white" if value > 0.6 * vmax else "black",
                )
    videos = int(counts.sum())
    accuracy = float(np.trace(counts) / videos) if videos else math.nan
    axes.set_title(
        title
        or f"Confusion matrix: video top-1 {accuracy:.3f} over {videos} videos"
        + (" (rows normalized)" if normalize else ""),
        loc="left",
        fontsize="medium",
    )
    return _save(figure, out_png)
