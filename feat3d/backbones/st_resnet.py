"""ST-ResNet: the two-stream spatiotemporal ResNet-50 of Feichtenhofer, Pinz & Wildes.

C. Feichtenhofer, A. Pinz, R. P. Wildes. "Spatiotemporal Residual Networks for Video Action
Recognition", NIPS 2016 (arXiv:1611.02155); code: github.com/feichtenhofer/st-resnet
(MatConvNet: ``STResNet_stage1.m``, ``STResNet_stage2.m``, ``cnn_train_dag.m``).

One clip is one tensor ``(N, 3 + 2L, T, H, W)``: ``T`` chunks, chunk ``t`` being RGB frame
``t`` (channels 0-2) and the ``L`` optical-flow fields starting there, stacked as
``x0, y0, x1, y1, ...`` (channels 3..). Data flow, per stream (appearance: 3 channels,
motion: ``2L = 20``), with ``T`` chunks at 224×224::

    conv1 1×7×7 /(1,2,2) ─ bn1 ─ relu ─ maxpool 1×3×3 /(1,2,2)        64 × T × 56 × 56
    layer1 ─ layer2 /2 ─ layer3 /2 ─ layer4 /2                        2048 × T × 7 × 7
    pool5: max over time (window 5, stride 2), mean over the rest     (N, 2048)
    fc                                                                 (N, num_classes)

- Every layer is a ResNet-50 layer with temporal extent 1 (torchvision's key names and its
  v1.5 layout, stride on the 3×3 conv), so an ImageNet state dict maps 1:1
  (:func:`inflate_resnet50_2d`), except in the second residual unit of every stage
  (``layer1.1`` .. ``layer4.1``): its two 1×1 convs, ``conv1`` and ``conv3``, are 3×1×1 in
  time (the paper's 1×1×3 filters). This follows the authors' code, which converts the
  ``res{2..5}b_branch2a`` and ``res{2..5}b_branch2c`` convs to ``ConvTime`` (filters ``w/3``
  stacked 3 times, temporal padding 1 with zeros). Table 1 of the paper could not be read
  here; the released code is the reference.
- Skip-stream connection (Sec. 3.1, eq. 2): before the second unit of every stage, the motion
  stream's ReLU output of the first unit is added to the appearance stream. ``motion_skip=
  "residual"`` (default) adds it to the input of the appearance unit's residual branch only,
  ``x_a' = x_a + F(x_a + relu(x_m))``, as we read eq. 2 (not verified against the text);
  ``"sum"`` adds it before the appearance unit's ReLU, as the authors' ``STResNet_stage1.m``
  does (``fusionLayer = {'res2a_relu', 'res2a'; ...}``), so it also enters the identity path;
  ``"none"`` makes two independent streams.
- pool5: ST-ResNet* (``STResNet_stage2.m``: ``PoolTime`` max, ``poolSz=5``,
  ``poolStride=2`` after ``res5c_relu``) max-pools conv5 over time per position, then
  ``pool5`` averages over the remaining time and space. With ``temporal_pool="avg"`` time is
  averaged instead (stage 1 of the paper: per-chunk predictions averaged).
- Prediction: one fc per stream; the fused prediction is the average of the two streams'
  logits, as ``cnn_train_dag.m`` averages the raw outputs of both prediction layers at test.

Example:
    >>> model = get_backbone("st-resnet-50", num_classes=101)  # doctest: +SKIP
    >>> out = model.forward_streams(torch.randn(1, 23, 5, 224, 224))  # doctest: +SKIP
    >>> out["fused"].shape, out["pool5"].shape  # doctest: +SKIP
    (torch.Size([1, 101]), torch.Size([1, 4096]))
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from feat3d.backbones.blocks import ResidualBlock, conv3d, init_weights
from feat3d.backbones.checkpoints import (
    WeightsError,
    compute_sha256,
    load_state_dict_strict,
    read_file,
)
from feat3d.backbones.meta import default_meta
from feat3d.backbones.registry import Backbone, register_backbone

__all__ = [
    "FLOW_SCALE",
    "STREAM_LAYERS",
    "TEMPORAL_UNIT",
    "Bottleneck3d",
    "ResNet50Stream",
    "STResNet",
    "fully_convolutional_logits",
    "inflate_resnet50_2d",
    "load_st_resnet_from_2d",
    "normalize_two_stream",
]

MotionSkip = Literal["residual", "sum", "none"]
TemporalPool = Literal["max", "avg"]
TemporalPadding = Literal["zeros", "replicate"]

#: Residual units per stage of ResNet-50 (conv2_x .. conv5_x).
STREAM_LAYERS: tuple[int, int, int, int] = (3, 4, 6, 3)
#: Index of the unit in each stage whose 1×1 convs become 3×1×1 in time (the "b" unit).
TEMPORAL_UNIT = 1
#: Temporal extent ``T'`` of those convs.
TEMPORAL_KERNEL = 3
_WIDTHS = (64, 128, 256, 512)


class Bottleneck3d(ResidualBlock):
    """ResNet-50 bottleneck (torchvision keys ``conv1..3``/``bn1..3``/``downsample.0/.1``).

    Arguments: see :class:`~feat3d.backbones.blocks.ResidualBlock` (``planes``: width of the
    3×3 conv, the unit outputs ``4 * planes``; ``stride``: spatial stride of ``conv2``,
    torchvision's v1.5 layout), and

    - ``temporal``: make ``conv1`` and ``conv3`` 3×1×1 in time (the paper's 1×1×3 filters);
    - ``temporal_padding``: how those convs pad time: ``"zeros"`` (the authors' code) or
      ``"replicate"``.
    """

    expansion = 4

    def build_branch(
        self,
        in_planes: int,
        planes: int,
        stride: int,
        *,
        temporal: bool = False,
        temporal_padding: TemporalPadding = "zeros",
    ) -> None:
        """``conv1``/``bn1`` (pointwise in space), ``conv2``/``bn2`` (1×3×3), ``conv3``/``bn3``."""
        kt = TEMPORAL_KERNEL if temporal else 1
        pointwise = {
            "kernel_size": (kt, 1, 1),
            "padding": (kt // 2, 0, 0),
            "padding_mode": temporal_padding if temporal else "zeros",
            "bias": False,
        }
        self.temporal = temporal
        self.conv1 = nn.Conv3d(in_planes, planes, **pointwise)
        self.bn1 = nn.BatchNorm3d(planes)
        self.conv2 = conv3d(planes, planes, kernel=(1, 3), stride=(1, stride))
        self.bn2 = nn.BatchNorm3d(planes)
        self.conv3 = nn.Conv3d(planes, planes * self.expansion, **pointwise)
        self.bn3 = nn.BatchNorm3d(planes * self.expansion)

    def branch(self, x: torch.Tensor) -> torch.Tensor:
        """The residual branch: conv1 → conv2 → conv3, BN after each, ReLU between."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))

    def forward(
        self, x: torch.Tensor, *, residual_extra: torch.Tensor | None = None, activate: bool = True
    ) -> torch.Tensor:
        """Residual unit on ``(N, C, T, H, W)``.

        Args:
            x: Input; the identity path carries it unchanged.
            residual_extra: Added to the residual branch's input only (eq. 2's skip-stream).
            activate: Apply the final ReLU; ``False`` returns the pre-activation sum.
        """
        identity = self.shortcut(x)
        out = self.branch(x if residual_extra is None else x + residual_extra) + identity
        return self.relu(out) if activate else out


class ResNet50Stream(nn.Module):
    """One stream: a ResNet-50 with temporal extent 1 except the "b" units' 1×1 convs.

    Args:
        in_channels: 3 for appearance (RGB), ``2L`` for motion (stacked flow).
        num_classes: Rows of ``fc``.
        temporal_padding: See :class:`Bottleneck3d`.
    """

    def __init__(
        self, *, in_channels: int, num_classes: int, temporal_padding: TemporalPadding = "zeros"
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(
            in_channels, 64, (1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False
        )
        self.bn1 = nn.BatchNorm3d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        in_planes = 64
        stages = []
        for i, (planes, blocks) in enumerate(zip(_WIDTHS, STREAM_LAYERS, strict=True)):
            stride = 1 if i == 0 else 2
            downsample = nn.Sequential(
                nn.Conv3d(in_planes, planes * 4, 1, stride=(1, stride, stride), bias=False),
                nn.BatchNorm3d(planes * 4),
            )
            units = []
            for j in range(blocks):
                units.append(
                    Bottleneck3d(
                        in_planes=in_planes if j == 0 else planes * 4,
                        planes=planes,
                        stride=stride if j == 0 else 1,
                        downsample=downsample if j == 0 else None,
                        temporal=j == TEMPORAL_UNIT,
                        temporal_padding=temporal_padding,
                    )
                )
            stages.append(nn.Sequential(*units))
            in_planes = planes * 4
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self.fc = nn.Linear(2048, num_classes)
        init_weights(self)

    @property
    def stages(self) -> tuple[nn.Sequential, ...]:
        """``layer1`` .. ``layer4``."""
        return (self.layer1, self.layer2, self.layer3, self.layer4)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1, bn1, ReLU, max-pool."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """This stream alone, without the skip-stream connections: conv5 ``(N, 2048, T, h, w)``."""
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        return x


class STResNet(Backbone):
    """Two-stream ST-ResNet-50 (see the module docstring).

    Attributes ``appearance`` and ``motion`` are :class:`ResNet50Stream` s; the state dict's
    keys are ``appearance.<torchvision key>`` and ``motion.<torchvision key>``.

    Args:
        num_classes: Rows of each stream's ``fc``.
        flow_frames: ``L``, flow fields per chunk; the motion stream takes ``2L`` channels.
        motion_skip: ``"residual"``, ``"sum"`` or ``"none"`` (see the module docstring).
        temporal_pool: ``"max"`` (ST-ResNet*) or ``"avg"`` over time in pool5.
        pool_window: Temporal max-pool window (clipped to the number of chunks).
        pool_stride: Temporal max-pool stride.
        temporal_padding: ``"zeros"`` (the authors' code) or ``"replicate"`` for the 3×1×1
            convs; ``"replicate"`` keeps the ImageNet-inflated network exactly equal to the
            2D one on temporally constant input, even at the first and last chunk.
    """

    default_feature_layer = "pool5"

    def __init__(
        self,
        *,
        num_classes: int = 400,
        flow_frames: int = 10,
        motion_skip: MotionSkip = "residual",
        temporal_pool: TemporalPool = "max",
        pool_window: int = 5,
        pool_stride: int = 2,
        temporal_padding: TemporalPadding = "zeros",
    ) -> None:
        super().__init__()
        if motion_skip not in ("residual", "sum", "none"):
            raise ValueError(f"motion_skip must be residual, sum or none, not {motion_skip!r}")
        if temporal_pool not in ("max", "avg"):
            raise ValueError(f"temporal_pool must be max or avg, not {temporal_pool!r}")
        if temporal_padding not in ("zeros", "replicate"):
            raise ValueError(
                f"temporal_padding must be zeros or replicate, not {temporal_padding!r}"
            )
        if flow_frames < 1 or pool_window < 1 or pool_stride < 1:
            raise ValueError("flow_frames, pool_window and pool_stride must be at least 1")
        self.arch_kwargs = {
            "num_classes": num_classes,
            "flow_frames": flow_frames,
            "motion_skip": motion_skip,
            "temporal_pool": temporal_pool,
            "pool_window": pool_window,
            "pool_stride": pool_stride,
            "temporal_padding": temporal_padding,
        }
        self.num_classes = num_classes
        self.flow_frames = flow_frames
        self.stream_dim = 2048
        self.feature_dim = 2 * self.stream_dim
        self.motion_skip = motion_skip
        self.temporal_pool = temporal_pool
        self.pool_window = pool_window
        self.pool_stride = pool_stride
        self.appearance = ResNet50Stream(
            in_channels=3, num_classes=num_classes, temporal_padding=temporal_padding
        )
        self.motion = ResNet50Stream(
            in_channels=2 * flow_frames, num_classes=num_classes, temporal_padding=temporal_padding
        )

    @property
    def in_channels(self) -> int:
        """Channels of the input clip: 3 RGB + ``2L`` flow."""
        return 3 + 2 * self.flow_frames

    def split_input(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N, 3 + 2L, T, H, W)`` → RGB ``(N, 3, T, H, W)`` and flow ``(N, 2L, T, H, W)``.

        Raises:
            ValueError: Not 5-D, or a channel count other than ``3 + 2L``.
        """
        if x.ndim != 5 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"st-resnet-50 takes (N, {self.in_channels}, T, H, W) clips (3 RGB + "
                f"{2 * self.flow_frames} flow channels), got {tuple(x.shape)}"
            )
        return x[:, :3], x[:, 3:]

    def conv5_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Both streams with the skip-stream connections: conv5 of appearance and motion.

        Args:
            x: Normalized clip ``(N, 3 + 2L, T, H, W)``.

        Returns:
            Two ``(N, 2048, T, h, w)`` maps (appearance, motion).
        """
        rgb, flow = self.split_input(x)
        a = self.appearance.stem(rgb)
        m = self.motion.stem(flow)
        for stage_a, stage_m in zip(self.appearance.stages, self.motion.stages, strict=True):
            m = stage_m[0](m)  # the motion unit's ReLU output feeds the appearance stream
            if self.motion_skip == "residual":
                a = stage_a[0](a)
                a = stage_a[1](a, residual_extra=m)
            elif self.motion_skip == "sum":
                a = F.relu(stage_a[0](a, activate=False) + m)
                a = stage_a[1](a)
            else:
                a = stage_a[1](stage_a[0](a))
            for unit in stage_a[2:]:
                a = unit(a)
            for unit in stage_m[1:]:
                m = unit(m)
        return a, m

    def _pool_time(self, conv5: torch.Tensor) -> torch.Tensor:
        """The temporal max-pool of pool5 (identity with ``temporal_pool="avg"``)."""
        if self.temporal_pool == "avg":
            return conv5
        window = min(self.pool_window, conv5.shape[2])
        return F.max_pool3d(conv5, kernel_size=(window, 1, 1), stride=(self.pool_stride, 1, 1))

    def pool5(self, conv5: torch.Tensor) -> torch.Tensor:
        """One stream's pool5: ``(N, 2048, T, h, w)`` → ``(N, 2048)``."""
        return self._pool_time(conv5).mean(dim=(2, 3, 4))

    def forward_streams(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-stream and fused logits and pool5 features in one pass.

        Args:
            x: Normalized clip ``(N, 3 + 2L, T, H, W)``.

        Returns:
            ``appearance``, ``motion``, ``fused`` (mean of the two): logits ``(N, K)``;
            ``pool5_appearance``, ``pool5_motion`` ``(N, 2048)`` and ``pool5`` (their
            concatenation, ``(N, 4096)``).
        """
        conv5_a, conv5_m = self.conv5_maps(x)
        pool_a, pool_m = self.pool5(conv5_a), self.pool5(conv5_m)
        logits_a, logits_m = self.appearance.fc(pool_a), self.motion.fc(pool_m)
        return {
            "appearance": logits_a,
            "motion": logits_m,
            "fused": (logits_a + logits_m) / 2,
            "pool5_appearance": pool_a,
            "pool5_motion": pool_m,
            "pool5": torch.cat([pool_a, pool_m], dim=1),
        }

    def forward_trunk(self, x: torch.Tensor) -> torch.Tensor:
        """Both conv5 maps concatenated over channels, ``(N, 4096, T, h, w)``."""
        return torch.cat(self.conv5_maps(x), dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """pool5 of both streams concatenated (appearance first), ``(N, 4096)``."""
        conv5_a, conv5_m = self.conv5_maps(x)
        return torch.cat([self.pool5(conv5_a), self.pool5(conv5_m)], dim=1)

    def forward_head(self, feats: torch.Tensor, *, pre_logits: bool = False) -> torch.Tensor:
        """Fused logits from concatenated pool5 features: the mean of the two fc outputs."""
        if pre_logits:
            return feats
        pool_a, pool_m = feats.split(self.stream_dim, dim=1)
        return (self.appearance.fc(pool_a) + self.motion.fc(pool_m)) / 2

    def feature_layers(self) -> dict[str, int]:
        """``conv5``/``pool5`` (both streams, 4096), per-stream pool5 (2048) and fused logits."""
        return {
            "conv5": self.feature_dim,
            "pool5": self.feature_dim,
            "pool5_appearance": self.stream_dim,
            "pool5_motion": self.stream_dim,
            "logits": self.num_classes,
        }

    def forward_layers(
        self, x: torch.Tensor, layers: tuple[str, ...], *, pool: bool = True
    ) -> dict[str, torch.Tensor]:
        """Several layers in one pass (see :meth:`Backbone.forward_layers`).

        ``conv5`` pooled is ``pool5``; unpooled it is both conv5 maps concatenated,
        ``(N, 4096, T, h, w)``.
        """
        self.check_layers(layers)
        conv5_a, conv5_m = self.conv5_maps(x)
        pool_a, pool_m = self.pool5(conv5_a), self.pool5(conv5_m)
        pooled = torch.cat([pool_a, pool_m], dim=1)
        available = {
            "pool5": pooled,
            "pool5_appearance": pool_a,
            "pool5_motion": pool_m,
        }
        out: dict[str, torch.Tensor] = {}
        for name in layers:
            if name == "conv5":
                out[name] = pooled if pool else torch.cat([conv5_a, conv5_m], dim=1)
            elif name == "logits":
                out[name] = (self.appearance.fc(pool_a) + self.motion.fc(pool_m)) / 2
            else:
                out[name] = available[name]
        return out

    def reset_classifier(self, num_classes: int) -> None:
        """Fresh ``Linear(2048, num_classes)`` classifiers for both streams."""
        self.appearance.fc = nn.Linear(self.stream_dim, num_classes)
        self.motion.fc = nn.Linear(self.stream_dim, num_classes)
        self.num_classes = num_classes
        self.arch_kwargs = {**self.arch_kwargs, "num_classes": num_classes}


#: Flow (pixels) → network input. The authors' flow is uint8 over ±20 px with 128
#: subtracted (``averageImage = 128`` in base_streams/cnn_ucf101_temporal.m), i.e. 255/40 units
#: per pixel on the 0-255 scale their RGB input used; on torchvision's 0-1 scale divided by the
#: ImageNet std (≈ 0.226) that is 1 / (40 · 0.226) per pixel.
FLOW_SCALE = 1.0 / (40 * 0.226)


def normalize_two_stream(
    clip: torch.Tensor,
    *,
    mean: tuple[float, float, float] = (0.485, 0.456, 0.406),
    std: tuple[float, float, float] = (0.229, 0.224, 0.225),
    value_scale: float = 1.0,
    flow_scale: float = FLOW_SCALE,
) -> torch.Tensor:
    """Raw two-stream clips → network input.

    Args:
        clip: ``(N, 3 + 2L, T, H, W)`` float: RGB 0-255 in channels 0-2 (as
            :func:`feat3d.flow.iter_two_stream_clips` gives them), flow in pixels after.
        mean, std, value_scale: The weights' RGB normalization (``WeightsMeta`` fields).
        flow_scale: Multiplier for the flow channels, :data:`FLOW_SCALE`.

    Returns:
        A new tensor: RGB ``(x / 255 * value_scale - mean) / std``, flow ``x * flow_scale``.
    """
    shape = (1, 3, 1, 1, 1)
    m = torch.tensor(mean, dtype=clip.dtype, device=clip.device).view(shape)
    s = torch.tensor(std, dtype=clip.dtype, device=clip.device).view(shape)
    rgb = (clip[:, :3] * (value_scale / 255.0) - m) / s
    return torch.cat([rgb, clip[:, 3:] * flow_scale], dim=1)


def fully_convolutional_logits(model: STResNet, x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Whole-frame, whole-video prediction: the fc applied as a 1×1×1 conv over conv5.

    The test protocol of the paper (Sec. 4, ``temporalFullConvTest`` in the authors' code):
    e.g. 25 chunks at short side 256 with no cropping go through the network at once; each
    stream's fc scores every spatio-temporal position of its (temporally max-pooled) conv5
    map, the scores are averaged over positions, and the two streams' averages are averaged.

    Args:
        model: An :class:`STResNet` (in eval mode for test-time behaviour).
        x: Normalized clip ``(N, 3 + 2L, T, H, W)``, any ``T`` and size.

    Returns:
        ``appearance``, ``motion``, ``fused`` logits ``(N, K)``, and ``fused_map``: the fused
        scores at every position, ``(N, K, t, h, w)``.
    """
    conv5_a, conv5_m = model.conv5_maps(x)
    maps = {}
    for name, conv5, stream in (
        ("appearance", conv5_a, model.appearance),
        ("motion", conv5_m, model.motion),
    ):
        weight = stream.fc.weight[:, :, None, None, None]
        maps[name] = F.conv3d(model._pool_time(conv5), weight, stream.fc.bias)
    fused_map = (maps["appearance"] + maps["motion"]) / 2
    return {
        "appearance": maps["appearance"].mean(dim=(2, 3, 4)),
        "motion": maps["motion"].mean(dim=(2, 3, 4)),
        "fused": fused_map.mean(dim=(2, 3, 4)),
        "fused_map": fused_map,
    }


# --------------------------------------------------------------------------------------------
# Inflation of an ImageNet ResNet-50


def _expected_2d_keys() -> dict[str, tuple[int, ...]]:
    """Keys and shapes of a torchvision ``resnet50()`` state dict (without ``fc``)."""
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (64, 3, 7, 7)}
    _bn_shapes(shapes, "bn1", 64)
    in_planes = 64
    for stage, (planes, blocks) in enumerate(zip(_WIDTHS, STREAM_LAYERS, strict=True), 1):
        for j in range(blocks):
            p = f"layer{stage}.{j}"
            cin = in_planes if j == 0 else planes * 4
            shapes[f"{p}.conv1.weight"] = (planes, cin, 1, 1)
            shapes[f"{p}.conv2.weight"] = (planes, planes, 3, 3)
            shapes[f"{p}.conv3.weight"] = (planes * 4, planes, 1, 1)
            for k, width in ((1, planes), (2, planes), (3, planes * 4)):
                _bn_shapes(shapes, f"{p}.bn{k}", width)
            if j == 0:
                shapes[f"{p}.downsample.0.weight"] = (planes * 4, cin, 1, 1)
                _bn_shapes(shapes, f"{p}.downsample.1", planes * 4)
        in_planes = planes * 4
    return shapes


def _bn_shapes(shapes: dict[str, tuple[int, ...]], prefix: str, width: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{name}"] = (width,)


def _is_temporal_key(key: str) -> bool:
    parts = key.split(".")  # layerS.U.convK.weight
    return (
        len(parts) == 4
        and parts[0].startswith("layer")
        and parts[1] == str(TEMPORAL_UNIT)
        and parts[2] in ("conv1", "conv3")
    )


def inflate_resnet50_2d(
    state_dict_2d: Mapping[str, torch.Tensor],
    *,
    num_classes: int,
    flow_frames: int = 10,
    source: str = "state dict",
) -> dict[str, torch.Tensor]:
    """Turn an ImageNet ResNet-50 (torchvision keys) into an ST-ResNet-50 state dict.

    - Every 2D kernel ``(O, I, kh, kw)`` gets a time axis of 1.
    - The 1×1 kernels that become 3×1×1 (``layer{1..4}.1.conv1``/``conv3``) are ``w / T'``
      replicated over ``T' = 3`` time steps (eq. 5): on temporally constant input they give
      exactly the 2D response, a temporal residual connection at initialization.
    - The motion stream's ``conv1`` is the mean of the RGB filters over their 3 input
      channels, replicated to ``2L`` channels (the cross-modality initialization of
      two-stream networks).
    - Both streams start from the same weights; both ``fc`` are new (``N(0, 0.01²)``
      weights, zero bias, as the authors' code) with ``num_classes`` rows; the 2D ``fc``
      is dropped.

    Args:
        state_dict_2d: A torchvision ``resnet50()`` state dict (``fc.*`` and
            ``num_batches_tracked`` optional).
        num_classes: Rows of the new classifiers.
        flow_frames: ``L``; the motion ``conv1`` gets ``2L`` input channels.
        source: Where the weights came from, for error messages.

    Returns:
        A state dict that :class:`STResNet` with these ``num_classes``/``flow_frames`` loads
        with ``strict=True``.

    Raises:
        WeightsError: A missing key or a shape that is not ResNet-50's.
    """
    expected = _expected_2d_keys()
    missing = [k for k in expected if k not in state_dict_2d]
    if missing:
        raise WeightsError(
            f"{source} is not a torchvision ResNet-50 state dict: {len(missing)} keys missing "
            f"(first {missing[0]!r})"
        )
    for key, shape in expected.items():
        if tuple(state_dict_2d[key].shape) != shape:
            raise WeightsError(
                f"{source}: {key} has shape {tuple(state_dict_2d[key].shape)}, ResNet-50's "
                f"is {shape}"
            )

    stream: dict[str, torch.Tensor] = {}
    for key in expected:
        value = state_dict_2d[key].detach().to(torch.float32)
        if value.ndim == 4:
            value = value.unsqueeze(2)
            if _is_temporal_key(key):
                value = value.repeat(1, 1, TEMPORAL_KERNEL, 1, 1) / TEMPORAL_KERNEL
        stream[key] = value.clone()
        if key.endswith("running_var"):
            prefix = key[: -len("running_var")]
            tracked = state_dict_2d.get(f"{prefix}num_batches_tracked")
            stream[f"{prefix}num_batches_tracked"] = (
                tracked.clone() if tracked is not None else torch.tensor(0, dtype=torch.long)
            )

    out: dict[str, torch.Tensor] = {}
    for name in ("appearance", "motion"):
        for key, value in stream.items():
            out[f"{name}.{key}"] = value.clone()
        # The authors' base_streams/cnn_ucf101_{spatial,temporal}.m: 0.01 * randn, zero bias.
        out[f"{name}.fc.weight"] = torch.randn(num_classes, 2048) * 0.01
        out[f"{name}.fc.bias"] = torch.zeros(num_classes)
    rgb_conv1 = out["motion.conv1.weight"]
    out["motion.conv1.weight"] = (
        rgb_conv1.mean(dim=1, keepdim=True).repeat(1, 2 * flow_frames, 1, 1, 1).contiguous()
    )
    return out


def load_st_resnet_from_2d(
    path: str | Path,
    *,
    num_classes: int,
    trust: bool = False,
    **arch_kwargs: Any,
) -> STResNet:
    """Build ``st-resnet-50`` initialized from a torchvision ResNet-50 file (ImageNet).

    The file is e.g. ``resnet50-0676ba61.pth`` (torchvision ``IMAGENET1K_V1``) fetched on a
    machine with internet access; it is read with ``torch.load(weights_only=True)`` (or
    safetensors), a ``state_dict``/``model`` wrapper and ``module.`` prefixes are accepted.

    Args:
        path: The 2D checkpoint.
        num_classes: Classes of the video task.
        trust: Allow full unpickling (see :func:`~feat3d.backbones.checkpoints.load_checkpoint`).
        **arch_kwargs: Further :class:`STResNet` options (``flow_frames``, ``motion_skip``...).

    Returns:
        The model in training mode with ``model.meta`` (preset ``st-resnet``, ImageNet
        normalization, ``format="imagenet2d"``, ``source`` the file).

    Raises:
        WeightsError: Unreadable file or not a ResNet-50.
    """
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    obj = read_file(path, trust=trust)
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(wrapper), Mapping):
            obj = obj[wrapper]
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path} is not a state dict ({type(obj).__name__})")
    state = {k.removeprefix("module."): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    model = STResNet(num_classes=num_classes, **arch_kwargs)
    inflated = inflate_resnet50_2d(
        state, num_classes=num_classes, flow_frames=model.flow_frames, source=str(path)
    )
    load_state_dict_strict(model, inflated, source=str(path), model_name="st-resnet-50")
    meta = default_meta("st-resnet-50", arch_kwargs=model.arch_kwargs)
    model.meta = replace(
        meta,
        name=f"{path.stem} (ImageNet 2D, inflated)",
        source=str(path),
        format="imagenet2d",
        sha256=compute_sha256(path),
    )
    return model


# The class is the builder: ``get_backbone("st-resnet-50", **kwargs)`` is ``STResNet(**kwargs)``.
register_backbone(
    "st-resnet-50",
    family="st-resnet",
    block="bottleneck",
    layers=STREAM_LAYERS,
    feature_dim=4096,
    default_meta="st-resnet",
    formats=("feat3d", "imagenet2d"),
    streams=("rgb", "flow"),
    stem="two streams (RGB 3 / flow 2L=20 channels): conv 1×7×7 /(1,2,2), BN, ReLU, "
    "max-pool 1×3×3 /(1,2,2)",
    # 400 classes; multiply-adds for one 5-chunk 224×224 clip (23 channels), both streams,
    # measured with torch.utils.flop_counter (tests/backbones/test_st_resnet.py checks them).
    num_params=59849696,
    gmacs=52.438,
    paper="Feichtenhofer, Pinz & Wildes, NIPS 2016, arXiv:1611.02155",
)(STResNet)
