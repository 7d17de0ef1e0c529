"""Training and evaluation: labelled datasets (:mod:`.datasets`; Hara et al.'s annotation JSON
in :mod:`.annotations`), clip sampling with Hara et
al.'s augmentation (:mod:`.sampling`), the one training loop (:mod:`.loop`) that ``feat3d
train`` (:mod:`.fit`) and the two-stream stages (:mod:`.two_stream`) run, the papers'
evaluation (:mod:`.evaluate`) and the linear-SVM protocol on extracted features (:mod:`.svm`)."""

from .annotations import load_annotation
from .datasets import (
    DatasetError,
    DatasetSplit,
    FrameIndex,
    VideoItem,
    VideoTiming,
    load_dataset,
)
from .evaluate import EvalResult, evaluate_videos, write_evaluation
from .fit import TrainError, TrainOptions, TrainReport, fit, trains_in_stages
from .sampling import (
    HARA_SCALES,
    POSITIONS,
    ClipParams,
    FailedSample,
    TrainClips,
    crop_box,
    temporal_indices,
)

__all__ = [
    "HARA_SCALES",
    "POSITIONS",
    "ClipParams",
    "DatasetError",
    "DatasetSplit",
    "EvalResult",
    "FailedSample",
    "FrameIndex",
    "TrainClips",
    "TrainError",
    "TrainOptions",
    "TrainReport",
    "VideoItem",
    "VideoTiming",
    "crop_box",
    "evaluate_videos",
    "fit",
    "load_annotation",
    "load_dataset",
    "temporal_indices",
    "trains_in_stages",
    "write_evaluation",
]
