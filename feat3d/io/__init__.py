"""Video input and feature output: streaming decode (:mod:`.decode`), clip assembly
(:mod:`.clips`; the other temporal views in :mod:`.samplers`), input discovery
(:mod:`.discover`), frame folders read as videos
(:mod:`.frames`) and the one opener of either (:mod:`.sources`), output formats (:mod:`.writers`;
crash-safe HDF5 in :mod:`.h5store` over :mod:`.journal`), reading them back (:mod:`.reader`),
merging shards (:mod:`.merge`), re-pooling stored clip features in time (:mod:`.pooling`) and
the multi-crop views of a clip (:mod:`.views`)."""

from .clips import Clip, count_clips, iter_clips
from .decode import Frame, VideoDecodeError, VideoInfo, iter_frames, open_video
from .discover import InputError, VideoSource, discover_videos
from .frames import iter_folder_frames, open_frame_folder
from .h5store import H5Store
from .merge import MergeReport, merge_outputs, parse_shard, shard_of
from .reader import OutputReader, PendingJournal, ReadError, open_output, pending_journal
from .samplers import (
    centred_positions,
    count_centred_clips,
    iter_centred_clips,
    iter_uniform_clips,
    uniform_starts,
)
from .sources import iter_source_frames, open_source
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
    "H5Store",
    "InputError",
    "MergeReport",
    "OutputError",
    "OutputReader",
    "PendingJournal",
    "ReadError",
    "VideoDecodeError",
    "VideoFailure",
    "VideoFeatures",
    "VideoInfo",
    "VideoSource",
    "centred_positions",
    "count_centred_clips",
    "count_clips",
    "discover_videos",
    "iter_centred_clips",
    "iter_clips",
    "iter_folder_frames",
    "iter_frames",
    "iter_source_frames",
    "iter_uniform_clips",
    "merge_outputs",
    "open_frame_folder",
    "open_output",
    "open_source",
    "open_video",
    "open_writer",
    "parse_shard",
    "pending_journal",
    "read_h5_features",
    "shard_of",
    "uniform_starts",
]
