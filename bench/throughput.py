"""Throughput of feat3d on this machine: decode-only, model-only and end-to-end clips/s.

Usage:
    python bench/throughput.py VIDEO --model resnet-18
    python bench/throughput.py --make-video 640x360 --model resnet-18   # makes its own video

Decode-only runs the streaming decoder and clip cutter; model-only feeds random uint8 clips to
the network (random weights: speed does not depend on them); end-to-end runs ``extract`` into a
temporary HDF5 file with decoding workers. Peak memory is the largest resident set size of this
process and of its (decoding) children.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

import h5py
import torch

from feat3d.demo import make_sample_video
from feat3d.extract import clip_options_for, extract
from feat3d.io.clips import iter_clips
from feat3d.io.decode import iter_frames
from feat3d.model import load_model
from feat3d.pipeline import resolve_workers


def peak_rss_mib() -> tuple[float, float]:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def bench_decode(video: Path, clip_options, repeat: int) -> float:
    clips = 0
    start = time.perf_counter()
    for _ in range(repeat):
        frames = iter_frames(video, size=clip_options.size, crop=clip_options.crop)
        for _clip in iter_clips(frames, clip_len=clip_options.clip_len, stride=clip_options.stride):
            clips += 1
    return clips / (time.perf_counter() - start)


def bench_model(model, clip_options, batch_size: int, batches: int) -> float:
    crop = clip_options.crop if isinstance(clip_options.crop, tuple) else (clip_options.crop,) * 2
    shape = (batch_size, clip_options.clip_len, *crop, 3)
    clips = torch.randint(0, 256, shape, dtype=torch.uint8)
    model.run(clips)  # warm-up
    start = time.perf_counter()
    for _ in range(batches):
        model.run(clips)
    return batches * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("video", nargs="?", type=Path, help="video to decode (or use --make-video)")
    parser.add_argument(
        "--make-video", metavar="WxH", help="generate a 10 s h264 test video of this size"
    )
    parser.add_argument("--model", default="resnet-18")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=4, help="timed model-only batches")
    parser.add_argument("--workers", default="auto")
    parser.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "fp16"])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--repeat", type=int, default=2, help="decode passes over the video")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="feat3d-bench-"))
    if args.make_video:
        width, height = (int(v) for v in args.make_video.lower().split("x"))
        video = make_sample_video(
            workdir / f"bench_{width}x{height}.mp4", n_frames=250, width=width, height=height
        )
    elif args.video is not None:
        video = args.video
    else:
        parser.error("give a VIDEO or --make-video WxH")

    warnings.simplefilter("ignore")
    model = load_model(args.model, None, device=args.device, precision=args.precision)
    clip_options = clip_options_for(model)
    workers = resolve_workers(args.workers)
    print(
        f"feat3d throughput: {video} | model {args.model} | device {model.device} | "
        f"precision {args.precision} | batch {args.batch_size} | "
        f"torch threads {torch.get_num_threads()} | cores {os.cpu_count()} | workers {workers}"
    )

    decode_rate = bench_decode(video, clip_options, args.repeat)
    print(
        f"decode-only     {decode_rate:8.1f} clips/s  "
        f"(resize {clip_options.size}, crop {clip_options.crop}, 1 process)"
    )
    model_rate = bench_model(model, clip_options, args.batch_size, args.batches)
    print(f"model-only      {model_rate:8.1f} clips/s")

    copies = workdir / "videos"
    copies.mkdir()
    for index in range(4):
        os.symlink(video.absolute(), copies / f"copy{index}{video.suffix}")
    start = time.perf_counter()
    report = extract(
        [copies], workdir / "feats.h5", model=model, batch_size=args.batch_size, workers=workers
    )
    elapsed = time.perf_counter() - start
    with h5py.File(workdir / "feats.h5") as handle:
        n_clips = sum(int(handle[key].attrs["n_clips"]) for key in report.written)
    print(
        f"end-to-end      {n_clips / elapsed:8.1f} clips/s  "
        f"({n_clips} clips of {len(report.written)} videos, {workers} decoding worker(s))"
    )
    own, children = peak_rss_mib()
    print(f"peak memory     {own:8.0f} MiB main process, {children:.0f} MiB largest child")
    sys.exit(0 if report.ok else 1)


if __name__ == "__main__":
    main()
