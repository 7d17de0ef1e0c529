"""``feat3d flow``: optical flow of many videos into one HDF5 file, and reading it back.

Layout (plain h5py can read it):

- file attributes: ``feat3d_version``, ``method``, ``short_side``, ``bound``, ``encoding``
  (``"uint8: q = rint((clip(f,-b,b)+b)*255/(2b)), f = q*2b/255-b"``), ``compression``,
  ``created``;
- one group per video, keyed as ``feat3d extract`` keys it (its path relative to the input
  root), holding ``flow``: uint8 ``(N - 1, 2, H, W)`` for ``N`` decoded frames (field ``i``
  goes from frame ``i`` to ``i + 1``; channel 0 ``dx``, 1 ``dy``), chunked one field per chunk,
  and ``times``: float64 ``(N,)`` frame times in seconds; attributes ``source``, ``fps``,
  ``n_frames``, ``width`` and ``height`` (of the video as displayed, before resizing),
  ``complete`` (written last);
- ``/_errors/<quoted key>`` groups with ``video``, ``source``, ``message`` for videos that
  failed.

A video is a file or a folder of frame images (:mod:`feat3d.io.frames`, ``--frame-rate``),
found as ``feat3d extract`` finds them. Fields are appended as they are computed, so a long
video's flow is never held in memory.
Crash safety and resume work like ``extract``'s HDF5 output: while a run works, each video
goes to its own file in ``OUT.h5.pending/`` (renamed into place when complete); at the end
they are merged into a copy of ``OUT.h5`` that is renamed over it. After a kill, ``OUT.h5``
is whole (the old version) and the next run merges the finished videos first, then skips them;
a run with another method, short side or bound is refused unless ``overwrite``.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import queue
import shutil
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import __version__
from ..io.decode import VideoDecodeError, VideoInfo
from ..io.discover import VideoSource, discover_videos
from ..io.h5store import (
    MIN_FREE_BYTES,
    check_free_space,
    check_same_options,
    check_writable,
    commit_file,
    error_name,
    remove_temporaries,
    scan_groups,
    write_error_record,
)
from ..io.writers import OutputError, VideoFailure
from ..run.events import RunEvents, VideosReport
from .compute import (
    FlowError,
    dequantize,
    flow_threads,
    iter_frames_and_flow,
    make_flow_method,
    quantize,
)

__all__ = ["FlowEvents", "FlowFile", "FlowReport", "extract_flow", "read_flow"]

ENCODING = "uint8: q = rint((clip(f,-b,b)+b)*255/(2b)), f = q*2b/255-b"
#: Options that change the stored numbers: resuming with other values is refused.
FLOW_CHECKED = ("method", "short_side", "bound")
#: HDF5 filter of the ``flow`` datasets: gzip (level 4) stores a field in less than half of
#: lzf's bytes for a cost small beside computing TV-L1, and any HDF5 reader has it (lzf is
#: h5py's own). Figures in the docs' flow page.
COMPRESSION = "gzip"
#: Fields sent to the writer in one message: at most this many, or what half a second gave.
_BATCH = 8
_BATCH_SECONDS = 0.5


class FlowEvents(RunEvents):
    """Progress hooks of :func:`extract_flow`: ``RunEvents``'s, with ``on_clips`` counting
    flow fields and ``on_video`` given a video's number of fields."""


@dataclass
class FlowReport(VideosReport):
    """What a flow run did: :class:`~feat3d.run.events.VideosReport`'s keys (``output`` is
    the HDF5 file), and

    Attributes:
        fields: Flow fields computed by this run.
    """

    fields: int = 0


# --------------------------------------------------------------------------------------------
# Writing


class _FlowH5:
    """The output, crash-safe: each video is written to its own file in ``OUT.h5.pending/``
    (field by field, compressed; renamed into place when complete), and the finished files
    are merged into ``OUT.h5`` when the run ends — through a copy renamed over it, so a kill
    at any moment leaves ``OUT.h5`` whole and the finished videos waiting for the next run.
    """

    def __init__(self, path: Path, attrs: dict[str, Any], *, overwrite: bool, compression: str):
        self.path = path
        self.attrs = attrs
        self.compression = compression or None
        self.pending = path.with_name(path.name + ".pending")
        check_writable(path)
        check_free_space(path, _size(path) + MIN_FREE_BYTES)
        remove_temporaries(path)
        if overwrite:
            shutil.rmtree(self.pending, ignore_errors=True)
        self.pending.mkdir(exist_ok=True)
        self._lock = _lock(self.pending)
        for partial in self.pending.glob("*.partial"):
            partial.unlink()  # a video a killed run was writing: done again
        options = self.pending / "options.json"
        previous = json.loads(options.read_text()) if options.exists() else None
        existing = self._file_options() if path.exists() and not overwrite else None
        for made in (existing, previous):
            if made is not None:
                check_same_options(path, made, attrs, FLOW_CHECKED)
        if previous is None:
            _write_atomic(options, json.dumps({k: _plain(v) for k, v in attrs.items()}))
        self.overwrite = overwrite
        self._completed = set() if overwrite else self._scan_file()
        self._staged: dict[str, Path] = {}
        for staged in sorted(self.pending.glob("*.h5")):
            with h5py.File(staged, "r") as handle:
                self._staged[str(_plain(handle.attrs["key"]))] = staged
        self._completed |= set(self._staged)
        self.open: dict[str, h5py.File] = {}  # videos being written (workers interleave them)

    def _file_options(self) -> dict[str, Any]:
        try:
            with h5py.File(self.path, "r") as handle:
                return {k: _plain(v) for k, v in handle.attrs.items()}
        except OSError as error:
            raise OutputError(f"{self.path}: cannot open as HDF5 ({error})") from error

    def _scan_file(self) -> set[str]:
        if not self.path.exists():
            return set()
        with h5py.File(self.path, "r") as handle:
            return scan_groups(handle)[0]

    def completed(self) -> set[str]:
        return set(self._completed)

    def _staging(self, key: str) -> Path:
        return self.pending / f"{hashlib.sha1(key.encode()).hexdigest()}.h5"

    def begin(self, key: str, height: int, width: int) -> h5py.Dataset:
        self.discard(key)
        target = self._staging(key)
        handle = self.open[key] = h5py.File(target.with_name(target.name + ".partial"), "w")
        handle.attrs["key"] = key
        return handle.create_dataset(
            "flow", shape=(0, 2, height, width), maxshape=(None, 2, height, width),
            dtype=np.uint8, chunks=(1, 2, height, width), compression=self.compression,
        )  # fmt: skip

    @staticmethod
    def append(dataset: h5py.Dataset, fields: np.ndarray) -> None:
        start = dataset.shape[0]
        dataset.resize(start + len(fields), axis=0)
        dataset[start:] = fields

    def finish(self, key: str, times: np.ndarray, attrs: dict[str, Any]) -> None:
        handle = self.open.pop(key)
        handle.create_dataset("times", data=np.asarray(times, dtype=np.float64))
        for name, value in attrs.items():
            handle.attrs[name] = value
        handle.attrs["complete"] = True
        partial = Path(handle.filename)
        handle.close()
        target = self._staging(key)
        commit_file(partial, target)
        self._staged[key] = target
        self._completed.add(key)

    def discard(self, key: str) -> None:
        handle = self.open.pop(key, None)
        if handle is not None:
            partial = Path(handle.filename)
            handle.close()
            partial.unlink(missing_ok=True)

    def write_error(self, key: str, source: str, message: str) -> None:
        record = {"video": key, "source": source, "message": message}
        _write_atomic(self._staging(key).with_suffix(".error.json"), json.dumps(record))

    def close(self) -> None:
        """Merge the finished videos and errors into ``OUT.h5`` and clear ``OUT.h5.pending``."""
        for key in list(self.open):
            self.discard(key)  # videos left unfinished by an exception
        errors = [json.loads(p.read_text()) for p in sorted(self.pending.glob("*.error.json"))]
        if self._staged or errors or not self.path.exists() or self.overwrite:
            temporary = self.path.with_name(f"{self.path.name}.tmp-{os.getpid()}")
            if self.path.exists() and not self.overwrite:
                shutil.copyfile(self.path, temporary)
            with h5py.File(temporary, "a") as target:
                for name, value in self.attrs.items():
                    target.attrs[name] = value
                for key, staged in sorted(self._staged.items()):
                    with h5py.File(staged, "r") as source:
                        if key in target:
                            del target[key]
                        group = target.create_group(key)  # intermediate groups included
                        for name in ("flow", "times"):
                            source.copy(source[name], group, name=name)
                        for name, value in source.attrs.items():
                            if name != "key":
                                group.attrs[name] = value
                    if error_name(key) in target:
                        del target[error_name(key)]
                for record in errors:
                    if record["video"] not in self._staged and record["video"] not in target:
                        write_error_record(target, record["video"], record["source"],
                                           record["message"])  # fmt: skip
            commit_file(temporary, self.path)
        self._lock.close()
        shutil.rmtree(self.pending, ignore_errors=True)


def _lock(folder: Path) -> Any:
    """An exclusive lock on ``folder`` for this run (two runs on one output are refused)."""
    import fcntl

    handle = (folder / "lock").open("w")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        handle.close()
        raise OutputError(f"{folder.parent}: in use by another feat3d process") from None
    return handle


def _write_atomic(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".partial")
    temporary.write_text(text, encoding="utf-8")
    commit_file(temporary, path)


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, bytes):
        return value.decode()
    return value


# Messages from a video's flow computation to the writer (in this process or from a worker):
# ("begin", key, (height, width)), ("fields", key, uint8 array), ("done", key, (times, attrs)),
# ("error", key, message).
_Message = tuple[str, str, Any]


def _video_messages(
    source: VideoSource, *, method: str, short_side: int, bound: float, threads: int,
    frame_rate: float | None = None,
) -> Iterator[_Message]:  # fmt: skip
    """Compute one video's flow, as writer messages (quantized fields in batches)."""
    info: list[VideoInfo] = []
    batch: list[np.ndarray] = []
    times: list[float] = []
    sent = time.monotonic()
    try:
        for frame, flow in iter_frames_and_flow(
            source.path, method=method, short_side=short_side, bound=bound, threads=threads,
            info_out=info, frame_rate=frame_rate,
        ):  # fmt: skip
            if not times:
                yield ("begin", source.key, frame.image.shape[:2])
            times.append(frame.time)
            if flow is not None:
                batch.append(quantize(flow, bound=bound))
                if len(batch) == _BATCH or time.monotonic() - sent > _BATCH_SECONDS:
                    yield ("fields", source.key, np.stack(batch))
                    batch = []
                    sent = time.monotonic()
        if batch:
            yield ("fields", source.key, np.stack(batch))
    except (VideoDecodeError, OSError) as error:
        yield ("error", source.key, str(error) or type(error).__name__)
        return
    video = info[0]
    attrs = {
        "source": source.display, "fps": float(video.fps), "n_frames": len(times),
        "width": int(video.width), "height": int(video.height),
    }  # fmt: skip
    yield ("done", source.key, (np.asarray(times), attrs))


def _worker(
    tasks: Any, results: Any, method: str, short_side: int, bound: float, threads: int,
    frame_rate: float | None = None,
) -> None:  # fmt: skip
    """Worker process: compute flow for videos from ``tasks`` until it gets ``None``."""
    flow_threads(threads)
    while (source := tasks.get()) is not None:
        try:
            for message in _video_messages(
                source, method=method, short_side=short_side, bound=bound, threads=1,
                frame_rate=frame_rate,
            ):  # fmt: skip
                results.put(message)
        except Exception as error:  # the writer must hear about it, or it waits forever
            results.put(("error", source.key, f"{type(error).__name__}: {error}"))
    results.put(("exit", "", None))


def _messages_in_workers(
    sources: list[VideoSource], *, processes: int, method: str, short_side: int, bound: float,
    frame_rate: float | None = None,
) -> Iterator[_Message]:  # fmt: skip
    """Flow messages of ``sources`` computed in ``processes`` spawned workers."""
    context = multiprocessing.get_context("spawn")
    tasks = context.Queue()
    # Bounded, so a slow writer holds workers back instead of filling memory.
    results = context.Queue(maxsize=4 * processes)
    threads = max(1, (os.cpu_count() or 1) // processes)
    workers = [
        context.Process(
            target=_worker,
            args=(tasks, results, method, short_side, bound, threads, frame_rate),
            daemon=True,
        )
        for _ in range(processes)
    ]
    for source in sources:
        tasks.put(source)
    for _ in workers:
        tasks.put(None)
    for worker in workers:
        worker.start()
    running = len(workers)
    try:
        while running:
            try:
                message = results.get(timeout=1.0)
            except queue.Empty:
                if not any(worker.is_alive() for worker in workers):
                    raise RuntimeError("flow worker processes died unexpectedly") from None
                continue
            if message[0] == "exit":
                running -= 1
            else:
                yield message
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.terminate()
            worker.join()


def extract_flow(
    inputs: Iterable[str | os.PathLike[str]] | Iterable[VideoSource],
    output: str | os.PathLike[str],
    *,
    method: str = "tvl1",
    short_side: int = 256,
    bound: float = 20.0,
    overwrite: bool = False,
    events: Any = None,
    workers: int | str = 0,
    compression: str = COMPRESSION,
    frame_rate: float | None = None,
) -> FlowReport:
    """Compute the optical flow of every video and store it quantized in an HDF5 file.

    Feichtenhofer, Pinz & Wildes (NIPS 2016) use TV-L1 flow at short side 256, clipped to
    ±20 px and stored as uint8 images; these are the defaults.

    Args:
        inputs: Video files, folders, ``@list.txt`` files (or ``VideoSource`` objects).
        output: The HDF5 file (see the module docstring for its layout).
        method: ``tvl1``, ``dis`` or ``farneback``.
        short_side: Frames are resized so their short side has this many pixels.
        bound: Displacements are clipped to ``±bound`` px and quantized over that range.
        overwrite: Replace the output instead of resuming it.
        events: Progress hooks (:class:`FlowEvents` or ``feat3d.run.events.RunEvents``).
        workers: Processes computing flow, one video each (0: in this process, with all of
            OpenCV's threads; ``"auto"``: one per core); each gets ``cores // processes``
            OpenCV threads.
        compression: ``gzip`` (level 4), ``lzf`` or ``""`` (none) for the ``flow`` datasets.
        frame_rate: ``--frame-rate``: every folder of frame images is a video at this rate
            (without it, only folders with Hara et al.'s ``n_frames``/``fps`` file are, at the
            ``fps`` file's rate, else 30). Frame times and ``fps`` are recorded at this rate.

    Returns:
        A :class:`FlowReport`; videos already complete in ``output`` are skipped.

    Raises:
        FlowError: OpenCV is not installed.
        OutputError: The output cannot be written or was made with other options.

    Example:
        >>> report = extract_flow(["videos/"], "flow.h5", method="dis")  # doctest: +SKIP
        >>> report.failures
        []
    """
    workers = (os.cpu_count() or 1) if workers == "auto" else int(workers)
    if short_side < 1:
        raise ValueError(f"short side must be at least 1, got {short_side}")
    if bound <= 0:
        raise ValueError(f"bound must be positive, got {bound}")
    if compression not in ("lzf", "gzip", ""):
        raise ValueError(f"compression must be lzf, gzip or '', not {compression!r}")
    make_flow_method(method)  # fail early: unknown method or no OpenCV
    events = events or FlowEvents()
    inputs = list(inputs)
    if inputs and all(isinstance(item, VideoSource) for item in inputs):
        sources: list[VideoSource] = inputs  # type: ignore[assignment]
    else:
        sources = discover_videos(inputs, frame_rate=frame_rate)  # type: ignore[arg-type]
    attrs = {
        "feat3d_version": __version__, "method": method, "short_side": int(short_side),
        "bound": float(bound), "encoding": ENCODING, "compression": compression,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }  # fmt: skip
    store = _FlowH5(Path(output), attrs, overwrite=overwrite, compression=compression)
    report = FlowReport(output=Path(output))
    try:
        done = store.completed()
        report.skipped = [s.key for s in sources if s.key in done]
        sources = [s for s in sources if s.key not in done]
        events.on_start(total=len(sources), skipped=len(report.skipped))
        by_key = {s.key: s for s in sources}
        processes = min(workers, len(sources))
        if processes > 0:
            messages = _messages_in_workers(
                sources, processes=processes, method=method, short_side=short_side, bound=bound,
                frame_rate=frame_rate,
            )  # fmt: skip
        else:
            messages = (
                message
                for source in sources
                for message in _video_messages(
                    source,
                    method=method,
                    short_side=short_side,
                    bound=bound,
                    threads=0,
                    frame_rate=frame_rate,
                )
            )
        _write_messages(messages, store, by_key, report, events)
    finally:
        store.close()
    return report


def _write_messages(
    messages: Iterator[_Message],
    store: _FlowH5,
    by_key: dict[str, VideoSource],
    report: FlowReport,
    events: Any,
) -> None:
    datasets: dict[str, h5py.Dataset] = {}
    for kind, key, payload in messages:
        if kind == "begin":
            datasets[key] = store.begin(key, *payload)
        elif kind == "fields":
            store.append(datasets[key], payload)
            report.fields += len(payload)
            events.on_clips(len(payload))
        elif kind == "done":
            times, attrs = payload
            n_fields = datasets.pop(key).shape[0]
            store.finish(key, times, attrs)
            report.written.append(key)
            events.on_video(key, n_fields)
        else:
            if datasets.pop(key, None) is not None:
                store.discard(key)
            failure = VideoFailure(key=key, source=by_key[key].display, message=payload)
            store.write_error(key, failure.source, failure.message)
            report.failures.append(failure)
            events.on_failure(failure)


# --------------------------------------------------------------------------------------------
# Reading


class FlowFile:
    """An open flow file for repeated reads (training); a context manager.

    Example:
        >>> with FlowFile("flow.h5") as flows:  # doctest: +SKIP
        ...     stack = flows.read("a.mp4", 10, 20)  # (10, 2, H, W) float32 pixels
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        try:
            self.file = h5py.File(self.path, "r")
        except OSError as error:
            raise FlowError(f"{self.path}: cannot open as HDF5 ({error})") from error
        if "bound" not in self.file.attrs or "method" not in self.file.attrs:
            self.file.close()
            raise FlowError(f"{self.path}: not a feat3d flow file (no method/bound attributes)")
        self.bound = float(self.file.attrs["bound"])
        self.method = str(_plain(self.file.attrs["method"]))
        self.short_side = int(self.file.attrs["short_side"])
        self._by_source: dict[str, str] | None = None

    def __enter__(self) -> FlowFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.file.id.valid:
            self.file.close()

    def keys(self) -> list[str]:
        """Keys of the complete videos, sorted."""
        found: list[str] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and obj.attrs.get("complete", False):
                found.append(name)

        self.file.visititems(visit)
        return sorted(found)

    def key_for(self, path: str | os.PathLike[str], key: str) -> str:
        """The key holding ``path``'s flow: ``key`` itself, else the video whose recorded
        source is the same file (a folder extracted at another level names it differently)."""
        if key in self.file and "flow" in self.file[key]:
            return key
        if self._by_source is None:
            self._by_source = {}
            for name in self.keys():
                source = _plain(self.file[name].attrs.get("source", ""))
                if source:
                    self._by_source[os.path.realpath(str(source))] = name
        return self._by_source.get(os.path.realpath(os.fspath(path)), key)

    def group(self, key: str) -> h5py.Group:
        group = self.file.get(key)
        if not isinstance(group, h5py.Group) or "flow" not in group:
            raise FlowError(f"{self.path}: no flow for video {key!r}")
        if not group.attrs.get("complete", False):
            raise FlowError(f"{self.path}: the flow of {key!r} is incomplete (an interrupted run)")
        return group

    def n_fields(self, key: str) -> int:
        """Number of flow fields (frames - 1) of a video."""
        return int(self.group(key)["flow"].shape[0])

    def read_quantized(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Fields ``start:stop`` as stored, uint8 ``(T, 2, H, W)``."""
        return self.group(key)["flow"][start:stop]

    def read(self, key: str, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Fields ``start:stop`` in pixels, float32 ``(T, 2, H, W)`` (Python slice rules)."""
        return dequantize(self.read_quantized(key, start, stop), bound=self.bound)


def read_flow(
    path: str | os.PathLike[str], key: str, start: int = 0, stop: int | None = None
) -> np.ndarray:
    """Flow fields ``start:stop`` of video ``key`` in pixels: float32 ``(T, 2, H, W)``.

    Opens and closes the file; use :class:`FlowFile` for many reads.
    """
    with FlowFile(path) as flows:
        return flows.read(key, start, stop)
