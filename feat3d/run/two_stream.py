"""Inference with two-stream networks (ST-ResNet) for ``extract`` and ``classify``.

The paper's test protocol (Feichtenhofer et al., NIPS 2016, Sec. 4): per video 25 chunks
evenly spaced over its length, frames at short side 256 with no cropping, each chunk's RGB
frame and its stack of 10 flow fields through both streams at once, fully convolutionally:
the fc scores every spatio-temporal position and the scores are averaged, then the two
streams' averages are averaged. Flow comes from a ``feat3d flow`` file or is computed on the
fly. Each video gives one "clip" (the 25 chunks) in the outputs. A video is a file or a folder
of frame images (at ``frame_rate``); a source with a frame window
(:attr:`~feat3d.io.VideoSource.frames`, an annotated segment) spreads its chunks over that
window only.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch

from ..backbones import get_spec
from ..backbones.st_resnet import fully_convolutional_logits, normalize_two_stream
from ..flow.clips import iter_two_stream_clips
from ..flow.compute import FlowError
from ..flow.store import FlowFile
from ..io.decode import VideoDecodeError
from ..io.discover import VideoSource
from ..io.sources import open_source
from ..io.writers import VideoFailure
from ..model import VideoModel
from ..options import TwoStreamOptions
from .messages import VideoOutputs

#: Layers a two-stream network gives to ``extract``/``classify``.
TWO_STREAM_LAYERS = ("pool5", "pool5_appearance", "pool5_motion", "logits", "probs")


def takes_flow(model: VideoModel) -> bool:
    """Whether the model's backbone takes optical flow beside RGB in one input (its spec's
    ``streams``: ST-ResNet's ``("rgb", "flow")``; I3D's flow network is a stream of its own)."""
    return get_spec(model.meta.arch).streams == ("rgb", "flow")


def two_stream_attributes(options: TwoStreamOptions) -> dict[str, object]:
    """What outputs record (``flow_method``: the stored flow's when a file is given)."""
    method, short_side = options.method, options.short_side
    if options.flow is not None:
        with FlowFile(options.flow) as flows:
            method, short_side = flows.method, flows.short_side
    return {
        "chunks": options.chunks,
        "flow": str(options.flow) if options.flow is not None else "",
        "flow_method": method,
        "short_side": short_side,
    }


def _video_outputs(
    model: VideoModel, source: VideoSource, options: TwoStreamOptions, flows: object,
    layers: tuple[str, ...], frame_rate: float | None,
) -> VideoOutputs:  # fmt: skip
    network = model.backbone
    short_side, key = options.short_side, source.key
    if flows is not None:
        short_side, key = flows.short_side, flows.key_for(source.path, source.key)  # type: ignore[attr-defined]
    clips = iter_two_stream_clips(
        source.path, flow_file=flows, key=key, chunks=options.chunks,  # type: ignore[arg-type]
        flow_frames=network.flow_frames, short_side=short_side, method=options.method,
        frame_rate=frame_rate, frames=source.frames,
    )  # fmt: skip
    clip = next(clips)
    clips.close()
    meta = model.meta
    x = torch.from_numpy(np.ascontiguousarray(clip.array))[None].to(model.device)
    x = normalize_two_stream(x.float(), mean=meta.mean, std=meta.std, value_scale=meta.value_scale)
    with torch.inference_mode():
        outputs: dict[str, torch.Tensor] = {}
        if any(layer.startswith("pool5") for layer in layers):
            outputs.update(network.forward_streams(x))
        if "logits" in layers or "probs" in layers:
            outputs["logits"] = fully_convolutional_logits(network, x)["fused"]
            outputs["probs"] = torch.softmax(outputs["logits"].float(), dim=1)
    info = open_source(source.path, frame_rate=frame_rate)
    n_frames = info.n_frames_declared or int(clip.segment[1])
    return VideoOutputs(
        source=source,
        outputs={name: outputs[name].float().cpu().numpy() for name in layers},
        segments=np.asarray([clip.segment], dtype=np.int64),
        timestamps=np.asarray([clip.time], dtype=np.float64),
        info={
            "fps": float(info.fps or 0.0),
            "n_frames": int(n_frames),
            "duration": float(info.duration or clip.time[1]),
            "width": int(info.width),
            "height": int(info.height),
            "padded_frames": 0,
            "n_clips": 1,
        },
    )


def two_stream_videos(
    model: VideoModel,
    sources: Sequence[VideoSource],
    *,
    options: TwoStreamOptions,
    layers: tuple[str, ...],
    on_clips: object = None,
    frame_rate: float | None = None,
) -> Iterator[VideoOutputs | VideoFailure]:
    """``run_videos`` for a two-stream network: one output row per video (its chunks).
    ``frame_rate``: frames per second of frame folders (``--frame-rate``)."""
    unknown = [layer for layer in layers if layer not in TWO_STREAM_LAYERS]
    if unknown:
        raise ValueError(
            f"{model.meta.arch} has no layer {unknown[0]!r}; choose from "
            f"{', '.join(TWO_STREAM_LAYERS)}"
        )
    flows = FlowFile(options.flow) if options.flow is not None else None
    try:
        for source in sources:
            try:
                yield _video_outputs(model, source, options, flows, layers, frame_rate)
            except (VideoDecodeError, FlowError, KeyError, ValueError) as error:
                message = str(error).strip().splitlines()[0] if str(error).strip() else ""
                yield VideoFailure(source.key, source.display, message or type(error).__name__)
                continue
            if callable(on_clips):
                on_clips(1)
    finally:
        if flows is not None:
            flows.close()
