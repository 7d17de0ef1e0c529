"""Steps of ``make demo`` that are not feat3d commands: a sample video made offline, the
weights to run it with, the labels of the demo dataset, and the held-out accuracy check.

    python -m feat3d.demo sample demo/sample.mp4      # prints DEFAULT or none
    python -m feat3d.demo labels demo/data -o demo/labels.csv
    python -m feat3d.demo check demo/heldout.json --min-accuracy 0.6
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from .backbones import list_weights, weights_cache_path


def make_sample_video(
    path: str | Path, *, n_frames: int = 80, fps: int = 25, width: int = 160, height: int = 120
) -> Path:
    """Write an h264 video of a bright disc moving across a gradient (no network needed)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    ys, xs = np.mgrid[0:height, 0:width]
    background = np.stack(
        [xs * 255 // width, ys * 255 // height, np.full_like(xs, 96)], axis=-1
    ).astype(np.uint8)
    with av.open(str(target), "w") as container:
        stream = container.add_stream("h264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(n_frames):
            image = background.copy()
            cx = int(width * (0.15 + 0.7 * index / max(1, n_frames - 1)))
            cy = int(height / 2 + height / 4 * math.sin(index / 6))
            image[(xs - cx) ** 2 + (ys - cy) ** 2 < (height // 8) ** 2] = (250, 240, 60)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return target


def demo_weights(model: str = "r3d_18") -> str:
    """``DEFAULT`` when the model's published weights are already in the torch.hub cache
    (so the demo stays offline), else ``none``."""
    named = [w for w in list_weights(model) if w.default]
    return "DEFAULT" if named and weights_cache_path(named[0]).exists() else "none"


def write_labels(root: str | Path, output: str | Path) -> int:
    """``video,label,split`` rows for ``root/<split>/<class>/<video>``: the class is the
    folder name, the split ``train`` for ``root/motion``, ``test`` for the others."""
    root = Path(root)
    rows = []
    for video in sorted(root.rglob("*.mp4")):
        parts = video.relative_to(root).parts
        split = "train" if parts[0] == "motion" else "test"
        rows.append((video.relative_to(root).as_posix(), parts[-2], split))
    with Path(output).open("w", newline="", encoding="utf-8") as handle:
        csv.writer(handle).writerows(rows)
    return len(rows)


def check_predictions(json_path: str | Path, *, min_accuracy: float) -> tuple[float, list[str]]:
    """Held-out accuracy of a ``feat3d classify --json`` file whose videos sit in folders
    named by their true class; also the table lines to print."""
    report = json.loads(Path(json_path).read_text(encoding="utf-8"))
    lines = [f"{'video':<26} {'true':<6} {'predicted':<10} {'score':>5}"]
    right = 0
    for video in report["videos"]:
        truth = Path(video["video"]).parent.name
        best = video["top_k"][0]
        ok = best["label"] == truth
        right += ok
        mark = "ok" if ok else "WRONG"
        name, label, score = video["video"], best["label"], best["score"]
        lines.append(f"{name:<26} {truth:<6} {label:<10} {score:5.2f} {mark}")
    accuracy = right / max(1, len(report["videos"]))
    lines.append(
        f"held-out accuracy {accuracy:.2f} ({right}/{len(report['videos'])}; chance 0.25, "
        f"required {min_accuracy:.2f})"
    )
    return accuracy, lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m feat3d.demo",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    steps = parser.add_subparsers(dest="step", required=True)
    sample = steps.add_parser("sample", help="write the sample video, print the weights to use")
    sample.add_argument("video", type=Path)
    labels = steps.add_parser("labels", help="write video,label,split for the demo dataset")
    labels.add_argument("root", type=Path)
    labels.add_argument("-o", "--output", type=Path, required=True)
    check = steps.add_parser("check", help="held-out accuracy of a classify --json file")
    check.add_argument("json", type=Path)
    check.add_argument("--min-accuracy", type=float, default=0.6)
    args = parser.parse_args(argv)
    if args.step == "sample":
        make_sample_video(args.video)
        print(demo_weights())
    elif args.step == "labels":
        count = write_labels(args.root, args.output)
        print(f"wrote {count} labels to {args.output}")
    else:
        accuracy, lines = check_predictions(args.json, min_accuracy=args.min_accuracy)
        print("\n".join(lines))
        if accuracy < args.min_accuracy:
            print(f"demo failed: held-out accuracy {accuracy:.2f} < {args.min_accuracy}")
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
