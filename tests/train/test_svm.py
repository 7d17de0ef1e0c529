"""``feat3d svm``: the C3D/Res3D linear-SVM protocol on synthetic feature files.

Synthetic data: ``N_CLASSES`` classes × ``PER_CLASS`` videos × ``CLIPS`` clips of ``DIM``-d
features. In the separable set a clip is its class's mean vector plus unit Gaussian noise (the
class means are N(0, 0.6²) per dimension, so classes are far apart after averaging); in the
noise set clips are pure noise and the labels carry no information.
"""

from __future__ import annotations

import json
from pathlib import Path

import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from feat3d.cli import cli
from feat3d.io.writers import VideoFeatures, open_writer
from feat3d.train.svm import (
    KeyMatcher,
    SvmError,
    l2_normalize,
    load_video_features,
    parse_number_list,
    read_labels,
    svm_evaluate,
)

pytest.importorskip("sklearn")

N_CLASSES, PER_CLASS, CLIPS, DIM = 4, 15, 4, 64
N_VIDEOS = N_CLASSES * PER_CLASS
CHANCE = 1 / N_CLASSES
C_GRID = (0.1, 1.0, 10.0)

ATTRS = {"feat3d_version": "0", "arch": "r3d_18", "layer": "pool5", "clip_len": 16,
         "stride": 16, "tail": "pad", "dtype": "float32"}  # fmt: skip


def synthetic(
    *, separable: bool, seed: int = 0, spread: float = 0.6
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Clip features per key and the class of each key; ``spread``: sd of the class means."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(0.0, spread, size=(N_CLASSES, DIM))
    clips: dict[str, np.ndarray] = {}
    labels: dict[str, str] = {}
    for c in range(N_CLASSES):
        for v in range(PER_CLASS):
            key = f"class{c}/video{v:02d}.mp4"
            noise = rng.standard_normal((CLIPS, DIM))
            clips[key] = (centres[c] + noise) if separable else noise
            labels[key] = f"class{c}"
    return clips, labels


def write_features(
    path: Path, clips: dict[str, np.ndarray], *, format: str = "h5", average_only: bool = False
) -> Path:
    writer = open_writer(path, format=format, attrs={**ATTRS, "average_only": average_only})
    for key, features in clips.items():
        n = features.shape[0]
        starts = np.arange(n) * 16
        video = VideoFeatures(
            key=key, source=f"/data/videos/{key}", features=features.astype(np.float32),
            segments=np.stack([starts, starts + 16], 1),
            timestamps=np.stack([starts / 25, (starts + 16) / 25], 1), fps=25.0,
            n_frames=16 * n, duration=16 * n / 25, width=64, height=48, padded_frames=0,
        )  # fmt: skip
        writer.write(video)
    writer.close()
    return path


def write_labels(
    path: Path, labels: dict[str, str], *, splits: dict[str, str] | None = None,
    header: bool = True, extra: tuple[str, ...] = (),
) -> Path:  # fmt: skip
    lines = ["video,label,split" if splits else "video,label"] if header else []
    for key, label in labels.items():
        lines.append(f"{key},{label}" + (f",{splits[key]}" if splits else ""))
    lines.extend(extra)
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.fixture
def separable(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    clips, labels = synthetic(separable=True)
    feats = write_features(tmp_path / "feats.h5", clips)
    return feats, write_labels(tmp_path / "labels.csv", labels), labels


def run_cli(*args: str):
    return CliRunner().invoke(cli, ["svm", *args])


# ------------------------------------------------------------------------------ the protocol


def test_separable_features_score_far_above_chance_and_noise_near_chance(tmp_path, separable):
    feats, labels_csv, labels = separable
    report = svm_evaluate(feats, labels_csv, folds=3, c_grid=C_GRID)
    assert report.protocol == "k-fold" and len(report.splits) == 3
    assert (report.n_videos, report.n_classes, report.dim) == (N_VIDEOS, N_CLASSES, DIM)
    assert report.mean >= 0.9  # bar: ≥ 90% where chance is 25%
    assert sorted(report.predictions) == sorted(labels)  # every video tested exactly once
    assert sum(split.n_test for split in report.splits) == N_VIDEOS
    assert all(split.c in C_GRID for split in report.splits)

    clips, noise_labels = synthetic(separable=False, seed=1)
    noise = write_features(tmp_path / "noise.h5", clips)
    noise_report = svm_evaluate(
        noise, write_labels(tmp_path / "noise.csv", noise_labels), folds=3, c_grid=C_GRID
    )
    # bar: within 0.2 of chance (one fold's accuracy has a binomial sd of about 0.1 here)
    assert abs(noise_report.mean - CHANCE) <= 0.2
    assert report.mean - noise_report.mean >= 0.5


@pytest.mark.parametrize(("format", "average_only"), [("json", False), ("npy", False),
                                                       ("npy", True), ("h5", True),
                                                       ("parquet", False)])  # fmt: skip
def test_every_output_format_gives_the_same_result(tmp_path, separable, format, average_only):
    feats, labels_csv, _ = separable
    clips, _ = synthetic(separable=True)
    names = {"json": "feats.json", "npy": "feats", "h5": "avg.h5", "parquet": "feats.parquet"}
    name = names[format]
    other = write_features(tmp_path / name, clips, format=format, average_only=average_only)
    keys, _, features = load_video_features(other)
    assert len(keys) == N_VIDEOS and features.shape == (N_VIDEOS, DIM)
    a = svm_evaluate(feats, labels_csv, c_grid=C_GRID)
    b = svm_evaluate(other, labels_csv, c_grid=C_GRID)
    assert a.accuracies == pytest.approx(b.accuracies)
    assert a.predictions == b.predictions


def test_videos_are_averaged_then_l2_normalized(tmp_path):
    # class means closer together (about 65% accuracy), so predictions are not all correct and
    # any change of the video-level features would show in them
    clips, labels = synthetic(separable=True, spread=0.15)
    feats = write_features(tmp_path / "hard.h5", clips)
    labels_csv = write_labels(tmp_path / "hard.csv", labels)
    changed = dict(clips)
    rng = np.random.default_rng(5)
    for i, key in enumerate(sorted(clips)):
        if i % 3 == 0:  # a video scaled by a constant: same direction after L2
            changed[key] = clips[key] * rng.uniform(0.01, 100.0)
        elif i % 3 == 1:  # other clips with the same mean: same video feature
            mean = clips[key].mean(0)
            changed[key] = np.stack([mean + 1.0, mean - 1.0, mean])
    other = write_features(tmp_path / "changed.h5", changed)
    a = svm_evaluate(feats, labels_csv, c_grid=C_GRID)
    b = svm_evaluate(other, labels_csv, c_grid=C_GRID)
    assert 0.4 < a.mean < 0.95  # not trivially separable
    assert a.predictions == b.predictions
    assert a.accuracies == pytest.approx(b.accuracies)

    x = l2_normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(x, [[0.6, 0.8], [0.0, 0.0]])


def test_mean_is_recomputed_from_clip_features_when_stored(tmp_path, separable):
    feats, _, _ = separable
    keys, _, before = load_video_features(feats)
    with h5py.File(feats, "a") as f:
        f[keys[0]]["mean"][...] = 123.0  # a stale or low-precision stored mean is not used
        clips = f[keys[0]]["features"][()].astype(np.float64)
    _, _, after = load_video_features(feats)
    np.testing.assert_allclose(after, before)
    np.testing.assert_allclose(after[0], clips.mean(0))


def test_explicit_split_trains_on_train_and_tests_on_test(tmp_path, separable):
    feats, _, labels = separable
    keys = sorted(labels)
    splits = {k: ("val" if i % 3 == 0 else "train") for i, k in enumerate(keys)}  # val = test
    labels_csv = write_labels(tmp_path / "split.csv", labels, splits=splits)
    report = svm_evaluate(feats, labels_csv, folds=5, c_grid=C_GRID)
    test_keys = sorted(k for k, s in splits.items() if s == "val")
    assert report.protocol == "split" and report.folds == 1 and len(report.splits) == 1
    assert report.splits[0].n_test == len(test_keys)
    assert report.splits[0].n_train == N_VIDEOS - len(test_keys)
    assert sorted(report.predictions) == test_keys
    assert report.mean >= 0.9 and report.std == 0.0


def test_c_and_pca_see_only_the_training_part(tmp_path, separable, monkeypatch):
    import sklearn.decomposition
    import sklearn.model_selection

    feats, _, labels = separable
    keys, _, raw = load_video_features(feats)
    row_key = {l2_normalize(raw)[i].tobytes(): key for i, key in enumerate(keys)}
    seen: list[list[str | None]] = []
    pca_fits: list[int] = []

    class SpyGrid(sklearn.model_selection.GridSearchCV):
        def fit(self, X, y=None, **params):
            seen.append([row_key.get(np.asarray(row, dtype=np.float64).tobytes()) for row in X])
            return super().fit(X, y, **params)

    class SpyPCA(sklearn.decomposition.PCA):
        def fit(self, X, y=None):
            pca_fits.append(len(X))
            return super().fit(X, y)

        def fit_transform(self, X, y=None):
            pca_fits.append(len(X))
            return super().fit_transform(X, y)

    monkeypatch.setattr(sklearn.model_selection, "GridSearchCV", SpyGrid)
    monkeypatch.setattr(sklearn.decomposition, "PCA", SpyPCA)

    splits = {k: ("test" if i % 4 == 0 else "train") for i, k in enumerate(sorted(labels))}
    report = svm_evaluate(
        feats, write_labels(tmp_path / "s.csv", labels, splits=splits), c_grid=C_GRID,
        pca_dims=(8,),
    )  # fmt: skip
    train = {k for k, s in splits.items() if s == "train"}
    assert len(seen) == 2  # full features, then PCA-8
    assert set(seen[0]) == train  # the C search saw exactly the training videos
    assert pca_fits == [len(train)]  # PCA was fitted on the training videos only
    assert report.pca[0].splits[0].n_train == len(train)

    seen.clear()
    report = svm_evaluate(feats, write_labels(tmp_path / "k.csv", labels), c_grid=C_GRID)
    assert len(seen) == 3
    held_out = [set(keys) - set(rows) for rows in seen]
    for rows, split in zip(seen, report.splits, strict=True):
        assert None not in rows and len(set(rows)) == len(rows) == split.n_train
    assert [len(h) for h in held_out] == [s.n_test for s in report.splits]
    assert set().union(*held_out) == set(keys) and sum(map(len, held_out)) == N_VIDEOS


def test_pca_lists_requested_dims_and_skips_too_large_ones(separable):
    feats, labels_csv, _ = separable
    # 60 videos, 3 folds → 40 training videos: 40 and 1000 are not below min(40, 64)
    report = svm_evaluate(feats, labels_csv, pca_dims=(1000, 5, 2, 40), c_grid=C_GRID)
    assert [p.dim for p in report.pca] == [2, 5]
    assert report.pca_skipped == [40, 1000]
    assert all(len(p.accuracies) == 3 for p in report.pca)
    assert report.pca[1].mean >= 0.9  # 4 classes stay separable in 5 dimensions
    data = report.to_json()
    assert [p["dim"] for p in data["pca"]] == [2, 5]
    assert data["mean"] == pytest.approx(report.mean)
    json.dumps(data)


def test_missing_and_unlabelled_videos_are_counted(tmp_path, separable):
    feats, _, labels = separable
    keys = sorted(labels)
    unlabelled = keys[:4]  # class0 videos 0-3 get no label
    kept = {k: v for k, v in labels.items() if k not in unlabelled}
    extra = ("gone/a.mp4,class0", "gone/b.mp4,class1", "/elsewhere/c.mp4,class2")
    report = svm_evaluate(feats, write_labels(tmp_path / "l.csv", kept, extra=extra), c_grid=C_GRID)
    assert report.missing == ["gone/a.mp4", "gone/b.mp4", "/elsewhere/c.mp4"]
    assert report.unlabelled == unlabelled
    assert report.n_videos == N_VIDEOS - 4


def test_folds_need_enough_videos_per_class(separable):
    feats, labels_csv, _ = separable
    with pytest.raises(SvmError, match="fewer than --folds 20"):
        svm_evaluate(feats, labels_csv, folds=20)


# ------------------------------------------------------------------------- keys and labels


def test_key_matching_rules():
    keys = ["a/x.mp4", "b/x.mp4", "c/y.mp4", "ucf/Archery/z.avi", "w.mp4", "n%01.mp4"]
    sources = ["/d/a/x.mp4", "/d/b/x.mp4", "/d/c/y.mp4", "/mnt/ucf/Archery/z.avi", "/s/w.mp4", ""]
    matcher = KeyMatcher(keys, sources)
    assert matcher.match("a/x.mp4") == ("a/x.mp4", False)  # 1. exact key
    assert matcher.match("/s/w.mp4") == ("w.mp4", False)  # 2. source path
    assert matcher.match("/other/root/c/y.mp4") == ("c/y.mp4", False)  # 3. path ends in a key
    assert matcher.match("C:\\data\\c\\y.mp4") == ("c/y.mp4", False)
    assert matcher.match("/x/n\x01.mp4") == ("n%01.mp4", False)  # escaped like extract does
    assert matcher.match("Archery/z.avi") == ("ucf/Archery/z.avi", False)  # 4. end of one key
    assert matcher.match("y.mp4") == ("c/y.mp4", False)  # 5. unique file name
    assert matcher.match("x.mp4") == (None, True)  # two keys end in x.mp4
    assert matcher.match("q/nothing.mp4") == (None, False)


def test_read_labels(tmp_path):
    path = tmp_path / "l.csv"
    path.write_text("# comment\nvideo,label,split\n\na.mp4, run ,TRAIN\nb.mp4,jump,validation\n")
    rows = read_labels(path)
    assert [(r.video, r.label, r.split, r.line) for r in rows] == [
        ("a.mp4", "run", "train", 4),
        ("b.mp4", "jump", "test", 5),
    ]
    path.write_text("a.mp4,run,train\nb.mp4,jump\n")
    with pytest.raises(SvmError, match=r"l\.csv:2: no split"):
        read_labels(path)
    path.write_text("a.mp4,run,holdout\n")
    with pytest.raises(SvmError, match="holdout"):
        read_labels(path)
    path.write_text("a.mp4\n")
    with pytest.raises(SvmError, match="expected video,label"):
        read_labels(path)


def test_conflicting_labels_for_one_video_are_refused(tmp_path, separable):
    feats, _, labels = separable
    key = sorted(labels)[0]
    path = write_labels(tmp_path / "c.csv", labels, extra=(f"/data/videos/{key},class3",))
    with pytest.raises(SvmError, match="labelled 'class0'"):
        svm_evaluate(feats, path)


def test_parse_number_list():
    assert parse_number_list("10,50, 100", kind=int) == (10, 50, 100)
    assert parse_number_list("", kind=int) == ()
    assert parse_number_list("0.1,1e1") == (0.1, 10.0)
    with pytest.raises(ValueError, match="'x' is not an integer"):
        parse_number_list("10,x", kind=int)


# ----------------------------------------------------------------------------------- the CLI


def test_cli_prints_accuracy_pca_table_and_writes_json(tmp_path, separable):
    feats, labels_csv, _ = separable
    out = tmp_path / "svm.json"
    result = run_cli(
        str(feats), "--labels", str(labels_csv), "--pca", "2,5,1000", "--c", "0.1,1,10",
        "--json", str(out),
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    text = result.output
    assert "60 videos, 4 classes, 64-d features; 3-fold" in text
    assert "labelled but not in the features: 0" in text
    assert "in the features without a label: 0" in text
    assert "fold 1: accuracy" in text
    accuracy = next(line for line in text.splitlines() if line.startswith("accuracy: "))
    assert "± " in accuracy and "(chance 25.00%)" in accuracy
    assert "SVM accuracy after PCA" in text and "64 (all)" in text
    table_dims = [line.split()[1] for line in text.splitlines() if line.startswith("│")]
    assert table_dims[:2] == ["2", "5"]
    assert "skipped (not below min(train videos, D)): 1000" in text
    data = json.loads(out.read_text())
    assert data["n_videos"] == N_VIDEOS and len(data["splits"]) == 3
    assert [p["dim"] for p in data["pca"]] == [2, 5]

    result = run_cli(str(feats), "-l", str(labels_csv), "--c", "1", "--json", "-")
    assert result.exit_code == 0
    assert json.loads(result.stdout)["c_grid"] == [1.0]


def one_line_error(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


def test_cli_errors_are_one_line(tmp_path, separable):
    feats, _, labels = separable
    one_class = write_labels(tmp_path / "one.csv", dict.fromkeys(labels, "same"))
    line = one_line_error(run_cli(str(feats), "--labels", str(one_class)))
    assert "need at least 2 classes" in line and "'same'" in line

    nothing = write_labels(tmp_path / "none.csv", {"other/a.mp4": "x", "other/b.mp4": "y"})
    line = one_line_error(run_cli(str(feats), "--labels", str(nothing)))
    assert "none of the 2 videos" in line

    bad = run_cli(str(feats), "--labels", str(nothing), "--pca", "10,abc")
    assert bad.exit_code == 2 and "'abc' is not an integer" in bad.output

    not_features = tmp_path / "junk.h5"
    not_features.write_text("not hdf5")
    line = one_line_error(run_cli(str(not_features), "--labels", str(nothing)))
    assert "cannot open as HDF5" in line
