#!/usr/bin/env bash
# The GPU figures of README "Speed" in one call of a device machine (one NVIDIA GPU, many
# cores, no network, no PyAV): resnet-18 and resnet-50, batch 64, fp32/bf16/fp16, decode-only
# against model-only against end to end, on the generated test videos; and whether NVDEC
# (PyAV's cuda hwaccel) decodes faster than the CPU decoders (bench/nvdec_probe.py).
#
#   bench/gpu_check.sh --fetch   here, where PyPI answers: PyAV's wheel for the device's
#                                CPython 3.12 into .whl/ (35 MB; keep .whl/ out of git, e.g.
#                                echo /.whl/ >> .git/info/exclude)
#   bash bench/gpu_check.sh      there, with .whl carried; writes $OUT/gpu_*.json and
#                                $OUT/gpu.log (about 6 minutes on an H200 with 16 cores)
#
# Nothing is installed on the machine running it, except the carried wheel into /tmp/site.
set -euo pipefail
cd "$(dirname "$0")/.."
AV_VERSION=18.1.0

if [[ "${1:-}" == "--fetch" ]]; then
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 -d .whl "av==${AV_VERSION}"
    exit 0
fi

OUT=${OUT:-$(mktemp -d)}
python3 -c "import av" 2>/dev/null || {
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/av-*.whl
    export PYTHONPATH=/tmp/site
}
export PYTHONPATH=${PYTHONPATH:+$PYTHONPATH:}$PWD PYTHONUNBUFFERED=1
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    echo "cores: $(nproc); $(python3 -c 'import torch, av; print("torch", torch.__version__, "PyAV", av.__version__)')"
    python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py 2>&1 | tail -3 || true
    videos=$(mktemp -d)
    python3 - "$videos" <<'PY'
import sys
from pathlib import Path
sys.path.insert(0, "bench")
from throughput import make_video
for width, height in ((320, 240), (640, 272), (1280, 720)):
    make_video(Path(sys.argv[1]) / f"scene_{width}x{height}.mp4", width, height)
PY
    python3 bench/nvdec_probe.py "$videos"/scene_*.mp4
    for model in resnet-18 resnet-50; do
        python3 bench/throughput.py "$videos"/scene_640x272.mp4 "$videos"/scene_1280x720.mp4 \
            --model "$model" --device cuda --batch-size 64 --precision fp32,bf16,fp16 \
            --copies 48 --repeat 1 --seconds 4 --json "$OUT/gpu_${model}.json"
    done
} 2>&1 | tee "$OUT/gpu.log"
