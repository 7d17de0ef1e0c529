"""Inference with the two-stream ST-ResNet (``st-resnet-50``) for ``extract`` and ``classify``.

The paper's test protocol (Feichtenhofer et al., NIPS 2016, Sec. 4): per video 25 chunks
evenly spaced over its length, frames at short side 256 with no cropping, each chunk's RGB
frame and its stack of 10 flow fields through both streams at once, fully convolutionally:
the fc scores every spatio-temporal position and the scores are averaged, then the two
streams' averages are averaged. Flow comes from a ``feat3d flow`` file or is computed on the
fly. Each video gives one "clip" (the 25 chunks) in the outputs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from .io.decode import VideoDecodeError, open_video
from .io.discover import VideoSource
from .io.writers import VideoFailure
from .model import VideoModel
from .pipeline import VideoOutputs

#: Layers an ``st-resnet-50`` gives to ``extract``/``classify``.
TWO_STREAM_LAYERS = ("pool5", "pool5_appearance", "pool5_motion", "logits", "probs")


@dataclass(frozen=True)
class TwoStreamOptions:
    """How a two-stream model sees a video.

    Attributes:
        flow: A ``feat3d flow`` HDF5 file with every video's flow (``None``: compute it).
        chunks: Chunks per video (25 in the paper's test protocol).
        short_side: Frames resized to this short side (256), no cropping; with ``flow``, the
            flow file's.
        method: Flow method when computing it (``tvl1`` as in the paper, ``dis``, ...).
    """

    flow: str | os.PathLike[str] | None = None
    chunks: int = 25
    short_side: int = 256
    method: str = "tvl1"

    def attributes(self) -> dict[str, object]:
        """What outputs record (``flow_method``: the stored flow's when a file is given)."""
        method, short_side = self.method, self.short_side
        if self.flow is not None:
            from .flow.store import FlowFile

            with FlowFile(self.flow) as flows:
                method, short_side = flows.method, flows.short_side
        return {
            "chunks": self.chunks,
            "flow": str(self.flow) if self.flow is not None else "",
            "flow_method": method,
            "short_side": short_side,
        }


def is_two_stream(model: VideoModel) -> bool:
    return model.meta.arch == "st-resnet-50"


def _video_outputs(
    model: VideoModel, source: VideoSource, options: TwoStreamOptions, flows: object,
    layers: tuple[str, ...],
) -> VideoOutputs:  # fmt: skip
    from .backbones.st_resnet import fully_convolutional_logits, normalize_two_stream
    from .flow.clips import iter_two_stream_clips

    network = model.backbone
    short_side, key = options.short_side, source.key
    if flows is not None:
        short_side, key = flows.short_side, flows.key_for(source.path, source.key)  # type: ignore[attr-defined]
    clips = iter_two_stream_clips(
        source.path, flow_file=flows, key=key, chunks=options.chunks,  # type: ignore[arg-type]
        flow_frames=network.flow_frames, short_side=short_side, method=options.method,
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
    info = open_video(source.path)
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
) -> Iterator[VideoOutputs | VideoFailure]:
    """``run_videos`` for ``st-resnet-50``: one output row per video (its 25 chunks)."""
    from .flow.compute import FlowError
    from .flow.store import FlowFile

    unknown = [layer for layer in layers if layer not in TWO_STREAM_LAYERS]
    if unknown:
        raise ValueError(
            f"st-resnet-50 has no layer {unknown[0]!r}; choose from {', '.join(TWO_STREAM_LAYERS)}"
        )
    flows = FlowFile(options.flow) if options.flow is not None else None
    try:
        for source in sources:
            try:
                yield _video_outputs(model, source, options, flows, layers)
            except (VideoDecodeError, FlowError, KeyError, ValueError) as error:
                message = str(error).strip().splitlines()[0] if str(error).strip() else ""
                yield VideoFailure(source.key, str(source.path), message or type(error).__name__)
                continue
            if callable(on_clips):
                on_clips(1)
    finally:
        if flows is not None:
            flows.close()
