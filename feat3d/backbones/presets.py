"""The one table of normalization and clip protocol presets, and the label lists.

A preset says how clips must be prepared for a family of weights: pixel range, mean and std,
channel order, resize and crop, clip length, frame stride and frame rate. Everything else
(:class:`~feat3d.backbones.registry.BackboneSpec`'s default input, the catalog's sampling text,
the metadata of random or loaded weights) reads these values from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from importlib import resources

__all__ = [
    "FILE_PRESETS",
    "FORMAT_PRESET",
    "LAYOUT_PRESET",
    "PRESETS",
    "Preset",
    "categories_for",
    "kinetics400_categories",
    "preset_for",
]


@dataclass(frozen=True)
class Preset:
    """How clips must be prepared for a family of weights.

    Attributes:
        name: Preset name (``"hara2017"``, ``"hara2020"``, ``"torchvision"``).
        mean: Per-channel RGB mean, in the units of ``value_scale``.
        std: Per-channel RGB standard deviation, same units.
        value_scale: 255.0 when pixels enter as 0–255, 1.0 when they enter as 0–1.
        resize: Short side (int) or exact ``(H, W)`` before the centre crop.
        crop: Side of the square centre crop.
        clip_len: Frames per clip.
        frame_rate: Frames per second the weights were evaluated at, ``None`` for native.
        reference: Where the values come from.
        channel_order: ``"RGB"``, or ``"BGR"`` for weights trained on OpenCV/Caffe frames
            (mean and std are always listed in RGB order).
        frame_stride: Every ``frame_stride``-th frame of a window of
            ``clip_len * frame_stride`` frames makes a clip (Res3D: 2).
    """

    name: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    value_scale: float
    resize: int | tuple[int, int]
    crop: int
    clip_len: int
    frame_rate: float | None
    reference: str
    channel_order: str = "RGB"
    frame_stride: int = 1

    @property
    def sampling(self) -> str:
        """The temporal sampling in words, e.g. ``"16 consecutive frames at 15 fps"``."""
        if self.frame_stride == 1:
            frames = f"{self.clip_len} consecutive frames"
        else:
            frames = f"{self.clip_len} frames {self.frame_stride} apart"
        rate = f"{self.frame_rate:g} fps" if self.frame_rate else "the native rate"
        return f"{frames} at {rate}"


def _ig65m(frames: int) -> Preset:
    # moabitcoin/ig65m-pytorch ig65m/cli/extract.py: ToTensor() (/255), Resize(128) (short
    # side, bilinear), Normalize(mean [0.43216, 0.394666, 0.37645], std [0.22803, 0.22145,
    # 0.216989]), CenterCrop(112), RGB frames; README: input 8×112×112 or 32×112×112 by file.
    return Preset(
        name=f"ig65m-{frames}", mean=(0.43216, 0.394666, 0.37645),
        std=(0.22803, 0.22145, 0.216989), value_scale=1.0, resize=128, crop=112,
        clip_len=frames, frame_rate=None,
        reference=f"moabitcoin/ig65m-pytorch ig65m/cli/extract.py, README ({frames}×112×112)",
    )  # fmt: skip


PRESETS: dict[str, Preset] = {
    # kenshohara/video-classification-3d-cnn-pytorch: mean.py get_mean() returns
    # [114.7748, 107.7354, 99.4750] (ActivityNet); classify.py applies Scale(112) (short side),
    # CenterCrop(112), ToTensor() without /255, Normalize(mean, [1, 1, 1]). The 2017-era
    # 3D-ResNets-PyTorch opts.py: "--norm_value 1: range of inputs is [0-255]".
    "hara2017": Preset(
        name="hara2017",
        mean=(114.7748, 107.7354, 99.4750),
        std=(1.0, 1.0, 1.0),
        value_scale=255.0,
        resize=112,
        crop=112,
        clip_len=16,
        frame_rate=None,
        reference="kenshohara/video-classification-3d-cnn-pytorch mean.py, classify.py",
    ),
    # kenshohara/3D-ResNets-PyTorch: mean.py get_mean_std(value_scale, 'kinetics') gives
    # mean [0.4345, 0.4051, 0.3775], std [0.2768, 0.2713, 0.2737]; main.py
    # get_inference_utils: Resize(sample_size=112), CenterCrop(112), ToTensor() (0-1),
    # ScaleValue(value_scale=1), Normalize(mean, std).
    "hara2020": Preset(
        name="hara2020",
        mean=(0.4345, 0.4051, 0.3775),
        std=(0.2768, 0.2713, 0.2737),
        value_scale=1.0,
        resize=112,
        crop=112,
        clip_len=16,
        frame_rate=None,
        reference="kenshohara/3D-ResNets-PyTorch mean.py, main.py get_inference_utils",
    ),
    # pytorch/vision: transforms/_presets.py VideoClassification defaults mean
    # (0.43216, 0.394666, 0.37645), std (0.22803, 0.22145, 0.216989), input scaled to 0-1;
    # models/video/resnet.py KINETICS400_V1: resize_size=(128, 171), crop_size=(112, 112);
    # docs: "estimated on video-level with frame_rate=15, clips_per_video=5, clip_len=16".
    "torchvision": Preset(
        name="torchvision",
        mean=(0.43216, 0.394666, 0.37645),
        std=(0.22803, 0.22145, 0.216989),
        value_scale=1.0,
        resize=(128, 171),
        crop=112,
        clip_len=16,
        frame_rate=15.0,
        reference="pytorch/vision transforms/_presets.py VideoClassification",
    ),
    # facebookarchive/C3D C3D-v1.0 examples/c3d_feature_extraction/prototxt/
    # c3d_sport1m_feature_extractor_frm.prototxt: frames resized to 128×171 (new_height,
    # new_width), the Sports-1M mean cube sport1m_train16_128_mean.binaryproto subtracted,
    # centre crop 112, 16 frames, 0-255 values. The per-channel means are the averages of that
    # mean cube as quoted in public C3D preprocessing code, BGR (90.2516, 97.6570, 101.4083),
    # listed here in RGB order. Caffe read frames with OpenCV, so the original weights expect
    # BGR; axon-research/c3d-keras convert_caffe_model.py copies conv1 without a channel flip
    # and tests with cv2 (BGR) frames, and DavideA/c3d-pytorch documents no flip either.
    "c3d-sports1m": Preset(
        name="c3d-sports1m",
        mean=(101.4083, 97.6570, 90.2516),
        std=(1.0, 1.0, 1.0),
        value_scale=255.0,
        resize=(128, 171),
        crop=112,
        clip_len=16,
        frame_rate=None,
        reference="facebookarchive/C3D C3D-v1.0 c3d_sport1m_feature_extractor_frm.prototxt",
        channel_order="BGR",
    ),
    # facebookarchive/C3D C3D-v1.1 examples/c3d_ucf101_feature_extraction/
    # c3d_resnet18_ucf101_feature_extraction.prototxt (Res3D-18, Sports-1M): mean_value 128
    # on 0-255 values, new_height 128, new_width 171, crop_size 112, new_length 8 frames at
    # sampling_rate 2. Caffe/OpenCV frames: BGR.
    "res3d-sports1m": Preset(
        name="res3d-sports1m",
        mean=(128.0, 128.0, 128.0),
        std=(1.0, 1.0, 1.0),
        value_scale=255.0,
        resize=(128, 171),
        crop=112,
        clip_len=8,
        frame_rate=None,
        reference="facebookarchive/C3D C3D-v1.1 c3d_resnet18_ucf101_feature_extraction.prototxt",
        channel_order="BGR",
        frame_stride=2,
    ),
    # ST-ResNet-50 (feat3d/backbones/st_resnet.py) initialized from a torchvision ImageNet
    # ResNet-50: torchvision's ImageNet normalization (transforms/_presets.py
    # ImageClassification: mean (0.485, 0.456, 0.406), std (0.229, 0.224, 0.225), 0-1),
    # resize 256, crop 224. A clip is 5 chunks (stage 2 of Feichtenhofer et al., NIPS 2016)
    # 10 frames apart (the middle of the training stride range 5-15). The RGB statistics
    # apply to channels 0-2 only; the flow channels are scaled by the caller.
    "st-resnet": Preset(
        name="st-resnet",
        mean=(0.485, 0.456, 0.406),
        std=(0.229, 0.224, 0.225),
        value_scale=1.0,
        resize=256,
        crop=224,
        clip_len=5,
        frame_rate=None,
        reference="pytorch/vision ImageClassification preset; Feichtenhofer et al. NIPS 2016",
        frame_stride=10,
    ),
    # PyTorchVideo's Kinetics-400 hub checkpoints (pytorchvideo/models/hub, the torch hub
    # tutorial's transforms): frames to 0-1, mean 0.45, std 0.225 per channel, RGB; clips of
    # num_frames taken sampling_rate apart at 30 fps. Short side from the SlowFast configs'
    # test scale (X3D_*.yaml TRAIN_JITTER_SCALES minimum, SLOWFAST_8x8_R50.yaml 256); the crop
    # is the training crop, which configs/Kinetics/X3D_L.yaml gives as the test crop "if
    # TEST.NUM_SPATIAL_CROPS: 1" and which the heads' pooling windows were sized for (their
    # published 3-crop views take the full short side instead).
    **{
        name: Preset(
            name=name,
            mean=(0.45, 0.45, 0.45),
            std=(0.225, 0.225, 0.225),
            value_scale=1.0,
            resize=side,
            crop=crop,
            clip_len=frames,
            frame_rate=30.0,
            reference="facebookresearch/pytorchvideo hub; facebookresearch/SlowFast configs",
            frame_stride=rate,
        )
        for name, side, crop, frames, rate in (
            ("x3d-xs", 182, 160, 4, 12),
            ("x3d-s", 182, 160, 13, 6),
            ("x3d-m", 256, 224, 16, 5),
            ("x3d-l", 356, 312, 16, 5),
            ("slow-r50", 256, 224, 8, 8),
            ("slowfast-r50", 256, 224, 32, 2),
        )
    },
    # moabitcoin/ig65m-pytorch (R(2+1)D-34 converted from facebookresearch/VMZ's Caffe2
    # IG-65M models): see _ig65m.
    "ig65m-8": _ig65m(8),
    "ig65m-32": _ig65m(32),
    # pytorch/vision models/video/s3d.py S3D_Weights.KINETICS400_V1: VideoClassification
    # (mean/std above, 0-1) with resize_size=(256, 256), crop_size=(224, 224); "accuracies
    # are estimated on clip-level with parameters frame_rate=15, clips_per_video=1, and
    # clip_len=128"; min_temporal_size 14.
    "s3d-kinetics400": Preset(
        name="s3d-kinetics400",
        mean=(0.43216, 0.394666, 0.37645),
        std=(0.22803, 0.22145, 0.216989),
        value_scale=1.0,
        resize=(256, 256),
        crop=224,
        clip_len=128,
        frame_rate=15.0,
        reference="pytorch/vision models/video/s3d.py S3D_Weights.KINETICS400_V1",
    ),
    # I3D (Carreira & Zisserman, CVPR 2017, Sec. 3.3 and 4; deepmind/kinetics-i3d README):
    # Kinetics at 25 fps, short side 256, 224 crops of 64-frame clips; RGB rescaled to
    # [-1, 1]. piergiaj/pytorch-i3d charades_dataset.py load_rgb_frames: (img / 255) * 2 - 1,
    # i.e. (x - 127.5) / 127.5 on 0-255 values; test: CenterCrop(224).
    "i3d-rgb": Preset(
        name="i3d-rgb",
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        value_scale=255.0,
        resize=256,
        crop=224,
        clip_len=64,
        frame_rate=25.0,
        reference="Carreira & Zisserman 2017; piergiaj/pytorch-i3d charades_dataset.py",
    ),
    # The flow stream: TV-L1 flow clipped to ±20 px and divided by 20 (deepmind/kinetics-i3d
    # README: "truncated to [-20, 20], then rescaled between -1 and 1"). Two channels (dx, dy);
    # mean/std are in pixels (value_scale 255: values are used as they come) and apply to
    # the first two entries; the run layer normalizes flow itself (feat3d.run.i3d_streams).
    "i3d-flow": Preset(
        name="i3d-flow",
        mean=(0.0, 0.0, 0.0),
        std=(20.0, 20.0, 20.0),
        value_scale=255.0,
        resize=256,
        crop=224,
        clip_len=64,
        frame_rate=25.0,
        reference="deepmind/kinetics-i3d README (flow preprocessing); Carreira & Zisserman 2017",
    ),
    # piergiaj/pytorch-i3d rgb_charades.pt: fine-tuned on Charades (157 classes) from the
    # Charades_v1_rgb frames (24 fps), 64-frame clips, CenterCrop(224) at test, values
    # (img / 255) * 2 - 1. load_rgb_frames keeps the stored frame size (upscaling only a side
    # below 226), so no resize is exact; 256, the Kinetics rule, is this preset's choice.
    "i3d-charades": Preset(
        name="i3d-charades",
        mean=(127.5, 127.5, 127.5),
        std=(127.5, 127.5, 127.5),
        value_scale=255.0,
        resize=256,
        crop=224,
        clip_len=64,
        frame_rate=24.0,
        reference="piergiaj/pytorch-i3d train_i3d.py, charades_dataset.py",
    ),
}

#: Published files that share a key layout but not a clip protocol: ``(arch, marker,
#: preset)``, the marker a part of the file name or the classifier's row count.
#: :func:`feat3d.backbones.checkpoints.load_checkpoint` applies the first that matches.
FILE_PRESETS: tuple[tuple[str, str | int, str], ...] = (
    ("r2plus1d-34", "clip8", "ig65m-8"),
    ("r2plus1d-34", 359, "ig65m-8"),  # only the 8-frame IG-65M file has 359 classes
    ("r2plus1d-34", "clip32", "ig65m-32"),
)

#: Checkpoint format → preset of the weights stored in it.
FORMAT_PRESET = {
    "hara2017": "hara2017",
    "hara2020": "hara2020",
    "torchvision": "torchvision",
    "c3d": "c3d-sports1m",
    "i3d": "i3d-rgb",
}

#: ``(format, input channels, classes)`` → preset, where one format holds several (the
#: I3D port's files: RGB and flow Kinetics streams, the Charades RGB stream).
LAYOUT_PRESET = {("i3d", 3, 157): "i3d-charades"}


def preset_for(fmt: str, *, in_channels: int = 3, num_classes: int = 400) -> str:
    """The preset of weights in checkpoint format ``fmt`` with this input and classifier."""
    if fmt == "i3d" and in_channels == 2:
        return "i3d-flow"
    return LAYOUT_PRESET.get((fmt, in_channels, num_classes), FORMAT_PRESET[fmt])


@cache
def _kinetics400() -> tuple[str, ...]:
    text = resources.files("feat3d").joinpath("data/kinetics400_classes.txt").read_text("utf-8")
    labels = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(labels) != 400:
        raise RuntimeError(f"kinetics400_classes.txt has {len(labels)} labels, expected 400")
    return labels


def kinetics400_categories() -> list[str]:
    """The 400 Kinetics labels in checkpoint (alphabetical) order."""
    return list(_kinetics400())


def categories_for(num_classes: int) -> list[str]:
    """Labels for a classifier of ``num_classes`` rows.

    Kinetics-400 for 400; ``class_0 .. class_{n-1}`` otherwise (no label file is shipped for
    Kinetics-700 or fine-tuned heads).
    """
    if num_classes == 400:
        return kinetics400_categories()
    return [f"class_{i}" for i in range(num_classes)]
