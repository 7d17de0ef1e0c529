"""Throughput of feat3d on this machine, all in one run, for a video set and a model.

Usage:
    python bench/throughput.py VIDEO... --model resnet-18
    python bench/throughput.py --make-video 640x272 --make-video 1280x720 --jpeg --long

For every video (or generated video) it prints:

- decode-only: clips/s of the streaming decoder and clip cutter in one process with the
  codec threads each decoding worker of ``extract`` gets, and its CPU time per clip
  (core-seconds, FFmpeg's threads included);
- model-only, per precision: clips/s on random uint8 clips (random weights: the speed does not
  depend on them) and core-seconds per clip;
- end to end, per precision: ``extract`` of ``--copies`` links to the video into HDF5 with
  ``--workers`` decoding processes, in a fresh child process (so its peak memory is its own),
  against its bound, and its own core-seconds per clip (decoding workers included). On the
  CPU the network and the decoders share the cores, so the bound is ``cores / (decode +
  model core-seconds per clip)``; on CUDA they run side by side, so it is the lower of
  model-only clips/s and ``cores / decode core-seconds per clip``, and the line names the
  stage that sets it (decode-bound or model-bound);
- peak RSS of that run: the main process and the largest decoding worker;
- with ``--jpeg``: the same video through the papers' ffmpeg → JPEG → PIL → model pipeline
  (``bench/jpeg_pipeline.py``, same model, fp32 and each precision asked for), its
  core-seconds per clip (ffmpeg and PIL's loader processes included), and the ratios of
  speed and of CPU time, with the ceiling of the speed ratio (feat3d at 100 % of its bound);
- with ``--long``: the video repeated 10 times (remuxed, no re-encoding) through ``extract``,
  to show that peak memory does not grow with a video's length;
- with ``--engine ray``, instead of all the above: ``extract`` of the ``--copies`` links into
  Parquet by the local engine and by the Ray engine (a local Ray with every core, started
  once before the measures; each run's actor start and model load count, as a user sees
  them), taken in turn ``--repeat`` times, their clips/s and the Ray engine's share of the
  local engine's, and where the Ray runs' CPU went per clip (``bench/proc_cpu.py``: the
  inference actor, the decoding and write tasks, the driver — what one driver can keep up
  with — and Ray's own processes). Start-up
  (Ray's workers, the actors' imports and model load) is a fixed cost: use enough
  ``--copies`` (96 of a 10 s video: about 6 s of start-up against 100 s of work) that it is
  amortized.

Videos made with ``--make-video WxH`` are 10 s at 25 fps of a textured scene panned by the
camera, with moving objects and sensor-like grain, h264 (libx264, CRF 23): about 1 Mbit/s at
640×272 and 3-4 Mbit/s at 1280×720, like web video of those sizes. Timings on a shared
machine move by several per cent: every figure is the median of ``--repeat`` measures (3),
taken in turn so that a drift of the machine hits all of them alike, with their range.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import time
import warnings
from collections import Counter
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import proc_cpu  # beside this script (its folder is on the path when it runs)
import torch

from feat3d.io.clips import iter_clips
from feat3d.io.decode import iter_frames
from feat3d.model import load_model
from feat3d.options import ModelOptions, fill_clip_defaults
from feat3d.precision import check_precision, cpu_has_native_bf16
from feat3d.run.extract import extract
from feat3d.run.pipeline import decode_options, resolve_workers


def cpu_seconds(who: int = resource.RUSAGE_SELF) -> float:
    """CPU time of this process, all its threads, user + system (``RUSAGE_CHILDREN``: of
    its children that have ended: decoding workers, ffmpeg, DataLoader workers)."""
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def all_cpu_seconds() -> float:
    return cpu_seconds() + cpu_seconds(resource.RUSAGE_CHILDREN)


def median_run(runs: list[dict]) -> dict:
    """The run of median speed (its own memory and CPU figures, not a mix of runs)."""
    ranked = sorted(runs, key=lambda run: run["clips"] / run["seconds"])
    return {**ranked[len(ranked) // 2], "rates": [run["clips"] / run["seconds"] for run in runs]}


def spread(rates: list[float]) -> str:
    """`` (range a-b over N)`` when measured more than once."""
    return f" (range {min(rates):.1f}-{max(rates):.1f} over {len(rates)})" if len(rates) > 1 else ""


def median_rate(measures: list[dict]) -> dict:
    ranked = sorted(measures, key=lambda m: m["clips_per_s"])
    return {**ranked[len(ranked) // 2], "rates": [m["clips_per_s"] for m in measures]}


def make_video(path: Path, width: int, height: int, *, seconds: float = 10, fps: int = 25) -> Path:
    """A textured scene (multi-octave noise, like natural images' 1/f spectrum) panned by the
    camera, with three moving objects and per-frame grain; h264, CRF 23."""
    rng = np.random.default_rng(width * 7919 + height)
    canvas_h, canvas_w = height + height // 2, width + width // 2
    scene = np.zeros((canvas_h, canvas_w, 3), np.float32)
    for octave in range(1, 8):
        cells = 2**octave
        coarse = rng.normal(size=(cells + 1, cells + 1, 3)).astype(np.float32)
        ys = np.linspace(0, cells, canvas_h)
        xs = np.linspace(0, cells, canvas_w)
        up = coarse[np.minimum(ys.astype(int), cells)][:, np.minimum(xs.astype(int), cells)]
        scene += up * (60.0 / octave)
    scene = np.clip(scene - scene.min(axis=(0, 1)) * 0.8, 0, 255)
    scene = scene / scene.max() * 230
    n_frames = int(seconds * fps)
    grain = np.random.default_rng(0)
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"crf": "23", "preset": "veryfast"}
        for index in range(n_frames):
            phase = index / n_frames
            y0 = int((canvas_h - height) * (0.5 + 0.5 * math.sin(2 * math.pi * phase)))
            x0 = int((canvas_w - width) * phase)
            image = scene[y0 : y0 + height, x0 : x0 + width].copy()
            for k in range(3):
                cx = int(width * (0.2 + 0.6 * ((phase * (k + 1)) % 1)))
                cy = int(height * (0.3 + 0.2 * k + 0.1 * math.sin(index / (5 + k))))
                r = height // (6 + 2 * k)
                image[max(0, cy - r) : cy + r, max(0, cx - r) : cx + r] = image[
                    max(0, cy - r) : cy + r, max(0, cx - r) : cx + r
                ][::-1] * 0.5 + 60 * (k + 1)
            image += grain.normal(0, 5, (height, width, 1)).astype(np.float32)
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), "rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def repeat_video(source: Path, target: Path, times: int) -> Path:
    """``source`` played ``times`` times in a row, remuxed (packets copied, timestamps
    shifted): a long video that decodes exactly like the short one."""
    with av.open(str(source)) as src:
        packets = [p for p in src.demux(video=0) if p.dts is not None]
        span = max(p.pts + (p.duration or 0) for p in packets) - min(p.pts for p in packets)
        with av.open(str(target), "w") as dst:
            out = dst.add_stream_from_template(src.streams.video[0])
            for rep in range(times):
                for packet in packets:
                    packet.pts += span if rep else 0
                    packet.dts += span if rep else 0
                    packet.stream = out
                    dst.mux(packet)
    return target


def bench_decode(video: Path, options, min_seconds: float) -> dict:
    clips = passes = 0
    wall, cpu = time.perf_counter(), cpu_seconds()
    while passes == 0 or time.perf_counter() - wall < min_seconds:
        frames = iter_frames(
            video, size=options.size, crop=options.crop, threads=options.threads,
            **options.decode_kwargs(),
        )  # fmt: skip
        cut = iter_clips(
            frames, clip_len=options.clip_len, stride=options.stride,
            frame_stride=options.frame_stride,
        )  # fmt: skip
        for _ in cut:
            clips += 1
        passes += 1
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    return {"clips_per_s": clips / wall, "core_s_per_clip": cpu / clips, "clips": clips}


def bench_model(model, options, batch_size: int, min_seconds: float) -> dict:
    crop = options.crop if isinstance(options.crop, tuple) else (options.crop,) * 2
    clips = torch.randint(0, 256, (batch_size, options.clip_len, *crop, 3), dtype=torch.uint8)
    model.run(clips)  # warm-up (and compilation)
    model.run(clips)
    batches = 0
    wall, cpu = time.perf_counter(), cpu_seconds()
    while batches < 3 or time.perf_counter() - wall < min_seconds:
        model.run(clips)
        batches += 1
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    n = batches * batch_size
    return {"clips_per_s": n / wall, "core_s_per_clip": cpu / n}


def _status_kib(pid: int | str, field: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _private_kib(pid: int) -> int:
    """Memory only this process holds (USS): what a forked worker adds to the machine."""
    total = 0
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith(("Private_Clean:", "Private_Dirty:")):
                    total += int(line.split()[1])
    except OSError:
        pass
    return total


class WorkerMemory:
    """Samples the decoding workers' resident and private memory (Linux ``/proc``); the
    main process's peak is its ``VmHWM``, which, unlike ``ru_maxrss``, starts afresh at
    ``exec``."""

    def __init__(self, interval: float = 0.05):
        import threading

        self.rss = self.private = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(interval,), daemon=True)
        self._thread.start()

    def _run(self, interval: float) -> None:
        me, tick = os.getpid(), 0
        while not self._stop.wait(interval):
            try:
                with open(f"/proc/{me}/task/{me}/children") as handle:
                    pids = [int(pid) for pid in handle.read().split()]
            except OSError:
                continue
            tick += 1
            for pid in pids:
                self.rss = max(self.rss, _status_kib(pid, "VmRSS"))
                if tick % 10 == 1:  # smaps_rollup walks the page tables: rarely, not to slow it
                    self.private = max(self.private, _private_kib(pid))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def child_main(spec: dict) -> None:
    """One measured run in a fresh process: extract or the JPEG pipeline."""
    warnings.simplefilter("ignore")
    model = load_model(
        spec["model"], None, device=spec["device"], precision=spec["precision"],
        compile=spec["compile"],
    )  # fmt: skip
    options = fill_clip_defaults(None, model.meta)
    crop = options.crop if isinstance(options.crop, tuple) else (options.crop,) * 2
    shape = (spec["batch_size"], options.clip_len, *crop, 3)
    # first-call set-up (oneDNN primitives, compilation) is not throughput
    model.run(torch.randint(0, 256, shape, dtype=torch.uint8))
    inputs = [Path(p) for p in spec["inputs"]]
    memory = WorkerMemory()
    start, cpu_start = time.perf_counter(), all_cpu_seconds()
    if spec["kind"] == "jpeg":
        from jpeg_pipeline import run_jpeg_pipeline

        size = options.crop if isinstance(options.crop, int) else options.crop[0]
        results = run_jpeg_pipeline(
            model, inputs, clip_len=options.clip_len, size=size,
            batch_size=spec["batch_size"], workers=spec["workers"],
        )  # fmt: skip
        n_clips = sum(len(r.features) for r in results)
        ok = True
        extra = {"ffmpeg_s": sum(r.extract_seconds for r in results)}
    else:
        with tempfile.TemporaryDirectory(prefix="feat3d-bench-out-") as tmp:
            report = extract(
                inputs, Path(tmp) / "feats.h5", model=model,
                batch_size=spec["batch_size"], workers=spec["workers"],
            )  # fmt: skip
            import h5py

            with h5py.File(Path(tmp) / "feats.h5") as handle:
                n_clips = sum(int(handle[key].attrs["n_clips"]) for key in report.written)
        ok = report.ok
        extra = {}
    elapsed = time.perf_counter() - start
    cpu = all_cpu_seconds() - cpu_start
    memory.stop()
    result = {
        "clips": n_clips,
        "seconds": elapsed,
        "core_s_per_clip": cpu / n_clips,
        "rss_main": _status_kib("self", "VmHWM") / 1024,
        "rss_child": memory.rss / 1024,
        "private_child": memory.private / 1024,
    }
    print(json.dumps({**result, **extra, "ok": ok}))


def run_child(spec: dict) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True
    )
    if done.returncode != 0:
        sys.exit(f"measured run {spec['kind']} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def memory_text(run: dict) -> str:
    return (
        f"main RSS {run['rss_main']:.0f} MiB, worker RSS {run['rss_child']:.0f} MiB "
        f"({run['private_child']:.0f} MiB private)"
    )


def bitrate(video: Path) -> float:
    with av.open(str(video)) as container:
        duration = container.duration / 1e6 if container.duration else 0
    return video.stat().st_size * 8 / duration / 1e6 if duration else float("nan")


def bench_engines(videos: list[Path], args: argparse.Namespace, workdir: Path) -> None:
    """Clips/s of the Ray engine against the local engine on the same videos, in turn."""
    import ray

    ray.init(include_dashboard=False, log_to_driver=False)
    model = ModelOptions(arch=args.model, weights="none", device=args.device)
    options = {"batch_size": args.batch_size, "workers": args.workers, "overwrite": True}
    print(f"feat3d engines | model {args.model} | device {args.device} | batch "
          f"{args.batch_size} | cores {os.cpu_count()} | ray {ray.__version__}")  # fmt: skip
    for video in videos:
        links = []
        for index in range(args.copies):
            link = workdir / f"engines_{video.stem}" / f"copy{index}{video.suffix}"
            link.parent.mkdir(exist_ok=True)
            if not link.exists():
                os.symlink(video.absolute(), link)
            links.append(link)
        rates: dict[str, list[float]] = {"local": [], "ray": []}
        roles: Counter[str] = Counter()  # the Ray runs' CPU seconds, by role
        clips = 0
        for _ in range(args.repeat):
            for engine in rates:
                out = workdir / f"{video.stem}_{engine}.parquet"
                before = proc_cpu.snapshot()
                report = extract(links, out, model=model, engine=engine, **options)
                rates[engine].append(report.clips_per_second)
                if engine == "ray":
                    roles.update(proc_cpu.by_role(before, proc_cpu.snapshot(), os.getpid()))
                    clips += report.clips
        local, remote = (float(np.median(rates[e])) for e in ("local", "ray"))
        print(
            f"{video.name}: {report.clips} clips | local {local:7.1f} clips/s"
            f"{spread(rates['local'])}  ray {remote:7.1f} clips/s{spread(rates['ray'])}  "
            f"ray/local {remote / local:6.1%}",
            flush=True,
        )
        print("  where the Ray runs' CPU went (core-ms per clip; other processes: not feat3d's):")
        for role, seconds in roles.most_common():
            print(f"    {role:28s} {seconds * 1000 / max(clips, 1):7.1f}")
    ray.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("videos", nargs="*", type=Path, help="videos to measure")
    parser.add_argument(
        "--make-video", metavar="WxH", action="append", default=[],
        help="generate a 10 s h264 test video of this size (repeatable)",
    )  # fmt: skip
    parser.add_argument("--model", default="resnet-18")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", default="auto", help="decoding processes: N or auto")
    parser.add_argument(
        "--precision", default=None,
        help="comma-separated; default fp32, plus bf16 on CPUs with bf16 instructions",
    )  # fmt: skip
    parser.add_argument("--device", default="auto")
    parser.add_argument("--compile", action="store_true", help="also measure torch.compile")
    parser.add_argument("--copies", type=int, default=4, help="links to each video per run")
    parser.add_argument("--seconds", type=float, default=5.0, help="least time per measure")
    parser.add_argument(
        "--repeat", type=int, default=3,
        help="measure everything this many times, interleaved; report the median",
    )  # fmt: skip
    parser.add_argument("--jpeg", action="store_true", help="run the papers' JPEG pipeline")
    parser.add_argument("--long", action="store_true", help="peak memory of a 10x longer video")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument(
        "--engine", choices=["local", "ray"], default="local",
        help="ray: compare the Ray engine's clips/s with the local engine's (nothing else)",
    )  # fmt: skip
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(json.loads(args.child))
        return

    warnings.simplefilter("ignore")
    if args.jpeg:
        from jpeg_pipeline import INSTALL_HINT, missing_tools

        if missing_tools():
            parser.error(f"missing {', '.join(missing_tools())}: {INSTALL_HINT}")
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device
    device = "cpu" if device == "auto" else device
    if args.precision:
        precisions = args.precision.split(",")
    else:
        precisions = ["fp32", "bf16"] if device != "cpu" or cpu_has_native_bf16() else ["fp32"]
    for precision in precisions:
        try:
            check_precision(precision, torch.device(device))
        except ValueError as error:
            parser.error(str(error))
    workers = resolve_workers(args.workers, device)
    workdir = Path(tempfile.mkdtemp(prefix="feat3d-bench-"))
    videos = list(args.videos)
    for size in args.make_video:
        width, height = (int(v) for v in size.lower().split("x"))
        print(f"making a {width}x{height} video ...", flush=True)
        videos.append(make_video(workdir / f"scene_{width}x{height}.mp4", width, height))
    if not videos:
        parser.error("give VIDEO files or --make-video WxH")
    if args.engine == "ray":
        bench_engines(videos, args, workdir)
        return
    compiled = [False, True] if args.compile else [False]
    cores = os.cpu_count() or 1
    print(
        f"feat3d throughput | model {args.model} | device {device} | batch {args.batch_size} | "
        f"cores {cores} | torch threads {torch.get_num_threads()} | workers {workers} "
        f"({args.workers}) | torch {torch.__version__} | native bf16 {cpu_has_native_bf16()}"
    )
    models = {
        (precision, comp): load_model(
            args.model, None, device=device, precision=precision, compile=comp
        )
        for precision in precisions
        for comp in compiled
    }
    options = fill_clip_defaults(None, next(iter(models.values())).meta)
    # the codec threads of one decoding worker of extract (FFmpeg's own choice in-process)
    decoding = decode_options(options, workers, torch.device(device))
    model_runs: dict[tuple[str, bool], list[dict]] = {key: [] for key in models}
    for _ in range(args.repeat):  # interleaved, so a drift of the machine hits all alike
        for key, vm in models.items():
            model_runs[key].append(bench_model(vm, options, args.batch_size, args.seconds))
    model_rates = {}
    for (precision, comp), vm in models.items():
        model_rates[precision, comp] = rate = median_rate(model_runs[precision, comp])
        print(
            f"model-only   {precision}{' compiled' if comp else '':9s} "
            f"{rate['clips_per_s']:7.1f} clips/s  {rate['core_s_per_clip'] * 1e3:6.1f} "
            f"core-ms/clip  ({vm.execution}){spread(rate['rates'])}",
            flush=True,
        )
    models.clear()
    results = []
    for video in videos:
        copies = workdir / f"set_{video.stem}"
        copies.mkdir(exist_ok=True)
        links = [copies / f"copy{index}{video.suffix}" for index in range(args.copies)]
        for link in links:
            if not link.exists():
                os.symlink(video.absolute(), link)
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            size = f"{stream.codec_context.width}x{stream.codec_context.height}"
        base = {
            "model": args.model, "device": device, "batch_size": args.batch_size,
            "workers": workers, "inputs": [str(link) for link in links],
        }  # fmt: skip
        print(f"\n{video.name}: {size}, {bitrate(video):.2f} Mbit/s", flush=True)
        decodes: list[dict] = []
        runs: dict[tuple[str, str, bool], list[dict]] = {}
        for _ in range(args.repeat):  # interleaved, so a drift of the machine hits all alike
            decodes.append(bench_decode(video, decoding, args.seconds))
            for precision in precisions:
                for comp in compiled:
                    spec = {**base, "kind": "extract", "precision": precision, "compile": comp}
                    runs.setdefault(("extract", precision, comp), []).append(run_child(spec))
                    if args.jpeg and not comp:
                        runs.setdefault(("jpeg", precision, comp), []).append(
                            run_child({**spec, "kind": "jpeg"})
                        )
        decode = median_rate(decodes)
        print(
            f"decode-only  {decode['clips_per_s']:7.1f} clips/s  "
            f"{decode['core_s_per_clip'] * 1e3:6.1f} core-ms/clip (1 process, "
            f"{decoding.threads or 'auto'} codec threads)"
            f"{spread(decode['rates'])}",
            flush=True,
        )
        for precision in precisions:
            for comp in compiled:
                run = median_run(runs["extract", precision, comp])
                e2e = run["clips"] / run["seconds"]
                model_rate = model_rates[precision, comp]
                if device == "cpu":
                    cost = decode["core_s_per_clip"] + model_rate["core_s_per_clip"]
                    bound, bound_text = cores / cost, "cores / (decode + model core-s per clip)"
                else:
                    decode_bound = cores / decode["core_s_per_clip"]
                    bound = min(decode_bound, model_rate["clips_per_s"])
                    bound_text = (
                        f"{'decode' if decode_bound < model_rate['clips_per_s'] else 'model'}"
                        f"-bound: cores / decode core-s per clip {decode_bound:.0f}, model "
                        f"{model_rate['clips_per_s']:.0f}"
                    )
                row = {
                    "video": video.name, "size": size, "precision": precision, "compile": comp,
                    "decode": decode["clips_per_s"],
                    "decode_core_ms": decode["core_s_per_clip"] * 1e3,
                    "model": model_rates[precision, comp]["clips_per_s"],
                    "model_core_ms": model_rates[precision, comp]["core_s_per_clip"] * 1e3,
                    "e2e": e2e, "bound": bound, "e2e_core_ms": run["core_s_per_clip"] * 1e3,
                    "rss_main": run["rss_main"],
                    "rss_worker": run["rss_child"], "private_worker": run["private_child"],
                }  # fmt: skip
                line = (
                    f"end-to-end   {precision}{' compiled' if comp else '':9s} {e2e:7.1f} clips/s"
                    f"  = {e2e / bound:5.1%} of {bound:.1f} ({bound_text}), "
                    f"{run['core_s_per_clip'] * 1e3:.1f} core-ms/clip"
                    f"{spread(run['rates'])}; peak memory {memory_text(run)}"
                )
                print(line, flush=True)
                if args.jpeg and not comp:
                    jpeg = median_run(runs["jpeg", precision, comp])
                    row["jpeg"] = jpeg["clips"] / jpeg["seconds"]
                    row["jpeg_core_ms"] = jpeg["core_s_per_clip"] * 1e3
                    row["jpeg_ffmpeg_share"] = jpeg["ffmpeg_s"] / jpeg["seconds"]
                    print(
                        f"JPEG papers' pipeline {precision}  {row['jpeg']:6.1f} clips/s "
                        f"({row['jpeg_ffmpeg_share']:.0%} of it in ffmpeg → JPEG), "
                        f"{row['jpeg_core_ms']:.1f} core-ms/clip{spread(jpeg['rates'])}: "
                        f"feat3d is {e2e / row['jpeg']:.2f}x faster, "
                        f"{row['jpeg_core_ms'] / row['e2e_core_ms']:.2f}x cheaper in CPU time",
                        flush=True,
                    )
                results.append(row)
        if args.long:
            long_video = repeat_video(video, workdir / f"long_{video.name}", 10)
            long_runs = {}
            for name, source in (("1x", video), ("10x", long_video)):
                spec = {
                    **base, "inputs": [str(source)], "kind": "extract",
                    "precision": precisions[0], "compile": False,
                }  # fmt: skip
                run = run_child(spec)
                print(
                    f"long video   {name:3s} {run['clips']:5d} clips  peak memory "
                    f"{memory_text(run)}",
                    flush=True,
                )
                results.append({"video": video.name, "long": name, **run})
                long_runs[name] = run

            def total(run: dict) -> float:
                return run["rss_main"] + workers * run["private_child"]

            main_ratio = long_runs["10x"]["rss_main"] / long_runs["1x"]["rss_main"]
            print(
                f"long video   10x / 1x: main RSS {main_ratio:.2f}x, main RSS + workers' "
                f"private {total(long_runs['10x']) / total(long_runs['1x']):.2f}x",
                flush=True,
            )
    fp32_rows = [
        r for r in results if r.get("precision") == "fp32" and not r.get("compile") and "jpeg" in r
    ]
    fp32 = {r["video"]: r["jpeg"] for r in fp32_rows}
    fp32_core = {r["video"]: r["jpeg_core_ms"] for r in fp32_rows}
    if fp32:
        print(
            "\nfeat3d end to end vs the papers' pipeline in fp32 (ceiling: feat3d at 100 % of "
            "its bound; CPU: the pipeline's core-seconds per clip over feat3d's):"
        )
        for r in results:
            if "jpeg" in r and r["video"] in fp32:
                jpeg, jpeg_core_ms = fp32[r["video"]], fp32_core[r["video"]]
                print(
                    f"  {r['video']} {r['precision']}: {r['e2e'] / jpeg:.2f}x (ceiling "
                    f"{r['bound'] / jpeg:.2f}x; CPU {jpeg_core_ms / r['e2e_core_ms']:.2f}x)"
                )
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
