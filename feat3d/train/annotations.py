"""Hara et al.'s annotation JSON (3D-ResNets-PyTorch) as a train/val split of frame folders.

Two schemas, as Hara et al.'s ``datasets/videodataset.py`` and ``datasets/activitynet.py``
read them:

- **UCF-101, HMDB-51, Kinetics** (``ucf101_01.json``, ``hmdb51_1.json``, ``kinetics.json``
  from ``util_scripts/*_json.py``): ``{"labels": [names...], "database": {id: {"subset":
  "training" | "validation" | "testing", "annotations": {"label": name, "segment": [first,
  end]}}}}``. The video of ``id`` is the frame folder ``root/<label>/<id>``; ``segment``
  counts frames from 1, end excluded (``[1, n_frames + 1]``: the whole video).
- **ActivityNet** (``activity_net.v1-3.min.json``): classes are the leaves of
  ``"taxonomy"`` in file order; ``"annotations"`` is a list of ``{"label", "segment":
  [start_s, end_s]}`` in seconds, each one labelled segment of the frame folder
  ``root/v_<id>``. Seconds become frames at the entry's ``"fps"`` (written by
  ``add_fps_into_activitynet_json.py``), else the folder's ``fps`` file, else
  ``frame_rate``: frames ``floor(start * fps)`` to ``floor(end * fps)`` (0-based, end
  excluded; Hara et al.'s 1-based ``floor(s * fps) + 1``). A video with several segments
  gives one item per segment, keyed ``v_<id>#<k>``.

``training`` is the train split, ``validation`` the val split; ``testing`` entries (no
labels) are left out. Videos missing under the root are skipped with one warning naming
how many and the first few (Hara et al.'s loaders skip them silently; published Kinetics
lists name videos that can no longer be downloaded).
"""

from __future__ import annotations

import json
import math
import os
import warnings
from pathlib import Path
from typing import Any

from .datasets import DatasetError, DatasetSplit, VideoItem, check_split, is_source

__all__ = ["load_annotation"]

_SUBSETS = {"training": "train", "validation": "val"}
_SHOW = 5


def load_annotation(
    root: str | os.PathLike[str],
    annotation: str | os.PathLike[str],
    *,
    frame_rate: float | None = None,
) -> DatasetSplit:
    """Read Hara et al.'s annotation JSON into a split of the frame folders under ``root``.

    Args:
        root: The frame root (``jpg/`` in Hara et al.'s READMEs).
        annotation: The JSON file (see the module notes for both schemas).
        frame_rate: Frames per second of ActivityNet folders without an ``fps`` value or
            file.

    Returns:
        The :class:`~feat3d.train.DatasetSplit`: ``training`` → train, ``validation`` → val,
        items carrying their annotated segment (:attr:`~feat3d.train.VideoItem.frames`).

    Raises:
        DatasetError: The file cannot be read or is not one of the two schemas, a label is
            not among the classes, or no training video is found under ``root``.
    """
    path = Path(annotation)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from e
    except ValueError as e:
        raise DatasetError(f"{path}: not JSON ({e})") from e
    if not isinstance(data, dict) or not isinstance(data.get("database"), dict):
        raise DatasetError(f"{path}: not Hara et al.'s annotation JSON (no 'database' object)")
    base = Path(root).absolute()
    if not base.is_dir():
        raise DatasetError(f"frame root {str(base)!r} is not a folder")
    activitynet = "labels" not in data and "taxonomy" in data
    classes = _taxonomy_leaves(data, path) if activitynet else _labels(data, path)
    index = {name: i for i, name in enumerate(classes)}
    split = DatasetSplit(classes=classes)
    missing: list[str] = []
    for video_id, entry in data["database"].items():
        subset = _SUBSETS.get(str(entry.get("subset", "")).lower())
        if subset is None:
            continue  # testing: no labels
        where = f"{path}: {video_id}"
        if activitynet:
            items = _activitynet_items(base, str(video_id), entry, index, where, frame_rate)
        else:
            items = _video_items(base, str(video_id), entry, index, where)
        if items is None:
            missing.append(str(video_id))
            continue
        getattr(split, subset).extend(items)
    if missing:
        warnings.warn(
            f"{len(missing)} annotated video(s) not found under {base}, skipped: "
            f"{', '.join(missing[:_SHOW])}{', ...' if len(missing) > _SHOW else ''}",
            stacklevel=2,
        )
    check_split(split)
    return split


def _labels(data: dict[str, Any], path: Path) -> list[str]:
    labels = data.get("labels")
    if not isinstance(labels, list) or not labels:
        raise DatasetError(f"{path}: 'labels' must be a non-empty list of class names")
    return [str(name) for name in labels]


def _taxonomy_leaves(data: dict[str, Any], path: Path) -> list[str]:
    nodes = data["taxonomy"]
    try:
        parents = {node["parentId"] for node in nodes}
        leaves = [str(node["nodeName"]) for node in nodes if node["nodeId"] not in parents]
    except (KeyError, TypeError) as e:
        raise DatasetError(
            f"{path}: malformed 'taxonomy' (needs nodeId, parentId, nodeName)"
        ) from e
    if not leaves:
        raise DatasetError(f"{path}: 'taxonomy' has no leaf classes")
    return leaves


def _label(name: Any, index: dict[str, int], where: str) -> int:
    if name not in index:
        raise DatasetError(f"{where}: unknown label {name!r}")
    return index[name]


def _video_items(
    root: Path, video_id: str, entry: dict[str, Any], index: dict[str, int], where: str
) -> list[VideoItem] | None:
    annotations = entry.get("annotations")
    if not isinstance(annotations, dict) or "label" not in annotations:
        raise DatasetError(f"{where}: 'annotations' needs a 'label'")
    label = _label(annotations["label"], index, where)
    folder = root / str(annotations["label"]) / video_id
    if not is_source(folder):
        return None
    frames = None
    segment = annotations.get("segment")
    if segment is not None:
        first, end = (int(value) for value in segment)
        if end <= first:
            return []  # an empty video (Hara et al. skip segment [1, 1])
        frames = (max(0, first - 1), end - 1)
    key = f"{annotations['label']}/{video_id}"
    return [VideoItem(folder, label, key, frames=frames)]


def _activitynet_items(
    root: Path,
    video_id: str,
    entry: dict[str, Any],
    index: dict[str, int],
    where: str,
    frame_rate: float | None,
) -> list[VideoItem] | None:
    folder = root / f"v_{video_id}"
    if not is_source(folder):
        return None
    fps = entry.get("fps") or _fps_file(folder) or frame_rate
    if not fps:
        raise DatasetError(
            f"{where}: no frame rate to turn segment seconds into frames (no 'fps' in the "
            "entry, no fps file in the folder): give --frame-rate"
        )
    annotations = entry.get("annotations") or []
    items = []
    for k, annotation in enumerate(annotations):
        start, end = (float(value) for value in annotation["segment"])
        frames = (math.floor(start * fps), math.floor(end * fps))
        if frames[1] <= frames[0]:
            continue
        key = f"v_{video_id}" if len(annotations) == 1 else f"v_{video_id}#{k}"
        items.append(VideoItem(folder, _label(annotation["label"], index, where), key, frames))
    return items


def _fps_file(folder: Path) -> float | None:
    try:
        return float((folder / "fps").read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        return None
