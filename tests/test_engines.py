"""Every engine writes what every other engine reads; the limits and helpers behave."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import zarr

from data_helpers import engines as en


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    return rng.integers(0, 4000, (2, 8, 64, 96), dtype=np.uint16)


@pytest.mark.parametrize("shards", [None, (1, 8, 64, 96)], ids=["unsharded", "sharded"])
@pytest.mark.parametrize("writer", en.ENGINES)
def test_every_engine_reads_every_engine(tmp_path, data, writer, shards):
    path = tmp_path / "a.zarr"
    en.create(path, data, chunks=(1, 8, 32, 32), shards=shards)
    en.writer(writer, path)(data)
    for reader in en.ENGINES:
        out = np.asarray(en.reader(reader, path)())
        assert out.dtype == data.dtype and out.tobytes() == data.tobytes(), (writer, reader)


def test_create_uses_the_default_compressor_and_replaces(tmp_path, data):
    path = tmp_path / "a.zarr"
    en.create(path, data, chunks=(1, 8, 32, 32))
    arr = zarr.open_array(path)
    (blosc,) = arr.compressors
    assert getattr(blosc.cname, "value", blosc.cname) == "zstd" and blosc.clevel == 1
    en.create(path, data[:1], chunks=(1, 8, 32, 32), compressors=None)
    assert zarr.open_array(path).shape == data[:1].shape


def test_unknown_engine_lists_the_choices(tmp_path):
    with pytest.raises(ValueError, match="zarr-python, zarr-python fused"):
        en.writer("zarr2", tmp_path)


def test_compare_engines_reads_each_output_with_another_engine(tmp_path, data):
    runs = en.compare_engines(data, chunks=(1, 8, 32, 32),
                              layouts={"plain": None, "sharded": (1, 8, 64, 96)},
                              rounds=2, workdir=tmp_path)
    assert len(runs) == 2 * 2 * len(en.ENGINES) * 2
    assert runs["equal"].all()
    reads = runs[runs.op == "read"]
    assert (reads["engine"] != reads["written by"]).all()
    table = en.summarise(runs)
    assert set(table.columns) >= {"seconds", "MB/s", "spread", "× zarr-python", "equal"}
    assert np.allclose(table.xs("zarr-python", level="engine")["× zarr-python"], 1.0)
    assert (table["spread"] >= 0).all()


def test_limits_are_positive(tmp_path, data):
    assert en.memory_copy_speed(data) > 0
    disk = en.disk_speeds(1 << 20, workdir=tmp_path, block=1 << 18)
    assert set(disk) == {"write", "write + fsync", "read"} and min(disk.values()) > 0
    assert not list(tmp_path.iterdir())  # the test file is gone
    tiles = [np.arange(32 * 32, dtype=np.uint16).reshape(32, 32) // 7] * 4  # compressible
    speeds = en.codec_speeds(tiles, {"lz4": en.blosc_codec("lz4")}, threads=(1, 2), repeat=1)
    assert list(speeds.index) == [("lz4", 1), ("lz4", 2)]
    assert (speeds["ratio"] > 1).all()


def test_bounds():
    b = en.bounds(encode=100, decode=400, ratio=2, disk_write=1000, disk_read=1000,
                  memory_copy=800)
    assert b["write ceiling"] == 100 and b["read ceiling"] == 400
    assert b["write serial"] == pytest.approx(1 / (1 / 100 + 1 / 2000))
    assert b["read serial"] < b["read ceiling"]


def test_ties_and_fit():
    assert en.ties(pd.Series({"a": 10.0, "b": 9.5, "c": 5.0}), tolerance=0.1) == ["a", "b"]
    with pytest.raises(ValueError, match="fraction"):
        en.ties(pd.Series({"a": 1.0}), tolerance=1.5)
    overhead, speed = en.fit_chunk_overhead([1, 4, 16], [0.010, 0.014, 0.026], 10**7)
    assert overhead == pytest.approx(0.001) and speed == pytest.approx(1000)
    # noise that makes the many-chunk run fastest gives no overhead, not a negative one
    assert en.fit_chunk_overhead([1, 16], [0.02, 0.01], 10**7)[0] == 0
    with pytest.raises(ValueError, match="at least two"):
        en.fit_chunk_overhead([1], [0.1], 10)


def test_thread_pool_knob(tmp_path, data):
    path = tmp_path / "a.zarr"
    en.create(path, data, chunks=(1, 8, 32, 32))
    en.writer("zarr-python", path)(data)
    try:
        en.set_zarr_thread_pool(1)
        import zarr.core.sync as zsync

        assert zsync._executor._max_workers == 1
        assert np.array_equal(en.reader("zarr-python", path)(), data)
    finally:
        en.set_zarr_thread_pool(None)
    assert zarr.config.get("threading.max_workers") is None
    with pytest.raises(ValueError, match="positive int"):
        en.set_zarr_thread_pool(0)


def test_best_seconds_rejects_no_repeat():
    with pytest.raises(ValueError, match="at least 1"):
        en.best_seconds(lambda: None, repeat=0)
