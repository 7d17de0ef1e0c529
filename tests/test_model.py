"""The inference wrapper: device choice, normalization from metadata, precision paths."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import feat3d.precision
from feat3d.model import VideoModel, load_model, select_device
from feat3d.precision import check_precision, cpu_has_native_bf16


def quiet_load(*args, **kwargs) -> VideoModel:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_model(*args, **kwargs)


def test_auto_device_and_errors():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert select_device("auto").type == expected
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device"):
        select_device("tpu:0")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="CUDA is not available"):
            select_device("cuda:0")


def test_random_weights_warn():
    with pytest.warns(UserWarning, match="random weights"):
        load_model("resnet-10", None, device="cpu")


@pytest.mark.parametrize(
    ("model", "value_scale", "mean", "std"),
    [
        ("resnet-10", 1.0, (0.4345, 0.4051, 0.3775), (0.2768, 0.2713, 0.2737)),  # Hara 2020
        ("r3d_18", 1.0, (0.43216, 0.394666, 0.37645), (0.22803, 0.22145, 0.216989)),
    ],
)
def test_normalization_follows_the_weights(model, value_scale, mean, std):
    vm = quiet_load(model, None, device="cpu")
    assert vm.meta.mean == pytest.approx(mean) and vm.meta.std == pytest.approx(std)
    clips = torch.zeros(1, 2, 4, 4, 3, dtype=torch.uint8)
    clips[..., 0], clips[..., 1], clips[..., 2] = 0, 128, 255
    x = vm.normalize(clips)
    assert x.shape == (1, 3, 2, 4, 4)
    for channel, pixel in enumerate((0, 128, 255)):
        expected = (pixel / 255 * value_scale - mean[channel]) / std[channel]
        assert x[0, channel].flatten().tolist() == pytest.approx([expected] * 32, rel=1e-5)


def test_hara_2017_checkpoint_uses_0_to_255_inputs(tmp_path):
    from feat3d.backbones import get_backbone

    net = get_backbone("resnet-10", shortcut_type="A")
    path = tmp_path / "resnet-10-kinetics.pth"
    sd = {f"module.{k}": v for k, v in net.state_dict().items()}
    torch.save({"arch": "resnet-10", "state_dict": sd}, path)
    vm = load_model(None, str(path), device="cpu")
    assert vm.meta.format == "hara2017" and vm.meta.value_scale == 255.0
    x = vm.normalize(torch.full((1, 1, 1, 1, 3), 200, dtype=torch.uint8))
    assert x.flatten().tolist() == pytest.approx([200 - 114.7748, 200 - 107.7354, 200 - 99.4750])


@pytest.mark.skipif(not cpu_has_native_bf16(), reason="bf16 needs a CPU with bf16 instructions")
def test_bf16_stays_close_to_fp32():
    torch.manual_seed(0)
    fp32 = quiet_load("resnet-10", None, device="cpu")
    bf16 = VideoModel(backbone=fp32.backbone, meta=fp32.meta, device=fp32.device, precision="bf16")
    clips = torch.randint(0, 256, (2, 8, 32, 32, 3), dtype=torch.uint8)
    a = fp32.run(clips, ("pool5",))["pool5"]
    b = bf16.run(clips, ("pool5",))["pool5"]
    assert b.dtype == np.float32
    assert np.linalg.norm(a - b) / np.linalg.norm(a) < 0.05


def test_fp16_needs_cuda():
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        quiet_load("resnet-10", None, device="cpu", precision="fp16")


def test_bf16_is_refused_on_a_cpu_without_bf16_instructions(monkeypatch):
    # There PyTorch's bf16 convolutions run in reference kernels, 130-190x slower than fp32.
    monkeypatch.setattr(feat3d.precision, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ValueError, match=r"CPU with bf16 instructions.*use --precision fp32"):
        quiet_load("resnet-10", None, device="cpu", precision="bf16")
    with pytest.raises(ValueError, match="precision must be one of"):
        check_precision("int8", torch.device("cpu"))
    check_precision("fp32", torch.device("cpu"))  # always fine


def test_bf16_on_a_cpu_with_bf16_instructions_runs_bf16_weights(monkeypatch):
    monkeypatch.setattr(feat3d.precision, "cpu_has_native_bf16", lambda: True)
    vm = quiet_load("resnet-10", None, device="cpu", precision="bf16")
    assert next(vm.network.parameters()).dtype == torch.bfloat16
    assert vm.execution.startswith("bf16 weights")


def test_layers_are_consistent():
    vm = quiet_load("resnet-10", None, device="cpu")
    clips = torch.randint(0, 256, (3, 4, 32, 32, 3), dtype=torch.uint8)
    out = vm.run(clips, ("pool5", "logits", "probs"))
    assert out["pool5"].shape == (3, 512) and out["logits"].shape == (3, 400)
    np.testing.assert_allclose(out["probs"].sum(1), 1.0, rtol=1e-5)
    head = vm.backbone.forward_head(torch.from_numpy(out["pool5"])).detach().numpy()
    np.testing.assert_allclose(out["logits"], head, rtol=1e-4, atol=1e-4)
    assert vm.layers == {"conv5": 512, "pool5": 512, "logits": 400, "probs": 400}
    with pytest.raises(ValueError, match="resnet-10 has no layer 'fc7'; choose from conv5"):
        vm.run(clips, ("fc7",))
    unpooled = vm.run(clips, ("conv5",), pool=False)["conv5"]
    assert unpooled.shape == (3, 512, 1, 1, 1)
    np.testing.assert_allclose(unpooled.mean(axis=(2, 3, 4)), out["pool5"], rtol=1e-5, atol=1e-6)


def test_bgr_weights_get_channels_flipped_after_normalization():
    from dataclasses import replace

    rgb = quiet_load("resnet-10", None, device="cpu")
    bgr = VideoModel(backbone=rgb.backbone, meta=replace(rgb.meta, channel_order="BGR"),
                     device=rgb.device)  # fmt: skip
    clips = torch.randint(0, 256, (1, 2, 4, 4, 3), dtype=torch.uint8)
    assert torch.equal(bgr.normalize(clips), rgb.normalize(clips).flip(1))
    assert quiet_load("c3d", None, device="cpu").meta.channel_order == "BGR"


def test_num_classes_for_random_init_and_conflict_with_weights(tmp_path):
    vm = quiet_load("resnet-10", None, device="cpu", num_classes=7)
    assert vm.layers["logits"] == 7 and vm.categories == [f"class_{i}" for i in range(7)]
    path = tmp_path / "r10.pth"
    from feat3d.backbones import get_backbone

    state = get_backbone("resnet-10", num_classes=700).state_dict()
    torch.save({"arch": "resnet", "scheduler": {}, "state_dict": state}, path)
    assert quiet_load(None, str(path), device="cpu").layers["logits"] == 700
    with pytest.raises(ValueError, match="num_classes=7 conflicts"):
        quiet_load(None, str(path), device="cpu", num_classes=7)


def test_precision_auto_resolves_per_device_and_is_recorded_resolved() -> None:
    from feat3d.precision import Precision, resolve_precision

    assert resolve_precision("auto", torch.device("cpu")) is Precision.FP32
    assert Precision.parse("auto").resolve(torch.device("cuda")) is Precision.FP16
    with pytest.warns(UserWarning, match="random weights"):
        model = load_model("resnet-10", None, device="cpu", precision="auto", fold_bn=False)
    assert model.precision == "fp32"


def test_precision_autocast_is_a_no_op_for_fp32_only() -> None:
    from contextlib import nullcontext

    from feat3d.precision import Precision

    assert isinstance(Precision.FP32.autocast(torch.device("cpu")), nullcontext)
    assert isinstance(Precision.BF16.autocast(torch.device("cpu")), torch.autocast)
    with pytest.raises(ValueError, match="int8"):
        Precision.parse("int8")
