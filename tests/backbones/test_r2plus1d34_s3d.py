"""R(2+1)D-34 (IG-65M layout) and S3D (torchvision layout): published key layouts written here
from the publishers' code, strict loading, independent functional forwards, parameter counts
and every layer's output shape."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from feat3d.backbones import WeightsError, get_backbone, get_spec, load_checkpoint
from feat3d.backbones.catalog import CATALOG
from feat3d.backbones.s3d import S3DPool
from feat3d.cli import cli
from tests.load_once import networks_loaded_once

# --------------------------------------------------------------------------------------------
# The published layouts, written from the publishers' code (not from feat3d's modules)


def _bn_keys(prefix: str, n: int) -> dict[str, tuple[int, ...]]:
    shapes = {
        f"{prefix}.{name}": (n,) for name in ("weight", "bias", "running_mean", "running_var")
    }
    return {**shapes, f"{prefix}.num_batches_tracked": ()}


def ig65m_layout(classes: int, *, caffe2: bool = True) -> dict[str, tuple[int, ...]]:
    """moabitcoin/ig65m-pytorch's r2plus1d_34: torchvision's VideoResNet(BasicBlock,
    [Conv2Plus1D] * 4, [3, 4, 6, 3], R2Plus1dStem) with layerN[0].conv2[0] replaced by
    Conv2Plus1D(p, p, 288 | 576 | 1152) (``caffe2=False``: torchvision's formula)."""
    keys = {"stem.0.weight": (45, 3, 1, 7, 7), **_bn_keys("stem.1", 45)}
    keys |= {"stem.3.weight": (64, 45, 3, 1, 1), **_bn_keys("stem.4", 64)}
    c_in = 64
    for stage, (planes, blocks) in enumerate(
        zip((64, 128, 256, 512), (3, 4, 6, 3), strict=True), start=1
    ):
        for b in range(blocks):
            p = f"layer{stage}.{b}"
            mid = c_in * planes * 27 // (c_in * 9 + 3 * planes)  # torchvision, from the input
            mids = (mid, {128: 288, 256: 576, 512: 1152}.get(planes, mid) if caffe2 else mid)
            for conv, (cin, m) in enumerate(((c_in, mids[0]), (planes, mids[1])), start=1):
                keys[f"{p}.conv{conv}.0.0.weight"] = (m, cin, 1, 3, 3)
                keys |= _bn_keys(f"{p}.conv{conv}.0.1", m)
                keys[f"{p}.conv{conv}.0.3.weight"] = (planes, m, 3, 1, 1)
                keys |= _bn_keys(f"{p}.conv{conv}.1", planes)
            if b == 0 and stage > 1:
                keys[f"{p}.downsample.0.weight"] = (planes, c_in, 1, 1, 1)
                keys |= _bn_keys(f"{p}.downsample.1", planes)
            c_in = planes
    return keys | {"fc.weight": (classes, 512), "fc.bias": (classes,)}


# torchvision/models/video/s3d.py: features index → SepInceptionBlock3D(in, b0, b1 mid, b1,
# b2 mid, b2, b3), as written in the paper's Figure (Inception-v1 widths).
S3D_INCEPTION = {
    5: (192, 64, 96, 128, 16, 32, 32), 6: (256, 128, 128, 192, 32, 96, 64),
    8: (480, 192, 96, 208, 16, 48, 64), 9: (512, 160, 112, 224, 24, 64, 64),
    10: (512, 128, 128, 256, 24, 64, 64), 11: (512, 112, 144, 288, 32, 64, 64),
    12: (528, 256, 160, 320, 32, 128, 128), 14: (832, 256, 160, 320, 32, 128, 128),
    15: (832, 384, 192, 384, 48, 128, 128),
}  # fmt: skip


def _cna(prefix: str, cin: int, cout: int, kernel: tuple[int, int, int]) -> dict:
    """torchvision's Conv3dNormActivation: conv ``.0`` (no bias), BN ``.1``."""
    return {f"{prefix}.0.weight": (cout, cin, *kernel), **_bn_keys(f"{prefix}.1", cout)}


def _separable(prefix: str, cin: int, cout: int, k: int) -> dict:
    return _cna(f"{prefix}.0", cin, cout, (1, k, k)) | _cna(f"{prefix}.1", cout, cout, (k, 1, 1))


def s3d_layout(classes: int = 400) -> dict[str, tuple[int, ...]]:
    keys = _separable("features.0", 3, 64, 7) | _cna("features.2", 64, 64, (1, 1, 1))
    keys |= _separable("features.3", 64, 192, 3)
    for index, (cin, b0, b1m, b1, b2m, b2, b3) in S3D_INCEPTION.items():
        p = f"features.{index}"
        keys |= _cna(f"{p}.branch0", cin, b0, (1, 1, 1))
        for branch, mid, out in ((1, b1m, b1), (2, b2m, b2)):
            keys |= _cna(f"{p}.branch{branch}.0", cin, mid, (1, 1, 1))
            keys |= _separable(f"{p}.branch{branch}.1", mid, out, 3)
        keys |= _cna(f"{p}.branch3.1", cin, b3, (1, 1, 1))
    return keys | {"classifier.1.weight": (classes, 1024, 1, 1, 1), "classifier.1.bias": (classes,)}


def _params(layout: dict[str, tuple[int, ...]]) -> int:
    buffers = ("running_mean", "running_var", "num_batches_tracked")
    return sum(torch.Size(s).numel() for k, s in layout.items() if not k.endswith(buffers))


def _write(layout: dict[str, tuple[int, ...]], path: Path, seed: int = 0) -> dict:
    """A plain state dict in ``layout`` (torch.save, like both publishers): random values,
    except one random value repeated (stride 0) in tensors over 10⁵ elements, which keeps a
    63M-parameter file small."""
    g = torch.Generator().manual_seed(seed)
    sd = {}
    for key, shape in layout.items():
        if key.endswith("num_batches_tracked"):
            sd[key] = torch.tensor(7)
        elif key.endswith("running_var"):
            sd[key] = torch.rand(shape, generator=g) + 0.5
        elif torch.Size(shape).numel() > 100_000:
            sd[key] = (torch.randn((), generator=g) * 0.1).expand(shape)
        else:
            sd[key] = torch.randn(shape, generator=g) * 0.1
    torch.save(sd, path)
    return sd


def _shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


# --------------------------------------------------------------------------------------------
# Parameter counts and layouts


def test_parameter_counts() -> None:
    # torchvision's S3D_Weights.KINETICS400_V1 meta: num_params 8320048 (400 classes).
    assert _params(s3d_layout()) == 8320048 == get_spec("s3d").num_params
    assert get_spec("r2plus1d-34").num_params == _params(ig65m_layout(400))
    for name in ("s3d", "r2plus1d-34"):
        with torch.device("meta"):
            model = get_spec(name).builder(num_classes=400)
        assert sum(p.numel() for p in model.parameters()) == get_spec(name).num_params


@pytest.mark.parametrize("classes", [359, 487, 400])
def test_r2plus1d_34_has_the_ig65m_layout(classes: int) -> None:
    layout = ig65m_layout(classes)
    assert layout["layer2.0.conv2.0.0.weight"] == (288, 128, 1, 3, 3)
    assert layout["layer4.0.conv2.0.0.weight"] == (1152, 512, 1, 3, 3)
    with torch.device("meta"):
        model = get_spec("r2plus1d-34").builder(num_classes=classes)
    assert _shapes(model) == layout
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm3d)} == {1e-3}


def test_r2plus1d_18_keeps_torchvision_widths() -> None:
    with torch.device("meta"):
        model = get_spec("r2plus1d_18").builder()
    assert model.layer2[0].conv2[0][0].out_channels == 230
    assert {m.eps for m in model.modules() if isinstance(m, nn.BatchNorm3d)} == {1e-5}


def test_s3d_has_torchvision_layout() -> None:
    with torch.device("meta"):
        model = get_spec("s3d").builder(num_classes=400)
    assert _shapes(model) == s3d_layout()
    norms = {(m.eps, m.momentum) for m in model.modules() if isinstance(m, nn.BatchNorm3d)}
    assert norms == {(1e-3, 1e-3)}


# --------------------------------------------------------------------------------------------
# Published files load strictly, with their presets


@pytest.mark.parametrize(
    ("filename", "classes", "preset", "frames"),
    [
        ("r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth", 359, "ig65m-8", 8),
        ("r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth", 400, "ig65m-8", 8),
        ("r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth", 487, "ig65m-32", 32),
        ("r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth", 400, "ig65m-32", 32),
        ("renamed.pth", 359, "ig65m-8", 8),  # only the 8-frame IG-65M file has 359 classes
        ("renamed.pth", 400, "ig65m-32", 32),
    ],
)
def test_ig65m_files_load_strictly(
    filename: str, classes: int, preset: str, frames: int, tmp_path: Path
) -> None:
    path = tmp_path / filename
    saved = _write(ig65m_layout(classes), path)
    ckpt = load_checkpoint(path)
    assert (ckpt.format, ckpt.arch, ckpt.arch_kwargs["num_classes"]) == (
        "torchvision", "r2plus1d-34", classes,
    )  # fmt: skip
    assert (ckpt.meta.preset, ckpt.meta.clip_len, ckpt.meta.crop) == (preset, frames, 112)
    assert ckpt.meta.resize == 128 and ckpt.meta.value_scale == 1.0
    assert ckpt.meta.mean == (0.43216, 0.394666, 0.37645)
    model = get_backbone("r2plus1d-34", weights=path)
    for key in ("layer3.0.conv2.0.0.weight", "fc.weight", "stem.4.running_var"):
        torch.testing.assert_close(model.state_dict()[key], saved[key], rtol=0, atol=0)
    if classes in (359, 487):
        assert model.meta.categories[0] == "class_0"
    stem = Path(filename).stem
    if stem in CATALOG:
        entry = CATALOG[stem]
        assert (entry.classes, entry.preset, entry.url) == (classes, preset, None)


def test_torchvision_formula_r2plus1d_34_is_named(tmp_path: Path) -> None:
    path = tmp_path / "r2plus1d_34_torchvision.pth"
    _write(ig65m_layout(400, caffe2=False), path)
    with pytest.raises(WeightsError, match="r2plus1d-34 with torchvision's middle widths"):
        load_checkpoint(path)


def test_s3d_file_loads_strictly_with_its_preset(tmp_path: Path) -> None:
    path = tmp_path / "s3d-d76dad2f.pth"
    saved = _write(s3d_layout(), path)
    ckpt = load_checkpoint(path)
    assert (ckpt.format, ckpt.arch, ckpt.arch_kwargs) == (
        "torchvision",
        "s3d",
        {"num_classes": 400},
    )
    meta = ckpt.meta
    assert (meta.preset, meta.resize, meta.crop, meta.clip_len, meta.frame_rate) == (
        "s3d-kinetics400", (256, 256), 224, 128, 15.0,
    )  # fmt: skip
    assert meta.categories[0] == "abseiling" and meta.channel_order == "RGB"
    model = get_backbone("s3d", weights=path)
    for key in ("features.15.branch1.1.1.0.weight", "classifier.1.weight"):
        torch.testing.assert_close(model.state_dict()[key], saved[key], rtol=0, atol=0)
    entry = CATALOG["s3d.kinetics400_v1"]
    assert (entry.url, entry.sha256, entry.preset, entry.default) == (
        "https://download.pytorch.org/models/s3d-d76dad2f.pth", "d76dad2f", "s3d-kinetics400",
        True,
    )  # fmt: skip


# --------------------------------------------------------------------------------------------
# Reference forwards written with torch.nn.functional from the state dict


def _randomize_bn(model: nn.Module) -> None:
    g = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm3d):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.randn(n, generator=g) * 0.1)


def _bn(x: torch.Tensor, sd: dict, prefix: str, eps: float) -> torch.Tensor:
    return F.batch_norm(
        x, sd[f"{prefix}.running_mean"], sd[f"{prefix}.running_var"], sd[f"{prefix}.weight"],
        sd[f"{prefix}.bias"], training=False, eps=eps,
    )  # fmt: skip


def _conv2plus1d(x: torch.Tensor, sd: dict, p: str, stride: int) -> torch.Tensor:
    x = F.conv3d(x, sd[f"{p}.0.weight"], stride=(1, stride, stride), padding=(0, 1, 1))
    x = F.relu(_bn(x, sd, f"{p}.1", 1e-3))
    return F.conv3d(x, sd[f"{p}.3.weight"], stride=(stride, 1, 1), padding=(1, 0, 0))


def _reference_r2plus1d_34(sd: dict, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = F.conv3d(x, sd["stem.0.weight"], stride=(1, 2, 2), padding=(0, 3, 3))
    x = F.relu(_bn(x, sd, "stem.1", 1e-3))
    x = F.relu(_bn(F.conv3d(x, sd["stem.3.weight"], padding=(1, 0, 0)), sd, "stem.4", 1e-3))
    for stage, blocks in zip(range(1, 5), (3, 4, 6, 3), strict=True):
        for b in range(blocks):
            p, stride = f"layer{stage}.{b}", 2 if stage > 1 and b == 0 else 1
            out = F.relu(_bn(_conv2plus1d(x, sd, f"{p}.conv1.0", stride), sd, f"{p}.conv1.1", 1e-3))
            out = _bn(_conv2plus1d(out, sd, f"{p}.conv2.0", 1), sd, f"{p}.conv2.1", 1e-3)
            if f"{p}.downsample.0.weight" in sd:
                x = F.conv3d(x, sd[f"{p}.downsample.0.weight"], stride=stride)
                x = _bn(x, sd, f"{p}.downsample.1", 1e-3)
            x = F.relu(out + x)
    feats = x.mean(dim=(2, 3, 4))
    return feats, F.linear(feats, sd["fc.weight"], sd["fc.bias"])


def _cna_f(x: torch.Tensor, sd: dict, p: str, stride: Any = 1, padding: Any = 0) -> torch.Tensor:
    return F.relu(_bn(F.conv3d(x, sd[f"{p}.0.weight"], stride=stride, padding=padding), sd,
                      f"{p}.1", 1e-3))  # fmt: skip


def _sep_f(x: torch.Tensor, sd: dict, p: str, k: int, stride: int = 1) -> torch.Tensor:
    x = _cna_f(x, sd, f"{p}.0", (1, stride, stride), (0, k // 2, k // 2))
    return _cna_f(x, sd, f"{p}.1", (stride, 1, 1), (k // 2, 0, 0))


def _reference_s3d_trunk(sd: dict, x: torch.Tensor) -> torch.Tensor:
    pool = {1: ((1, 3, 3), (1, 2, 2), (0, 1, 1)), 4: ((1, 3, 3), (1, 2, 2), (0, 1, 1)),
            7: (3, 2, 1), 13: (2, 2, 0)}  # fmt: skip
    x = _sep_f(x, sd, "features.0", 7, stride=2)
    for index in range(1, 16):
        p = f"features.{index}"
        if index in pool:
            x = F.max_pool3d(x, *pool[index])
        elif index == 2:
            x = _cna_f(x, sd, p)
        elif index == 3:
            x = _sep_f(x, sd, p, 3)
        else:
            b3 = F.max_pool3d(x, 3, 1, 1)
            x = torch.cat([
                _cna_f(x, sd, f"{p}.branch0"),
                _sep_f(_cna_f(x, sd, f"{p}.branch1.0"), sd, f"{p}.branch1.1", 3),
                _sep_f(_cna_f(x, sd, f"{p}.branch2.0"), sd, f"{p}.branch2.1", 3),
                _cna_f(b3, sd, f"{p}.branch3.1"),
            ], dim=1)  # fmt: skip
    return x


def _torchvision_s3d_head(sd: dict, trunk: torch.Tensor) -> torch.Tensor:
    """torchvision's S3D.forward after ``features``: AvgPool3d((2, 7, 7), stride 1),
    classifier conv, mean over what is left."""
    pooled = F.avg_pool3d(trunk, (2, 7, 7), stride=1)
    return F.conv3d(pooled, sd["classifier.1.weight"], sd["classifier.1.bias"]).mean((2, 3, 4))


def test_r2plus1d_34_matches_functional_reference() -> None:
    torch.manual_seed(3)
    model = get_backbone("r2plus1d-34", num_classes=6)
    _randomize_bn(model)
    model.eval()
    x = torch.randn(1, 3, 4, 32, 32)
    ref_feats, ref_logits = _reference_r2plus1d_34(model.state_dict(), x)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_features(x), ref_feats, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(model(x), ref_logits, rtol=1e-4, atol=1e-5)


def test_s3d_matches_functional_reference() -> None:
    torch.manual_seed(4)
    model = get_backbone("s3d", num_classes=6)
    _randomize_bn(model)
    model.eval()
    x = torch.randn(2, 3, 8, 32, 32)
    sd = model.state_dict()
    trunk = _reference_s3d_trunk(sd, x)
    with torch.no_grad():
        torch.testing.assert_close(model.forward_trunk(x), trunk, rtol=1e-4, atol=1e-5)
        out = model.forward_layers(x, ("pool5", "logits"))
    torch.testing.assert_close(out["pool5"], trunk.mean((2, 3, 4)), rtol=1e-4, atol=1e-5)
    logits = F.conv3d(trunk.mean((2, 3, 4), keepdim=True), sd["classifier.1.weight"],
                      sd["classifier.1.bias"]).flatten(1)  # fmt: skip
    torch.testing.assert_close(out["logits"], logits, rtol=1e-4, atol=1e-5)


def test_s3d_head_is_torchvision_pooling_on_larger_maps() -> None:
    torch.manual_seed(5)
    model = get_backbone("s3d", num_classes=5).eval()
    trunk = torch.randn(2, 1024, 3, 9, 10)  # 2×3×4 windows of 2×7×7
    sd = model.state_dict()
    with torch.no_grad():
        pooled = torch.flatten(model.avgpool(trunk), 1)
        logits = model.forward_head(pooled)
    torch.testing.assert_close(logits, _torchvision_s3d_head(sd, trunk), rtol=1e-4, atol=1e-5)
    # the weights' own input leaves a 2×7×7 map: the global average
    exact = torch.randn(1, 1024, 2, 7, 7)
    torch.testing.assert_close(S3DPool()(exact).flatten(1), exact.mean((2, 3, 4)))
    assert not torch.allclose(pooled, trunk.mean((2, 3, 4)))


# --------------------------------------------------------------------------------------------
# Every layer's output shape at the published input (on the meta device: no compute)


def _layer_shapes(model: nn.Module, x: torch.Tensor, names: list[str]) -> dict[str, tuple]:
    shapes: dict[str, tuple] = {}
    hooks = [
        model.get_submodule(name).register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape))
        )
        for name in names
    ]
    model(x)
    for hook in hooks:
        hook.remove()
    return shapes


def test_r2plus1d_34_layer_shapes_at_32x112() -> None:
    with torch.device("meta"):
        model = get_spec("r2plus1d-34").builder(num_classes=487)
        shapes = _layer_shapes(
            model, torch.empty(1, 3, 32, 112, 112), ["stem", "layer1", "layer2", "layer3",
                                                     "layer4", "avgpool", "fc"],
        )  # fmt: skip
    assert shapes == {
        "stem": (1, 64, 32, 56, 56), "layer1": (1, 64, 32, 56, 56),
        "layer2": (1, 128, 16, 28, 28), "layer3": (1, 256, 8, 14, 14),
        "layer4": (1, 512, 4, 7, 7), "avgpool": (1, 512, 1, 1, 1), "fc": (1, 487),
    }  # fmt: skip


def test_s3d_layer_shapes_at_128x224() -> None:
    # Xie et al. Table/Fig.: Conv1 /2 in time and space, pools, Mixed 3b-3c, 4b-4f, 5b-5c.
    widths = [64, 64, 64, 192, 192, 256, 480, 480, 512, 512, 512, 528, 832, 832, 832, 1024]
    time = [64] * 7 + [32] * 6 + [16] * 3
    space = [112, 56, 56, 56, 28, 28, 28] + [14] * 6 + [7] * 3
    with torch.device("meta"):
        model = get_spec("s3d").builder(num_classes=400)
        names = [f"features.{i}" for i in range(16)]
        shapes = _layer_shapes(model, torch.empty(1, 3, 128, 224, 224), [*names, "avgpool"])
        layers = model.forward_layers(torch.empty(1, 3, 128, 224, 224), ("conv5", "logits"),
                                      pool=False)  # fmt: skip
    expected = {n: (1, c, t, s, s) for n, c, t, s in zip(names, widths, time, space, strict=True)}
    assert shapes == {**expected, "avgpool": (1, 1024, 1, 1, 1)}
    assert layers["conv5"].shape == (1, 1024, 16, 7, 7) and layers["logits"].shape == (1, 400)
    assert model.feature_layers() == {"conv5": 1024, "pool5": 1024, "logits": 400}


def test_s3d_reset_classifier_and_training_dropout() -> None:
    model = get_backbone("s3d", num_classes=400)
    model.reset_classifier(7)
    assert model.classifier[1].weight.shape == (7, 1024, 1, 1, 1) and model.num_classes == 7
    assert model.arch_kwargs == {"num_classes": 7}
    assert model.forward_head(torch.randn(3, 1024)).shape == (3, 7)


# --------------------------------------------------------------------------------------------
# End to end: extract and classify on a generated video


@pytest.mark.parametrize(
    ("model", "frames", "width"), [("s3d", "8", 1024), ("r2plus1d-34", "4", 512)]
)
def test_extract_and_classify_end_to_end(
    model: str, frames: str, width: int, tmp_path: Path, video_factory, monkeypatch
) -> None:
    # The batch-norm folding check runs the preset's full clip (128×224² for S3D, 32×112² for
    # R(2+1)D-34) a few times: too slow for a test here; folding has its own tests.
    monkeypatch.setattr("feat3d.model.fold_batchnorm", lambda network, example: None)
    clip = video_factory(tmp_path / "clip.mp4", n_frames=16, fps=25, codec="h264")
    common = ["--model", model, "--weights", "none", "--clip-len", frames, "--size", "32",
              "--crop", "32", "-j", "0", "-q"]  # fmt: skip
    out = tmp_path / "f.h5"
    labels = tmp_path / "labels.json"
    with networks_loaded_once() as loaded:  # one random network for both commands
        result = CliRunner().invoke(cli, ["extract", str(clip), "-o", str(out), *common])
        assert result.exit_code == 0, result.output
        result = CliRunner().invoke(cli, ["classify", str(clip), *common, "--json", str(labels)])
        assert result.exit_code == 0, result.output
    assert list(loaded) == [(model, "none")]
    with h5py.File(out, "r") as f:
        assert f["clip.mp4/features"].shape == (16 // int(frames), width)
    data = json.loads(labels.read_text())
    assert data["model"]["arch"] == model and data["model"]["random_weights"] is True
    assert len(data["videos"][0]["top_k"]) >= 1


def test_converted_ig65m_file_keeps_its_clip_length(tmp_path: Path) -> None:
    from feat3d.backbones import convert_checkpoint

    src = tmp_path / "r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth"
    saved = _write(ig65m_layout(400), src)
    dst = tmp_path / "ig65m8.safetensors"
    convert_checkpoint(src, dst)
    loaded = load_checkpoint(dst)
    assert (loaded.format, loaded.arch, loaded.meta.preset, loaded.meta.clip_len) == (
        "feat3d", "r2plus1d-34", "ig65m-8", 8,
    )  # fmt: skip
    torch.testing.assert_close(loaded.state_dict["fc.weight"], saved["fc.weight"])
