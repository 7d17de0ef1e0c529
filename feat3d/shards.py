"""Extraction over several processes: torchrun ranks or ``--devices``, then one merged file.

Each process extracts a disjoint shard of the inputs (by a hash of each video's key) into
its own part file ``OUT.part<i>-of-<n>.h5`` — the parts are ordinary, resumable outputs —
and the parts are merged into ``OUT.h5`` at the end (``feat3d.io.merge.merge_outputs``),
then removed. A killed run, started again with the same command, resumes every part.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .extraction import ExtractReport, extract
from .io.reader import open_output
from .io.writers import OutputError, guess_format
from .pipeline import resolve_workers


def rank_from_env() -> tuple[int, int] | None:
    """``(rank, world_size)`` when started by torchrun (or any launcher that sets ``RANK``
    and ``WORLD_SIZE``) with more than one process, else ``None``."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if world <= 1:
        return None
    return int(os.environ.get("RANK", "0")), world


def part_path(output: str | os.PathLike[str], index: int, count: int) -> Path:
    """``feats.h5`` → ``feats.part0-of-4.h5``."""
    output = Path(output)
    return output.with_name(f"{output.stem}.part{index}-of-{count}{output.suffix}")


def _check_mergeable(output: str | os.PathLike[str], format: str | None) -> None:
    if (format or guess_format(output)) != "h5":
        raise OutputError(
            f"{output}: extraction in several processes merges HDF5 parts; use an .h5 output"
        )


def _merge_parts(output: Path, parts: list[Path], *, overwrite: bool) -> Any:
    """Merge the parts into ``output`` (adding to what it holds, unless ``overwrite``), via a
    temporary file: a kill leaves ``output`` and the parts as they were, to merge again."""
    from .io.merge import merge_outputs

    inputs = list(parts)
    if output.exists() and not overwrite:
        inputs.insert(0, output)
    merging = output.with_name(f"{output.name}.merging")
    result = merge_outputs(merging, inputs, overwrite=True)
    os.replace(merging, output)
    for part in parts:
        part.unlink(missing_ok=True)
    return result


def done_keys(output: str | os.PathLike[str]) -> set[str]:
    """Videos complete in an existing HDF5 output (they are skipped, as on resume)."""
    if not Path(output).exists():
        return set()
    with open_output(output) as done:
        return set(done.video_keys())


def _pending(inputs: Sequence[Any], output: str | os.PathLike[str], overwrite: bool) -> list[Any]:
    """The inputs as sources, less those already in ``output``."""
    from .io.discover import VideoSource, discover_videos

    items = list(inputs)
    sources = (
        items if items and all(isinstance(i, VideoSource) for i in items)
        else discover_videos(items)
    )  # fmt: skip
    done = set() if overwrite else done_keys(output)
    return [source for source in sources if source.key not in done]


def extract_rank(
    inputs: Sequence[Any],
    output: str | os.PathLike[str],
    *,
    rank: int,
    world: int,
    device: str = "auto",
    overwrite: bool = False,
    format: str | None = None,
    **options: Any,
) -> ExtractReport:
    """One torchrun rank: extract shard ``rank`` of ``world`` into its part, wait for the
    other ranks (a gloo barrier, no timeout to speak of), and merge on rank 0.

    ``device="auto"`` picks ``cuda:<LOCAL_RANK>`` on a CUDA machine.
    """
    import torch
    import torch.distributed as dist

    _check_mergeable(output, format)
    if device == "auto" and torch.cuda.is_available():
        device = f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}"
    part = part_path(output, rank, world)
    report = extract(
        _pending(inputs, output, overwrite), part, shard=(rank, world), device=device,
        overwrite=overwrite, format="h5", **options,
    )  # fmt: skip
    started_group = not dist.is_initialized()
    if started_group:
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=30))
    try:
        dist.barrier()
        if rank == 0:
            parts = [part_path(output, i, world) for i in range(world)]
            _merge_parts(Path(output), parts, overwrite=overwrite)
        dist.barrier()
    finally:
        if started_group:
            dist.destroy_process_group()
    report.output = Path(output)
    return report


def _device_worker(queue: Any, inputs: Sequence[Any], part: Path, options: dict[str, Any]) -> None:
    try:
        report = extract(inputs, part, **options)
        queue.put((str(part), report.summary(), len(report.failures), None))
    except Exception as error:  # reported by the parent, with the part's name
        queue.put((str(part), "", 0, f"{type(error).__name__}: {error}"))


_Result = tuple[str, str, int, Any]


def _collect(queue: Any, processes: list[Any], parts: list[Path]) -> list[_Result]:
    """One result per process; a process that died without one is a failure of its part."""
    import queue as queues

    results: dict[str, _Result] = {}
    while len(results) < len(processes):
        try:
            result = queue.get(timeout=1.0)
            results[result[0]] = result
        except queues.Empty:
            for process, part in zip(processes, parts, strict=True):
                if str(part) not in results and process.exitcode not in (None, 0):
                    message = f"its process died (exit code {process.exitcode})"
                    results[str(part)] = (str(part), "", 0, message)
    for process in processes:
        process.join()
    return list(results.values())


def extract_on_devices(
    inputs: Sequence[Any],
    output: str | os.PathLike[str],
    devices: Sequence[str],
    *,
    overwrite: bool = False,
    format: str | None = None,
    **options: Any,
) -> list[tuple[str, int]]:
    """Extract with one process per device (``["cuda:0", "cuda:1"]``; ``cpu`` works too),
    each on its shard, then merge the parts into ``output``. Returns each part's summary line
    and its number of failed videos.

    ``options`` are ``extract``'s keyword arguments (``model`` and ``weights`` as names or
    paths: each process loads its own copy).
    """
    import multiprocessing as mp

    _check_mergeable(output, format)
    if not devices:
        raise ValueError("--devices needs at least one device")
    count = len(devices)
    context = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    queue = context.Queue()
    parts = [part_path(output, i, count) for i in range(count)]
    sources = _pending(inputs, output, overwrite)
    processes = []
    workers = options.get("workers", 0)
    for index, device in enumerate(devices):
        shard_options = {
            **options, "device": device, "shard": (index, count), "overwrite": overwrite,
            "format": "h5", "workers": resolve_workers(workers, device, share=count),
        }  # fmt: skip
        process = context.Process(
            target=_device_worker, args=(queue, sources, parts[index], shard_options)
        )
        process.start()
        processes.append(process)
    results = _collect(queue, processes, parts)
    failed = [f"{part}: {error}" for part, _, _, error in results if error]
    if failed:
        raise OutputError("; ".join(failed) + " (the other parts are kept; run again to resume)")
    _merge_parts(Path(output), parts, overwrite=overwrite)
    by_part = {part: (line, failures) for part, line, failures, _ in results}
    return [by_part[str(part)] for part in parts]
