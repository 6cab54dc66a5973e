"""CountingStore counts exactly what crosses a store; timing helpers report medians."""

from __future__ import annotations

import math
import zipfile

import numpy as np
import pytest
import zarr

from data_helpers.measure import OPERATIONS, CountingStore, Timing, time_it


def stored_sizes(store: CountingStore) -> dict[str, int]:
    """Size of every stored value, read straight from the wrapped store."""
    import asyncio

    from zarr.core.buffer import default_buffer_prototype

    async def sizes():
        out = {}
        async for key in store._store.list():
            buf = await store._store.get(key, default_buffer_prototype())
            out[key] = len(buf)
        return out

    return asyncio.run(sizes())


@pytest.fixture(params=["memory", "local", "zip"])
def base_store(request, tmp_path):
    if request.param == "memory":
        yield zarr.storage.MemoryStore()
    elif request.param == "local":
        yield zarr.storage.LocalStore(tmp_path / "a.zarr")
    else:
        store = zarr.storage.ZipStore(tmp_path / "a.zip", mode="a")
        yield store
        store.close()


def chunks_hit(selection, chunks) -> int:
    n = 1
    for sl, c in zip(selection, chunks):
        n *= (sl.stop - 1) // c - sl.start // c + 1
    return n


@pytest.mark.parametrize(
    "selection",
    [
        (slice(0, 1), slice(0, 60)),       # one row
        (slice(0, 60), slice(7, 8)),       # one column
        (slice(5, 25), slice(15, 45)),     # a block across chunk borders
        (slice(0, 60), slice(0, 60)),      # everything
    ],
)
def test_gets_equal_chunks_intersected_and_bytes_equal_stored_sizes(base_store, selection):
    store = CountingStore(base_store)
    arr = zarr.create_array(store, shape=(60, 60), chunks=(10, 20), dtype="u2", zarr_format=3)
    arr[:] = np.arange(1, 3601, dtype="u2").reshape(60, 60)
    sizes = stored_sizes(store)
    store.reset()
    values = arr[selection]
    np.testing.assert_array_equal(values, (np.arange(1, 3601).reshape(60, 60))[selection])
    gets = [e for e in store.events if e.op == "get"]
    assert len(gets) == chunks_hit(selection, (10, 20))
    assert all(e.key.startswith("c/") for e in gets)
    assert store.bytes_read == sum(sizes[e.key] for e in gets)
    assert store.counts["set"] == 0 and store.counts["partial get"] == 0


def test_writes_are_counted_with_their_bytes(tmp_path):
    store = CountingStore(zarr.storage.LocalStore(tmp_path / "w.zarr"))
    arr = zarr.create_array(store, shape=(40,), chunks=(10,), dtype="u1", fill_value=0)
    store.reset()
    arr[:25] = 7  # chunks 0, 1 whole; chunk 2 partly: zarr reads it first (missing)
    sets = [e for e in store.events if e.op == "set"]
    assert sorted(e.key for e in sets) == ["c/0", "c/1", "c/2"]
    on_disk = {p.relative_to(tmp_path / "w.zarr").as_posix(): p.stat().st_size
               for p in (tmp_path / "w.zarr" / "c").rglob("*") if p.is_file()}
    assert store.bytes_written == sum(on_disk.values())
    partial_reads = [e for e in store.events if e.op == "get"]
    assert [e.key for e in partial_reads] == ["c/2"] and not partial_reads[0].found


def test_open_modes_and_read_only_copies_share_counters():
    store = CountingStore(zarr.storage.MemoryStore())
    zarr.create_array(store, shape=(4,), chunks=(2,), dtype="u1")[:] = 1
    store.reset()
    ro = zarr.open_array(store, mode="r", zarr_format=3)
    assert store.counts["get"] == 1  # just zarr.json
    _ = ro[:]
    assert store.counts["get"] == 3
    store.reset()
    zarr.open_array(store, mode="r")  # format unknown: zarr probes format 2 keys too
    summary = store.summary()
    assert summary.loc["get", "calls"] > 1
    assert summary.loc["get", "not found"] == summary.loc["get", "calls"] - 1


def test_sharded_reads_are_partial_gets(tmp_path):
    store = CountingStore(zarr.storage.LocalStore(tmp_path / "s.zarr"))
    arr = zarr.create_array(store, shape=(200, 200), chunks=(25, 25), shards=(100, 100), dtype="u2")
    data = np.random.default_rng(0).integers(1, 60000, (200, 200), dtype="u2")  # incompressible
    arr[:] = data
    assert store.counts["set"] == 1 + 4  # metadata + 4 shards
    store.reset()
    assert arr[0, 0] == data[0, 0]
    events = store.events
    assert {e.op for e in events} == {"partial get"}
    assert all(e.key == "c/0/0" for e in events)
    shard_size = (tmp_path / "s.zarr" / "c" / "0" / "0").stat().st_size
    assert store.bytes_read < shard_size / 10  # the index and one chunk, not the shard


def test_deletes_and_listing_are_counted():
    store = CountingStore(zarr.storage.MemoryStore())
    group = zarr.open_group(store, mode="w")
    group.create_array("a", shape=(4,), chunks=(2,), dtype="u1")[:] = 3
    store.reset()
    assert sorted(group.array_keys()) == ["a"]
    assert store.counts["list"] >= 1
    store.reset()
    del group["a"]
    assert store.counts["delete"] >= 1


def test_summary_and_per_key_tables():
    store = CountingStore(zarr.storage.MemoryStore())
    arr = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="u1")
    arr[:] = [1, 2, 3, 4]
    table = store.summary()
    assert list(table.index) == list(OPERATIONS)
    assert table.loc["set", "calls"] == 3 and table.loc["set", "bytes"] == store.bytes_written
    per_key = store.per_key()
    assert set(per_key["key"]) == {"zarr.json", "c/0", "c/1"}
    assert per_key["bytes"].sum() == store.bytes_written + store.bytes_read


@pytest.mark.parametrize("bad", ["data.zarr", {}, None, 3])
def test_wrapping_a_non_store_says_what_works(bad):
    with pytest.raises(TypeError, match=r"CountingStore\(zarr.storage.LocalStore"):
        CountingStore(bad)


def test_wrapping_twice_is_refused():
    with pytest.raises(TypeError, match="already counted"):
        CountingStore(CountingStore(zarr.storage.MemoryStore()))


def test_time_it_takes_the_median_and_reports_throughput():
    calls = []
    t = time_it(lambda: calls.append(1), repeat=5, nbytes=10**6)
    assert len(calls) == 6  # one warm-up + 5 timed
    assert len(t.runs) == 5 and t.seconds == sorted(t.runs)[2]
    assert math.isclose(t.mb_per_s, 1 / t.seconds)
    assert "MB/s" in str(t)


def test_time_it_runs_setup_untimed_and_checks_input():
    state = []
    time_it(lambda: state.append("run"), setup=lambda: state.append("setup"), repeat=2, warmup=False)
    assert state == ["setup", "run", "setup", "run"]
    with pytest.raises(ValueError, match="repeat must be at least 1"):
        time_it(lambda: None, repeat=0)
    with pytest.raises(ValueError, match="nbytes"):
        _ = Timing((1.0,)).mb_per_s
