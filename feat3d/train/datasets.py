"""Labelled video datasets for training: three layouts, a train/val split, cached frame counts.

:func:`load_dataset` reads one of three layouts into a :class:`DatasetSplit`:

(a) **Class folders.** ``DATASET/<class>/<video>`` (videos may sit in sub-folders of a class
    folder; folders whose name starts with ``.`` and folders without videos are ignored).
    Classes are the folder names, sorted. The videos are split into train and val per class
    (stratified) with ``val_split`` and ``seed``. When ``DATASET/train/<class>/...`` and
    ``DATASET/val/<class>/...`` (or ``validation/``) both exist, those folders *are* the split
    and nothing is drawn at random.
(b) **Split files** in the UCF-101 style (HMDB-51's splits converted to it read the same):
    ``classes_file`` (``classInd.txt``: ``"1 ApplyEyeMakeup"`` lines, 1-based, or 0-based
    when a ``0`` appears; or one class name per line), ``train_list`` (``trainlist01.txt``:
    ``"ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1"``) and optionally ``val_list``
    (``testlist01.txt``). The label number is optional; without it the class is the video's
    parent folder name. Paths are relative to ``source``.
(c) **A CSV** ``path,label[,split]`` (Kinetics-like: the label is a class name). See
    :func:`load_dataset` for the header and split rules.

Frame counts are needed to draw a random clip position. :class:`FrameIndex` computes each one
once (from the container header when it is plausible, else by decoding) and keeps them in a
JSON file, so later runs and epochs do not touch the videos again.

Example:
    >>> split = load_dataset("motion/", val_split=0.25, seed=0)  # doctest: +SKIP
    >>> split.classes, len(split.train), len(split.val)  # doctest: +SKIP
    (['down', 'left', 'right', 'up'], 36, 12)
"""

from __future__ import annotations

import csv as csv_module
import json
import os
import random
import tempfile
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar

from ..errors import RunError
from ..io.decode import VideoDecodeError
from ..io.discover import VideoSource, holds_images, is_frame_folder, is_video_file, safe_key
from ..io.sources import iter_source_frames, open_source

__all__ = [
    "DatasetError",
    "DatasetSplit",
    "FrameIndex",
    "VideoItem",
    "VideoTiming",
    "load_dataset",
]

#: Split names accepted in a CSV's split column (case-insensitive).
TRAIN_NAMES = frozenset({"train", "training"})
VAL_NAMES = frozenset({"val", "valid", "validation", "test", "testing"})

#: How many offending paths or lines an error message names.
_SHOW = 5


class DatasetError(RunError):
    """A dataset description is unusable: missing videos, unknown classes, malformed lines,
    or no training videos. The message says what and where."""


@dataclass(frozen=True)
class VideoItem:
    """One labelled video.

    Attributes:
        path: Absolute path of the file (or of the frame folder).
        label: Class index into :attr:`DatasetSplit.classes`.
        key: Path relative to the dataset root, posix form (the video's name in outputs).
        frames: ``[first, end)`` source frames (0-based) the label covers, ``None`` for the
            whole video: an annotated segment (Hara et al.'s annotation JSON); training
            clips start inside it, and evaluation decodes only it.
    """

    path: Path
    label: int
    key: str
    frames: tuple[int, int] | None = None

    @property
    def source(self) -> VideoSource:
        """The item as the clip stream reads it: its path, key and segment."""
        return VideoSource(self.path, self.key, self.frames)


@dataclass
class DatasetSplit:
    """Classes and the videos of each subset.

    Attributes:
        classes: Class names; the index of a name is its label.
        train: Training videos.
        val: Validation videos (may be empty).
    """

    classes: list[str]
    train: list[VideoItem] = field(default_factory=list)
    val: list[VideoItem] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# Loading


def load_dataset(
    source: str | os.PathLike[str],
    *,
    val_split: float = 0.2,
    seed: int = 0,
    train_list: str | os.PathLike[str] | None = None,
    val_list: str | os.PathLike[str] | None = None,
    classes_file: str | os.PathLike[str] | None = None,
    csv: str | os.PathLike[str] | None = None,
    frame_rate: float | None = None,
) -> DatasetSplit:
    """Read a labelled video dataset and split it into train and val.

    The layout is chosen by the arguments: ``csv`` → CSV; ``train_list`` → split files;
    neither → class folders under ``source`` (see the module docstring for all three).

    CSV details: columns ``path,label[,split]``. A first row is a header when it names a
    ``label`` (or ``class``) column; columns are then found by name (``path``/``video``/
    ``file``, ``label``/``class``, ``split``/``subset``) and others are ignored; without a
    header the columns are positional. Labels are class names (the sorted set of names
    unless ``classes_file`` fixes the list and order). Split values: ``train``/``training``,
    ``val``/``valid``/``validation``/``test``/``testing`` (case-insensitive); when the column
    is absent, the split is drawn with ``val_split`` and ``seed``.

    Random splits are stratified and deterministic: each class's videos (sorted by key) are
    shuffled with a generator seeded by ``(seed, class name)`` and
    ``round(n * val_split)`` of them go to val, at least one and at most ``n - 1`` when the
    class has two or more videos (a class with one video keeps it for training). Adding a
    class does not change the others' splits.

    Args:
        source: The dataset root; relative paths in lists and CSVs are relative to it.
        val_split: Fraction of each class held out for validation when nothing else says
            which videos are validation videos; ``0`` for none.
        seed: Seed of the random split.
        train_list: UCF-101-style list of training videos (``"class/video.avi [label]"``).
        val_list: Same format, validation videos. Without it ``val`` is empty (no random
            split of a list).
        classes_file: ``classInd.txt``-style class list. It fixes the classes and their
            order in every layout (a folder or label outside it is an error); required when
            list lines carry label numbers that do not follow the sorted folder names.
        csv: CSV of ``path,label[,split]``.
        frame_rate: ``--frame-rate``: in class folders, every folder of frame images is a
            video (without it, only those with Hara's ``n_frames``/``fps`` file are). Lists
            and CSVs may name frame folders either way.

    Returns:
        The :class:`DatasetSplit`.

    Raises:
        DatasetError: ``source`` is not a folder; listed videos are missing (one error
            naming how many and the first few); a line names an unknown class or is
            malformed; a video is in both subsets; or the training set is empty.
        ValueError: ``val_split`` outside ``[0, 1)``.
    """
    if not 0.0 <= float(val_split) < 1.0:
        raise ValueError(f"val_split must be in [0, 1), got {val_split!r}")
    root = Path(source).absolute()
    if not root.is_dir():
        raise DatasetError(f"dataset root {str(root)!r} is not a folder")
    if csv is not None:
        if train_list is not None or val_list is not None:
            raise DatasetError("give either a CSV or split lists, not both")
        split = _load_csv(
            root, Path(csv), classes_file=classes_file, val_split=val_split, seed=seed
        )
    elif train_list is not None:
        split = _load_lists(root, Path(train_list), val_list, classes_file=classes_file)
    elif val_list is not None:
        raise DatasetError("a val list needs a train list")
    else:
        split = _load_tree(
            root, classes_file=classes_file, val_split=val_split, seed=seed, frame_rate=frame_rate
        )
    check_split(split)
    return split


def check_split(split: DatasetSplit) -> None:
    """Refuse an empty training set or a video in both subsets; warn of idle classes."""
    if not split.train:
        raise DatasetError("no training videos")
    both = {item.path for item in split.train} & {item.path for item in split.val}
    if both:
        names = ", ".join(sorted(str(p) for p in both)[:_SHOW])
        raise DatasetError(f"{len(both)} video(s) are in both train and val: {names}")
    trained = {item.label for item in split.train}
    idle = [name for i, name in enumerate(split.classes) if i not in trained]
    if idle:
        warnings.warn(
            f"{len(idle)} class(es) have no training videos: {', '.join(idle[:_SHOW])}",
            stacklevel=3,
        )


def _key(root: Path, path: Path) -> str:
    try:
        relative = path.relative_to(root).as_posix()
    except ValueError:  # outside the root: keep the whole path, minus its anchor
        relative = path.as_posix().lstrip("/")
    return safe_key(relative)


def _resolve(root: Path, written: str) -> Path:
    pure = Path(written.strip())
    return pure if pure.is_absolute() else root / pure


def is_source(path: Path) -> bool:
    """Whether ``path`` is a video file or a folder of frame images."""
    return path.is_file() or (path.is_dir() and holds_images(path))


def _check_exist(paths: Iterable[Path], root: Path) -> None:
    missing = [p for p in dict.fromkeys(paths) if not is_source(p)]
    if missing:
        names = ", ".join(str(p) for p in missing[:_SHOW])
        more = ", ..." if len(missing) > _SHOW else ""
        raise DatasetError(f"{len(missing)} listed video(s) not found under {root}: {names}{more}")


def _random_split(
    by_class: Sequence[Sequence[VideoItem]], classes: Sequence[str], *, val_split: float, seed: int
) -> tuple[list[VideoItem], list[VideoItem]]:
    train: list[VideoItem] = []
    val: list[VideoItem] = []
    for name, items in zip(classes, by_class, strict=True):
        ordered = sorted(items, key=lambda item: item.key)
        n = len(ordered)
        n_val = 0
        if n >= 2 and val_split > 0:
            n_val = min(n - 1, max(1, round(n * val_split)))
        # str seeds hash with SHA-512: the same split in every process and Python version.
        random.Random(f"{seed}/{name}").shuffle(ordered)
        val.extend(sorted(ordered[:n_val], key=lambda item: item.key))
        train.extend(sorted(ordered[n_val:], key=lambda item: item.key))
    return train, val


# -- (a) class folders ------------------------------------------------------------------------


def _class_dirs(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")),
        key=lambda p: p.name,
    )


def _videos_under(folder: Path, frame_rate: float | None = None) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        if dirpath != str(folder) and is_frame_folder(filenames, frame_rate=frame_rate):
            dirnames[:] = []  # a frame folder is one video (see feat3d.io.discover)
            found.append(Path(dirpath))
            continue
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(
            Path(dirpath) / name
            for name in sorted(filenames)
            if not name.startswith(".") and is_video_file(Path(name))
        )
    return found


def _scan_classes(folder: Path, frame_rate: float | None) -> dict[str, list[Path]]:
    """Class name → video paths (and frame folders) for ``folder/<class>/...``; folders
    without videos dropped."""
    found = {d.name: _videos_under(d, frame_rate) for d in _class_dirs(folder)}
    return {name: paths for name, paths in found.items() if paths}


def _load_tree(
    root: Path,
    *,
    classes_file: str | os.PathLike[str] | None,
    val_split: float,
    seed: int,
    frame_rate: float | None,
) -> DatasetSplit:
    val_dir = next((root / n for n in ("val", "validation") if (root / n).is_dir()), None)
    if (root / "train").is_dir() and val_dir is not None:
        subsets = {
            "train": _scan_classes(root / "train", frame_rate),
            "val": _scan_classes(val_dir, frame_rate),
        }
        names = sorted(set(subsets["train"]) | set(subsets["val"]))
    else:
        subsets = {"all": _scan_classes(root, frame_rate)}
        names = sorted(subsets["all"])
    if classes_file is not None:
        classes = _read_classes(Path(classes_file))
        unknown = [n for n in names if n not in classes]
        if unknown:
            raise DatasetError(
                f"class folder(s) not in {classes_file}: {', '.join(unknown[:_SHOW])}"
            )
    else:
        classes = names
    if not classes:
        raise DatasetError(f"no class folders with videos under {root}")
    index = {name: i for i, name in enumerate(classes)}

    def items(found: dict[str, list[Path]]) -> list[list[VideoItem]]:
        by_class: list[list[VideoItem]] = [[] for _ in classes]
        for name, paths in found.items():
            by_class[index[name]] = [VideoItem(p, index[name], _key(root, p)) for p in paths]
        return by_class

    if "all" in subsets:
        train, val = _random_split(items(subsets["all"]), classes, val_split=val_split, seed=seed)
    else:
        train = [item for group in items(subsets["train"]) for item in group]
        val = [item for group in items(subsets["val"]) for item in group]
    return DatasetSplit(classes=list(classes), train=train, val=val)


# -- (b) split files --------------------------------------------------------------------------


def _lines(path: Path) -> list[tuple[int, str]]:
    """(line number, stripped text) of the non-blank, non-comment lines of a text file."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from e
    rows = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            rows.append((number, line))
    return rows


def _read_classes(path: Path) -> list[str]:
    """Class names from ``"1 ApplyEyeMakeup"`` lines (1-based, or 0-based) or bare names."""
    return _read_class_file(path)[0]


def _read_class_file(path: Path) -> tuple[list[str], int | None]:
    """Class names and the numbering base (``None`` for bare names)."""
    rows = _lines(path)
    numbered: dict[int, str] = {}
    bare: list[str] = []
    for number, line in rows:
        head, *rest = line.split(None, 1)
        if head.isdigit() and rest:
            numbered[int(head)] = rest[0].strip()
        elif numbered:
            raise DatasetError(f"{path}:{number}: expected '<number> <class>', got {line!r}")
        else:
            bare.append(line)
    if numbered and bare:
        raise DatasetError(f"{path}: mixes numbered and bare class lines")
    base: int | None = None
    if bare:
        names = bare
    elif numbered:
        base = 0 if 0 in numbered else 1
        expected = list(range(base, base + len(numbered)))
        if sorted(numbered) != expected:
            raise DatasetError(
                f"{path}: class numbers must run from {base} to {base + len(numbered) - 1} "
                "without gaps"
            )
        names = [numbered[i] for i in expected]
    else:
        raise DatasetError(f"{path}: no classes")
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DatasetError(f"{path}: duplicate class name(s) {', '.join(duplicates[:_SHOW])}")
    return names, base


@dataclass(frozen=True)
class _ListEntry:
    where: str  # "file:line", for messages
    path: Path
    folder: str | None  # parent folder name as written
    number: int | None  # label number as written


def _read_list(root: Path, path: Path) -> list[_ListEntry]:
    entries = []
    for number, line in _lines(path):
        written, label = line, None
        parts = line.rsplit(None, 1)
        if len(parts) == 2 and parts[1].isdigit():
            written, label = parts[0].strip(), int(parts[1])
        parent = PurePosixPath(written.replace("\\", "/")).parent.name or None
        entries.append(_ListEntry(f"{path}:{number}", _resolve(root, written), parent, label))
    return entries


def _match_class(name: str, index: dict[str, int], folded: dict[str, int]) -> int | None:
    """Exact match, else a unique case-insensitive one (UCF-101 spells some names two ways)."""
    if name in index:
        return index[name]
    return folded.get(name.casefold())


def _load_lists(
    root: Path,
    train_list: Path,
    val_list: str | os.PathLike[str] | None,
    *,
    classes_file: str | os.PathLike[str] | None,
) -> DatasetSplit:
    subsets = {"train": _read_list(root, train_list)}
    if val_list is not None:
        subsets["val"] = _read_list(root, Path(val_list))
    entries = [e for group in subsets.values() for e in group]
    if classes_file is not None:
        classes, base = _read_class_file(Path(classes_file))
        if base is None:  # bare names: list numbers are 1-based unless a 0 appears
            base = 0 if any(e.number == 0 for e in entries) else 1
    else:
        # Without a class list the classes are the folder names, sorted; label numbers must
        # then agree with that order (1-based), else they would be silently reinterpreted.
        no_folder = next((e for e in entries if e.folder is None), None)
        if no_folder is not None:
            raise DatasetError(
                f"{no_folder.where}: no class folder in the path; pass a classes file and "
                "label numbers"
            )
        classes = sorted({e.folder for e in entries if e.folder is not None})
        base = 1
    index = {name: i for i, name in enumerate(classes)}
    folded_count: dict[str, int] = {}
    for name in classes:
        folded_count[name.casefold()] = folded_count.get(name.casefold(), 0) + 1
    folded = {n.casefold(): i for n, i in index.items() if folded_count[n.casefold()] == 1}

    def label_of(entry: _ListEntry) -> int:
        from_folder = None
        if entry.folder is not None:
            from_folder = _match_class(entry.folder, index, folded)
        if entry.number is not None:
            label = entry.number - base
            if not 0 <= label < len(classes):
                raise DatasetError(
                    f"{entry.where}: label {entry.number} is out of range for "
                    f"{len(classes)} classes"
                )
            if classes_file is None and from_folder != label:
                raise DatasetError(
                    f"{entry.where}: label {entry.number} does not match folder "
                    f"{entry.folder!r} in sorted order; pass the classes file"
                )
            return label
        if entry.folder is None:
            raise DatasetError(f"{entry.where}: no label number and no class folder in the path")
        if from_folder is None:
            raise DatasetError(f"{entry.where}: unknown class {entry.folder!r}")
        return from_folder

    labelled = {name: [(e, label_of(e)) for e in group] for name, group in subsets.items()}
    _check_exist((e.path for e in entries), root)
    items = {
        name: [VideoItem(e.path, label, _key(root, e.path)) for e, label in group]
        for name, group in labelled.items()
    }
    return DatasetSplit(classes=classes, train=items["train"], val=items.get("val", []))


# -- (c) CSV ----------------------------------------------------------------------------------

_PATH_COLUMNS = ("path", "video", "file", "filename")
_LABEL_COLUMNS = ("label", "class", "class_name")
_SPLIT_COLUMNS = ("split", "subset")


def _csv_columns(
    csv_path: Path, rows: list[tuple[int, list[str]]]
) -> tuple[dict[str, int | None], list[tuple[int, list[str]]]]:
    """Column of the path, label and split (``None``: no split column), from the header when
    there is one, else by position; returns them with the rows that follow the header."""
    columns: dict[str, int | None] = {"path": 0, "label": 1, "split": 2}
    header = [cell.lower() for cell in rows[0][1]]
    if any(name in header for name in _LABEL_COLUMNS):

        def find(names: tuple[str, ...]) -> int | None:
            return next((header.index(n) for n in names if n in header), None)

        path_col, label_col = find(_PATH_COLUMNS), find(_LABEL_COLUMNS)
        if path_col is None or label_col is None:
            raise DatasetError(f"{csv_path}: the header needs a path and a label column")
        return {"path": path_col, "label": label_col, "split": find(_SPLIT_COLUMNS)}, rows[1:]
    if len(rows[0][1]) < 3:
        columns["split"] = None
    return columns, rows


def _load_csv(
    root: Path,
    csv_path: Path,
    *,
    classes_file: str | os.PathLike[str] | None,
    val_split: float,
    seed: int,
) -> DatasetSplit:
    try:
        with csv_path.open(newline="", encoding="utf-8-sig") as fh:
            rows = [
                (n, [cell.strip() for cell in row])
                for n, row in enumerate(csv_module.reader(fh), 1)
                if any(cell.strip() for cell in row)
            ]
    except OSError as e:
        raise DatasetError(f"cannot read {csv_path}: {e.strerror or e}") from e
    except csv_module.Error as e:
        raise DatasetError(f"{csv_path}: malformed CSV: {e}") from e
    if not rows:
        raise DatasetError(f"{csv_path}: no rows")

    columns, rows = _csv_columns(csv_path, rows)
    has_split = columns["split"] is not None

    records: list[tuple[str, Path, str, str | None]] = []
    for number, row in rows:
        where = f"{csv_path}:{number}"
        needed = max(c for c in columns.values() if c is not None)
        if len(row) <= needed:
            raise DatasetError(f"{where}: expected {needed + 1} columns, got {len(row)}")
        subset = None
        if has_split:
            value = row[columns["split"]].lower()
            if value in TRAIN_NAMES:
                subset = "train"
            elif value in VAL_NAMES:
                subset = "val"
            else:
                raise DatasetError(f"{where}: unknown split {row[columns['split']]!r}")
        label = row[columns["label"]]
        if not label or not row[columns["path"]]:
            raise DatasetError(f"{where}: empty path or label")
        records.append((where, _resolve(root, row[columns["path"]]), label, subset))
    if not records:
        raise DatasetError(f"{csv_path}: no rows")

    if classes_file is not None:
        classes = _read_classes(Path(classes_file))
    else:
        classes = sorted({label for _, _, label, _ in records})
    index = {name: i for i, name in enumerate(classes)}
    for where, _, label, _ in records:
        if label not in index:
            raise DatasetError(f"{where}: unknown class {label!r}")
    _check_exist((path for _, path, _, _ in records), root)

    items = [(VideoItem(p, index[lab], _key(root, p)), subset) for _, p, lab, subset in records]
    if has_split:
        train = [item for item, subset in items if subset == "train"]
        val = [item for item, subset in items if subset == "val"]
    else:
        by_class: list[list[VideoItem]] = [[] for _ in classes]
        for item, _ in items:
            by_class[item.label].append(item)
        train, val = _random_split(by_class, classes, val_split=val_split, seed=seed)
    return DatasetSplit(classes=classes, train=train, val=val)


# --------------------------------------------------------------------------------------------
# Frame counts


#: Largest disagreement between the header's frame count and ``duration * fps`` (as a
#: fraction of the count, or at least this many frames) for the header to be believed.
_DECLARED_TOLERANCE = 0.05
_DECLARED_SLACK = 2

_CACHE_VERSION = 1

#: Largest spread of frame-to-frame gaps (seconds) for a decoded video to count as
#: constant-rate.
_CFR_JITTER = 1e-6


_T = TypeVar("_T")


def _entry(n: int, *, duration: float, fps: float, cfr: bool) -> dict[str, object]:
    return {"n_frames": n, "error": None, "duration": duration, "fps": fps, "cfr": cfr}


@dataclass(frozen=True)
class VideoTiming:
    """Frame count and timing of a video, as :class:`FrameIndex` records them.

    Attributes:
        n_frames: Frame count (``0`` when the video cannot be decoded).
        duration: End of the last frame's display interval, seconds from the stream start
            (from the header, or measured when the frames were decoded to count them;
            ``n_frames / fps`` when neither is known).
        fps: Average frame rate.
        constant_rate: Frame ``i`` is at ``i / fps`` seconds: the header says so
            (:attr:`~feat3d.io.VideoInfo.constant_rate`) or the decoded frames were evenly
            spaced. ``False`` when unknown.
    """

    n_frames: int
    duration: float
    fps: float
    constant_rate: bool


class FrameIndex:
    """Frame counts of videos, computed once and cached in a JSON file.

    Policy: the container header's frame count (``VideoInfo.n_frames_declared``) is used when
    present and consistent with ``duration * fps`` (within 5 % or 2 frames, or when no
    duration is known); otherwise the frames are decoded and counted once. The same probe
    records the video's :class:`VideoTiming` (:meth:`timing`): duration, average rate and
    whether the rate is constant (from the header, or from the decoded timestamps). A video that
    cannot be opened or decoded counts as ``0`` frames and its reason is kept
    (:meth:`error`): callers skip such videos with a warning instead of failing (see
    :class:`~feat3d.train.TrainClips`). A header count can exceed the decodable frames (edit
    lists, truncation); the sampler copes by looping what it could decode.

    The cache is keyed by absolute path and stores the file's size and modification time, so
    a replaced or edited file is counted again; failures are cached the same way. It is
    written atomically (temporary file + rename) after :meth:`count` and once at the end of
    :meth:`count_many`, merged with what another process may have written meanwhile.

    A frame folder (:mod:`feat3d.io.frames`) counts its images, at ``frame_rate`` frames per
    second (its entry records the rate; another rate probes it again).

    Args:
        cache_path: JSON file; ``None`` keeps the counts in memory only.
        probe_threads: Decoder threads used when frames must be decoded to count them.
        frame_rate: Frames per second of frame folders (``None``: their ``fps`` file's, else
            30).

    Example:
        >>> index = FrameIndex("runs/x/frame_counts.json")  # doctest: +SKIP
        >>> index.count("videos/a.mp4")  # doctest: +SKIP
        40
    """

    def __init__(
        self,
        cache_path: str | os.PathLike[str] | None = None,
        *,
        probe_threads: int = 1,
        frame_rate: float | None = None,
    ) -> None:
        self.cache_path = None if cache_path is None else Path(cache_path)
        self.probe_threads = probe_threads
        self.frame_rate = frame_rate
        self._entries: dict[str, dict[str, object]] = {}
        self._dirty = False
        if self.cache_path is not None:
            self._entries = self._read()

    def _read(self, *, warn: bool = True) -> dict[str, dict[str, object]]:
        assert self.cache_path is not None
        try:
            data = json.loads(self.cache_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            if warn:
                warnings.warn(
                    f"ignoring unreadable frame-count cache {self.cache_path}: {e}", stacklevel=3
                )
            return {}
        if not isinstance(data, dict) or data.get("version") != _CACHE_VERSION:
            return {}
        entries = data.get("videos")
        return entries if isinstance(entries, dict) else {}

    @staticmethod
    def _stamp(path: Path) -> tuple[int, int] | None:
        try:
            st = path.stat()
        except OSError:
            return None
        return st.st_size, st.st_mtime_ns

    def _cached(self, key: str, stamp: tuple[int, int] | None) -> dict[str, object] | None:
        entry = self._entries.get(key)
        if entry is None or stamp is None:
            return None
        if (entry.get("size"), entry.get("mtime_ns")) != stamp:
            return None
        return entry

    def _probe(self, path: Path) -> dict[str, object]:
        """Count ``path``'s frames and time them: a cache entry without the file stamp."""
        try:
            info = open_source(path, frame_rate=self.frame_rate)
            declared = info.n_frames_declared
            if declared and declared > 0:
                expected = (info.duration or 0.0) * info.fps
                slack = max(_DECLARED_SLACK, _DECLARED_TOLERANCE * declared)
                if not info.duration or not info.fps or abs(declared - expected) <= slack:
                    return _entry(
                        declared,
                        duration=info.duration or (declared / info.fps if info.fps else 0.0),
                        fps=info.fps,
                        cfr=info.constant_rate is True,
                    )
            n = 0
            first = previous = 0.0
            low, high = float("inf"), -float("inf")  # smallest and largest frame gap
            end = 0.0
            frames = iter_source_frames(
                path, frame_rate=self.frame_rate, size=(8, 8), crop=None, threads=self.probe_threads
            )
            for frame in frames:
                if n == 0:
                    first = frame.time
                else:
                    gap = frame.time - previous
                    low, high = min(low, gap), max(high, gap)
                previous, end = frame.time, frame.time + frame.duration
                n += 1
            fps = info.fps
            even = n < 2 or (high - low <= _CFR_JITTER and abs(low * fps - 1) < 1e-3)
            return _entry(n, duration=end, fps=fps, cfr=bool(fps) and even and abs(first) < 1e-6)
        except VideoDecodeError as e:
            return {"n_frames": 0, "error": str(e)}

    def count(self, path: str | os.PathLike[str], *, save: bool = True) -> int:
        """Number of frames of a video (``0`` when it cannot be decoded).

        Args:
            path: Video file.
            save: Write the cache file when the count was not cached yet.

        Returns:
            The frame count.
        """
        return int(self._entry(path, save=save, timing=False)["n_frames"])  # type: ignore[call-overload]

    def timing(self, path: str | os.PathLike[str], *, save: bool = True) -> VideoTiming:
        """Frame count, duration, average rate and constant-rate flag of a video.

        Cached like :meth:`count` (an entry written before timings were recorded is probed
        again once).

        Args:
            path: Video file.
            save: Write the cache file when the video was not cached yet.

        Returns:
            The :class:`VideoTiming`; all zero (and ``False``) when it cannot be decoded.
        """
        entry = self._entry(path, save=save, timing=True)
        n = int(entry["n_frames"])  # type: ignore[call-overload]
        fps = float(entry.get("fps") or 0.0)  # type: ignore[arg-type]
        duration = float(entry.get("duration") or 0.0)  # type: ignore[arg-type]
        if n and not duration and fps:
            duration = n / fps
        return VideoTiming(
            n_frames=n, duration=duration, fps=fps, constant_rate=bool(entry.get("cfr"))
        )

    def _entry(
        self, path: str | os.PathLike[str], *, save: bool, timing: bool
    ) -> dict[str, object]:
        path = Path(path).absolute()
        key, stamp = str(path), self._stamp(path)
        entry = self._cached(key, stamp)
        if entry is not None and timing and entry.get("n_frames") and "cfr" not in entry:
            entry = None  # counted before timings were recorded
        folder = path.is_dir()
        if entry is not None and folder and entry.get("frame_rate") != self.frame_rate:
            entry = None  # a frame folder counted at another rate
        if entry is None:
            entry = self._probe(path) if stamp is not None else {"n_frames": 0}
            entry.setdefault("error", None if stamp is not None else "no such file")
            if stamp is not None:
                entry.update(size=stamp[0], mtime_ns=stamp[1])
                self._dirty = True
            if folder:
                entry["frame_rate"] = self.frame_rate
            self._entries[key] = entry  # without a stamp it is never reused, only reported
            if save:
                self.save()
        return entry

    def error(self, path: str | os.PathLike[str]) -> str | None:
        """Why a video counted as 0 frames (``None`` when it decoded or is not indexed)."""
        entry = self._entries.get(str(Path(path).absolute()))
        return None if entry is None else entry.get("error")  # type: ignore[return-value]

    def count_many(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        workers: int = 1,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[int]:
        """Frame counts of many videos; uncached ones are probed, then the cache is saved once.

        Args:
            paths: Video files.
            workers: Threads probing uncached videos in parallel (PyAV releases the GIL
                while decoding).
            on_progress: Called with (done, total) after each video.

        Returns:
            The counts, in the order of ``paths``.
        """
        return self._many(
            paths, lambda p: self.count(p, save=False), workers=workers, on_progress=on_progress
        )

    def timing_many(
        self,
        paths: Sequence[str | os.PathLike[str]],
        *,
        workers: int = 1,
        on_progress: Callable[[int, int], None] | None = None,
    ) -> list[VideoTiming]:
        """:meth:`timing` of many videos, in the order of ``paths``, probed (and cached) as
        :meth:`count_many` probes them."""
        return self._many(
            paths, lambda p: self.timing(p, save=False), workers=workers, on_progress=on_progress
        )

    def _many(
        self,
        paths: Sequence[str | os.PathLike[str]],
        fn: Callable[[str | os.PathLike[str]], _T],
        *,
        workers: int,
        on_progress: Callable[[int, int], None] | None,
    ) -> list[_T]:
        total = len(paths)
        counts: list[_T] = [None] * total  # type: ignore[list-item]
        done = 0

        def one(i: int) -> None:
            counts[i] = fn(paths[i])

        try:
            if workers > 1:
                with ThreadPoolExecutor(max_workers=workers) as pool:
                    for _ in pool.map(one, range(total)):
                        done += 1
                        if on_progress is not None:
                            on_progress(done, total)
            else:
                for i in range(total):
                    one(i)
                    done += 1
                    if on_progress is not None:
                        on_progress(done, total)
        finally:
            self.save()
        return counts

    def save(self) -> None:
        """Write the cache file atomically if anything new was counted (no-op in memory)."""
        if self.cache_path is None or not self._dirty:
            return
        merged = self._read(warn=False)  # keep what another process wrote since we read it
        merged.update(self._entries)
        self._entries = merged
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=f".{self.cache_path.name}.", suffix=".tmp", dir=self.cache_path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": _CACHE_VERSION, "videos": merged}, fh, separators=(",", ":"))
            os.replace(tmp, self.cache_path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        self._dirty = False
