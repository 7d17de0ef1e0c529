"""Decoding worker processes that survive hostile videos.

A pool of processes decodes videos into clips for the model. Unlike a ``DataLoader``, it
outlives its workers: a worker that crashes inside FFmpeg (a signal), or that makes no
progress for ``hang_after`` seconds, is killed and replaced, its video is reported as failed,
and the run goes on with the next video.

Order is deterministic, as with a ``DataLoader`` over an ``IterableDataset``: worker ``k``
takes videos ``k, k + n, ...`` and the pool yields one item from each worker in turn, so a
run repeated gives the same batches and bit-identical fp32 features.

Clips travel through a shared-memory ring per worker (a few clip-sized slots): the worker
copies a clip into a free slot and sends a small message; the parent copies it out and frees
the slot. Only clips larger than a slot are pickled through the pipe.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import multiprocessing as mp
import os
import signal
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.shared_memory import SharedMemory
from typing import Any

import numpy as np
import torch

from ..model import trim_heap
from .messages import ClipItem

#: Seconds a worker may go without delivering anything before it is considered hung, when no
#: ``--timeout`` is given.
DEFAULT_HANG_AFTER = 300.0
#: Extra seconds beyond ``--timeout`` before a silent worker is killed (the worker stops a
#: slow video itself at ``--timeout``; the kill is for a call that never returns).
HANG_GRACE = 5.0


class Stopwatch:
    """Time spent on one video, excluding pauses (waiting for the model)."""

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.paused = 0.0
        self._pause_start: float | None = None

    def pause(self) -> None:
        self._pause_start = time.monotonic()

    def resume(self) -> None:
        if self._pause_start is not None:
            self.paused += time.monotonic() - self._pause_start
            self._pause_start = None

    def elapsed(self) -> float:
        return time.monotonic() - self.started - self.paused


def _die_with_parent() -> None:
    """Ask Linux to kill this process when its parent dies (a ``kill -9`` of the run)."""
    # Not Linux: no prctl, and workers notice the closed pipe instead.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def describe_exit(exitcode: int | None) -> str:
    """``-11`` → ``signal 11 (SIGSEGV)``."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"signal {-exitcode} ({signal.Signals(-exitcode).name})"
        except ValueError:
            return f"signal {-exitcode}"
    return f"exit status {exitcode}"


@dataclass
class _Worker:
    """One decoding process and its side of the plumbing."""

    rank: int
    process: Any
    conn: Connection
    ring: SharedMemory
    free: Any  # a multiprocessing semaphore counting free slots
    current: int | None = None  # the video it is decoding (from its last "start")
    last_finished: int | None = None  # the last video it ended or failed
    finished: bool = False


def _worker_main(
    stream: Any,
    indices: Sequence[int],
    conn: Connection,
    ring_name: str,
    slots: int,
    slot_bytes: int,
    free: Any,
    parent: int,
) -> None:
    _die_with_parent()
    if os.getppid() != parent:
        os._exit(0)
    # The objects inherited from the parent stay shared (copy-on-write) only while nothing
    # writes to them; the garbage collector's passes would, page by page, over a long run.
    gc.freeze()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    # Decoding threads are FFmpeg's; torch's intra-op pool in a decoder only competes for cores.
    torch.set_num_threads(1)
    ring = SharedMemory(name=ring_name)
    slot = 0
    try:
        for index in indices:
            watch = Stopwatch()
            conn.send(("start", index))
            for item in stream.video_items(index, watch):
                if item.kind != "clip":
                    conn.send((item.kind, index, item.info, item.message))
                    continue
                frames = item.frames
                clip = (item.segment, item.time, item.padded)
                watch.pause()
                if frames.nbytes <= slot_bytes:
                    free.acquire()
                    offset = slot * slot_bytes
                    view = np.ndarray(frames.shape, frames.dtype, ring.buf, offset)
                    view[...] = frames
                    del view
                    conn.send(("clip", index, (slot, frames.shape, frames.dtype.str), clip))
                    slot = (slot + 1) % slots
                else:
                    conn.send(("clip", index, frames, clip))
                watch.resume()
        conn.send(("done", None))
    except (BrokenPipeError, EOFError, KeyboardInterrupt):
        return  # the parent went away or stopped early
    finally:
        ring.close()
        conn.close()


class DecodePool:
    """Decoding processes over a clip stream; iterate to get its items in a fixed order.

    Args:
        stream: A ``ClipStream`` (its ``video_items(index, stopwatch)`` yields the items of
            one video, with numpy frames).
        workers: Number of processes.
        slot_bytes: Size of one ring slot (the expected clip size in bytes).
        slots: Slots per worker: how many clips a worker may decode ahead.
        hang_after: Seconds without any message from the worker the pool is waiting on
            before that worker is killed and its video reported as failed.
    """

    def __init__(
        self,
        stream: Any,
        workers: int,
        *,
        slot_bytes: int,
        slots: int = 4,
        hang_after: float = DEFAULT_HANG_AFTER,
    ):
        if workers < 1:
            raise ValueError("a decode pool needs at least one worker")
        self.stream = stream
        self.count = min(workers, max(1, len(stream.sources)))
        self.slot_bytes = max(1, slot_bytes)
        self.slots = slots
        self.hang_after = hang_after
        methods = mp.get_all_start_methods()
        # fork: the workers inherit the loaded modules (and a test's monkeypatches) at no cost
        self.context = mp.get_context("fork" if "fork" in methods else "spawn")
        self.restarts = 0

    def _start(self, rank: int, indices: Sequence[int], ring: SharedMemory | None) -> _Worker:
        if ring is None:
            ring = SharedMemory(create=True, size=self.slot_bytes * self.slots)
        receive, send = self.context.Pipe(duplex=False)
        free = self.context.Semaphore(self.slots)
        process = self.context.Process(
            target=_worker_main,
            args=(
                self.stream,
                list(indices),
                send,
                ring.name,
                self.slots,
                self.slot_bytes,
                free,
                os.getpid(),
            ),
            daemon=True,
            name=f"feat3d-decode-{rank}",
        )
        if self.context.get_start_method() == "fork":
            # A forked worker's allocations would land in the free chunks of the heap it
            # shares with the parent (a model loaded and folded leaves many), each write
            # copying a whole page: 21 -> 89 MiB private for a 640x272 video. Trimmed
            # first, they take fresh pages.
            trim_heap()
        process.start()
        send.close()
        return _Worker(rank, process, receive, ring, free)

    def videos_after(self, rank: int, last: int | None) -> list[int]:
        """Videos of worker ``rank`` that come after video ``last`` (all of them for None)."""
        mine = list(range(rank, len(self.stream.sources), self.count))
        return mine[mine.index(last) + 1 :] if last is not None else mine

    def _replace(self, worker: _Worker) -> _Worker:
        """Kill ``worker`` and start another on the videos after the one it was on (or, dead
        between two videos, after the last one it finished)."""
        worker.process.kill()
        worker.process.join()
        worker.conn.close()
        self.restarts += 1
        last = worker.current if worker.current is not None else worker.last_finished
        fresh = self._start(worker.rank, self.videos_after(worker.rank, last), worker.ring)
        fresh.last_finished = last
        return fresh

    def _receive(self, worker: _Worker) -> tuple[Any, ...]:
        """The worker's next message, or ``("hung",)`` / ``("died", how)``."""
        waited = 0.0
        while not worker.conn.poll(min(1.0, self.hang_after - waited)):
            waited += 1.0
            if not worker.process.is_alive() and not worker.conn.poll(0):
                break
            if waited >= self.hang_after:
                return ("hung",)
        try:
            return worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(timeout=5)
            return ("died", describe_exit(worker.process.exitcode))

    def _clip(self, worker: _Worker, payload: Any) -> torch.Tensor:
        if isinstance(payload, np.ndarray):
            return torch.from_numpy(payload)
        slot, shape, dtype = payload
        view = np.ndarray(shape, np.dtype(dtype), worker.ring.buf, slot * self.slot_bytes)
        frames = torch.from_numpy(view.copy())
        del view
        worker.free.release()
        return frames

    def __iter__(self) -> Iterator[Any]:
        n = len(self.stream.sources)
        pool: list[_Worker] = []
        try:
            for rank in range(self.count):
                pool.append(self._start(rank, range(rank, n, self.count), None))
            while not all(worker.finished for worker in pool):
                for rank, worker in enumerate(pool):
                    if worker.finished:
                        continue
                    while True:  # until this worker yields one item (or is done)
                        message = self._receive(worker)
                        kind = message[0]
                        if kind == "start":
                            worker.current = message[1]
                            continue
                        if kind == "done":
                            worker.finished = True
                            worker.process.join(timeout=5)
                            break
                        if kind in ("hung", "died"):
                            reason = (
                                f"decoding stalled for {self.hang_after:g} s; the decoder "
                                "process was killed"
                                if kind == "hung"
                                else f"the decoder process crashed ({message[1]})"
                            )
                            failed = worker.current
                            worker = pool[rank] = self._replace(worker)
                            if failed is None:
                                continue
                            yield ClipItem("error", failed, message=reason)
                            break
                        _, index, payload, extra = message
                        if kind == "clip":
                            segment, times, padded = extra
                            yield ClipItem(
                                "clip", index, frames=self._clip(worker, payload),
                                segment=segment, time=times, padded=padded,
                            )  # fmt: skip
                        else:
                            worker.current, worker.last_finished = None, index
                            yield ClipItem(kind, index, info=payload, message=extra)
                        break
        finally:
            for worker in pool:
                if worker.process.is_alive():
                    worker.process.kill()
                worker.process.join()
                worker.conn.close()
                with contextlib.suppress(FileNotFoundError):
                    worker.ring.close()
                    worker.ring.unlink()
