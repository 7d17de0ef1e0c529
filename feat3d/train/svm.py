"""Linear-SVM evaluation of extracted features: the protocol of C3D and Res3D.

Tran et al. 2015 (C3D, "Learning Spatiotemporal Features with 3D Convolutional Networks") and
Tran et al. 2017 (Res3D, "ConvNet Architecture Search for Spatiotemporal Feature Learning")
judge a feature by a linear SVM trained on it: the clip features of a video are averaged, the
average is L2-normalized, and a linear SVM is trained on the training videos and scored on the
test videos. Both papers also compress the features with PCA to a few dimensions (10 to a few
hundred) and plot the SVM accuracy against the dimension.

Data flow of :func:`svm_evaluate`::

    FEATS (h5 / json / npy) ─► per-video mean of clip features ─► L2-normalize
    LABELS (video,label[,split]) ─► match to output keys ─► splits (given, or stratified k-fold)
    per split: [PCA fit on train] ─► GridSearchCV(LinearSVC, C) on train ─► accuracy on test

Nothing about a test video reaches model selection: PCA and the choice of C (stratified inner
cross-validation) see the training part of each split only.

Labels file (CSV, ``#`` comments and an optional ``video,label[,split]`` header)::

    video,label,split
    ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi,ApplyEyeMakeup,train
    /data/ucf101/Archery/v_Archery_g01_c01.avi,Archery,test

``split`` is ``train`` or ``test`` (``val``/``validation`` count as test). When every row has
one, that is the single split; when no row has one, videos are split into stratified k folds.

A label's ``video`` is matched to an output key by the first rule that applies:

1. it is a key (exactly);
2. it is the absolute path a video had at extraction (the ``source`` attribute);
3. a trailing part of it is a key (``/data/ucf101/Archery/x.avi`` → ``Archery/x.avi``);
4. it is a trailing part of exactly one key (``Archery/x.avi`` → ``ucf101/Archery/x.avi``);
5. its file name is the file name of exactly one key.

A video matching several keys under rules 4 or 5 is reported as ambiguous and left out.
"""

from __future__ import annotations

import csv
import math
import os
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..errors import RunError
from ..io.discover import safe_key
from ..io.reader import ReadError, open_output
from ..urls import mask_url

DEFAULT_C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)
DEFAULT_PCA_DIMS = (10, 50, 100, 200, 300)
SPLIT_NAMES = {"train": "train", "test": "test", "val": "test", "validation": "test"}
_HEADER_VIDEO = {"video", "path", "key", "file"}
_HEADER_LABEL = {"label", "class", "category"}


class SvmError(RunError, ValueError):
    """The features or labels cannot be evaluated (no overlap, one class, bad file...)."""


# --------------------------------------------------------------------------- reading features


@dataclass(frozen=True)
class StoredVideo:
    """One complete video of an ``extract`` output.

    Attributes:
        key: Its name in the output.
        source: Absolute path at extraction ("" when not recorded).
        clips: ``(n_clips, ...)`` per-clip features, or ``None`` (``--average-only``).
        mean: The stored per-video mean, or ``None`` when only clips were read.
    """

    key: str
    source: str
    clips: np.ndarray | None
    mean: np.ndarray | None

    def video_feature(self) -> np.ndarray:
        """The video-level feature: mean over clips (recomputed in float64 when the clips are
        stored, else the stored mean), flattened to 1-D."""
        if self.clips is not None and self.clips.shape[0] > 0:
            clips = self.clips.astype(np.float64, copy=False)
            return clips.reshape(clips.shape[0], -1).mean(axis=0)
        if self.mean is None:
            raise SvmError(f"video {self.key!r} has neither clip features nor a mean")
        return np.asarray(self.mean, dtype=np.float64).reshape(-1)


def iter_stored_videos(path: str | os.PathLike[str]) -> Iterator[StoredVideo]:
    """Yield every complete video of an ``extract`` output, one at a time, sorted by key.

    Args:
        path: An HDF5 file, a JSON Lines file or an npy folder (with ``index.jsonl``), as
            written by ``feat3d extract``.

    Yields:
        :class:`StoredVideo` per complete video; failed or unfinished videos are skipped. Per
        video the clip features are read when stored, else the stored mean; a multi-crop
        output's views are averaged (clips as ``(n_clips, D)``, a mean as ``(D,)``).

    Raises:
        SvmError: The path is missing or not a feature output.
    """
    try:
        output = open_output(path)
    except ReadError as error:
        raise SvmError(str(error)) from None
    with output:
        views = output.crops > 1  # (n_clips, crops, D): a clip's feature is its views' mean
        for arrays in output.iter_arrays():
            source = output.video(arrays.key).source
            clips, mean = arrays.features, arrays.mean
            if views and clips is not None:
                clips = clips.astype(np.float64).mean(axis=1)
            elif views and mean is not None:
                mean = np.asarray(mean, dtype=np.float64).mean(axis=0)
            yield StoredVideo(arrays.key, source, clips, mean if clips is None else None)


def load_video_features(
    path: str | os.PathLike[str],
) -> tuple[list[str], list[str], np.ndarray]:
    """Per-video mean features of an ``extract`` output, not yet normalized.

    Args:
        path: Feature output (see :func:`iter_stored_videos`).

    Returns:
        ``(keys, sources, features)`` with ``features`` of shape ``(n_videos, D)`` float64.

    Raises:
        SvmError: No complete video, or videos with different feature sizes.
    """
    keys: list[str] = []
    sources: list[str] = []
    rows: list[np.ndarray] = []
    for video in iter_stored_videos(path):
        feature = video.video_feature()
        if rows and feature.shape != rows[0].shape:
            raise SvmError(
                f"{path}: video {video.key!r} has {feature.size} feature values, "
                f"{keys[0]!r} has {rows[0].size}; one output holds one layer"
            )
        keys.append(video.key)
        sources.append(video.source)
        rows.append(feature)
    if not rows:
        raise SvmError(f"{path}: no complete videos in this feature output")
    return keys, sources, np.stack(rows)


def l2_normalize(features: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (all-zero rows stay zero).

    Args:
        features: ``(n_videos, D)``.

    Returns:
        A float64 array of the same shape.
    """
    features = np.asarray(features, dtype=np.float64)
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return features / np.where(norms > 0, norms, 1.0)


# ----------------------------------------------------------------------------- reading labels


@dataclass(frozen=True)
class LabelRow:
    """One row of a labels file.

    Attributes:
        video: The video as written (a key or a path).
        label: Class name.
        split: ``"train"``, ``"test"`` or ``None`` (k-fold).
        line: Line number in the file, for messages.
    """

    video: str
    label: str
    split: str | None
    line: int


def read_labels(path: str | os.PathLike[str]) -> list[LabelRow]:
    """Read a ``video,label[,split]`` CSV file.

    Blank lines and lines starting with ``#`` are skipped, and so is a first row whose cells
    read ``video``/``path``, ``label``/``class`` (a header). Every row has a split, or none.

    Args:
        path: The CSV file.

    Returns:
        The rows in file order.

    Raises:
        SvmError: A malformed row, an unknown split name, splits on some rows only, or an
            empty file.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise SvmError(f"{path}: cannot read labels ({error})") from None
    rows: list[LabelRow] = []
    for number, cells in enumerate(csv.reader(text.splitlines()), start=1):
        cells = [cell.strip() for cell in cells]
        if not cells or not any(cells) or cells[0].startswith("#"):
            continue
        if (
            not rows
            and cells[0].lower() in _HEADER_VIDEO
            and len(cells) > 1
            and cells[1].lower() in _HEADER_LABEL
        ):
            continue
        if len(cells) < 2 or len(cells) > 3 or not cells[0] or not cells[1]:
            raise SvmError(f"{path}:{number}: expected video,label[,split], got {','.join(cells)}")
        split = None
        if len(cells) == 3 and cells[2]:
            split = SPLIT_NAMES.get(cells[2].lower())
            if split is None:
                raise SvmError(
                    f"{path}:{number}: split {cells[2]!r} is not train, test, val or validation"
                )
        rows.append(LabelRow(cells[0], cells[1], split, number))
    if not rows:
        raise SvmError(f"{path}: no labelled videos")
    with_split = [row for row in rows if row.split is not None]
    if with_split and len(with_split) != len(rows):
        first = next(row for row in rows if row.split is None)
        raise SvmError(
            f"{path}:{first.line}: no split, but other rows have one; give a split on every row "
            "(one train/test split) or on none (k-fold)"
        )
    return rows


def _normal(path: str) -> str:
    return os.path.normpath(path.replace("\\", "/"))


class KeyMatcher:
    """Finds the output key a labels-file entry names (rules in the module docstring).

    Args:
        keys: Output keys.
        sources: Absolute path at extraction of each key (same order; "" when unknown).
    """

    def __init__(self, keys: Sequence[str], sources: Sequence[str]):
        self.keys = set(keys)
        self.by_source = {_normal(s): k for k, s in zip(keys, sources, strict=True) if s}
        self.by_suffix: dict[str, list[str]] = {}
        for key in keys:
            parts = key.split("/")
            for start in range(1, len(parts)):
                self.by_suffix.setdefault("/".join(parts[start:]), []).append(key)
        self.by_name: dict[str, list[str]] = {}
        for key in keys:
            self.by_name.setdefault(key.rsplit("/", 1)[-1], []).append(key)

    def match(self, video: str) -> tuple[str | None, bool]:
        """Return ``(key, ambiguous)``: the key, or ``None`` and whether several fit."""
        if video in self.keys:
            return video, False
        normal = _normal(video)
        if normal in self.by_source:
            return self.by_source[normal], False
        parts = [p for p in PurePosixPath(normal).parts if p not in ("/", ".", "..")]
        if not parts:
            return None, False
        for start in range(len(parts)):
            tail = "/".join(parts[start:])
            for candidate in (tail, safe_key(tail)):
                if candidate in self.keys:
                    return candidate, False
        tail = "/".join(parts)
        for candidates in (self.by_suffix.get(tail, []), self.by_name.get(parts[-1], [])):
            if len(candidates) == 1:
                return candidates[0], False
            if len(candidates) > 1:
                return None, True
        return None, False


# --------------------------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class SplitResult:
    """Accuracy on one train/test split.

    Attributes:
        name: ``"test"`` (given split) or ``"fold N"``.
        n_train, n_test: Videos in each part.
        accuracy: Fraction of test videos classified correctly.
        c: The C chosen by cross-validation on the training part.
        inner_folds: Folds of that cross-validation (0 when the grid has a single C).
    """

    name: str
    n_train: int
    n_test: int
    accuracy: float
    c: float
    inner_folds: int


class _OverSplits:
    """Accuracy over the ``splits`` of a result."""

    splits: Sequence[SplitResult]

    @property
    def accuracies(self) -> list[float]:
        return [split.accuracy for split in self.splits]

    @property
    def mean(self) -> float:
        """Mean accuracy over splits."""
        return float(np.mean(self.accuracies))

    @property
    def std(self) -> float:
        """Standard deviation of the accuracy over splits (population, ``ddof=0``)."""
        return float(np.std(self.accuracies))


@dataclass(frozen=True)
class PcaResult(_OverSplits):
    """Accuracies after PCA to ``dim`` dimensions (one per split)."""

    dim: int
    splits: tuple[SplitResult, ...]


@dataclass
class SvmReport(_OverSplits):
    """Result of :func:`svm_evaluate`.

    Attributes:
        features_path, labels_path: The inputs.
        protocol: ``"split"`` (given train/test) or ``"k-fold"``.
        folds: Folds of the k-fold protocol (1 for a given split).
        n_videos: Labelled videos found in the features (the ones evaluated).
        n_classes: Classes among them.
        dim: Feature size ``D``.
        classes: Class names, sorted.
        c_grid: C values searched.
        seed: Seed of the fold assignment and the solvers.
        splits: One :class:`SplitResult` per split, full-dimensional features.
        pca: One :class:`PcaResult` per PCA dimension that was run.
        pca_skipped: Requested dimensions not below ``min(n_train, D)``.
        missing: Labels-file videos not found in the features.
        ambiguous: Labels-file videos that match several keys.
        unlabelled: Keys in the features without a label.
        predictions: Predicted class of each test video (full-dimensional features).
        convergence_warnings: LinearSVC fits that hit their iteration limit.
    """

    features_path: str
    labels_path: str
    protocol: str
    folds: int
    n_videos: int
    n_classes: int
    dim: int
    classes: list[str]
    c_grid: list[float]
    seed: int
    splits: list[SplitResult]
    pca: list[PcaResult] = field(default_factory=list)
    pca_skipped: list[int] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    ambiguous: list[str] = field(default_factory=list)
    unlabelled: list[str] = field(default_factory=list)
    predictions: dict[str, str] = field(default_factory=dict)
    convergence_warnings: int = 0

    @property
    def chance(self) -> float:
        """Accuracy of guessing uniformly among the classes."""
        return 1.0 / self.n_classes

    def to_json(self) -> dict[str, Any]:
        """The report as plain JSON types (what ``feat3d svm --json`` writes)."""
        data = asdict(self)
        data.update(mean=self.mean, std=self.std, chance=self.chance)
        data["pca"] = [
            {"dim": p.dim, "mean": p.mean, "std": p.std, "splits": [asdict(s) for s in p.splits]}
            for p in self.pca
        ]
        return data


def parse_number_list(text: str, *, kind: type = float) -> tuple[Any, ...]:
    """Parse ``"10,50,100"`` (commas and/or spaces) into a tuple of ``kind``.

    Raises:
        ValueError: An item is not a number of that kind.
    """
    items = [item for item in text.replace(",", " ").split() if item]
    try:
        return tuple(kind(item) for item in items)
    except ValueError:
        noun = "an integer" if kind is int else "a number"
        bad = next(item for item in items if not _parses(item, kind))
        raise ValueError(f"{bad!r} is not {noun} (give a comma-separated list)") from None


def _parses(item: str, kind: type) -> bool:
    try:
        kind(item)
    except ValueError:
        return False
    return True


def svm_evaluate(
    features_path: str | os.PathLike[str],
    labels_path: str | os.PathLike[str],
    *,
    folds: int = 3,
    pca_dims: Sequence[int] = (),
    c_grid: Sequence[float] = DEFAULT_C_GRID,
    inner_folds: int = 3,
    seed: int = 0,
) -> SvmReport:
    """Linear-SVM accuracy of extracted features, the protocol of Tran et al. (C3D, Res3D).

    Each video's feature is the mean of its clip features, L2-normalized (Tran et al. 2015,
    2017). Per split, a ``LinearSVC`` is trained on the training videos with C chosen from
    ``c_grid`` by stratified ``inner_folds``-fold cross-validation on the training videos only
    (``GridSearchCV``), and scored on the test videos. With ``pca_dims`` the evaluation is
    repeated after PCA fitted on each split's training videos (the compactness experiment of
    both papers).

    Args:
        features_path: Output of ``feat3d extract`` (HDF5, JSON Lines, npy or Parquet folder;
            a Parquet folder may be at a URL).
        labels_path: ``video,label[,split]`` CSV (see the module docstring for how videos are
            matched to keys).
        folds: Stratified folds when the labels have no split column.
        pca_dims: PCA dimensions to evaluate; those not below ``min(n_train, D)`` are skipped.
        c_grid: Candidate values of the SVM's C.
        inner_folds: Folds of the cross-validation that chooses C (fewer when a class has fewer
            training videos).
        seed: Seed of the fold assignment, PCA and the solver.

    Returns:
        An :class:`SvmReport`.

    Raises:
        SvmError: Unreadable inputs, no labelled video in the features, fewer than two classes,
            a class with fewer videos than ``folds``, an empty train or test part, bad
            arguments, or scikit-learn not installed.

    Example:
        >>> report = svm_evaluate("feats.h5", "labels.csv", pca_dims=(10, 50))  # doctest: +SKIP
        >>> print(f"{report.mean:.3f} ± {report.std:.3f}")  # doctest: +SKIP
    """
    c_values, dims = _checked_arguments(c_grid, pca_dims, folds, inner_folds)
    rows = read_labels(labels_path)
    keys, sources, features = load_video_features(features_path)
    labelled, missing, ambiguous = _match_labels(rows, KeyMatcher(keys, sources), labels_path)
    if not labelled:
        raise SvmError(
            f"none of the {len(rows)} videos in {labels_path} is in {mask_url(features_path)} "
            f"(first label entry {rows[0].video!r}, first key {keys[0]!r}); see 'feat3d svm "
            "--help' for how entries are matched to keys"
        )
    index = {key: i for i, key in enumerate(keys)}
    chosen = [key for key in keys if key in labelled]
    x = l2_normalize(features[[index[key] for key in chosen]])
    y = np.array([labelled[key].label for key in chosen])
    classes = sorted(set(y.tolist()))
    if len(classes) < 2:
        raise SvmError(
            f"need at least 2 classes to train an SVM, found {len(classes)} "
            f"({', '.join(repr(c) for c in classes)}) among the {len(chosen)} labelled videos"
        )
    given = labelled[chosen[0]].split is not None
    if given:
        splits = _given_split([labelled[key] for key in chosen], labels_path)
    else:
        splits = _fold_splits(x, y, folds=folds, seed=seed)

    scorer = _Scorer(_sklearn(), c_grid=c_values, inner_folds=inner_folds, seed=seed)
    results, predictions = scorer.splits(x, y, splits, chosen)
    limit = min(min(len(train) for _, train, _ in splits), x.shape[1])
    return SvmReport(
        features_path=mask_url(features_path),
        labels_path=str(labels_path),
        protocol="split" if given else "k-fold",
        folds=1 if given else folds,
        n_videos=len(chosen),
        n_classes=len(classes),
        dim=int(x.shape[1]),
        classes=classes,
        c_grid=c_values,
        seed=seed,
        splits=results,
        pca=[scorer.pca(x, y, splits, dim) for dim in dims if dim < limit],
        pca_skipped=[d for d in dims if d >= limit],
        missing=missing,
        ambiguous=ambiguous,
        unlabelled=[key for key in keys if key not in labelled],
        predictions=predictions,
        convergence_warnings=scorer.warned,
    )


_Split = tuple[str, np.ndarray, np.ndarray]  # name, train rows, test rows


def _checked_arguments(
    c_grid: Sequence[float], pca_dims: Sequence[int], folds: int, inner_folds: int
) -> tuple[list[float], list[int]]:
    """The C values and the sorted, distinct PCA dimensions, once the arguments are checked."""
    c_values = [float(c) for c in c_grid]
    if not c_values or any(not math.isfinite(c) or c <= 0 for c in c_values):
        raise SvmError(f"C values must be positive numbers, got {list(c_grid)}")
    dims = sorted({int(d) for d in pca_dims})
    if any(d < 1 for d in dims):
        raise SvmError(f"PCA dimensions must be positive, got {list(pca_dims)}")
    if folds < 2:
        raise SvmError(f"folds must be at least 2, got {folds}")
    if inner_folds < 2:
        raise SvmError(f"inner folds must be at least 2, got {inner_folds}")
    return c_values, dims


def _match_labels(
    rows: Sequence[LabelRow], matcher: KeyMatcher, labels_path: str | os.PathLike[str]
) -> tuple[dict[str, LabelRow], list[str], list[str]]:
    """``(row of each matched key, entries matching no key, entries matching several)``.

    Raises:
        SvmError: One video labelled twice with different labels or splits.
    """
    labelled: dict[str, LabelRow] = {}
    missing: list[str] = []
    ambiguous: list[str] = []
    for row in rows:
        key, several = matcher.match(row.video)
        if key is None:
            (ambiguous if several else missing).append(row.video)
            continue
        previous = labelled.get(key)
        if previous is not None and (previous.label, previous.split) != (row.label, row.split):
            raise SvmError(
                f"{labels_path}:{row.line}: {row.video!r} is video {key!r}, labelled "
                f"{previous.label!r} ({previous.split or 'no split'}) on line {previous.line} and "
                f"{row.label!r} ({row.split or 'no split'}) here"
            )
        labelled.setdefault(key, row)
    return labelled, missing, ambiguous


def _given_split(rows: Sequence[LabelRow], labels_path: str | os.PathLike[str]) -> list[_Split]:
    is_test = np.array([row.split == "test" for row in rows])
    if not is_test.any() or is_test.all():
        part = "test" if not is_test.any() else "train"
        raise SvmError(f"{labels_path}: the labelled videos found have no {part} part")
    return [("test", np.flatnonzero(~is_test), np.flatnonzero(is_test))]


def _fold_splits(x: np.ndarray, y: np.ndarray, *, folds: int, seed: int) -> list[_Split]:
    counts = Counter(y.tolist())
    rare, smallest = min(counts.items(), key=lambda item: (item[1], item[0]))
    if smallest < folds:
        raise SvmError(
            f"class {rare!r} has {smallest} video(s), fewer than --folds {folds}; use fewer "
            "folds, drop the class, or give a train/test split column"
        )
    return [
        (f"fold {n}", train, test)
        for n, (train, test) in enumerate(_stratified_folds(x, y, folds=folds, seed=seed), 1)
    ]


class _Scorer:
    """Fits and scores the SVM on each split with one C grid and seed, counting the fits that
    stopped at the iteration limit."""

    def __init__(self, sklearn: _Sklearn, *, c_grid: list[float], inner_folds: int, seed: int):
        self.sklearn = sklearn
        self.c_grid = c_grid
        self.inner_folds = inner_folds
        self.seed = seed
        self._warned = [0]

    @property
    def warned(self) -> int:
        return self._warned[0]

    def _fit(
        self,
        name: str,
        x_train: np.ndarray,
        y_train: np.ndarray,
        x_test: np.ndarray,
        y_test: np.ndarray,
    ) -> tuple[SplitResult, np.ndarray]:
        return _fit_and_score(
            self.sklearn, x_train, y_train, x_test, y_test, name=name, c_grid=self.c_grid,
            inner_folds=self.inner_folds, seed=self.seed, warned=self._warned,
        )  # fmt: skip

    def splits(
        self, x: np.ndarray, y: np.ndarray, splits: Sequence[_Split], keys: Sequence[str]
    ) -> tuple[list[SplitResult], dict[str, str]]:
        """Each split's result on the full features, and the predicted class of each test
        video."""
        results: list[SplitResult] = []
        predictions: dict[str, str] = {}
        for name, train, test in splits:
            result, predicted = self._fit(name, x[train], y[train], x[test], y[test])
            results.append(result)
            predictions.update(
                {keys[i]: str(label) for i, label in zip(test, predicted, strict=True)}
            )
        return results, predictions

    def pca(self, x: np.ndarray, y: np.ndarray, splits: Sequence[_Split], dim: int) -> PcaResult:
        """Each split's result after PCA to ``dim``, fitted on its training part only."""
        per_split = []
        for name, train, test in splits:
            pca = self.sklearn.PCA(n_components=dim, random_state=self.seed)
            x_train = pca.fit_transform(x[train])
            result, _ = self._fit(name, x_train, y[train], pca.transform(x[test]), y[test])
            per_split.append(result)
        return PcaResult(dim, tuple(per_split))


class _Sklearn:
    """The few scikit-learn names used here, imported on first use (an optional dependency)."""

    def __init__(self) -> None:
        try:
            from sklearn.decomposition import PCA
            from sklearn.exceptions import ConvergenceWarning
            from sklearn.model_selection import GridSearchCV, StratifiedKFold
            from sklearn.svm import LinearSVC
        except ImportError:
            raise SvmError("feat3d svm needs scikit-learn: pip install 'feat3d[svm]'") from None
        self.PCA = PCA
        self.ConvergenceWarning = ConvergenceWarning
        self.GridSearchCV = GridSearchCV
        self.StratifiedKFold = StratifiedKFold
        self.LinearSVC = LinearSVC


def _sklearn() -> _Sklearn:
    return _Sklearn()


def _stratified_folds(
    x: np.ndarray, y: np.ndarray, *, folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    splitter = _sklearn().StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return list(splitter.split(x, y))


def _fit_and_score(
    sklearn: _Sklearn,
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_test: np.ndarray,
    y_test: np.ndarray,
    *,
    name: str,
    c_grid: Sequence[float],
    inner_folds: int,
    seed: int,
    warned: list[int],
) -> tuple[SplitResult, np.ndarray]:
    """Choose C on the training part only, refit on all of it, score on the test part."""
    if len(set(y_train.tolist())) < 2:
        raise SvmError(f"{name}: the training part has a single class")
    svm = sklearn.LinearSVC(dual="auto", max_iter=10000, random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", sklearn.ConvergenceWarning)
        if len(c_grid) == 1:
            model = svm.set_params(C=c_grid[0]).fit(x_train, y_train)
            c, n_inner = c_grid[0], 0
        else:
            n_inner = min(inner_folds, min(Counter(y_train.tolist()).values()))
            if n_inner < 2:
                raise SvmError(
                    f"{name}: a class has a single training video, so C cannot be chosen by "
                    "cross-validation; give one C value (--c 1) or more training videos"
                )
            search = sklearn.GridSearchCV(
                svm,
                {"C": list(c_grid)},
                scoring="accuracy",
                cv=sklearn.StratifiedKFold(n_splits=n_inner, shuffle=True, random_state=seed),
                refit=True,
            )
            search.fit(x_train, y_train)
            model = search.best_estimator_
            c = float(search.best_params_["C"])
    warned[0] += sum(issubclass(w.category, sklearn.ConvergenceWarning) for w in caught)
    for other in caught:
        if not issubclass(other.category, sklearn.ConvergenceWarning):
            warnings.warn_explicit(
                other.message, other.category, other.filename, other.lineno, source=other.source
            )
    predicted = model.predict(x_test)
    accuracy = float(np.mean(predicted == y_test))
    result = SplitResult(name, len(y_train), len(y_test), accuracy, c, n_inner)
    return result, predicted


def summary_lines(report: SvmReport) -> list[str]:
    """Plain-text lines of a report (what ``feat3d svm`` prints before the PCA table)."""

    def examples(items: Sequence[str]) -> str:
        if not items:
            return ""
        shown = ", ".join(items[:3]) + (", ..." if len(items) > 3 else "")
        return f" ({shown})"

    protocol = "given train/test split" if report.protocol == "split" else f"{report.folds}-fold"
    lines = [
        f"{report.n_videos} videos, {report.n_classes} classes, {report.dim}-d features; "
        f"{protocol}; C from {', '.join(f'{c:g}' for c in report.c_grid)}",
        f"labelled but not in the features: {len(report.missing)}{examples(report.missing)}",
        f"in the features without a label: {len(report.unlabelled)}{examples(report.unlabelled)}",
    ]
    if report.ambiguous:
        lines.append(
            f"labelled, matching several videos (left out): {len(report.ambiguous)}"
            f"{examples(report.ambiguous)}"
        )
    for split in report.splits:
        lines.append(
            f"{split.name}: accuracy {100 * split.accuracy:.2f}% (C={split.c:g}, "
            f"{split.n_train} train / {split.n_test} test)"
        )
    if report.convergence_warnings:
        lines.append(
            f"warning: {report.convergence_warnings} SVM fit(s) stopped at the iteration limit"
        )
    lines.append(
        f"accuracy: {100 * report.mean:.2f} ± {100 * report.std:.2f}% over "
        f"{len(report.splits)} split(s) (chance {100 * report.chance:.2f}%)"
    )
    return lines


def pca_rows(report: SvmReport) -> list[tuple[str, str, str]]:
    """Rows ``(dims, accuracy %, chosen C per split)`` of the PCA table, all dimensions last."""
    entries = [(str(p.dim), p.mean, p.std, p.splits) for p in report.pca]
    entries.append((f"{report.dim} (all)", report.mean, report.std, tuple(report.splits)))
    return [
        (dims, f"{100 * mean:.2f} ± {100 * std:.2f}", ", ".join(f"{s.c:g}" for s in splits))
        for dims, mean, std, splits in entries
    ]
