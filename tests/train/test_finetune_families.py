"""``--finetune-from`` on the newer families: I3D, S3D, R(2+1)D-34 and PyTorchVideo's X3D,
Slow and SlowFast: where each block starts, one training step that moves only what it should
with a classifier reset for new classes, and one fine-tune through :func:`fit`."""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from feat3d.backbones import get_backbone, resolve_weights, save_checkpoint
from feat3d.train import TrainError, TrainOptions, fit, load_dataset
from feat3d.train.fit import BLOCKS, _set_train_mode, block_prefixes, freeze_before
from tests.videos import write_video

ROOT = Path(__file__).resolve().parents[2]

PREFIXES = {
    "i3d": ("Conv3d_1a_7x7.", "Conv3d_2b_1x1.", "Mixed_3b.", "Mixed_4b.", "Mixed_5b.", "logits."),
    "s3d": ("features.0.", "features.2.", "features.5.", "features.8.", "features.14.",
            "classifier.1."),
    "r2plus1d-34": ("stem", "layer1.", "layer2.", "layer3.", "layer4.", "fc."),
    "x3d-xs": ("blocks.0.", "blocks.1.", "blocks.2.", "blocks.3.", "blocks.4.", "blocks.5.proj."),
    "slow-r50": ("blocks.0.", "blocks.1.", "blocks.2.", "blocks.3.", "blocks.4.",
                 "blocks.5.proj."),
    "slowfast-r50": ("blocks.0.", "blocks.1.", "blocks.2.", "blocks.3.", "blocks.4.",
                     "blocks.6.proj."),
}  # fmt: skip


@pytest.mark.parametrize("name", list(PREFIXES))
def test_blocks_start_where_the_stages_do(name: str) -> None:
    with torch.device("meta"):  # names and order only: no memory, no initialization
        model = get_backbone(name)
    prefixes = block_prefixes(model)
    assert tuple(prefixes[block] for block in BLOCKS) == PREFIXES[name]
    names = [n for n, _ in model.named_parameters()]
    starts = [next(i for i, n in enumerate(names) if n.startswith(p)) for p in PREFIXES[name]]
    assert starts[0] == 0 and starts == sorted(set(starts))  # in forward order, none empty
    head = names[starts[-1] :]  # the classifier is last: one weight and one bias
    assert [n.rsplit(".", 1)[1] for n in head] == ["weight", "bias"]


def _state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize(("name", "frames"), [("i3d", 8), ("s3d", 8), ("x3d-xs", 4),
                                              ("slowfast-r50", 8)])  # fmt: skip
def test_one_step_trains_conv5_and_a_new_classifier_only(name: str, frames: int) -> None:
    torch.manual_seed(0)
    model = get_backbone(name)  # random weights: values do not matter, what moves does
    model.reset_classifier(3)
    frozen = set(freeze_before(model, "conv5"))
    conv5, head = PREFIXES[name][4], PREFIXES[name][5]
    assert frozen and not any(n.startswith((conv5, head)) for n in frozen)
    before = _state(model)
    _set_train_mode(model, frozen)
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(trainable, lr=0.1)
    logits = model(torch.randn(2, 3, frames, 32, 32))
    assert logits.shape == (2, 3)
    nn.functional.cross_entropy(logits, torch.tensor([0, 2])).backward()
    optimizer.step()
    after = model.state_dict()
    stage = [k for k in before if k.startswith(conv5) and k.endswith("weight")]
    assert stage and any(not torch.equal(before[k], after[k]) for k in stage)
    (classifier,) = [k for k in after if k.startswith(head) and k.endswith("weight")]
    assert after[classifier].shape[0] == 3
    assert not torch.equal(before[classifier], after[classifier])
    keys = list(before)  # module order: everything before conv5, batch-norm statistics too
    earlier = keys[: next(i for i, k in enumerate(keys) if k.startswith(conv5))]
    assert earlier and all(torch.equal(before[k], after[k]) for k in earlier)


def test_fit_finetunes_a_pretrained_x3d_for_new_classes(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location(
        "make_motion_dataset", ROOT / "examples" / "make_motion_dataset.py"
    )
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    data = module.make_motion_dataset(tmp_path / "data", classes=("left", "right"),
                                      videos_per_class=3, n_frames=8, size=32)  # fmt: skip
    net = get_backbone("x3d-xs")  # 400 classes, as the published file
    source = save_checkpoint(net, tmp_path / "X3D_XS.pt", meta=net.meta)
    options = TrainOptions(
        pretrained=str(source), finetune_from="conv5", epochs=1, batch_size=2, accumulate=1,
        crop=32, decode_size=32, scales=(1.0,), flip=0.0, workers=0, seed=0,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit(load_dataset(data), tmp_path / "run", options)
    before = resolve_weights(str(source)).state_dict
    after = resolve_weights(str(tmp_path / "run" / "last.pt"))
    assert after.arch == "x3d-xs" and after.meta.categories == ["left", "right"]
    assert after.state_dict["blocks.5.proj.weight"].shape == (2, 2048)
    earlier = [k for k in before if k.startswith(("blocks.0.", "blocks.1.", "blocks.3."))]
    assert earlier and all(torch.equal(before[k], after.state_dict[k]) for k in earlier)
    stage = [k for k in before if k.startswith("blocks.4.") and k.endswith("weight")]
    assert any(not torch.equal(before[k], after.state_dict[k]) for k in stage)


def test_i3d_flow_is_refused(tmp_path: Path) -> None:
    data = tmp_path / "data" / "a"
    data.mkdir(parents=True)
    write_video(data / "a.mp4", n_frames=4, width=32, height=32)
    with pytest.raises(TrainError, match=r"takes optical flow.*model i3d"):
        fit(load_dataset(tmp_path / "data"), tmp_path / "run", TrainOptions(model="i3d-flow"))
