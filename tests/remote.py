"""Servers on 127.0.0.1 for the URL tests: an HTTP server that honours Range requests and can
answer badly on purpose, and an S3 API (moto's server mode)."""

from __future__ import annotations

import os
import socket
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

#: Path prefixes that change how a file is served: ``/stall/x.mp4`` sends the headers of a
#: GET and then nothing; ``/reset/x.mp4`` resets the connection half way through every body;
#: ``/flaky/x.mp4`` does that to the first ``FileServer.flaky`` bodies only.
MODES = ("stall", "reset", "flaky")


class FileServer(ThreadingHTTPServer):
    """Serves ``root`` on 127.0.0.1 (any free port), recording each request."""

    daemon_threads = True

    def __init__(self, root: Path, *, stall: float = 3.0, flaky: int = 1):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.root = root
        self.stall = stall
        self.flaky = flaky
        self.requests: list[tuple[str, str, str | None]] = []

    def url(self, name: str, *, auth: str = "") -> str:
        return f"http://{auth + '@' if auth else ''}127.0.0.1:{self.server_port}/{name}"

    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that gave up on a stalled answer is expected


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: FileServer

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_HEAD(self) -> None:
        self._serve(body=False)

    def do_GET(self) -> None:
        self._serve(body=True)

    def _serve(self, *, body: bool) -> None:
        self.server.requests.append((self.command, self.path, self.headers.get("Range")))
        name = self.path.split("?")[0].lstrip("/")
        mode, _, rest = name.partition("/")
        file = self.server.root / (rest if mode in MODES else name)
        if not file.is_file():
            self.send_error(404)
            return
        data = file.read_bytes()
        start, end = 0, len(data) - 1
        wanted = self.headers.get("Range")
        if wanted and wanted.startswith("bytes="):
            first, _, last = wanted[6:].partition("-")
            start, end = int(first or 0), min(int(last) if last else end, end)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        self.end_headers()
        if not body:
            return
        part = data[start : end + 1]
        if mode == "stall":
            time.sleep(self.server.stall)
            self.close_connection = True
            return
        if mode == "reset" or (mode == "flaky" and self._take_flaky()):
            self.wfile.write(part[: len(part) // 2])
            self.wfile.flush()
            self._reset()
            return
        self.wfile.write(part)

    def _take_flaky(self) -> bool:
        with _LOCK:
            if self.server.flaky > 0:
                self.server.flaky -= 1
                return True
            return False

    def _reset(self) -> None:
        """Close with a TCP reset (SO_LINGER 0), as a dropped connection looks."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()


_LOCK = threading.Lock()


@contextmanager
def file_server(root: Path, **kwargs: float) -> Iterator[FileServer]:
    """A :class:`FileServer` running in a thread for the ``with`` block."""
    server = FileServer(root, **kwargs)  # type: ignore[arg-type]
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.daemon = True
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


#: What the S3 tests set: moto's fake credentials, and the endpoint every S3 client honours.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing-secret",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@contextmanager
def s3_server() -> Iterator[str]:
    """moto's S3 API on 127.0.0.1 (a free port), with ``AWS_ENDPOINT_URL`` and fake
    credentials in the environment for the ``with`` block; yields the endpoint."""
    from moto.server import ThreadedMotoServer
    from s3fs import S3FileSystem

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    saved = {name: os.environ.get(name) for name in [*S3_ENV, "AWS_ENDPOINT_URL"]}
    os.environ.update({**S3_ENV, "AWS_ENDPOINT_URL": endpoint})
    S3FileSystem.clear_instance_cache()
    try:
        yield endpoint
    finally:
        S3FileSystem.clear_instance_cache()
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        server.stop()
