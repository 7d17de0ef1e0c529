"""Optical flow for two-stream networks: computing it (:mod:`.compute`), storing it in HDF5
and reading it back (:mod:`.store`), and two-stream clips for ``st-resnet-50``
(:mod:`.clips`). Needs OpenCV with its contrib modules: ``pip install 'feat3d[flow]'``."""

from .clips import TwoStreamClip, chunk_starts, iter_two_stream_clips
from .compute import (
    METHODS,
    FlowError,
    dequantize,
    flow_threads,
    iter_flow,
    iter_frames_and_flow,
    quantize,
)
from .store import FlowEvents, FlowFile, FlowReport, extract_flow, read_flow

__all__ = [
    "METHODS",
    "FlowError",
    "FlowEvents",
    "FlowFile",
    "FlowReport",
    "TwoStreamClip",
    "chunk_starts",
    "dequantize",
    "extract_flow",
    "flow_threads",
    "iter_flow",
    "iter_frames_and_flow",
    "iter_two_stream_clips",
    "quantize",
    "read_flow",
]
