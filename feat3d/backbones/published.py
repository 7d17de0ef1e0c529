"""The table of published checkpoints feat3d knows, for ``feat3d weights`` and the README.

torchvision's files download by name (:data:`feat3d.backbones.weights._NAMED_WEIGHTS`); Hara et
al.'s are shared on Google Drive, which no script can fetch: the table says where to get each
one and which feat3d model and normalization it maps to. Loading never depends on this table —
the format, architecture and class count are read from the file itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

HARA_2017_FOLDER = "https://drive.google.com/drive/folders/14KRBqT8ySfPtFSuLsFS2U4I-ihTDs0Y9"
HARA_2017_SOURCE = (
    f"Google Drive folder linked from kenshohara/3D-ResNets-PyTorch: {HARA_2017_FOLDER}"
)
HARA_2020_SOURCE = "Google Drive folder linked from the kenshohara/3D-ResNets-PyTorch README (2020)"

#: Class counts of Hara et al.'s 2020 pretraining sets (K: Kinetics-700, M: Moments in Time,
#: S: STAIR Actions); the labels are not shipped, so classes print as ``class_N``.
DATASET_CLASSES = {"K": 700, "KM": 1039, "KMS": 1139}


@dataclass(frozen=True)
class PublishedCheckpoint:
    """A published checkpoint file.

    Attributes:
        filename: The file's published name.
        model: The feat3d registry name it loads into.
        format: ``hara2017``, ``hara2020`` or ``torchvision``.
        classes: Number of classes of its classifier.
        dataset: What it was trained on.
        accuracy: Published accuracy, as the source states it.
        source: Where to get it.
        sampling: The temporal sampling the weights were evaluated with (feat3d applies it by
            default: it is in the weights' metadata).
    """

    filename: str
    model: str
    format: str
    classes: int
    dataset: str
    accuracy: str
    source: str
    sampling: str = "16 consecutive frames at the native rate"


def _hara_2017() -> list[PublishedCheckpoint]:
    # (file stem, model, mean of top-1 and top-5 Kinetics accuracy from the repository README)
    rows = [
        ("resnet-18", "resnet-18", 66.1), ("resnet-34", "resnet-34", 71.0),
        ("resnet-50", "resnet-50", 72.2), ("resnet-101", "resnet-101", 73.3),
        ("resnet-152", "resnet-152", 73.7), ("resnet-200", "resnet-200", 73.7),
        ("preresnet-200", "preact-resnet-200", 73.4), ("wideresnet-50", "wide-resnet-50", 74.7),
        ("resnext-101", "resnext-101", 75.4), ("densenet-121", "densenet-121", 70.8),
        ("densenet-201", "densenet-201", 72.3),
    ]  # fmt: skip
    return [
        PublishedCheckpoint(
            filename=f"{stem}-kinetics.pth",
            model=model,
            format="hara2017",
            classes=400,
            dataset="Kinetics-400",
            accuracy=f"{score} (mean of top-1/top-5, Kinetics val)",
            source=HARA_2017_SOURCE,
        )
        for stem, model, score in rows
    ]


def _hara_2020() -> list[PublishedCheckpoint]:
    rows = [(f"r3d{d}", f"resnet-{d}", "K") for d in (18, 34, 50, 101, 152, 200)]
    rows += [(f"r3d{d}", f"resnet-{d}", "KM") for d in (18, 34, 50, 101, 152, 200)]
    rows += [("r3d50", "resnet-50", "KMS")]
    rows += [(f"r2p1d{d}", f"resnet2p1d-{d}", "K") for d in (18, 34, 50)]
    names = {"K": "Kinetics-700", "KM": "Kinetics-700 + Moments in Time",
             "KMS": "Kinetics-700 + Moments in Time + STAIR Actions"}  # fmt: skip
    return [
        PublishedCheckpoint(
            filename=f"{stem}_{data}_200ep.pth",
            model=model,
            format="hara2020",
            classes=DATASET_CLASSES[data],
            dataset=names[data],
            accuracy="see Kataoka et al. 2020, arXiv:2004.04968",
            source=HARA_2020_SOURCE,
        )
        for stem, model, data in rows
    ]


def published_checkpoints() -> list[PublishedCheckpoint]:
    """Every published checkpoint feat3d reads: Hara 2017, Hara 2020 and torchvision."""
    from feat3d.backbones.weights import list_weights

    torchvision = [
        PublishedCheckpoint(
            filename=named.filename,
            model=named.arch,
            format="torchvision",
            classes=named.num_classes,
            dataset="Kinetics-400",
            accuracy=", ".join(
                f"{metric} {value}"
                for metric, value in named.metrics.get("Kinetics-400", {}).items()
            ),
            source=f"--weights {named.name} (downloads {named.url})",
            sampling="16 consecutive frames at 15 fps",
        )
        for named in list_weights()
    ]
    c3d = PublishedCheckpoint(
        filename="c3d.pickle",
        model="c3d",
        format="c3d",
        classes=487,
        dataset="Sports-1M (Caffe weights of Tran et al. 2015, converted)",
        accuracy="see Tran et al. 2015, arXiv:1412.0767",
        source="linked from the README of DavideA/c3d-pytorch",
    )
    return [*torchvision, *_hara_2017(), *_hara_2020(), c3d]


def describe_models(pattern: str | None = None) -> list[dict[str, Any]]:
    """One JSON-friendly row per registered architecture, for ``feat3d models``.

    Feature layers are read from a model built on the ``meta`` device (no memory, no time).
    """
    import torch

    from feat3d.backbones.registry import get_spec, list_backbones

    published: dict[str, list[str]] = {}
    for checkpoint in published_checkpoints():
        published.setdefault(checkpoint.model, []).append(checkpoint.filename)
    rows = []
    for name in list_backbones(pattern):
        spec = get_spec(name)
        with torch.device("meta"):
            model = spec.builder()
        layers = dict(model.feature_layers())
        if "logits" in layers:
            layers["probs"] = layers["logits"]
        rows.append(
            {
                "name": name,
                "family": spec.family,
                "block": spec.block,
                "stages": list(spec.layers),
                "widths": list(spec.widths),
                "num_params": spec.num_params,
                "gmacs": spec.gflops,
                "feature_dim": spec.feature_dim,
                "layers": layers,
                "default_layer": getattr(model, "default_feature_layer", "pool5"),
                "default_input": list(spec.default_input),
                "frame_stride": getattr(spec, "frame_stride", 1),
                "formats": list(spec.formats),
                "weights": published.get(name, []),
                "paper": spec.paper,
            }
        )
    return rows
