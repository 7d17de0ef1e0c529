"""X3D, Slow-R50 and SlowFast-R50 in PyTorchVideo's hub layouts."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from feat3d.backbones import get_backbone, get_spec, load_checkpoint, resolve_weights
from feat3d.backbones.catalog import CATALOG
from feat3d.model import VideoModel
from feat3d.run.classify import classify
from feat3d.run.extract import extract

Shape = tuple[int, ...]
NAMES = ("x3d-xs", "x3d-s", "x3d-m", "x3d-l", "slow-r50", "slowfast-r50")

# ---------------------------------------------------------------------------------------------
# The publisher's key layouts, written here from pytorchvideo/models (create_x3d, create_resnet,
# create_slowfast) and fvcore's SqueezeExcitation, not from feat3d's modules.


def _bn(prefix: str, c: int) -> dict[str, Shape]:
    keys = {f"{prefix}.{k}": (c,) for k in ("weight", "bias", "running_mean", "running_var")}
    return {**keys, f"{prefix}.num_batches_tracked": ()}


def _x3d_layout(depths: tuple[int, ...], classes: int = 400) -> dict[str, Shape]:
    # create_x3d: widths round_width(12·2^i, 2) = 24, 48, 96, 192; inner int(2.25·w);
    # SE width round_width(inner, 1/16) = 8, 8, 16, 32 on blocks 0, 2, 4, ...
    sd: dict[str, Shape] = {
        "blocks.0.conv.conv_t.weight": (24, 3, 1, 3, 3),  # the spatial conv, despite its name
        "blocks.0.conv.conv_xy.weight": (24, 1, 5, 1, 1),  # depthwise temporal
        **_bn("blocks.0.norm", 24),
    }
    c_in = 24
    stages = zip(depths, (24, 48, 96, 192), (54, 108, 216, 432), (8, 8, 16, 32), strict=True)
    for s, (depth, w, inner, se) in enumerate(stages, 1):
        for b in range(depth):
            p = f"blocks.{s}.res_blocks.{b}"
            if b == 0:
                sd[f"{p}.branch1_conv.weight"] = (w, c_in, 1, 1, 1)
                if c_in != w:  # the first stage keeps 24 channels: no shortcut BN
                    sd.update(_bn(f"{p}.branch1_norm", w))
            q = f"{p}.branch2"
            sd[f"{q}.conv_a.weight"] = (inner, c_in if b == 0 else w, 1, 1, 1)
            sd.update(_bn(f"{q}.norm_a", inner))
            sd[f"{q}.conv_b.weight"] = (inner, 1, 3, 3, 3)
            sd.update(_bn(f"{q}.norm_b.0", inner))
            if b % 2 == 0:
                sd[f"{q}.norm_b.1.block.0.weight"] = (se, inner, 1, 1, 1)
                sd[f"{q}.norm_b.1.block.0.bias"] = (se,)
                sd[f"{q}.norm_b.1.block.2.weight"] = (inner, se, 1, 1, 1)
                sd[f"{q}.norm_b.1.block.2.bias"] = (inner,)
            sd[f"{q}.conv_c.weight"] = (w, inner, 1, 1, 1)
            sd.update(_bn(f"{q}.norm_c", w))
        c_in = w
    sd["blocks.5.pool.pre_conv.weight"] = (432, 192, 1, 1, 1)
    sd.update(_bn("blocks.5.pool.pre_norm", 432))
    sd["blocks.5.pool.post_conv.weight"] = (2048, 432, 1, 1, 1)
    sd["blocks.5.proj.weight"], sd["blocks.5.proj.bias"] = (classes, 2048), (classes,)
    return sd


def _pathway(prefix: str, c_in: int, t_kernels: Shape, scale: int, extra: Shape) -> dict:
    sd: dict[str, Shape] = {}
    for s, depth in enumerate((3, 4, 6, 3)):
        w, inner = 256 * 2**s // scale, 64 * 2**s // scale
        c_in += extra[s]
        for b in range(depth):
            p = f"{prefix.format(s + 1)}.res_blocks.{b}"
            if b == 0:
                sd[f"{p}.branch1_conv.weight"] = (w, c_in, 1, 1, 1)
                sd.update(_bn(f"{p}.branch1_norm", w))
            sd[f"{p}.branch2.conv_a.weight"] = (inner, c_in if b == 0 else w, t_kernels[s], 1, 1)
            sd[f"{p}.branch2.conv_b.weight"] = (inner, inner, 1, 3, 3)
            sd[f"{p}.branch2.conv_c.weight"] = (w, inner, 1, 1, 1)
            for norm, c in (("norm_a", inner), ("norm_b", inner), ("norm_c", w)):
                sd.update(_bn(f"{p}.branch2.{norm}", c))
        c_in = w
    return sd


def _slow_layout() -> dict[str, Shape]:
    sd = {"blocks.0.conv.weight": (64, 3, 1, 7, 7), **_bn("blocks.0.norm", 64)}
    sd.update(_pathway("blocks.{}", 64, (1, 1, 3, 3), 1, (0, 0, 0, 0)))
    return {**sd, "blocks.5.proj.weight": (400, 2048), "blocks.5.proj.bias": (400,)}


def _slowfast_layout() -> dict[str, Shape]:
    slow, fast = "blocks.{}.multipathway_blocks.0", "blocks.{}.multipathway_blocks.1"
    sd = {"blocks.0.multipathway_blocks.0.conv.weight": (64, 3, 1, 7, 7),
          **_bn("blocks.0.multipathway_blocks.0.norm", 64),
          "blocks.0.multipathway_blocks.1.conv.weight": (8, 3, 5, 7, 7),
          **_bn("blocks.0.multipathway_blocks.1.norm", 8)}  # fmt: skip
    for i, c in enumerate((8, 32, 64, 128)):  # fast → slow after the stem and stages 1-3
        sd[f"blocks.{i}.multipathway_fusion.conv_fast_to_slow.weight"] = (2 * c, c, 7, 1, 1)
        sd.update(_bn(f"blocks.{i}.multipathway_fusion.norm", 2 * c))
    sd.update(_pathway(slow, 64, (1, 1, 3, 3), 1, (16, 64, 128, 256)))
    sd.update(_pathway(fast, 8, (3, 3, 3, 3), 8, (0, 0, 0, 0)))
    return {**sd, "blocks.6.proj.weight": (400, 2304), "blocks.6.proj.bias": (400,)}


LAYOUTS = {
    "X3D_XS.pyth": ("x3d-xs", lambda: _x3d_layout((3, 5, 11, 7))),
    "X3D_L.pyth": ("x3d-l", lambda: _x3d_layout((5, 10, 25, 15))),
    "SLOW_8x8_R50.pyth": ("slow-r50", _slow_layout),
    "SLOWFAST_8x8_R50.pyth": ("slowfast-r50", _slowfast_layout),
}


def _write(layout: dict[str, Shape], path: Path) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    sd = {
        k: torch.tensor(7) if k.endswith("num_batches_tracked") else torch.randn(s, generator=g)
        for k, s in layout.items()
    }
    for k in sd:  # running variances must be positive for a forward to mean anything
        if k.endswith("running_var"):
            sd[k] = sd[k].abs() + 0.5
    # PySlowFast's checkpoint dictionary: epoch, model_state, optimizer_state, cfg (YAML text)
    torch.save({"epoch": 300, "model_state": sd, "optimizer_state": {}, "cfg": "MODEL: ..."}, path)
    return sd


@pytest.mark.parametrize("filename", list(LAYOUTS))
def test_published_layout_loads_strictly(filename: str, tmp_path: Path) -> None:
    arch, layout = LAYOUTS[filename]
    path = tmp_path / filename
    saved = _write(layout(), path)
    ckpt = load_checkpoint(path)
    assert (ckpt.format, ckpt.arch, ckpt.arch_kwargs["num_classes"]) == ("pytorchvideo", arch, 400)
    assert ckpt.meta.preset == arch and ckpt.meta.mean == (0.45, 0.45, 0.45)
    assert "PyTorchVideo" in ckpt.description
    model = get_backbone(arch, weights=resolve_weights(path))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == layout()
    for key in list(saved)[:3] + list(saved)[-2:]:
        torch.testing.assert_close(model.state_dict()[key], saved[key], rtol=0, atol=0)
    preset = get_spec(arch).preset
    assert (model.meta.clip_len, model.meta.frame_stride, model.meta.crop) == (
        preset.clip_len, preset.frame_stride, preset.crop,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("stem", "arch"),
    [("X3D_XS", "x3d-xs"), ("X3D_S", "x3d-s"), ("x3d_m", "x3d-m"), ("kinetics_x3d", "x3d-m")],
)
def test_x3d_variant_comes_from_the_file_name(stem: str, arch: str, tmp_path: Path) -> None:
    # XS, S and M share every key and shape; only the name tells them apart
    path = tmp_path / f"{stem}.pyth"
    _write(_x3d_layout((3, 5, 11, 7)), path)
    ckpt = load_checkpoint(path)
    assert ckpt.arch == arch and ckpt.meta.clip_len == get_spec(arch).preset.clip_len


def test_a_bare_state_dict_and_an_unregistered_depth(tmp_path: Path) -> None:
    path = tmp_path / "slow.pth"
    torch.save({k: torch.zeros(s) for k, s in _slow_layout().items()}, path)
    assert load_checkpoint(path).arch == "slow-r50"
    deeper = {k.replace("blocks.3.res_blocks.0.", "blocks.3.res_blocks.22."): s
              for k, s in _slow_layout().items()}  # fmt: skip
    torch.save({"model_state": {k: torch.zeros(s) for k, s in deeper.items()}}, path)
    with pytest.raises(Exception, match="slow-r101"):
        load_checkpoint(path)


# ---------------------------------------------------------------------------------------------
# Published figures


@pytest.mark.parametrize(
    ("name", "millions"),
    # pytorchvideo docs/source/model_zoo.md "Params (M)"; X3D-L from its later table
    [("x3d-xs", 3.79), ("x3d-s", 3.79), ("x3d-m", 3.79), ("x3d-l", 6.15), ("slow-r50", 32.45),
     ("slowfast-r50", 34.57)],
)  # fmt: skip
def test_parameter_counts_are_the_published_ones(name: str, millions: float) -> None:
    with torch.device("meta"):
        model = get_spec(name).builder(num_classes=400)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == get_spec(name).num_params
    assert round(counted / 1e6, 2) == millions


def _gmacs(name: str, frames: int, size: int) -> float:
    with torch.device("meta"):
        model = get_spec(name).builder(num_classes=400)
        x = torch.empty(1, 3, frames, size, size)
    with FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / 2e9


@pytest.mark.parametrize("name", NAMES)
def test_registered_gmacs(name: str) -> None:
    spec = get_spec(name)
    assert round(_gmacs(name, *spec.default_input), 3) == pytest.approx(spec.gmacs, abs=1e-3)


@pytest.mark.parametrize(
    ("name", "frames", "size", "published"),
    # facebookresearch/SlowFast MODEL_ZOO.md X3D GFLOPs (at the training crop); pytorchvideo's
    # model_zoo.md Slow/SlowFast 8x8 GFLOPs (at 256²); fvcore counts one per multiply-add.
    [("x3d-xs", 4, 160, 0.60), ("x3d-s", 13, 160, 1.96), ("x3d-m", 16, 224, 4.73),
     ("x3d-l", 16, 312, 18.37), ("slow-r50", 8, 256, 54.52), ("slowfast-r50", 32, 256, 65.71)],
)  # fmt: skip
def test_macs_match_the_published_flops(name: str, frames: int, size: int, published: float):
    assert _gmacs(name, frames, size) == pytest.approx(published, rel=0.01)


# ---------------------------------------------------------------------------------------------
# Forwards


def _randomized(name: str, **kwargs: object) -> torch.nn.Module:
    torch.manual_seed(0)
    model = get_backbone(name, num_classes=5, **kwargs).eval()
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm3d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.num_features, generator=g) * 0.1)
    return model


def _nb(x: torch.Tensor, sd: dict, p: str) -> torch.Tensor:
    w, b = sd[f"{p}.weight"], sd[f"{p}.bias"]
    return F.batch_norm(x, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], w, b, eps=1e-5)


def _x3d_block(x: torch.Tensor, sd: dict, p: str, first: bool) -> torch.Tensor:
    q, stride = f"{p}.branch2", (1, 2, 2) if first else (1, 1, 1)
    y = F.relu(_nb(F.conv3d(x, sd[f"{q}.conv_a.weight"]), sd, f"{q}.norm_a"))
    y = F.conv3d(y, sd[f"{q}.conv_b.weight"], stride=stride, padding=1, groups=y.shape[1])
    y = _nb(y, sd, f"{q}.norm_b.0")
    if f"{q}.norm_b.1.block.0.weight" in sd:  # fvcore SE: mean, conv, ReLU, conv, sigmoid
        e = F.conv3d(y.mean(dim=(2, 3, 4), keepdim=True), sd[f"{q}.norm_b.1.block.0.weight"],
                     sd[f"{q}.norm_b.1.block.0.bias"])  # fmt: skip
        e = F.conv3d(
            F.relu(e), sd[f"{q}.norm_b.1.block.2.weight"], sd[f"{q}.norm_b.1.block.2.bias"]
        )
        y = y * torch.sigmoid(e)
    y = y * torch.sigmoid(y)  # Swish
    y = _nb(F.conv3d(y, sd[f"{q}.conv_c.weight"]), sd, f"{q}.norm_c")
    shortcut = x
    if f"{p}.branch1_conv.weight" in sd:
        shortcut = F.conv3d(x, sd[f"{p}.branch1_conv.weight"], stride=stride)
        if f"{p}.branch1_norm.weight" in sd:
            shortcut = _nb(shortcut, sd, f"{p}.branch1_norm")
    return F.relu(shortcut + y)


def _reference_x3d(sd: dict, x: torch.Tensor, depths: Shape, window: Shape) -> tuple:
    """X3D from the state dict with torch.nn.functional, wired as create_x3d wires it:
    ``(conv5 map, pool5, logits)``, the logits projected per position and then averaged."""
    x = F.conv3d(x, sd["blocks.0.conv.conv_t.weight"], stride=(1, 2, 2), padding=(0, 1, 1))
    x = F.conv3d(x, sd["blocks.0.conv.conv_xy.weight"], padding=(2, 0, 0), groups=24)
    x = F.relu(_nb(x, sd, "blocks.0.norm"))
    for s, depth in enumerate(depths, 1):
        for b in range(depth):
            x = _x3d_block(x, sd, f"blocks.{s}.res_blocks.{b}", b == 0)
    h = F.relu(_nb(F.conv3d(x, sd["blocks.5.pool.pre_conv.weight"]), sd, "blocks.5.pool.pre_norm"))
    h = F.relu(F.conv3d(F.avg_pool3d(h, window, stride=1), sd["blocks.5.pool.post_conv.weight"]))
    per_position = F.linear(h.permute(0, 2, 3, 4, 1), sd["blocks.5.proj.weight"],
                            sd["blocks.5.proj.bias"])  # fmt: skip
    return x, h.mean(dim=(2, 3, 4)), per_position.mean(dim=(1, 2, 3))


@pytest.mark.parametrize(("size", "window"), [(192, (4, 5, 5)), (64, (4, 2, 2))])
def test_x3d_matches_an_independent_reference(size: int, window: Shape) -> None:
    # 192 px: a 6×6 map under X3D-XS's 5×5 window (stride 1, 2×2 positions); 64 px: a 2×2
    # map, smaller than the window, pooled whole
    model = _randomized("x3d-xs")
    x = torch.randn(1, 3, 4, size, size)
    sd = model.state_dict()
    with torch.no_grad():
        out = model.forward_layers(x, ("conv5", "pool5", "logits"), pool=False)
        conv5, pool5, logits = _reference_x3d(sd, x, (3, 5, 11, 7), window)
    torch.testing.assert_close(out["conv5"], conv5, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["pool5"], pool5, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(out["logits"], logits, rtol=1e-4, atol=1e-4)


def test_slowfast_samples_the_slow_pathway_from_the_one_clip() -> None:
    model = _randomized("slowfast-r50")
    seen: list[torch.Tensor] = []
    slow_stem = model.blocks[0].multipathway_blocks[0]
    handle = slow_stem.register_forward_pre_hook(lambda _m, args: seen.append(args[0]))
    x = torch.arange(12, dtype=torch.float32).view(1, 1, 12, 1, 1).expand(1, 3, 12, 32, 32)
    with torch.no_grad():
        model(x.contiguous())
    handle.remove()
    # PackPathway: linspace(0, T - 1, T // 4) → 0, 5.5, 11 → frames 0, 5, 11
    assert seen[0][0, 0, :, 0, 0].tolist() == [0.0, 5.0, 11.0]
    with pytest.raises(ValueError, match="multiple of 4 frames"):
        model(torch.zeros(1, 3, 10, 32, 32))


@pytest.mark.parametrize("name", ["x3d-xs", "x3d-l", "slow-r50", "slowfast-r50"])
def test_layers_and_their_shapes(name: str) -> None:
    model = _randomized(name)
    frames = 8 if name == "slowfast-r50" else 4  # SlowFast: a Slow pathway of 2 frames
    x = torch.randn(1, 3, frames, 64, 64)
    with torch.no_grad():
        out = model.forward_layers(x, ("conv5", "pool5", "logits"))
        unpooled = model.forward_layers(x, ("conv5",), pool=False)["conv5"]
        logits = model(x)
    layers = model.feature_layers()
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (1, w) for k, w in layers.items()}
    assert unpooled.shape[:2] == (1, layers["conv5"])
    t = frames // 4 if name == "slowfast-r50" else frames  # no temporal striding
    assert unpooled.shape[2:] == (t, 2, 2)  # 64 px / 32
    torch.testing.assert_close(unpooled.mean(dim=(2, 3, 4)), out["conv5"], rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(logits, out["logits"])
    torch.testing.assert_close(model.forward_head(out["pool5"]), logits)
    assert model.feature_dim == layers["pool5"] == (2304 if name == "slowfast-r50" else 2048)


# ---------------------------------------------------------------------------------------------
# Catalog and end to end


def test_catalog_rows_say_where_to_get_each_file() -> None:
    rows = {e.arch: e for e in CATALOG.values() if e.format == "pytorchvideo"}
    assert set(rows) == set(NAMES)
    for arch, entry in rows.items():
        assert entry.preset == arch and entry.url is None and entry.sha256 is None
        assert entry.download.startswith("manual: https://dl.fbaipublicfiles.com/pytorchvideo/")
        assert entry.download.endswith(entry.filename)
        assert entry.metrics["Kinetics-400"]["acc@1"] > 60
    assert rows["slowfast-r50"].sampling == "32 frames 2 apart at 30 fps"


def _small(name: str, frames: int) -> VideoModel:
    """``name`` with random weights, its preset shrunk to a tiny clip (the fold example too)."""
    backbone = get_backbone(name)
    meta = replace(backbone.meta, clip_len=frames, frame_stride=1, resize=48, crop=32)
    return VideoModel(backbone=backbone, meta=meta, device=torch.device("cpu"))


@pytest.mark.parametrize(("name", "frames"), [("x3d-xs", 4), ("slowfast-r50", 8)])
def test_extract_and_classify_a_generated_video(name, frames, tmp_path, video_factory) -> None:
    video = video_factory(tmp_path / "v.mp4", n_frames=24, fps=30, codec="h264")
    model = _small(name, frames)
    report = extract([video], None, model=model, layer="pool5")
    feats = report.videos["v.mp4"].features
    assert feats.shape == (24 // frames, model.layers["pool5"]) and np.isfinite(feats).all()
    report = classify([video], model=model, top_k=3)
    assert len(report.videos) == 1 and len(report.videos[0].top_k) == 3
    scores = [label.score for label in report.videos[0].top_k]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
