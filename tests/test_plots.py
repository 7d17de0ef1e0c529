"""Figures: each plot writes a real PNG of plausible size from realistic data; training draws
``curves.png`` every epoch; without matplotlib every entry point says how to get it."""

from __future__ import annotations

import csv
import importlib
import importlib.util
import json
import struct
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from feat3d import plots
from feat3d.cli import cli
from feat3d.io.writers import VideoFeatures, open_writer
from feat3d.plots import (
    MISSING_MATPLOTLIB,
    PlotError,
    plot_clip_timeline,
    plot_confusion,
    plot_svm_pca,
    plot_training_curves,
    timeline_path,
)
from feat3d.run.classify import ClipPrediction, VideoPrediction, classify, top_k_labels
from feat3d.train.fit import METRICS_COLUMNS
from tests.videos import write_video

ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
CLASSES = ["left", "right", "up", "down"]
MATPLOTLIB_MODULES = ("matplotlib", "matplotlib.figure", "matplotlib.backends.backend_agg")

needs_matplotlib = pytest.mark.skipif(
    importlib.util.find_spec("matplotlib") is None, reason="matplotlib is not installed"
)


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG's IHDR chunk."""
    head = path.read_bytes()[:24]
    assert head[:8] == PNG_MAGIC, f"{path} is not a PNG"
    return struct.unpack(">II", head[16:24])


def assert_drawn(path: Path, *, min_side: int = 400, max_side: int = 4000) -> None:
    """A PNG of plausible size whose pixels are not all one colour."""
    import matplotlib.image

    width, height = png_size(path)
    assert min_side <= width <= max_side and min_side <= height <= max_side, (width, height)
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels[..., :3].std() > 0.05  # axes, lines and text, not a blank canvas
    assert not list(path.parent.glob(f".{path.name}.*"))  # no temporary file left behind


@pytest.fixture
def no_matplotlib(monkeypatch):
    for name in MATPLOTLIB_MODULES:
        monkeypatch.setitem(sys.modules, name, None)  # `import` now raises ImportError


# ---------------------------------------------------------------------------- clip timeline


def synthetic_prediction(n_clips: int = 12, n_classes: int = 6, overlap: bool = False):
    rng = np.random.default_rng(0)
    clip_seconds = 0.64
    step = clip_seconds / 2 if overlap else clip_seconds
    clips = []
    all_probs = []
    for i in range(n_clips):
        logits = rng.normal(0, 1, n_classes)
        logits[i * n_classes // n_clips] += 4  # the action changes over time
        probs = np.exp(logits) / np.exp(logits).sum()
        all_probs.append(probs)
        start = i * step
        clips.append(
            ClipPrediction(
                segment=(16 * i, 16 * i + 16), time=(start, start + clip_seconds),
                top_k=top_k_labels(probs, [f"action {c}" for c in range(n_classes)], 3),
                logits=logits.astype(np.float32),
            )
        )  # fmt: skip
    scores = np.mean(all_probs, axis=0)
    names = [f"action {c}" for c in range(n_classes)]
    return VideoPrediction("walk/clip01.mp4", "/data/walk/clip01.mp4",
                           top_k_labels(scores, names, 3), scores, clips), names  # fmt: skip


@needs_matplotlib
@pytest.mark.parametrize("overlap", [False, True])
def test_clip_timeline(tmp_path, overlap):
    video, names = synthetic_prediction(overlap=overlap)
    out = plot_clip_timeline(video, tmp_path / "t.png", top=4, categories=names)
    assert out == tmp_path / "t.png"
    assert_drawn(out)
    width, height = png_size(out)
    assert width > height  # time runs along the long side
    # Without the model's class names only the video's own top-k can be named.
    assert_drawn(plot_clip_timeline(video, tmp_path / "named.png", top=10))


@needs_matplotlib
def test_clip_timeline_of_a_real_classification(tmp_path, tiny_model):
    path = write_video(tmp_path / "v.mp4", n_frames=48, width=64, height=48, pattern="texture")
    report = classify([path], model=tiny_model, top_k=3, size=32, crop=32)
    [video] = report.videos
    assert_drawn(plot_clip_timeline(video, tmp_path / "v.png", categories=tiny_model.categories))


def test_timelines_keep_key_folders_and_stay_inside(tmp_path):
    assert timeline_path(tmp_path, "sub/b.mp4") == tmp_path / "sub" / "b.mp4.png"
    with pytest.raises(ValueError):
        timeline_path(tmp_path, "../escape.mp4")


def test_a_video_without_clips_is_refused(tmp_path):
    video, _ = synthetic_prediction()
    video.clips = []
    with pytest.raises(PlotError, match="no clips"):
        plot_clip_timeline(video, tmp_path / "t.png")


# -------------------------------------------------------------------------- training curves


def write_metrics(run: Path, n_epochs: int = 12) -> Path:
    """A plausible run: loss falls, accuracy rises, the rate drops once, one epoch unvalidated."""
    run.mkdir(parents=True, exist_ok=True)
    (run / "config.json").write_text(json.dumps({"classes": CLASSES}))
    rows = []
    for epoch in range(1, n_epochs + 1):
        progress = epoch / n_epochs
        row = {"epoch": epoch, "lr": 0.1 if epoch < 8 else 0.01,
               "train_loss": 1.4 * (1 - progress) + 0.1, "train_clip_acc": 0.25 + 0.7 * progress,
               "val_loss": 1.5 * (1 - progress) + 0.3, "val_clip_acc": 0.25 + 0.6 * progress,
               "val_top1": 0.25 + 0.65 * progress, "val_top5": 1.0, "seconds": 2.0}  # fmt: skip
        if epoch == 3:
            row.update(val_loss="", val_clip_acc="", val_top1="", val_top5="")
        rows.append(row)
    path = run / "metrics.csv"
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=METRICS_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


@needs_matplotlib
def test_training_curves(tmp_path):
    metrics = write_metrics(tmp_path / "run")
    out = plot_training_curves(metrics, tmp_path / "run" / "curves.png")
    assert_drawn(out)
    width, height = png_size(out)
    assert width > 2 * height * 0.9  # two panels side by side


@needs_matplotlib
def test_training_curves_refuse_an_empty_or_broken_file(tmp_path):
    empty = tmp_path / "metrics.csv"
    empty.write_text(",".join(METRICS_COLUMNS) + "\n")
    with pytest.raises(PlotError, match="no epochs"):
        plot_training_curves(empty, tmp_path / "c.png")
    empty.write_text(",".join(METRICS_COLUMNS) + "\n1,0.1,abc,,,,,,\n")
    with pytest.raises(PlotError, match="train_loss='abc' is not a number"):
        plot_training_curves(empty, tmp_path / "c.png")
    with pytest.raises(PlotError, match="cannot read"):
        plot_training_curves(tmp_path / "missing.csv", tmp_path / "c.png")


def _motion_dataset(root: Path) -> Path:
    spec = importlib.util.spec_from_file_location(
        "make_motion_dataset", ROOT / "examples" / "make_motion_dataset.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module.make_motion_dataset(root, videos_per_class=3, n_frames=8, size=32)


@pytest.fixture(scope="module")
def motion(tmp_path_factory) -> Path:
    return _motion_dataset(tmp_path_factory.mktemp("motion") / "data")


def _fit(dataset: Path, run: Path, *, epochs: int):
    from feat3d.train import TrainOptions, fit, load_dataset

    options = TrainOptions(
        model="resnet-10", epochs=epochs, batch_size=8, accumulate=1, clip_len=4, crop=32,
        decode_size=32, scales=(1.0,), flip=0.0, workers=0, seed=0,
    )  # fmt: skip
    return fit(load_dataset(dataset, val_split=0.34), run, options)


@needs_matplotlib
def test_training_draws_curves_every_epoch(motion, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = _fit(motion, tmp_path / "run", epochs=2)
    assert report.epochs_run == 2
    assert_drawn(tmp_path / "run" / "curves.png")


def test_training_without_matplotlib_says_so_once_and_goes_on(motion, tmp_path, monkeypatch):
    fit_module = importlib.import_module("feat3d.train.fit")  # the package exports fit()
    monkeypatch.setattr(fit_module, "matplotlib_available", lambda: False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        report = _fit(motion, tmp_path / "run", epochs=1)
    assert report.epochs_run == 1 and (tmp_path / "run" / "metrics.csv").exists()
    assert not (tmp_path / "run" / "curves.png").exists()
    said = [str(w.message) for w in caught if "curves.png" in str(w.message)]
    assert len(said) == 1 and MISSING_MATPLOTLIB in said[0]


# ------------------------------------------------------------------------------ SVM and PCA


def separable_features(path: Path, *, n_classes: int = 4, per_class: int = 12, dim: int = 64):
    rng = np.random.default_rng(0)
    centres = rng.normal(0, 0.6, (n_classes, dim))
    attrs = {"feat3d_version": "0", "arch": "r3d_18", "layer": "pool5", "clip_len": 16,
             "stride": 16, "tail": "pad", "dtype": "float32"}  # fmt: skip
    writer = open_writer(path, format="h5", attrs=attrs)
    labels = ["video,label"]
    for c in range(n_classes):
        for v in range(per_class):
            key = f"c{c}/v{v}.mp4"
            segments = np.array([[0, 16], [16, 32], [32, 48]])
            writer.write(VideoFeatures(
                key=key, source=f"/d/{key}",
                features=(centres[c] + rng.standard_normal((3, dim))).astype(np.float32),
                segments=segments, timestamps=segments / 25, fps=25.0, n_frames=48,
                duration=1.92, width=64, height=48, padded_frames=0,
            ))  # fmt: skip
            labels.append(f"{key},class{c}")
    writer.close()
    labels_csv = path.with_suffix(".csv")
    labels_csv.write_text("\n".join(labels) + "\n")
    return path, labels_csv


@pytest.fixture(scope="module")
def svm_inputs(tmp_path_factory):
    pytest.importorskip("sklearn")
    return separable_features(tmp_path_factory.mktemp("svm") / "feats.h5")


@needs_matplotlib
def test_svm_accuracy_against_pca_dimensions(svm_inputs, tmp_path):
    from feat3d.train.svm import svm_evaluate

    report = svm_evaluate(*svm_inputs, pca_dims=(2, 5, 10, 20), c_grid=(1.0,))
    assert [p.dim for p in report.pca] == [2, 5, 10, 20]
    assert_drawn(plot_svm_pca(report, tmp_path / "pca.png"))
    without = svm_evaluate(*svm_inputs, c_grid=(1.0,))
    with pytest.raises(PlotError, match="--pca"):
        plot_svm_pca(without, tmp_path / "none.png")


@needs_matplotlib
def test_cli_svm_plot(svm_inputs, tmp_path):
    feats, labels = svm_inputs
    out = tmp_path / "svm.png"
    result = CliRunner().invoke(
        cli, ["svm", str(feats), "-l", str(labels), "--pca", "2,5", "--c", "1", "--plot", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert_drawn(out)
    result = CliRunner().invoke(cli, ["svm", str(feats), "-l", str(labels), "--plot", str(out)])
    assert result.exit_code == 2 and "needs --pca" in result.output


# -------------------------------------------------------------------------- confusion matrix


@needs_matplotlib
@pytest.mark.parametrize("n_classes", [4, 40])
def test_confusion_matrix(tmp_path, n_classes):
    rng = np.random.default_rng(n_classes)
    matrix = rng.poisson(0.4, (n_classes, n_classes)) + np.diag(rng.integers(2, 9, n_classes))
    matrix[1] = 0  # a class without videos stays blank instead of dividing by zero
    names = [f"class number {i}" for i in range(n_classes)]
    for normalize in (True, False):
        out = plot_confusion(matrix, names, tmp_path / f"c{normalize}.png", normalize=normalize)
        assert_drawn(out)
    width, height = png_size(out)
    assert 0.8 < width / height < 1.6  # square cells plus a colour bar
    with pytest.raises(PlotError, match="shape"):
        plot_confusion(matrix, names[:-1], tmp_path / "bad.png")


# --------------------------------------------------------------------- without matplotlib


def test_missing_matplotlib_is_one_clear_error(no_matplotlib, tmp_path):
    assert not plots.matplotlib_available()
    with pytest.raises(PlotError) as caught:
        plot_confusion(np.eye(2), ["a", "b"], tmp_path / "c.png")
    assert (
        str(caught.value)
        == MISSING_MATPLOTLIB
        == "plots need matplotlib: pip install 'feat3d[plot]'"
    )
    with pytest.raises(PlotError, match="feat3d\\[plot\\]"):
        plot_training_curves(write_metrics(tmp_path / "run"), tmp_path / "curves.png")
    assert not list(tmp_path.glob("*.png"))


def test_cli_without_matplotlib_fails_before_working(no_matplotlib, tmp_path):
    runner = CliRunner()
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"not read: the plot check comes first")
    (tmp_path / "dataset").mkdir()
    video = write_video(tmp_path / "v.mp4", n_frames=8)
    feats, labels = tmp_path / "feats.h5", tmp_path / "labels.csv"
    feats.write_bytes(b"")
    labels.write_text("video,label\n")
    commands = [
        ["evaluate", str(checkpoint), str(tmp_path / "dataset"), "--plot", "c.png"],
        ["classify", str(video), "-w", "none", "--plot", str(tmp_path / "t")],
        ["svm", str(feats), "-l", str(labels), "--pca", "2", "--plot", "s.png"],
    ]
    for command in commands:
        result = runner.invoke(cli, command)
        assert result.exit_code == 1, (command, result.output)
        assert result.output.strip().splitlines() == [f"Error: {MISSING_MATPLOTLIB}"], command


@needs_matplotlib
def test_cli_classify_plot_writes_one_timeline_per_video(tmp_path):
    videos = tmp_path / "videos"
    write_video(videos / "a.mp4", n_frames=40, width=64, height=48)
    write_video(videos / "sub" / "b.mp4", n_frames=24, width=64, height=48)
    out = tmp_path / "timelines"
    result = CliRunner().invoke(cli, ["classify", str(videos), "-m", "resnet-10", "-w", "none",
                                      "--size", "32", "--crop", "32", "-j", "0", "-q",
                                      "--plot", str(out)])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.png")) == [
        "a.mp4.png",
        "sub/b.mp4.png",
    ]
    assert_drawn(out / "sub" / "b.mp4.png")
