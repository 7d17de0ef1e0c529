"""Outputs at URLs (``-o s3://bucket/feats.h5``, ``--errors gs://bucket/failed.jsonl``):
written in a local staging folder with the crash-safe writers of :mod:`.writers`, and
uploaded when the output is closed.

HDF5 and its journal need a local file, and object stores have no appends or renames, so:

- opening downloads the existing output (to resume it) into
  :func:`feat3d.urls.staging_folder` — unless that folder already holds a staged copy, left
  by a run on this machine that was killed before it could upload: that copy is newer, and
  the journal in it resumes as it does for a local file;
- closing (at the end of the run, also an interrupted one) uploads the file, or each file of
  an npy folder with ``index.jsonl`` last, then removes the staged copy. One upload makes an
  object appear whole or not at all, so readers never see half a file. A failed upload keeps
  the staged copy: the next run uploads it.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from typing import Any

from .. import urls
from .h5store import journal_path
from .reader import INDEX_NAME
from .writers import FeatureWriter, OutputError, VideoFailure, VideoFeatures, open_writer


class StagedLocation:
    """The local stand-in of one URL: ``local`` is the file (or folder) to write."""

    def __init__(
        self, url: str, *, folder: bool = False, overwrite: bool = False, retries: int = 2
    ):
        if urls.url_name(url) == "" or url.partition(":")[0].lower() in ("http", "https"):
            raise OutputError(
                f"{urls.mask_url(url)}: outputs go to object storage (s3://, gs://, ...) or "
                "local paths; http(s) URLs are read-only"
            )
        self.url = url
        self.folder = folder
        self.retries = retries
        self.staging = urls.staging_folder(url)
        self.local = self.staging / urls.url_name(url)
        if overwrite:
            shutil.rmtree(self.staging, ignore_errors=True)
        self.staging.mkdir(parents=True, exist_ok=True)
        (self.staging / "URL").write_text(urls.mask_url(url) + "\n", encoding="utf-8")
        if not overwrite and not self._staged():
            self._download()

    def _staged(self) -> bool:
        return self.local.exists() or journal_path(self.local).exists()

    def _download(self) -> None:
        """The existing output, when there is one (a first run finds none)."""
        fs, path = urls.filesystem(self.url)
        try:
            fs.invalidate_cache(path)  # another machine may have written it meanwhile
            present = fs.exists(path)
            if present and self.folder:
                for remote_url, key in urls.list_files(self.url, lambda _name: True):
                    urls.get_file(remote_url, self.local / key, retries=self.retries)
            elif present:
                urls.get_file(self.url, self.local, retries=self.retries)
        except urls.StorageError as error:
            raise OutputError(f"cannot resume: {error}") from error
        except Exception as error:
            raise OutputError(
                f"{urls.mask_url(self.url)}: cannot read the existing output "
                f"({urls.describe(error)})"
            ) from error

    def upload(self) -> None:
        """Upload the staged output, then remove the staged copy."""
        if self.folder:
            files = sorted(p for p in self.local.rglob("*") if p.is_file())
            files.sort(key=lambda p: p.name == INDEX_NAME)  # the index, the record, last
            for file in files:
                relative = file.relative_to(self.local).as_posix()
                urls.put_file(file, urls.join_url(self.url, relative), retries=self.retries)
        elif self.local.exists():
            urls.put_file(self.local, self.url, retries=self.retries)
        shutil.rmtree(self.staging, ignore_errors=True)


class StagedWriter:
    """A :class:`~.writers.FeatureWriter` for a URL: the format's writer on the staged
    copy, uploaded by :meth:`close`."""

    def __init__(self, location: StagedLocation, writer: FeatureWriter):
        self.location = location
        self.writer = writer
        self.path = location.local

    def completed(self) -> set[str]:
        return self.writer.completed()

    def write(self, video: VideoFeatures) -> None:
        self.writer.write(video)

    def write_error(self, failure: VideoFailure) -> None:
        self.writer.write_error(failure)

    def close(self) -> None:
        self.writer.close()
        self.location.upload()


def open_staged_writer(
    url: str,
    *,
    format: str,
    attrs: Mapping[str, Any],
    overwrite: bool = False,
    dtype: str = "float32",
    retries: int = urls.DEFAULT_RETRIES,
) -> StagedWriter:
    """:func:`~.writers.open_writer` for an output at a URL (see the module's docstring)."""
    location = StagedLocation(url, folder=format == "npy", overwrite=overwrite, retries=retries)
    writer = open_writer(location.local, format=format, attrs=attrs, overwrite=overwrite,
                         dtype=dtype)  # fmt: skip
    return StagedWriter(location, writer)


def staged_file(url: str, *, retries: int = urls.DEFAULT_RETRIES) -> StagedLocation:
    """A file at ``url`` to append to locally (its current content downloaded first) and
    upload with :meth:`StagedLocation.upload`: ``--errors URL``."""
    return StagedLocation(url, retries=retries)
