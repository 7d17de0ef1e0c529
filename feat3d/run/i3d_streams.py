"""I3D's two streams for ``extract`` and ``classify``: RGB and optical flow on the same windows.

I3D (Carreira & Zisserman, CVPR 2017) is two networks trained apart: one on RGB in [-1, 1],
one on 2-channel TV-L1 flow clipped to ±20 px and divided by 20. Downstream work (temporal
action localization on THUMOS-14, ActivityNet) takes both streams' ``pool5`` on the same
windows of frames and concatenates them: 2048 values per window, RGB first.

A window of ``T`` frames starting at frame ``s`` gives the RGB net frames ``s .. s+T-1`` and
the flow net the fields ``s .. s+T-1`` (field ``i`` from frame ``i`` to ``i + 1``; the last
frame of a video repeats the field before it). Frames are sampled at the clip options' rate
and size; flow is computed between consecutive sampled frames at that size, quantized to
uint8 and back as ``feat3d flow`` stores it (so a computed and a stored field feed the same
numbers), then both are centre-cropped. A ``feat3d flow`` file holds flow between
consecutive source frames: it serves runs at the native rate (``--fps 0``) at its short
side. Windows follow ``--clip-len``, ``--stride``, ``--frame-stride``, ``--tail``, ``--start``
and ``--end`` exactly as RGB-only extraction does (:func:`feat3d.io.clips.iter_clips`).

Frames are decoded and flow computed in the pipeline's decoding worker processes
(:class:`I3DWindowStream` is a :class:`~.stream.ClipStream`), and windows are batched across
videos for both networks (:class:`StreamNetworks`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import replace

import numpy as np
import torch

from ..backbones import get_spec
from ..backbones.i3d import FLOW_BOUND
from ..flow.compute import FlowError, dequantize, iter_frames_and_flow, quantize
from ..flow.store import FlowFile
from ..io.decode import Frame, VideoInfo
from ..io.discover import VideoSource
from ..io.sources import iter_source_frames
from ..model import VideoModel, load_model
from ..options import ClipOptions, OptionsError, Size, TwoStreamOptions
from .stream import ClipStream

__all__ = [
    "STREAM_LAYERS",
    "I3DWindowStream",
    "StreamNetworks",
    "check_stream_layer",
    "i3d_stream_attributes",
    "stream_networks",
]

#: Layers of a run over I3D streams: ``pool5`` (both streams: their concatenation),
#: each stream's ``pool5``, and the streams' averaged logits.
STREAM_LAYERS = ("pool5", "pool5_rgb", "pool5_flow", "logits", "probs")
_WIDTH = 1024


def _streams_of(model: VideoModel, options: TwoStreamOptions | None) -> tuple[str, ...] | None:
    """The I3D streams a run uses, or ``None`` for an ordinary run (not I3D, or RGB alone)."""
    spec = get_spec(model.meta.arch)
    if spec.family != "i3d":
        return None
    streams = options.streams if options is not None else ("rgb",)
    if spec.streams == ("flow",):
        if "rgb" in streams and streams != ("rgb",):
            raise OptionsError(
                "--weights hold the flow network (i3d-flow): with --streams rgb,flow give the "
                "RGB weights as --weights and the flow weights as --flow-weights"
            )
        return ("flow",)
    if streams == ("flow",):
        raise OptionsError(
            "--streams flow runs the flow network alone: give its weights as --weights "
            "(flow_imagenet.pt, model i3d-flow)"
        )
    return None if streams == ("rgb",) else streams


def uses_streams(model: VideoModel, options: TwoStreamOptions | None) -> bool:
    """Whether a run of ``model`` goes through I3D's streams runner (flow alone, or RGB and
    flow), without loading anything."""
    return _streams_of(model, options) is not None


def check_stream_layer(model: VideoModel, layer: str, options: TwoStreamOptions | None) -> None:
    """Refuse a layer the run cannot give, naming the choices (any network)."""
    streams = _streams_of(model, options)
    if streams is None or streams == ("flow",):
        model.check_layer(layer)
    elif layer not in STREAM_LAYERS:
        raise ValueError(
            f"i3d --streams rgb,flow has no layer {layer!r}; choose from {', '.join(STREAM_LAYERS)}"
        )


def stream_networks(
    model: VideoModel, options: TwoStreamOptions | None
) -> dict[str, VideoModel] | None:
    """The networks of an I3D run over flow (``{"flow": ...}`` or ``{"rgb": ..., "flow":
    ...}``), the flow one loaded from ``options.flow_weights`` on the model's device; ``None``
    for an ordinary run."""
    streams = _streams_of(model, options)
    if streams is None:
        return None
    if streams == ("flow",):
        return {"flow": model}
    assert options is not None and options.flow_weights is not None
    flow = load_model(
        "i3d-flow", options.flow_weights, device=model.device, precision=model.precision,
        compile=model.compile,
    )  # fmt: skip
    return {"rgb": model, "flow": flow}


def i3d_stream_attributes(model: VideoModel, options: TwoStreamOptions | None) -> dict:
    """What outputs of a run over I3D streams record: the streams, where each one's values
    lie in a concatenated ``pool5``, the flow's source and protocol."""
    streams = _streams_of(model, options)
    if streams is None:
        return {}
    assert options is not None or streams == ("flow",)
    flow = options.flow if options is not None else None
    attrs: dict[str, object] = {
        "streams": ",".join(streams),
        "flow": str(flow) if flow is not None else "",
        "flow_method": options.method if options is not None else "tvl1",
        "flow_bound": FLOW_BOUND,
        "flow_scale": f"clip(flow, -{FLOW_BOUND:g}, {FLOW_BOUND:g}) / {FLOW_BOUND:g}",
    }
    for index, stream in enumerate(streams):
        attrs[f"pool5_{stream}_columns"] = [index * _WIDTH, (index + 1) * _WIDTH]
    if options is not None and options.flow_weights:
        attrs["flow_weights"] = str(options.flow_weights)
    return attrs


def _centre(image: np.ndarray, crop: int | tuple[int, int] | None) -> np.ndarray:
    """The centre ``crop`` of an ``(H, W, C)`` array, offsets rounded as the decoder's."""
    if crop is None:
        return image
    ch, cw = (crop, crop) if isinstance(crop, int) else crop
    h, w = image.shape[:2]
    ch, cw = min(ch, h), min(cw, w)
    top, left = round((h - ch) / 2.0), round((w - cw) / 2.0)
    return image[top : top + ch, left : left + cw]


def _pairs(
    source: VideoSource, clips: ClipOptions, method: str, flows: FlowFile | None,
    infos: list[VideoInfo],
) -> Iterator[tuple[Frame, np.ndarray | None]]:  # fmt: skip
    """Each frame with the field ending at it, quantized to uint8 over ±20 px as ``feat3d
    flow`` stores it (``None`` for the first frame: the first of the video, or the first
    after ``--start``)."""
    if flows is None:
        for frame, field in iter_frames_and_flow(
            source.path, method=method, short_side=clips.size, bound=FLOW_BOUND,  # type: ignore[arg-type]
            fps=clips.fps or None, threads=clips.threads, info_out=infos, start=clips.start,
            end=clips.end, frame_rate=clips.frame_rate,
        ):  # fmt: skip
            yield frame, None if field is None else quantize(field, bound=FLOW_BOUND)
        return
    if clips.fps or flows.short_side != clips.size:
        raise FlowError(
            f"{flows.path} holds flow between consecutive source frames at short side "
            f"{flows.short_side}: use it with --fps 0 --size {flows.short_side}, or leave "
            "--flow out to compute flow at the clips' rate"
        )
    key = flows.key_for(source.path, source.key)
    first = True
    for frame in iter_source_frames(
        source.path, frame_rate=clips.frame_rate, size=clips.size, crop=None, info_out=infos,
        threads=clips.threads, **clips.decode_kwargs(),
    ):  # fmt: skip
        field = None
        if frame.index > 0 and not first:  # source indices: the same after a --start seek
            pixels = flows.read(key, frame.index - 1, frame.index)[0]
            field = quantize(pixels, bound=FLOW_BOUND)  # the same uint8 when stored at ±20
        first = False
        yield frame, field


def _frames_with_flow(pairs: Iterator[tuple[Frame, np.ndarray | None]], crop) -> Iterator[Frame]:  # type: ignore[no-untyped-def]
    """Frames whose image is ``(h, w, 5)`` uint8: RGB then the quantized field starting at
    the frame (``dx``, ``dy``), centre-cropped; the last frame repeats the field before it
    (a one-frame video has zero flow, 128)."""

    def combined(frame: Frame, field: np.ndarray | None) -> Frame:
        rgb = frame.image
        motion = quantize(np.zeros((*rgb.shape[:2], 2), np.float32), bound=FLOW_BOUND)
        if field is not None:
            motion = field.transpose(1, 2, 0)
            if motion.shape[:2] != rgb.shape[:2]:
                raise FlowError(
                    f"flow is {motion.shape[1]}×{motion.shape[0]}, frames are "
                    f"{rgb.shape[1]}×{rgb.shape[0]} (another short side?)"
                )
        image = _centre(np.concatenate([rgb, motion], axis=2), crop)
        return replace(frame, image=np.ascontiguousarray(image))

    previous: Frame | None = None
    last: np.ndarray | None = None
    for frame, field in pairs:
        if previous is not None:
            yield combined(previous, field)
            last = field
        previous = frame
    if previous is not None:
        yield combined(previous, last)


def _run_streams(
    networks: dict[str, VideoModel], batch: torch.Tensor, layers: tuple[str, ...], pool: bool
) -> dict[str, np.ndarray]:
    """The requested layers of a batch of ``(N, T, h, w, 5)`` uint8 windows."""
    stack = batch.numpy()
    inputs = {
        "rgb": torch.from_numpy(np.ascontiguousarray(stack[..., :3])),
        "flow": torch.from_numpy(dequantize(stack[..., 3:], bound=FLOW_BOUND)),  # pixels
    }
    if list(networks) == ["flow"]:  # the flow network alone: any of its layers
        return networks["flow"].run(inputs["flow"], layers, pool=pool)
    wanted = ("pool5", "logits") if any(n in ("logits", "probs") for n in layers) else ("pool5",)
    outputs = {}
    for stream, network in networks.items():
        outputs[stream] = network.run(inputs[stream], wanted)
    result: dict[str, np.ndarray] = {}
    for name in layers:
        if name.startswith("pool5_"):
            result[name] = outputs[name[len("pool5_") :]]["pool5"]
        elif name == "pool5":
            result[name] = np.concatenate([outputs[s]["pool5"] for s in networks], axis=1)
        else:
            result["logits"] = np.mean([outputs[s]["logits"] for s in networks], axis=0)
            if name == "probs":
                result[name] = torch.softmax(torch.from_numpy(result["logits"]), dim=1).numpy()
    return {name: result[name] for name in layers}


class StreamNetworks:
    """I3D's networks behind one ``run``, as the pipeline's batches call a model: a batch of
    ``(N, T, h, w, 5)`` uint8 windows (RGB, then the quantized field) in, the layers out.

    Args:
        networks: From :func:`stream_networks`.
    """

    def __init__(self, networks: dict[str, VideoModel]):
        self.networks = networks
        self.device = next(iter(networks.values())).device

    def run(
        self, frames: torch.Tensor, layers: tuple[str, ...], *, pool: bool = True
    ) -> dict[str, np.ndarray]:
        """Layers from :data:`STREAM_LAYERS` (two streams) or the flow network's layers;
        ``pool=False`` keeps the flow network's ``mixed_5c`` unpooled (flow alone)."""
        return _run_streams(self.networks, frames, layers, pool)


class I3DWindowStream(ClipStream):
    """The windows of many videos for I3D's streams: each clip is ``(T, h, w, 5)`` uint8,
    RGB then the field starting at each frame, quantized as ``feat3d flow`` stores it.

    Flow is computed (or read from ``options.flow``) where the frames are decoded: in the
    decoding worker processes of the pipeline (``--workers``), or in this process with
    ``--workers 0``. ``--start``/``--end``, ``--max-frames`` and ``--timeout`` apply as to
    RGB clips. The flow file is opened per video, in the process that reads it (an open
    HDF5 file is not shared across a fork).

    Args:
        sources: Videos.
        clips: Filled clip options (the RGB weights' protocol).
        options: ``flow`` file, flow ``method``.
    """

    def __init__(
        self, sources: Sequence[VideoSource], clips: ClipOptions, options: TwoStreamOptions
    ):
        super().__init__(sources, clips)
        self.flow = options.flow
        self.method = options.method

    def clip_bytes(self) -> int:
        return self.options.clip_bytes() * 5 // 3

    def frames(
        self, source: VideoSource, opts: ClipOptions, *, crop: Size | None,
        infos: list[VideoInfo], warnings: list[str],
    ) -> Iterator[Frame]:  # fmt: skip
        flows = FlowFile(self.flow) if self.flow is not None else None
        try:
            yield from _frames_with_flow(_pairs(source, opts, self.method, flows, infos), crop)
        finally:
            if flows is not None:
                flows.close()
