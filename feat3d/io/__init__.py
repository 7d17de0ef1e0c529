"""Video input and feature output: streaming decode (:mod:`.decode`), clip assembly
(:mod:`.clips`), input discovery (:mod:`.discover`) and output formats (:mod:`.writers`)."""

from .clips import Clip, count_clips, iter_clips
from .decode import Frame, VideoDecodeError, VideoInfo, iter_frames, open_video
from .discover import InputError, VideoSource, discover_videos
from .writers import (
    OutputError,
    VideoFailure,
    VideoFeatures,
    open_writer,
    read_h5_features,
)

__all__ = [
    "Clip",
    "Frame",
    "InputError",
    "OutputError",
    "VideoDecodeError",
    "VideoFailure",
    "VideoFeatures",
    "VideoInfo",
    "VideoSource",
    "count_clips",
    "discover_videos",
    "iter_clips",
    "iter_frames",
    "open_video",
    "open_writer",
    "read_h5_features",
]
