"""The Ray Data engine of ``extract`` (``--engine ray``): the same clips, network and outputs
as the local engine, spread over a Ray cluster.

The pipeline: the list of videos → decoding tasks of a few videos each (:func:`decode_videos`:
the local engine's :class:`~.stream.ClipStream` run in a child process, as the local decode
pool does, so a video that crashes or hangs the decoder fails alone, with its reason) → inference
in an actor pool (:class:`ClipNetwork`: the model loaded once per actor with
:meth:`ModelOptions.load`, one actor per GPU, batches of clips spanning videos, the same
``VideoModel.run`` as the local engine) → then one of two ends:

- Parquet output (``parts``): write tasks on the workers (:func:`write_parts`) write the
  clip rows straight to the output folder as shared clip parts of a few thousand clips
  (:mod:`feat3d.io.parquet`), and send back only, per video and part, which clips it holds
  and their sum; this process commits each video's videos row (:class:`PartVideo`) once all
  its clips are in written parts (:class:`Regroup`). No feature passes through here.
- Any other output, or features pooled in time (which needs a whole video): clip rows come
  back here and are regrouped per video (:class:`Regroup`) for the run's writer.

Either way the summary, the exit status and the errors table are the local engine's.

:func:`clip_features` is the middle of that pipeline for people who build their own: a Ray
Dataset of video paths in, a Ray Dataset of clip features out.

Ray is optional: ``pip install 'feat3d[ray]'``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import UsageError
from ..io.discover import VideoSource
from ..io.h5store import OutputError
from ..io.parquet import PartVideo
from ..io.parquet_writer import PartTarget, write_shared_part
from ..io.views import split_views
from ..io.writers import VideoFailure
from ..options import ClipOptions, ModelOptions, OptionsError, RunOptions
from ..precision import Precision
from ..urls import as_location, url_name
from .messages import ClipItem, VideoOutputs
from .stream import ClipStream
from .workers import DEFAULT_HANG_AFTER, HANG_GRACE, DecodePool

RAY_MISSING = "--engine ray needs Ray Data: pip install 'feat3d[ray]'"
#: Videos one decoding task takes at most (:func:`videos_per_task`).
MAX_VIDEOS_PER_TASK = 8
#: CPUs a write task reserves: it mostly waits on the storage.
WRITE_CPUS = 0.25


class RayUnavailable(UsageError):
    """Ray (with Ray Data) is not installed."""


def ray_module() -> Any:
    """The ``ray`` module with ``ray.data``, or :class:`RayUnavailable` naming the pip line."""
    try:
        import ray
        import ray.data
    except ImportError:
        raise RayUnavailable(RAY_MISSING) from None
    return ray


def connect(address: str | None, *, quiet: bool = False) -> Any:
    """Join the cluster at ``address`` (``auto``: the one ``ray start`` or KubeRay made here;
    ``HOST:PORT``; ``None``: the one already joined, else a new local one). ``quiet`` keeps
    Ray's start-up lines and warnings off the terminal."""
    ray = ray_module()
    if not ray.is_initialized():
        local = {"include_dashboard": False} if address is None else {}
        level = {"logging_level": logging.ERROR} if quiet else {}
        ray.init(address=address, log_to_driver=False, **local, **level)
    return ray


# -------------------------------------------------------------------------------- decoding


def _item_row(video: dict[str, Any], item: ClipItem, clip: int) -> dict[str, Any]:
    frames = item.frames
    if isinstance(frames, torch.Tensor):
        frames = frames.numpy()
    return {
        "video": int(video["video"]), "key": str(video["key"]), "source": str(video["path"]),
        "kind": item.kind, "clip": clip,
        "frames": b"" if frames is None else np.ascontiguousarray(frames).tobytes(),
        "shape": json.dumps(list(frames.shape) if frames is not None else []),
        "start_frame": int(item.segment[0]), "end_frame": int(item.segment[1]),
        "start_time": float(item.time[0]), "end_time": float(item.time[1]),
        "info": json.dumps(item.info or {}), "message": item.message,
    }  # fmt: skip


def _source(video: dict[str, Any]) -> VideoSource:
    location = as_location(str(video["path"]))  # a local path or a URL read through fsspec
    first, end = int(video.get("first", -1)), int(video.get("end", -1))
    frames = (first, end) if first >= 0 else None  # one segment of a longer video
    return VideoSource(location, str(video.get("key") or url_name(str(location)) or "video"),
                       frames)  # fmt: skip


def group_videos(batch: dict[str, np.ndarray]) -> dict[str, list[str]]:
    """Rows of videos → one row holding them all (``videos``, JSON): the input of one
    decoding task (:func:`decode_videos`)."""
    columns = {name: np.asarray(values).tolist() for name, values in batch.items()}
    rows = [dict(zip(columns, values, strict=True)) for values in zip(*columns.values(),
                                                                      strict=True)]  # fmt: skip
    return {"videos": [json.dumps(rows)]}


def decode_videos(group: dict[str, Any], clips: ClipOptions) -> Iterator[dict[str, Any]]:
    """The decoding stage: the videos of ``group`` (:func:`group_videos`) one after
    another, as one row per clip (frames as bytes). A video's last clip row carries its
    attributes (``info``, JSON; ``{}`` on the others) in place of an ``end`` row, so that
    every block of a batch's worth of bytes holds exactly a batch of clips and the actors'
    batches stay full across videos; a video that fails ends with an ``error`` row.

    Each video is a row with ``path`` (and ``key``; ``video``: a number; ``first``, ``end``:
    the source frames of one segment, ``-1`` for the whole video). The decoding runs in one
    child process for the group (:class:`~.workers.DecodePool` with one worker): a decoder
    that crashes or hangs is killed, that video fails with the reason and a new child goes
    on with the next, instead of taking the Ray worker (and its retries, then the whole
    dataset) with it. Several videos per task spare a task and a child process per video,
    which on short videos cost as much CPU as a good part of their decoding.
    """
    videos = json.loads(group["videos"])
    sources = [_source(video) for video in videos]
    for number, (video, source) in enumerate(zip(videos, sources, strict=True)):
        video.setdefault("video", number)
        video["key"] = source.key
    stream = ClipStream(sources, clips)
    hang_after = DEFAULT_HANG_AFTER if clips.timeout is None else clips.timeout + HANG_GRACE
    pool = DecodePool(stream, 1, slot_bytes=clips.clip_bytes(), hang_after=hang_after)
    counts = [0] * len(videos)
    held: dict[str, Any] | None = None  # the latest clip row, until the next item shows
    for item in pool:  # whether it was its video's last (a video's items end in end/error)
        if item.kind == "end" and held is not None:
            held["info"] = json.dumps(item.info or {})  # the video's end rides on its last clip
            yield held
            held = None
            continue
        if held is not None:
            yield held
        row = _item_row(videos[item.video], item, counts[item.video])
        counts[item.video] += item.kind == "clip"
        held = row if item.kind == "clip" else None
        if held is None:
            yield row
    if held is not None:
        yield held


def videos_per_task(videos: int, cluster: dict[str, float], decode_cpus: float) -> int:
    """How many videos one decoding task takes: enough that each decoding slot of the
    cluster gets about four tasks (dynamic scheduling keeps working), at most 8."""
    slots = max(1, int(float(cluster.get("CPU", 1)) // max(decode_cpus, 0.01)))
    return max(1, min(MAX_VIDEOS_PER_TASK, videos // (4 * slots)))


# ------------------------------------------------------------------------------- inference


class ClipNetwork:
    """The inference stage: a callable class Ray Data runs in each actor of the pool, the
    model loaded once per actor; clip rows get ``features`` (float32 bytes), other rows pass.

    With ``crops`` above 1 a clip row holds ``(crops, T, H, W, 3)`` frames: its views share
    the batch and come back as ``(crops, ...)`` features, or their mean
    (``crop_reduce="mean"``), as in the local engine. A CPU actor runs the network on every
    core of its node (``threads``: that many instead), as the local engine does beside its
    decoding processes.
    """

    def __init__(
        self, model: ModelOptions, layer: str, pool: bool, threads: int = 0, crops: int = 1,
        crop_reduce: str = "none",
    ):  # fmt: skip
        self.model = model.load()
        if self.model.device.type == "cpu":
            torch.set_num_threads(threads or _node_cores())
        self.layer = layer
        self.pool = pool
        self.crops, self.crop_reduce = crops, crop_reduce

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        rows = [i for i, kind in enumerate(batch["kind"]) if kind == "clip"]
        features = np.full(len(batch["kind"]), b"", dtype=object)
        shapes = np.full(len(batch["kind"]), "[]", dtype=object)
        if rows:
            frames = torch.stack([_frames(batch, i) for i in rows])
            if self.crops > 1:  # clips × views in one batch, split back after the network
                frames = frames.flatten(0, 1)
            out = self.model.run(frames, (self.layer,), pool=self.pool)[self.layer]
            if self.crops > 1:
                out = split_views(out, self.crops, self.crop_reduce)
            for row, i in enumerate(rows):
                features[i] = np.ascontiguousarray(out[row], dtype=np.float32).tobytes()
                shapes[i] = json.dumps(list(out[row].shape))
        kept = {name: column for name, column in batch.items() if name not in ("frames", "shape")}
        return {**kept, "features": features, "feature_shape": shapes}


def _node_cores() -> int:
    """The cores this process may run on (Ray sets ``OMP_NUM_THREADS=1`` in a one-CPU actor,
    which would leave torch one thread)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - macOS, Windows
        return os.cpu_count() or 1


def _frames(batch: dict[str, np.ndarray], row: int) -> torch.Tensor:
    shape = json.loads(batch["shape"][row])
    return torch.from_numpy(np.frombuffer(batch["frames"][row], np.uint8).reshape(shape))


@dataclass(frozen=True)
class RayResources:
    """What the pipeline asks of the cluster.

    Attributes:
        decode_cpus: CPUs per decoding task (its codec threads).
        actors: Inference actors.
        gpus_per_actor: GPUs per actor (0: CPU actors).
        batch_size: Clips per forward pass.
    """

    decode_cpus: float
    actors: int
    gpus_per_actor: float
    batch_size: int


def plan_resources(run: RunOptions, model: ModelOptions, cluster: dict[str, float]) -> RayResources:
    """Resources from the run's options, the rest automatic: one actor per GPU of the cluster
    when the model runs on CUDA (``--device auto`` with GPUs, or ``cuda``), else one CPU
    actor; one CPU per decoding task."""
    gpus = float(cluster.get("GPU", 0))
    on_gpu = model.device.startswith("cuda") or (model.device == "auto" and gpus > 0)
    if model.device.startswith("cuda") and gpus == 0:
        raise OptionsError(f"--device {model.device}: the Ray cluster has no GPU")
    per_actor = run.gpus_per_actor if run.gpus_per_actor is not None else (1.0 if on_gpu else 0)
    actors = run.actors or (max(1, int(gpus // per_actor)) if per_actor else 1)
    return RayResources(run.decode_cpus, actors, float(per_actor), run.batch_size)


def clip_features(
    videos: Any, model: ModelOptions, *, clips: ClipOptions, layer: str, pool: bool = True,
    resources: RayResources | None = None, crop_reduce: str = "none", per_task: int = 1,
) -> Any:  # fmt: skip
    """A Ray Dataset of videos → a Ray Dataset of clip features (lazy: nothing runs until it
    is consumed or written).

    Args:
        videos: A Ray Dataset with a ``path`` column (local paths every node can read, or
            URLs), and optionally ``key`` (default: the file name) and ``video`` (a number).
        model: The network; each actor loads it (with ``device="auto"``, on its GPU).
        clips: Filled clip options (:func:`feat3d.options.fill_clip_defaults`).
        layer: The layer kept (``pool5``, ``logits``, ...).
        pool: ``False`` keeps ``conv5`` unpooled.
        resources: Decoding CPUs, actors, GPUs per actor, batch size (default: one CPU
            actor, batches of 8).
        crop_reduce: With ``clips.crops`` above 1: ``none`` gives ``(crops, ...)`` features
            per clip, ``mean`` their mean over the views.
        per_task: Videos per decoding task (:func:`videos_per_task` chooses it for a list).

    Returns:
        Rows with ``key``, ``source``, ``kind`` (``clip``, or ``error`` once for a video
        that failed, whose ``message`` says why), ``clip``, ``start_frame``, ``end_frame``,
        ``start_time``, ``end_time``, ``info`` (a video's attributes as JSON on its last
        clip row, ``{}`` on the others) and ``features`` (float32 bytes of shape
        ``feature_shape``, JSON). Rows come in no fixed order; a failed video's clip rows
        may come before its error row. A decoding task hands its clips on a batch at a time
        (the dataset's ``target_max_block_size`` is set to a batch of clips), so inference
        starts before a video is decoded and no stage holds a whole long video.
    """
    ray = ray_module()
    resources = resources or RayResources(1.0, 1, 0.0, 8)
    threads = max(1, int(resources.decode_cpus))
    decode = clips if clips.threads else replace(clips, threads=threads)
    # (a flat_map, unlike a map_batches, is never fused into the inference actors)
    groups = videos.map_batches(group_videos, batch_size=per_task, batch_format="numpy",
                                num_cpus=resources.decode_cpus)  # fmt: skip
    decoded = groups.flat_map(decode_videos, fn_kwargs={"clips": decode},
                              num_cpus=resources.decode_cpus)  # fmt: skip
    # A block is cut once it passes this size: half a clip under a batch, so a batch of clips
    decoded.context.target_max_block_size = max(1, (2 * resources.batch_size - 1)
                                                * clips.clip_bytes() // 2)  # fmt: skip
    on_gpu = bool(resources.gpus_per_actor)
    return decoded.map_batches(
        ClipNetwork, fn_constructor_kwargs={"model": model, "layer": layer, "pool": pool,
                                            "crops": clips.crops, "crop_reduce": crop_reduce},
        batch_size=resources.batch_size, compute=ray.data.ActorPoolStrategy(size=resources.actors),
        num_gpus=resources.gpus_per_actor if on_gpu else None, num_cpus=None if on_gpu else 1,
        batch_format="numpy",
    )  # fmt: skip


# -------------------------------------------------------------------------------- regroup


@dataclass
class _Video:
    #: clip index → (features, segment, seconds); ``None`` for a clip already in a part
    clips: dict[int, tuple[np.ndarray, tuple[int, int], tuple[float, float]] | None] = field(
        default_factory=dict
    )
    info: dict[str, Any] | None = None
    total: np.ndarray | None = None  # the sum of the features of its clips in parts
    parts: set[str] = field(default_factory=set)


class Regroup:
    """Rows (in any order) back into whole videos, as the local engine hands them on: from
    ``clip`` rows a :class:`VideoOutputs`, from the write stage's ``part`` rows a
    :class:`PartVideo`; a video is complete once its attributes (on its last clip row, or an
    ``end`` row) and all its clips have come."""

    def __init__(self, sources: Sequence[VideoSource], layer: str):
        self.sources = {source.key: source for source in sources}
        self.layer = layer
        self.pending: dict[str, _Video] = {}
        self.done: set[str] = set()

    def add(self, row: dict[str, Any]) -> Iterator[VideoOutputs | PartVideo | VideoFailure]:
        if row["kind"] == "fatal":
            raise OutputError(str(row["message"]))  # a worker could not write the output
        key = str(row["key"])
        if key in self.done:
            return  # the late clips of a failed video (in parts: dead rows the writer sweeps)
        state = self.pending.setdefault(key, _Video())
        if row["kind"] == "error":
            self.done.add(key)
            del self.pending[key]
            yield VideoFailure(key, str(row["source"]), str(row["message"]))
            return
        if row["kind"] == "clip":
            shape = json.loads(row["feature_shape"])
            feature = np.frombuffer(row["features"], np.float32).reshape(shape)
            segment = (int(row["start_frame"]), int(row["end_frame"]))
            state.clips[int(row["clip"])] = (feature, segment, (row["start_time"], row["end_time"]))
        elif row["kind"] == "part":
            total = np.frombuffer(row["sum"], np.float64).reshape(json.loads(row["sum_shape"]))
            state.total = total if state.total is None else state.total + total
            state.clips.update(dict.fromkeys(json.loads(row["clips"])))
            state.parts.add(str(row["part"]))
        if row["info"] != "{}":  # an end row, or the last clip of the video
            state.info = json.loads(row["info"])
        if state.info is not None and len(state.clips) == state.info["n_clips"]:
            self.done.add(key)
            del self.pending[key]
            yield self._finished(key, state)

    def _finished(self, key: str, state: _Video) -> VideoOutputs | PartVideo:
        source = self.sources.get(key) or VideoSource(Path(key), key)
        if state.parts:
            mean = np.zeros(0) if state.total is None else state.total / len(state.clips)
            return PartVideo(key, source.display, state.info or {}, len(state.clips),
                             mean.astype(np.float32), tuple(sorted(state.parts)))  # fmt: skip
        ordered = [clip for _, clip in sorted(state.clips.items()) if clip is not None]
        return VideoOutputs(
            source=source,
            outputs={self.layer: np.stack([clip[0] for clip in ordered])},
            segments=np.asarray([clip[1] for clip in ordered], dtype=np.int64).reshape(-1, 2),
            timestamps=np.asarray([clip[2] for clip in ordered], dtype=np.float64).reshape(-1, 2),
            info=state.info or {},
        )


# ------------------------------------------------------------- Parquet parts on the workers


def write_parts(batch: dict[str, np.ndarray], target: PartTarget) -> dict[str, np.ndarray]:
    """The write stage: the clip rows of ``batch`` (any videos, any clips of them) as one
    shared clip part of ``target``; returns one ``part`` row per video in it (its clips as
    JSON, the float64 sum of their features as bytes) and the ``end``/``error`` rows as
    they came (a video's attributes, on its last clip row, go on to its part row). A part
    that cannot be written becomes one ``fatal`` row saying why (the command stops the run
    with it, as the local engine does on an unwritable output)."""
    kinds = list(batch["kind"])
    clips = [i for i, kind in enumerate(kinds) if kind == "clip"]
    out: dict[str, list[Any]] = {name: [] for name in _PART_COLUMNS}

    def add(key: str, source: str, kind: str, **values: Any) -> None:
        row = {"key": key, "source": source, "kind": kind, "part": "", "clips": "[]",
               "sum": b"", "sum_shape": "[]", "info": "{}", "message": "", **values}  # fmt: skip
        for name in _PART_COLUMNS:
            out[name].append(row[name])

    if clips:
        shape = json.loads(batch["feature_shape"][clips[0]])
        features = np.stack([np.frombuffer(batch["features"][i], np.float32).reshape(shape)
                             for i in clips])  # fmt: skip
        try:
            name = _write_clip_rows(batch, clips, features, target)
        except OutputError as error:
            add("", "", "fatal", message=str(error))
            return _object_columns(out)
        positions: dict[str, list[int]] = {}  # each video's clips, as positions in `clips`
        for position, i in enumerate(clips):
            positions.setdefault(str(batch["key"][i]), []).append(position)
        for key, mine in positions.items():
            total = features[mine].astype(np.float64).sum(axis=0)
            ends = [batch["info"][clips[p]] for p in mine if batch["info"][clips[p]] != "{}"]
            add(key, str(batch["source"][clips[mine[0]]]), "part", part=name,
                sum=total.tobytes(), sum_shape=json.dumps(list(total.shape)),
                clips=json.dumps([int(batch["clip"][clips[p]]) for p in mine]),
                info=ends[0] if ends else "{}")  # fmt: skip
    for i, kind in enumerate(kinds):
        if kind != "clip":
            add(str(batch["key"][i]), str(batch["source"][i]), kind, info=batch["info"][i],
                message=batch["message"][i])  # fmt: skip
    return _object_columns(out)


def _write_clip_rows(
    batch: dict[str, np.ndarray], rows: list[int], features: np.ndarray, target: PartTarget
) -> str:
    """The clip rows ``rows`` of ``batch`` (their ``features`` decoded) as one new shared
    clip part; its name."""
    return write_shared_part(
        target, [str(batch["key"][i]) for i in rows], np.asarray([batch["clip"][i] for i in rows]),
        np.asarray([(batch["start_frame"][i], batch["end_frame"][i]) for i in rows]),
        np.asarray([(batch["start_time"][i], batch["end_time"][i]) for i in rows]), features,
    )  # fmt: skip


def _object_columns(columns: dict[str, list[Any]]) -> dict[str, np.ndarray]:
    return {name: np.asarray(values, dtype=object) for name, values in columns.items()}


_PART_COLUMNS = ("key", "source", "kind", "part", "clips", "sum", "sum_shape", "info", "message")


# ---------------------------------------------------------------------------- the engine


def ray_videos(
    model: ModelOptions, sources: Sequence[VideoSource], *, clips: ClipOptions, layer: str,
    pool: bool = True, run: RunOptions | None = None,
    on_clips: Callable[[int], None] | None = None, crop_reduce: str = "none",
    progress: bool = True, parts: PartTarget | None = None,
) -> Iterator[VideoOutputs | PartVideo | VideoFailure]:  # fmt: skip
    """The Ray engine's counterpart of :func:`~.pipeline.run_network`: each video's outputs
    (or its failure) as it completes, computed on the cluster ``run.address`` names.

    With ``parts`` the clip rows go to shared Parquet clip parts written on the workers, and
    each video comes back as a :class:`PartVideo` (no features); otherwise as
    :class:`VideoOutputs`. ``progress=False`` silences Ray Data's progress bars and its log
    lines on the terminal."""
    run = run or RunOptions()
    if not sources:
        return
    ray = connect(run.address, quiet=not progress)
    cluster = ray.cluster_resources()
    resources = plan_resources(run, model, cluster)
    items = [{"video": i, "key": s.key, "path": str(s.path), "first": first, "end": end}
             for i, s in enumerate(sources) for first, end in [s.frames or (-1, -1)]]  # fmt: skip
    videos = ray.data.from_items(items, override_num_blocks=len(items))
    per_task = videos_per_task(len(items), cluster, resources.decode_cpus)
    features = clip_features(videos, model, clips=clips, layer=layer, pool=pool,
                             resources=resources, crop_reduce=crop_reduce,
                             per_task=per_task)  # fmt: skip
    regroup = Regroup(sources, layer)
    if parts is not None:
        features = features.map_batches(
            write_parts, fn_kwargs={"target": parts}, batch_size=parts.part_rows,
            num_cpus=WRITE_CPUS, batch_format="numpy",
        )  # fmt: skip
    features.context.enable_progress_bars = progress
    with _ray_data_logs(progress):
        for batch in features.iter_batches(batch_size=None, batch_format="numpy"):
            columns = list(batch)
            for values in zip(*(batch[name] for name in columns), strict=True):
                row = dict(zip(columns, values, strict=True))
                if on_clips is not None and row["kind"] in ("clip", "part"):
                    on_clips(1 if row["kind"] == "clip" else len(json.loads(row["clips"])))
                yield from regroup.add(row)


@contextlib.contextmanager
def _ray_data_logs(shown: bool) -> Iterator[None]:
    """Ray Data's log lines (the dataset started, its stages, finished) on the terminal
    unless ``shown`` is false."""
    logger = logging.getLogger("ray.data")
    level = logger.level
    if not shown:
        logger.setLevel(logging.ERROR)  # also "progress bars disabled"
    try:
        yield
    finally:
        logger.setLevel(level)


def actor_precision(model: ModelOptions, run: RunOptions) -> str:
    """The precision the actors run in, as outputs record it: ``auto`` resolved for the
    device they get (fp16 on a GPU, fp32 on the CPU; this asks the cluster for its GPUs only
    when both the device and the precision are ``auto``)."""
    precision = Precision.parse(model.precision)
    if precision is not Precision.AUTO:
        return precision.value
    device = model.device
    if device == "auto":
        ray = connect(run.address)
        device = (
            "cuda" if plan_resources(run, model, ray.cluster_resources()).gpus_per_actor else "cpu"
        )
    return precision.resolve(torch.device(device)).value
