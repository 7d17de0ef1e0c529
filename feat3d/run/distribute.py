"""Extraction over several processes: torchrun ranks or ``--devices``, then one merged file.

Each process extracts a disjoint shard of the inputs (by a hash of each video's key) into
its own part file ``OUT.part<i>-of-<n>.h5`` — the parts are ordinary, resumable outputs —
and the parts are merged into ``OUT.h5`` at the end (``feat3d.io.merge.merge_outputs``),
then removed. A killed run, started again with the same command, resumes every part.
"""

from __future__ import annotations

import datetime
import multiprocessing as mp
import os
import queue as queues
import warnings
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from ..io.discover import VideoSource
from ..io.merge import MergeReport, merge_outputs
from ..io.reader import open_output
from ..io.writers import OutputError, guess_format
from ..model import VideoModel
from ..options import (
    ClipOptions,
    ModelOptions,
    OptionsError,
    OutputOptions,
    RunOptions,
    TwoStreamOptions,
)
from ..urls import is_url
from .events import RunEvents
from .extract import ExtractReport, extract, sources_of
from .pipeline import resolve_workers


def extract_distributed(
    inputs: Sequence[Any],
    output: OutputOptions,
    *,
    model: ModelOptions | VideoModel,
    clips: ClipOptions | None = None,
    run: RunOptions | None = None,
    two_stream: TwoStreamOptions | None = None,
    events: RunEvents | None = None,
) -> ExtractReport:
    """``extract``, split the way the run asks: ``run.devices`` → one process per device,
    each on a shard, merged at the end; started by torchrun → this rank's shard, merged by
    rank 0; else one plain run (of ``run.shard`` when given).

    ``model`` must be :class:`ModelOptions` with ``devices`` (each process loads its own).
    """
    run = run or RunOptions()
    ranked = rank_from_env()
    if ranked is not None and run.shard is not None:  # --devices with --shard: RunOptions
        raise OptionsError("--shard and --devices/torchrun both split the inputs: use one")
    groups = {"clips": clips, "two_stream": two_stream}
    if (run.devices is not None or ranked is not None) and is_url(output.path or ""):
        raise OptionsError(
            "--devices and torchrun merge local parts: write to a local file, then upload it"
        )
    if run.devices is not None:
        if not isinstance(model, ModelOptions):
            raise TypeError("extraction on several devices loads the model in each process")
        return extract_on_devices(inputs, output, model=model, run=run, **groups)
    if ranked is not None:
        rank, world = ranked
        return extract_rank(
            inputs, output, rank=rank, world=world, model=model, run=run,
            events=events if rank == 0 else None, **groups,
        )  # fmt: skip
    return extract(inputs, output, model=model, run=run, events=events, **groups)


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


def _merge_parts(output: Path, parts: list[Path], *, overwrite: bool) -> MergeReport:
    """Merge the parts into ``output`` (adding to what it holds, unless ``overwrite``), via a
    temporary file: a kill leaves ``output`` and the parts as they were, to merge again."""
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


def _pending(
    inputs: Sequence[Any], output: OutputOptions, clips: ClipOptions | None
) -> list[VideoSource]:
    """The inputs as sources (frame folders at ``clips.frame_rate``), less those already in
    the output."""
    done = set() if output.overwrite else done_keys(output.path)  # type: ignore[arg-type]
    rate = clips.frame_rate if clips is not None else None
    return [source for source in sources_of(inputs, frame_rate=rate) if source.key not in done]


def _part(output: OutputOptions, index: int, count: int) -> OutputOptions:
    """The output options of part ``index`` of ``count`` (HDF5, checked mergeable)."""
    _check_mergeable(output.path, output.format)  # type: ignore[arg-type]
    return replace(output, path=part_path(output.path, index, count), format="h5")  # type: ignore[arg-type]


def extract_rank(
    inputs: Sequence[Any],
    output: OutputOptions,
    *,
    rank: int,
    world: int,
    model: ModelOptions | VideoModel,
    run: RunOptions,
    events: RunEvents | None = None,
    **groups: Any,
) -> ExtractReport:
    """One torchrun rank: extract shard ``rank`` of ``world`` into its part, wait for the
    other ranks (a gloo barrier, no timeout to speak of), and merge on rank 0.

    A device of ``auto`` becomes ``cuda:<LOCAL_RANK>`` on a CUDA machine.
    """
    if isinstance(model, ModelOptions) and model.device == "auto" and torch.cuda.is_available():
        model = model.with_device(f"cuda:{int(os.environ.get('LOCAL_RANK', rank))}")
    part = _part(output, rank, world)
    report = extract(
        _pending(inputs, output, groups.get("clips")), part, model=model,
        run=replace(run, shard=(rank, world)), events=events, **groups,
    )  # fmt: skip
    started_group = not dist.is_initialized()
    if started_group:
        dist.init_process_group("gloo", timeout=datetime.timedelta(days=30))
    try:
        dist.barrier()
        if rank == 0:
            parts = [part_path(output.path, i, world) for i in range(world)]  # type: ignore[arg-type]
            _merge_parts(Path(output.path), parts, overwrite=output.overwrite)  # type: ignore[arg-type]
        dist.barrier()
    finally:
        if started_group:
            dist.destroy_process_group()
    report.output = output.target
    return report


def _one_line(message: Any, *_: Any, **__: Any) -> str:
    return f"warning: {message}\n"


def _device_worker(queue: Any, sources: Sequence[Any], options: dict[str, Any]) -> None:
    part = options["output"].path
    warnings.formatwarning = _one_line  # a library warning is one line, as in the CLI
    try:
        queue.put((str(part), extract(sources, **options), None))
    except Exception as error:  # reported by the parent, with the part's name
        queue.put((str(part), None, f"{type(error).__name__}: {error}"))


_Result = tuple[str, Any, Any]


def _collect(queue: Any, processes: list[Any], parts: list[Path]) -> list[_Result]:
    """One result per process; a process that died without one is a failure of its part."""
    results: dict[str, _Result] = {}
    while len(results) < len(processes):
        try:
            result = queue.get(timeout=1.0)
            results[result[0]] = result
        except queues.Empty:
            for process, part in zip(processes, parts, strict=True):
                if str(part) not in results and process.exitcode not in (None, 0):
                    message = f"its process died (exit code {process.exitcode})"
                    results[str(part)] = (str(part), None, message)
    for process in processes:
        process.join()
    return list(results.values())


def extract_on_devices(
    inputs: Sequence[Any],
    output: OutputOptions,
    *,
    model: ModelOptions,
    run: RunOptions,
    **groups: Any,
) -> ExtractReport:
    """Extract with one process per device in ``run.devices`` (``cuda:0,cuda:1``; ``cpu``
    works too), each loading its own model and working on its shard, then merge the parts
    into the output. The report adds up the parts' (``parts``: each one's report)."""
    devices = run.devices or ()
    count = len(devices)
    context = mp.get_context("spawn")  # CUDA cannot be used in a forked child
    queue = context.Queue()
    outputs = [_part(output, i, count) for i in range(count)]
    parts = [Path(part.path) for part in outputs]  # type: ignore[arg-type]
    sources = _pending(inputs, output, groups.get("clips"))
    processes = []
    for index, device in enumerate(devices):
        options = {
            "output": outputs[index], "model": model.with_device(device),
            "run": replace(run, devices=None, shard=(index, count),
                           workers=resolve_workers(run.workers, device, share=count)),
            **groups,
        }  # fmt: skip
        process = context.Process(target=_device_worker, args=(queue, sources, options))
        process.start()
        processes.append(process)
    results = _collect(queue, processes, parts)
    failed = [f"{part}: {error}" for part, _, error in results if error]
    if failed:
        raise OutputError("; ".join(failed) + " (the other parts are kept; run again to resume)")
    _merge_parts(Path(output.path), parts, overwrite=output.overwrite)  # type: ignore[arg-type]
    by_part = {part: report for part, report, _ in results}
    return ExtractReport.combined([by_part[str(part)] for part in parts], output.target)
