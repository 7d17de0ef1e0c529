"""Locations given as URLs (``s3://``, ``gs://``, ``http(s)://``, ...) wherever feat3d takes a
path: telling them from paths, masking their credentials, and reading, listing and writing
them through fsspec with network timeouts and retries.

A plain path or a ``file://`` URL is a local :class:`~pathlib.Path` and never touches fsspec;
any other ``scheme://`` location goes through ``fsspec.url_to_fs``, whose back-ends (s3fs,
gcsfs, aiohttp for HTTP) are the ``feat3d[cloud]`` extra. Credentials come from where each
back-end looks (``AWS_*`` variables and profiles, ``AWS_ENDPOINT_URL`` for another S3 server,
``GOOGLE_APPLICATION_CREDENTIALS``, a ``user:password@`` part of an HTTP URL); they are masked
in every key, message and output (:func:`mask_url`).

Network failures are retried with exponential backoff (:data:`BACKOFF` × 2^attempt seconds)
when they may pass (a timeout, a dropped connection, HTTP 5xx or 429), never when they cannot
(404, 403, a missing key). A read that stalls for :func:`read_timeout` seconds (default 60,
``$FEAT3D_NET_TIMEOUT``) counts as a timeout; connecting has :data:`CONNECT_TIMEOUT` seconds.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import posixpath
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from .errors import RunError, UsageError

T = TypeVar("T")

CLOUD_EXTRA = 'pip install "feat3d[cloud]"'
#: Retries of a failed network operation (``--retries``) after the first try.
DEFAULT_RETRIES = 2
#: First backoff in seconds; the n-th retry waits ``BACKOFF * 2**n``.
BACKOFF = 0.5
#: Seconds to open a connection.
CONNECT_TIMEOUT = 10.0
#: Bytes fetched per range request when a video is read; PyAV's seeks (an MP4 index at the
#: end, a keyframe before ``--start``) land in blocks kept in a small cache.
BLOCK_SIZE = 2 * 2**20
CACHE_BLOCKS = 8

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
#: Query parameters that carry secrets (pre-signed S3 and GCS URLs, Azure SAS tokens, ...).
_SECRET_PARAMS = re.compile(
    r"(signature|credential|token|secret|password|passwd|sig|key|auth)", re.IGNORECASE
)
_TRANSIENT_NAMES = frozenset(
    {
        "TimeoutError", "FSTimeoutError", "ServerTimeoutError", "ReadTimeoutError",
        "ConnectTimeoutError", "ConnectTimeout", "ReadTimeout", "ClientPayloadError",
        "ServerDisconnectedError", "ClientConnectorError", "ClientOSError",
        "ClientConnectionError", "EndpointConnectionError", "ConnectionClosedError",
        "ConnectionResetError", "ConnectionAbortedError", "BrokenPipeError",
        "IncompleteReadError", "IncompleteRead", "ResponseStreamingError",
    }
)  # fmt: skip
_TRANSIENT_ERRNOS = frozenset({errno.ECONNRESET, errno.ETIMEDOUT, errno.ECONNABORTED, errno.EPIPE})


class StorageError(RunError):
    """A URL that could not be read or written (after the retries); the message names it."""


class FetchError(OSError):
    """A network read that failed for good; ``strerror`` is the one-line reason."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.strerror = reason


# --------------------------------------------------------------------------------------------
# Telling URLs from paths


def is_url(location: str | os.PathLike[str]) -> bool:
    """Whether ``location`` is a ``scheme://`` URL other than ``file://`` (which is local)."""
    if not isinstance(location, str):
        return False
    match = _SCHEME.match(location)
    return match is not None and match.group(1).lower() != "file"


def as_location(location: str | os.PathLike[str]) -> Path | str:
    """A URL as given (``str``), anything else as a local ``Path`` (``file://`` URLs too)."""
    if is_url(location):
        return str(location)
    text = os.fspath(location)
    if isinstance(text, str) and text.lower().startswith("file://"):
        parsed = urllib.parse.urlparse(text)
        return Path(urllib.parse.unquote(parsed.netloc + parsed.path))
    return Path(text)


def mask_url(text: str | os.PathLike[str]) -> str:
    """``text`` with a URL's ``user:password@`` part and secret query values (signatures,
    tokens) replaced by ``***``; anything else unchanged.

    >>> mask_url("https://ann:pw@host/a.mp4?X-Amz-Signature=abc&part=1")
    'https://***@host/a.mp4?X-Amz-Signature=***&part=1'
    """
    value = os.fspath(text)
    if not isinstance(value, str) or not is_url(value):
        return str(value)
    parts = urllib.parse.urlsplit(value)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = "***@" + netloc.rpartition("@")[2]
    query = "&".join(
        f"{name}=***" if _SECRET_PARAMS.search(name) else (f"{name}={val}" if sep else name)
        for name, sep, val in (pair.partition("=") for pair in parts.query.split("&") if pair)
    )
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def url_name(url: str) -> str:
    """The last component of a URL's path (no query), unquoted: ``s3://b/x/a.mp4`` → ``a.mp4``."""
    path = urllib.parse.urlsplit(url).path.rstrip("/")
    return urllib.parse.unquote(path.rpartition("/")[2])


def url_parent(url: str) -> str:
    """The URL of the folder holding ``url``, with a trailing ``/``."""
    parts = urllib.parse.urlsplit(url)
    folder = parts.path.rpartition("/")[0] + "/"
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, folder, "", ""))


def join_url(base: str, relative: str) -> str:
    """``relative`` (a posix path, ``..`` resolved) under the folder URL ``base``; the
    result never leaves the bucket or host.

    >>> join_url("s3://b/lists/", "../videos/a.mp4")
    's3://b/videos/a.mp4'
    """
    parts = urllib.parse.urlsplit(base)
    joined = parts.path.strip("/") + "/" + relative.lstrip("/")
    path = posixpath.normpath("/" + joined.lstrip("/"))
    return urllib.parse.urlunsplit((parts.scheme, parts.netloc, path.lstrip("/") and path, "", ""))


# --------------------------------------------------------------------------------------------
# File systems and errors


def _scheme(url: str) -> str:
    return url.partition(":")[0].lower()


def read_timeout() -> float:
    """Seconds a network read may stall: ``$FEAT3D_NET_TIMEOUT``, default 60."""
    try:
        value = float(os.environ.get("FEAT3D_NET_TIMEOUT", "60"))
    except ValueError:
        raise UsageError("FEAT3D_NET_TIMEOUT must be a number of seconds") from None
    if value <= 0:
        raise UsageError("FEAT3D_NET_TIMEOUT must be positive")
    return value


def _storage_options(protocol: str) -> dict[str, Any]:
    """Timeouts for the back-end of ``protocol`` (credentials stay the back-end's business)."""
    if protocol in ("http", "https"):
        import aiohttp

        timeout = aiohttp.ClientTimeout(sock_connect=CONNECT_TIMEOUT, sock_read=read_timeout())
        return {"client_kwargs": {"timeout": timeout}}
    if protocol in ("s3", "s3a"):
        timeouts = {"connect_timeout": CONNECT_TIMEOUT, "read_timeout": read_timeout()}
        return {"config_kwargs": {**timeouts, "retries": {"max_attempts": 1}}}
    return {}


def filesystem(url: str) -> tuple[Any, str]:
    """``(fsspec file system, path in it)`` of a URL.

    Raises:
        UsageError: fsspec or the back-end of the URL's scheme is not installed (the message
            names the ``pip install`` line), or the scheme is unknown.
    """
    protocol = _SCHEME.match(url).group(1).lower() if is_url(url) else "file"  # type: ignore[union-attr]
    try:
        import fsspec

        return fsspec.core.url_to_fs(url, **_storage_options(protocol))
    except ImportError as error:
        raise UsageError(
            f"{mask_url(url)}: reading {protocol}:// URLs needs fsspec and its {protocol} "
            f"back-end: {CLOUD_EXTRA} ({error})"
        ) from error
    except ValueError as error:
        raise UsageError(f"{mask_url(url)}: {error}") from error


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status", None) or getattr(error, "code", None)
    if isinstance(status, int):
        return status
    response = getattr(error, "response", None)
    if isinstance(response, dict):
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code if isinstance(code, int) else None
    return None


def is_transient(error: BaseException) -> bool:
    """Whether trying again may help: timeouts, dropped connections, HTTP 5xx and 429."""
    for link in _chain(error):
        if isinstance(link, FetchError):
            return False
        names = {cls.__name__ for cls in type(link).__mro__}
        if names & _TRANSIENT_NAMES:
            return True
        status = _status(link)
        if status is not None and (status >= 500 or status == 429):
            return True
        if isinstance(link, OSError) and link.errno in _TRANSIENT_ERRNOS:
            return True
    return False


def describe(error: BaseException, scheme: str = "") -> str:
    """A one-line reason for a failed network operation on a ``scheme://`` URL, without
    credentials."""
    for link in _chain(error):
        names = {cls.__name__ for cls in type(link).__mro__}
        if isinstance(link, FetchError):
            return str(link.strerror)
        if names & {"TimeoutError", "FSTimeoutError", "ServerTimeoutError", "ReadTimeoutError",
                    "ConnectTimeoutError", "ReadTimeout", "ConnectTimeout"}:  # fmt: skip
            return f"timed out (no data for {read_timeout():g} s)"
        status = _status(link)
        if status is not None and status >= 400:
            return f"HTTP {status}"
        if isinstance(link, FileNotFoundError):
            return "not found (HTTP 404)" if scheme.startswith("http") else "no such key"
        if isinstance(link, PermissionError):
            return "access denied (HTTP 403)"
        reset = isinstance(link, OSError) and link.errno == errno.ECONNRESET
        if names & _TRANSIENT_NAMES or reset:
            return f"connection lost ({type(link).__name__})"
    text = " ".join(str(error).split()) or type(error).__name__
    return mask_url(text)


def with_retries(action: Callable[[], T], *, retries: int, what: str, scheme: str = "") -> T:
    """``action()``, tried again up to ``retries`` times after transient errors.

    Raises:
        FetchError: It failed for good; the reason says what happened and how often it was
            tried (``"timed out (no data for 60 s) after 3 tries"``).
    """
    for attempt in range(retries + 1):
        try:
            return action()
        except Exception as error:  # fsspec, aiohttp and botocore each have their own classes
            if isinstance(error, FetchError):
                raise
            if not is_transient(error) or attempt == retries:
                tries = f" after {attempt + 1} tries" if attempt else ""
                raise FetchError(f"{what}: {describe(error, scheme)}{tries}") from error
        time.sleep(BACKOFF * 2**attempt)
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# Reading


class RetryingFile(io.RawIOBase):
    """A read-only, seekable file object over a URL that PyAV can decode from: reads go
    through fsspec's block cache (range requests), and a read that fails transiently reopens
    the URL at the same offset and tries again (``retries`` times, with backoff)."""

    def __init__(self, url: str, *, retries: int = DEFAULT_RETRIES):
        super().__init__()
        self.url = url
        self.retries = retries
        self.fs, self.fs_path = filesystem(url)
        self.position = 0
        self.handle: Any = None
        self.scheme = _scheme(url)
        self.handle = with_retries(
            self._open, retries=retries, what="cannot fetch", scheme=self.scheme
        )
        self.size: int | None = getattr(self.handle, "size", None)

    def _open(self) -> Any:
        return self.fs.open(
            self.fs_path, "rb", block_size=BLOCK_SIZE, cache_type="blockcache",
            cache_options={"maxblocks": CACHE_BLOCKS},
        )  # fmt: skip

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END:
            if self.size is None:
                raise OSError(errno.ESPIPE, "size unknown: cannot seek from the end")
            offset += self.size
        elif whence == io.SEEK_CUR:
            offset += self.position
        self.position = max(0, offset)
        return self.position

    def _read_at(self, size: int) -> bytes:
        try:
            self.handle.seek(self.position)
            return self.handle.read(size)
        except Exception:
            with contextlib.suppress(Exception):
                self.handle.close()
            self.handle = self._open()  # a fresh connection for the next try
            raise

    def read(self, size: int = -1) -> bytes:
        data = with_retries(
            lambda: self._read_at(size), retries=self.retries,
            what=f"read at byte {self.position}", scheme=self.scheme,
        )  # fmt: skip
        self.position += len(data)
        return data

    def readinto(self, buffer: Any) -> int:
        data = self.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        if self.handle is not None:
            with contextlib.suppress(Exception):
                self.handle.close()
        super().close()


def read_bytes(url: str, *, retries: int = DEFAULT_RETRIES) -> bytes:
    """The whole object at ``url`` (for small files: lists, configs)."""
    fs, path = filesystem(url)
    return with_retries(
        lambda: fs.cat_file(path), retries=retries, what=mask_url(url), scheme=_scheme(url)
    )


def list_files(url: str, keep: Callable[[str], bool]) -> list[tuple[str, str]]:
    """``(url, key)`` of the files under the folder URL (recursively) or matching the glob
    URL (``*``, ``?``, ``[``) for which ``keep(name)`` holds, sorted; the key is the path
    relative to the folder (to the glob's fixed part).

    Raises:
        StorageError: The folder cannot be listed (missing bucket, no access, unreachable).
    """
    fs, path = filesystem(url)
    glob = any(char in path for char in "*?[")
    try:
        if glob:
            found = fs.glob(path)
            root = re.split(r"[*?\[]", path, maxsplit=1)[0].rpartition("/")[0]
        else:
            found = fs.find(path)
            root = path.rstrip("/")
    except Exception as error:
        raise StorageError(f"{mask_url(url)}: cannot list ({describe(error)})") from error
    protocol = _SCHEME.match(url).group(1)  # type: ignore[union-attr]
    items = []
    for name in sorted(found):
        if not keep(name.rstrip("/")):
            continue
        full = fs.unstrip_protocol(name) if hasattr(fs, "unstrip_protocol") else name
        if not _SCHEME.match(full):
            full = f"{protocol}://{name}"
        key = name[len(root) :].lstrip("/") if name.startswith(root) else url_name(full)
        items.append((_keep_userinfo(url, full), key or url_name(full)))
    return items


def _keep_userinfo(original: str, found: str) -> str:
    """``found`` with the ``user:password@`` of ``original`` (fsspec's listing drops it)."""
    netloc = urllib.parse.urlsplit(original).netloc
    if "@" not in netloc:
        return found
    parts = urllib.parse.urlsplit(found)
    if "@" in parts.netloc:
        return found
    return urllib.parse.urlunsplit((parts.scheme, netloc, *parts[2:]))


def looks_like_folder(url: str, is_video_name: Callable[[str], bool]) -> bool:
    """Whether an input URL names a folder or a glob to list rather than one video: it ends
    in ``/``, has glob characters, or its name has no video extension."""
    path = urllib.parse.urlsplit(url).path
    return path.endswith("/") or any(c in path for c in "*?[") or not is_video_name(path)


# --------------------------------------------------------------------------------------------
# Writing: local staging, uploaded when done


def exists(url: str) -> bool:
    """Whether an object (or a folder prefix) exists at ``url``."""
    fs, path = filesystem(url)
    try:
        return bool(fs.exists(path))
    except Exception as error:
        raise StorageError(f"{mask_url(url)}: cannot check ({describe(error)})") from error


def remove(url: str, *, recursive: bool = False) -> None:
    """Remove the object (or, ``recursive``, everything under the prefix) at ``url``."""
    fs, path = filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(path, recursive=recursive)


def put_file(local: Path, url: str, *, retries: int = DEFAULT_RETRIES) -> None:
    """Upload ``local`` to ``url``. One object store PUT (or multipart upload, completed
    last) makes the object appear whole or not at all, so readers never see half of it."""
    fs, path = filesystem(url)
    try:
        with_retries(
            lambda: fs.put_file(str(local), path), retries=retries, what="upload",
            scheme=_scheme(url),
        )  # fmt: skip
    except FetchError as error:
        raise StorageError(f"{mask_url(url)}: {error.strerror}; {local} is kept") from error


def get_file(url: str, local: Path, *, retries: int = DEFAULT_RETRIES) -> None:
    """Download ``url`` to ``local`` (through ``local.part``, renamed when complete)."""
    fs, path = filesystem(url)
    partial = local.with_name(local.name + ".part")
    local.parent.mkdir(parents=True, exist_ok=True)
    try:
        with_retries(
            lambda: fs.get_file(path, str(partial)), retries=retries, what="download",
            scheme=_scheme(url),
        )  # fmt: skip
    except FetchError as error:
        partial.unlink(missing_ok=True)
        raise StorageError(f"{mask_url(url)}: {error.strerror}") from error
    os.replace(partial, local)


def staging_folder(url: str) -> Path:
    """The local folder where an output at ``url`` is written before it is uploaded:
    ``$FEAT3D_STAGING/<hash of the URL>`` (default ``~/.cache/feat3d/staging``). The same
    URL gets the same folder, so a killed run resumes from what it had written."""
    base = os.environ.get("FEAT3D_STAGING") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "feat3d", "staging"
    )
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    return Path(base) / digest


def cached_download(url: str, folder: Path, *, retries: int = DEFAULT_RETRIES) -> Path:
    """A local copy of ``url`` in ``folder``, downloaded on first use (named by a hash of
    the URL and its file name, so two URLs never share a copy)."""
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:12]
    local = folder / f"{digest}-{url_name(url) or 'download'}"
    if not local.is_file():
        get_file(url, local, retries=retries)
    return local
