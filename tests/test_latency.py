"""LatencyStore delays every read by its latency, concurrently, and nothing else."""

from __future__ import annotations

import time

import numpy as np
import pytest
import zarr

from data_helpers import CountingStore, http_server
from data_helpers.latency import LatencyStore

DELAY = 0.05


def timed(func):
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


@pytest.fixture
def array_path(tmp_path):
    path = tmp_path / "a.zarr"
    arr = zarr.create_array(path, shape=(8, 100), chunks=(1, 100), dtype="u2")
    arr[:] = np.arange(800, dtype="u2").reshape(8, 100)
    return path


def test_sequential_reads_pay_one_delay_each(array_path):
    store = LatencyStore(zarr.storage.LocalStore(array_path, read_only=True), latency=DELAY)
    with zarr.config.set({"async.concurrency": 1}):
        arr = zarr.open_array(store, mode="r")
        seconds, out = timed(lambda: arr[:])
    assert out.tolist() == np.arange(800).reshape(8, 100).tolist()
    assert seconds >= 8 * DELAY


def test_concurrent_reads_overlap_their_delays(array_path):
    store = LatencyStore(zarr.storage.LocalStore(array_path, read_only=True), latency=DELAY)
    with zarr.config.set({"async.concurrency": 8}):
        arr = zarr.open_array(store, mode="r")
        seconds, _ = timed(lambda: arr[:])
    assert DELAY <= seconds < 8 * DELAY


def test_writes_are_not_delayed_but_reads_are():
    import asyncio

    from zarr.core.buffer import default_buffer_prototype

    store = LatencyStore(zarr.storage.MemoryStore(), latency=0.5)
    value = default_buffer_prototype().buffer.from_bytes(b"abc")
    seconds, _ = timed(lambda: asyncio.run(store.set("k", value)))
    assert seconds < 0.5
    seconds, got = timed(lambda: asyncio.run(store.get("k", default_buffer_prototype())))
    assert got.to_bytes() == b"abc" and seconds >= 0.5


def test_read_only_copy_keeps_the_latency(array_path):
    store = LatencyStore(zarr.storage.LocalStore(array_path), latency=DELAY)
    copy = store.with_read_only(True)
    assert isinstance(copy, LatencyStore) and copy.latency == DELAY and copy.read_only


def test_sharded_partial_reads_are_delayed_per_request(tmp_path):
    counted = CountingStore(zarr.storage.MemoryStore())
    arr = zarr.create_array(counted, shape=(4, 100), chunks=(1, 100), shards=(4, 100), dtype="u2")
    arr[:] = 7
    store = LatencyStore(counted, latency=DELAY)
    with zarr.config.set({"async.concurrency": 1}):
        part = zarr.open_array(store, mode="r")
        counted.reset()
        seconds, out = timed(lambda: part[1])
    assert (out == 7).all()
    reads = counted.counts["get"] + counted.counts["partial get"]
    assert reads >= 2  # the shard index, then the chunk
    assert seconds >= reads * DELAY * 0.9


def test_over_http(array_path):
    from zarr.storage import FsspecStore

    with http_server(array_path.parent) as srv:
        store = LatencyStore(FsspecStore.from_url(srv.url + "a.zarr", read_only=True), latency=DELAY)
        arr = zarr.open_array(store, mode="r", zarr_format=3)
        assert arr[3, :3].tolist() == [300, 301, 302]


@pytest.mark.parametrize("latency", [-1, 61, "0.1", True, None])
def test_bad_latency_names_the_fix(latency):
    with pytest.raises(ValueError, match="latency=0.02"):
        LatencyStore(zarr.storage.MemoryStore(), latency=latency)


def test_wraps_only_stores():
    with pytest.raises(TypeError, match="LatencyStore wraps a zarr store"):
        LatencyStore("data.zarr", latency=0.1)
