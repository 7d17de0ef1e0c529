"""Video input: streaming decode (:mod:`.decode`) and clip assembly (:mod:`.clips`)."""

from .clips import Clip, count_clips, iter_clips
from .decode import Frame, VideoDecodeError, VideoInfo, iter_frames, open_video

__all__ = [
    "Clip",
    "Frame",
    "VideoDecodeError",
    "VideoInfo",
    "count_clips",
    "iter_clips",
    "iter_frames",
    "open_video",
]
