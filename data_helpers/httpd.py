"""A real local HTTP server that serves a folder read-only and counts what it sends.

:func:`http_server` serves a folder on 127.0.0.1 (GET, HEAD and byte ``Range``
requests) for one ``with`` block, and counts every request and every body byte it
sends, so a chapter can show how many requests a Zarr read really makes.

It is built on the standard library's threaded ``http.server`` with what a
benchmark needs on top: a listen backlog of 128 (many clients connecting at once
are queued, not dropped for a second), an answer to every malformed request
(400, 414, 431, 505, never silence), and exactly one count per request.

Example
-------
>>> import tempfile, pathlib, urllib.request
>>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_bytes(b"hello")
>>> with http_server(d) as srv:
...     urllib.request.urlopen(srv.url + "a.txt").read(), srv.requests
(b'hello', 1)
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.utils
import http.server
import os
import re
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_helpers._net import HOST, PortInUseError, check_port, require_free

__all__ = ["HTTPServerInfo", "PortInUseError", "RequestRecord", "http_server"]

BACKLOG = 128
"""Connections the kernel queues for the server before it refuses (drops) new ones.
The standard library's default, 5, made 134 of 1,600 requests stall 1-3 s with 64
clients that each open a new connection per request."""

REQUEST_TIMEOUT = 30.0
"""Seconds a client may stay silent in the middle of a request (or idle between
keep-alive requests) before the server hangs up."""


@dataclass(frozen=True)
class RequestRecord:
    """One request the HTTP server answered.

    ``method`` is ``"-"`` when the request line was too malformed to have one.
    """

    method: str
    path: str
    status: int
    bytes: int
    range: str | None


class _Counter:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.log: list[RequestRecord] = []

    def add(self, rec: RequestRecord) -> int:
        with self.lock:
            self.log.append(rec)
            return len(self.log) - 1

    def correct(self, index: int, rec: RequestRecord, sent: int) -> None:
        """Lower a record's byte count to what was really sent (client hung up)."""
        with self.lock:
            if index < len(self.log) and self.log[index] is rec:
                self.log[index] = dataclasses.replace(rec, bytes=sent)


_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_BIG = 1 << 62  # any position past the end of any file we serve


def _position(digits: str) -> int:
    """A Range position; absurdly long numbers (Python refuses > 4300 digits) are
    simply "past the end"."""
    return _BIG if len(digits) > 18 else int(digits)


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Errors found before the version is parsed are answered in HTTP/1.0: the base
    # class's default, HTTP/0.9, sends them without a status line.
    default_request_version = "HTTP/1.0"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK, about 40 ms per keep-alive request on Linux.
    disable_nagle_algorithm = True
    timeout = REQUEST_TIMEOUT
    counter: _Counter  # set on a per-server subclass
    serve_indexes: bool = True  # set on a per-server subclass
    server_version = "BookHTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: the notebook must not fill with access logs

    # -- malformed requests get an answer (the base class would send none or crash)
    def parse_request(self) -> bool:
        words = str(self.raw_requestline, "iso-8859-1").rstrip("\r\n").split()
        if len(words) == 2:
            # HTTP/0.9 ("GET /path", no version, no headers): answer in HTTP/1.0 so
            # the client sees a status line, instead of waiting for headers forever.
            self.command, self.path = words[0], words[1]
            self.request_version = "HTTP/1.0"
            self.requestline = " ".join(words)
            self.close_connection = True
            self.send_error(505, "HTTP/0.9 is not supported; send HTTP/1.0 or 1.1")
            return False
        return super().parse_request()

    def handle_expect_100(self) -> bool:
        if self.command not in ("GET", "HEAD"):
            # A write will be refused anyway: say so now (RFC 9110 allows a final
            # status instead of 100 Continue), so the client never sends its body
            # and the request is counted once.
            return True
        self._interim = True
        try:
            return super().handle_expect_100()
        finally:
            self._interim = False

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def end_headers(self) -> None:
        if getattr(self, "_interim", False):  # "100 Continue" is not a response
            super().end_headers()
            return
        # Count the request before the client can see the end of the response, so that
        # a client reading the counters right after a read always finds it there.
        status = getattr(self, "_status", 0)
        command = getattr(self, "command", None) or "-"
        headers = getattr(self, "headers", None)
        length = 0
        if command == "GET" and 200 <= status < 300:
            for line in self._headers_buffer:
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
        self._rec = RequestRecord(
            method=command,
            path=getattr(self, "path", "") or "",
            status=status,
            bytes=length,
            range=headers.get("Range") if headers is not None else None,
        )
        self._rec_index = self.counter.add(self._rec)
        super().end_headers()

    # -- reads
    def send_head(self):  # type: ignore[override]
        self._length: int | None = None
        if "\x00" in urllib.parse.unquote(self.path.split("?", 1)[0]):
            self.send_error(400, "NUL byte in the path")
            return None
        path = self.translate_path(self.path)
        if os.path.isdir(path):
            if not self.serve_indexes:  # like S3, a CDN or nginx without autoindex
                self.send_error(404, "File not found")
                return None
            return super().send_head()  # redirects and HTML index pages
        if path.endswith("/"):
            self.send_error(404, "File not found")
            return None
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by the caller
        except (OSError, ValueError):
            self.send_error(404, "File not found")
            return None
        try:
            st = os.fstat(f.fileno())
            size = st.st_size
            start, end = 0, size - 1
            status = 200
            rng = self.headers.get("Range")
            m = _RANGE.match(rng.strip()) if rng else None
            if m and (m.group(1) or m.group(2)):
                first, last = m.group(1), m.group(2)
                if first:
                    start = _position(first)
                    end = min(_position(last), size - 1) if last else size - 1
                else:  # suffix range: the last N bytes
                    start = max(size - _position(last), 0)
                if start >= size or start > end:
                    f.close()
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                status = 206
            # Anything else (several ranges, bad syntax) gets the whole file, as
            # RFC 9110 allows a server that ignores Range.
            length = end - start + 1 if size else 0
            self.send_response(status)
            self.send_header("Content-Type", self.guess_type(path))
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            modified = email.utils.formatdate(st.st_mtime, usegmt=True)
            self.send_header("Last-Modified", modified)
            self.send_header("ETag", f'"{st.st_mtime_ns:x}-{size:x}"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.end_headers()
            f.seek(start)
            self._length = length
            return f
        except Exception:
            f.close()
            raise

    def copyfile(self, source, outputfile) -> None:  # type: ignore[override]
        remaining = self._length
        sent = 0
        while remaining is None or remaining > 0:
            chunk = source.read(65536 if remaining is None else min(remaining, 65536))
            if not chunk:
                break
            outputfile.write(chunk)
            sent += len(chunk)
            if remaining is not None:
                remaining -= len(chunk)
        self._sent = sent

    def do_GET(self) -> None:
        self._sent = 0
        f = self.send_head()
        if f:
            try:
                self.copyfile(f, self.wfile)
            finally:
                f.close()
                if self._sent < self._rec.bytes:
                    self.counter.correct(self._rec_index, self._rec, self._sent)

    def do_HEAD(self) -> None:
        f = self.send_head()
        if f:
            f.close()

    # -- writes are refused
    def _refuse(self) -> None:
        self.send_response(405)
        body = b"Read-only server: only GET and HEAD are allowed.\n"
        self.send_header("Allow", "GET, HEAD")
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = True

    do_PUT = do_POST = do_DELETE = do_PATCH = _refuse


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = False
    block_on_close = True
    request_queue_size = BACKLOG

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        super().__init__(*args, **kwargs)

    def process_request(self, request, client_address) -> None:  # type: ignore
        with self._conns_lock:
            self._conns.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:  # type: ignore[override]
        with self._conns_lock:
            self._conns.discard(request)
        super().shutdown_request(request)

    def close_connections(self) -> None:
        """Hang up on idle keep-alive clients so their handler threads end."""
        with self._conns_lock:
            conns = list(self._conns)
        for c in conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request, client_address) -> None:  # type: ignore[override]
        pass  # a client that hangs up mid-transfer is not worth a traceback


@dataclass
class HTTPServerInfo:
    """A running :func:`http_server`: its ``url`` and what it has served so far.

    Example
    -------
    >>> import tempfile, pathlib, urllib.request
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_bytes(b"hello")
    >>> with http_server(d) as srv:
    ...     urllib.request.urlopen(srv.url + "a.txt").read()
    ...     srv.requests, srv.bytes_sent
    b'hello'
    (1, 5)
    """

    url: str
    directory: Path
    port: int
    _counter: _Counter = field(repr=False)

    @property
    def log(self) -> list[RequestRecord]:
        """A copy of the request records, oldest first."""
        with self._counter.lock:
            return list(self._counter.log)

    @property
    def requests(self) -> int:
        """Number of requests answered (any method, any status, malformed ones too)."""
        with self._counter.lock:
            return len(self._counter.log)

    @property
    def bytes_sent(self) -> int:
        """Body bytes sent in successful (2xx) GET responses."""
        with self._counter.lock:
            return sum(r.bytes for r in self._counter.log)

    def reset(self) -> None:
        """Forget all requests counted so far."""
        with self._counter.lock:
            self._counter.log.clear()


@contextlib.contextmanager
def http_server(
    directory: str | os.PathLike, *, port: int = 0, index_pages: bool = True
) -> Iterator[HTTPServerInfo]:
    """Serve ``directory`` read-only over HTTP on 127.0.0.1 and count what is read.

    GET and HEAD work, with single byte ranges (``Range: bytes=a-b``, ``a-`` and
    ``-n``) answered ``206`` with ``Content-Range``; folders get an HTML index (what
    fsspec's HTTP listing scrapes), or ``404`` with ``index_pages=False``, as from
    most real web servers, CDNs and object stores. PUT, POST, DELETE and PATCH get
    ``405``. Malformed requests get ``400``, ``414``, ``431`` or ``505`` and are
    counted like any other. No logging. ``port=0`` (the default) picks a free port.

    Example
    -------
    >>> import numpy as np, tempfile, zarr
    >>> root = tempfile.mkdtemp()
    >>> g = zarr.open_group(f"{root}/g.zarr", mode="w")
    >>> g.create_array("a", shape=(4,), chunks=(4,), dtype="u1")[:] = np.arange(4)
    >>> _ = zarr.consolidate_metadata(f"{root}/g.zarr")  # one request opens it all
    >>> with http_server(root) as srv:
    ...     g = zarr.open_group(srv.url + "g.zarr", mode="r", zarr_format=3)
    ...     g["a"][:].tolist(), srv.requests
    ([0, 1, 2, 3], 2)
    """
    if not isinstance(directory, (str, os.PathLike)) or str(directory) == "":
        raise TypeError(
            f"directory must be the path of a folder to serve (str or pathlib.Path); "
            f"got {directory!r}."
        )
    root = Path(directory)
    if not root.is_dir():
        what = "a file" if root.exists() else "missing"
        raise NotADirectoryError(f"{root} is {what}, not a folder; pass the folder to serve.")
    port = check_port(port, low=0, what="port")
    if not isinstance(index_pages, bool):
        raise TypeError(f"index_pages must be True or False; got {index_pages!r}.")
    if port:
        require_free(port, "")
    counter = _Counter()
    handler = type(
        "Handler", (_Handler,), {"counter": counter, "serve_indexes": index_pages}
    )

    def make(*args: Any, **kwargs: Any) -> _Handler:
        return handler(*args, directory=str(root), **kwargs)

    server = _Server((HOST, port), make)
    # serve_forever checks for shutdown every poll_interval: the default 0.5 s made
    # every `with http_server(...)` block half a second longer than its body.
    thread = threading.Thread(
        target=server.serve_forever, kwargs={"poll_interval": 0.02},
        name="http_server", daemon=True,
    )
    thread.start()
    bound = server.server_address[1]
    try:
        yield HTTPServerInfo(
            url=f"http://{HOST}:{bound}/", directory=root, port=bound, _counter=counter
        )
    finally:
        server.shutdown()
        server.close_connections()
        server.server_close()
        thread.join(timeout=10)
