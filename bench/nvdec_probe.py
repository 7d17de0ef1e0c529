"""How fast NVDEC decodes through PyAV's ``hwaccel``, against FFmpeg's software decoder.

Usage: ``python bench/nvdec_probe.py VIDEO...`` (run by ``bench/gpu_check.sh``).

For each video it decodes every frame in one process twice, with one software codec thread
(as a decoding worker of ``extract`` on CUDA) and through ``av.open(..., hwaccel=HWAccel(
"cuda"))`` (frames downloaded to system memory), converts each to the model's 112-pixel
short side in libswscale as ``feat3d.io.decode`` does, and prints clips/s, CPU core-ms per
16-frame clip, and whether the converted frames of both decoders are identical (H.264
decoding is bit-exact by its standard, so they should be). This measures whether a
hardware-decoding path is worth building; ``feat3d`` itself decodes in software.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import av
import numpy as np
from av.codec.hwaccel import HWAccel
from av.video.reformatter import Interpolation, VideoReformatter

CLIP_LEN = 16


def decode(video: Path, hwaccel: HWAccel | None) -> tuple[float, float, list[np.ndarray], str]:
    """Seconds, CPU seconds, the first 32 converted frames, the decoder's pixel format."""
    reformatter = VideoReformatter()
    kept: list[np.ndarray] = []
    wall, cpu = time.perf_counter(), time.process_time()
    with av.open(str(video), hwaccel=hwaccel) as container:
        stream = container.streams.video[0]
        if hwaccel is None:
            stream.thread_type, stream.thread_count = "AUTO", 1
        pixel_format = "?"
        for frame in container.decode(stream):
            pixel_format = frame.format.name
            width = round(frame.width * 112 / frame.height)
            rgb = reformatter.reformat(
                frame, width=width, height=112, format="gbrp",
                interpolation=Interpolation.BILINEAR,
            ).to_ndarray()  # fmt: skip
            if len(kept) < 32:
                kept.append(rgb)
    return time.perf_counter() - wall, time.process_time() - cpu, kept, pixel_format


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("videos", nargs="+", type=Path)
    parser.add_argument("--device", default="0", help="CUDA device index")
    args = parser.parse_args()
    print(f"PyAV {av.__version__}, hwaccel devices: {av.codec.hwaccel.hwdevices_available()}")
    for video in args.videos:
        with av.open(str(video)) as container:
            n_frames = sum(1 for packet in container.demux(video=0) if packet.size)
        clips = max(1, n_frames) / CLIP_LEN
        soft = decode(video, None)
        print(
            f"{video.name}: software, 1 thread: {clips / soft[0]:7.1f} clips/s, "
            f"{soft[1] / clips * 1e3:6.1f} core-ms/clip ({soft[3]})"
        )
        try:
            hard = decode(video, HWAccel("cuda", device=args.device, allow_software_fallback=False))
        except (av.error.FFmpegError, OSError) as error:
            print(f"{video.name}: NVDEC unavailable here ({type(error).__name__}: {error})")
            continue
        pairs = zip(soft[2], hard[2], strict=False)
        worst = max((int(np.abs(a.astype(int) - b.astype(int)).max()) for a, b in pairs), default=0)
        same = len(soft[2]) == len(hard[2]) and worst == 0
        print(
            f"{video.name}: NVDEC:             {clips / hard[0]:7.1f} clips/s, "
            f"{hard[1] / clips * 1e3:6.1f} core-ms/clip ({hard[3]}); first {len(hard[2])} "
            f"frames {'identical' if same else f'differ (max {worst} levels)'}"
        )


if __name__ == "__main__":
    main()
