"""The book's big-data pyramid recipe: shard-aligned plans, exact block means, valid OME-Zarr 0.5."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from data_helpers.pyramid import (
    aligned_shape,
    block_mean,
    check_aligned,
    level_shapes,
    shard_regions,
    write_pyramid,
)


def numpy_mean_half_up(a: np.ndarray) -> np.ndarray:
    """The plain reference: float64 mean of 2x2x2 blocks, rounded half up."""
    t = a[tuple(slice(0, s // 2 * 2) for s in a.shape)].astype(np.float64)
    shape = [n for s in t.shape for n in (s // 2, 2)]
    return np.floor(t.reshape(shape).mean(axis=(1, 3, 5)) + 0.5).astype(a.dtype)


@pytest.fixture(scope="module")
def volume():
    rng = np.random.default_rng(4)
    return rng.integers(0, 65535, size=(70, 64, 49), dtype=np.uint16)  # odd edges


def test_block_mean_equals_the_numpy_reference(volume):
    np.testing.assert_array_equal(block_mean(volume), numpy_mean_half_up(volume))


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16", "int32", "uint32"])
@pytest.mark.parametrize("factor", [2, 3])
def test_block_mean_is_the_exact_sum_rounded_half_up_for_every_integer_type(dtype, factor):
    import itertools

    info = np.iinfo(dtype)
    a = np.random.default_rng(5).integers(info.min, info.max, (13, 8, 7), endpoint=True).astype(dtype)
    out = tuple(s // factor for s in a.shape)
    total = np.zeros(out, np.int64)  # the plain definition, in 64-bit integers
    for o in itertools.product(range(factor), repeat=3):
        total += a[tuple(slice(i, i + factor * n, factor) for i, n in zip(o, out))]
    n = factor**3
    np.testing.assert_array_equal(block_mean(a, factor), ((total + n // 2) // n).astype(dtype))


def test_block_mean_rounds_ties_up_and_keeps_full_uint16_range():
    a = np.full((2, 2, 2), 65535, np.uint16)
    assert block_mean(a)[0, 0, 0] == 65535  # no overflow
    a.flat[:4] = 0
    a.flat[4:] = 1  # mean 0.5 rounds up
    assert block_mean(a)[0, 0, 0] == 1


@pytest.mark.parametrize(
    ("chunks", "shards", "aligned"),
    [
        ((100, 512), (256, 256), "(256, 512)"),
        (((256, 128, 256), (512,)), (256, 256), "(256, 512)"),
        ((64, 64, 64), (128, 128, 128), "(128, 128, 128)"),
        ((300, 256, 256), (128, 128, 128), "(384, 256, 256)"),
    ],
)
def test_planner_rejects_chunks_that_share_a_shard_and_names_the_aligned_shape(chunks, shards, aligned):
    with pytest.raises(ValueError, match=r"two tasks would read-modify-write the same shard") as err:
        check_aligned(chunks, shards)
    assert f"e.g. chunks {aligned}" in str(err.value)


def test_planner_accepts_whole_shards_and_a_short_last_block():
    check_aligned(((256, 256, 100), (512,)), (256, 256))
    check_aligned((512, 256), (256, 256))
    assert aligned_shape((1, 257), (256, 256)) == (256, 512)


def test_planner_checks_the_number_of_axes():
    with pytest.raises(ValueError, match="different numbers of axes"):
        check_aligned((256, 256), (256, 256, 256))


def test_shard_regions_tile_the_array_once():
    cover = np.zeros((10, 7), int)
    for region in shard_regions((10, 7), (4, 3)):
        cover[region] += 1
    assert (cover == 1).all()


def test_too_many_levels_is_refused_with_the_maximum():
    with pytest.raises(ValueError, match="at most 4 levels"):
        level_shapes((8, 64, 64), 5)


@pytest.mark.parametrize("engine", ["tensorstore", "zarr"])
@pytest.mark.parametrize("shards", [32, None])
def test_recipe_pyramid_equals_numpy_reference_validates_and_reads_back_in_tensorstore(
    tmp_path, volume, engine, shards
):
    import tensorstore as ts
    from ome_zarr_models.v05.image import Image

    path = write_pyramid(volume, tmp_path / "v.ome.zarr", levels=3, chunks=16, shards=shards,
                         voxel_size=(2.0, 0.5, 0.5), engine=engine, workers=2)
    group = zarr.open_group(path, mode="r")
    expected = [volume]
    for _ in range(2):
        expected.append(numpy_mean_half_up(expected[-1]))
    for k, want in enumerate(expected):
        np.testing.assert_array_equal(group[str(k)][:], want)
        second = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / str(k))}},
                         open=True).result().read().result()
        np.testing.assert_array_equal(second, want)
    if shards:
        assert group["0"].shards == (32, 32, 32)
    model = Image.from_zarr(group)  # validates OME-Zarr 0.5
    ms = model.attributes.ome.multiscales[0]
    assert ms.type == "mean" and ms.metadata["method"] == "data_helpers.pyramid.block_mean"
    t = [d.coordinateTransformations for d in ms.datasets]
    assert t[2][0].scale == [8.0, 2.0, 2.0] and t[2][1].translation == [3.0, 0.75, 0.75]


def test_recipe_continues_from_a_stored_level_zero(tmp_path, volume):
    path = write_pyramid(volume, tmp_path / "a.ome.zarr", levels=1, chunks=16, shards=32)
    level0 = zarr.open_array(path / "0", mode="r")
    write_pyramid(level0, path, levels=3, chunks=16, shards=32, start_level=1)
    group = zarr.open_group(path, mode="r")
    np.testing.assert_array_equal(group["2"][:], numpy_mean_half_up(numpy_mean_half_up(volume)))
    assert len(group.attrs["ome"]["multiscales"][0]["datasets"]) == 3


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"engine": "numpy"}, "engine must be"),
        ({"shards": 24}, "whole multiples of chunks"),
        ({"chunks": (16, 16)}, "chunks must be"),
        ({"axes": "yx"}, "must name each"),
    ],
)
def test_recipe_bad_arguments_name_the_fix(tmp_path, volume, kwargs, message):
    with pytest.raises(ValueError, match=message):
        write_pyramid(volume, tmp_path / "x.ome.zarr", **{"chunks": 16, **kwargs})


def test_recipe_reads_a_lazy_tensorstore_volume(tmp_path, volume):
    import tensorstore as ts

    stacked = ts.concat([ts.array(volume)] * 2, axis=0)  # nothing computed yet
    path = write_pyramid(stacked, tmp_path / "lazy.ome.zarr", levels=2, chunks=16, shards=32)
    group = zarr.open_group(path, mode="r")
    both = np.concatenate([volume, volume])
    np.testing.assert_array_equal(group["0"][:], both)
    np.testing.assert_array_equal(group["1"][:], numpy_mean_half_up(both))


@pytest.mark.parametrize("engine", ["tensorstore", "zarr"])
def test_a_failing_read_stops_the_recipe_and_leaves_no_half_written_shard(
    tmp_path, volume, engine, monkeypatch
):
    import data_helpers.pyramid

    monkeypatch.setattr(data_helpers.pyramid, "CHUNKS_PER_WORKER", 1)  # one shard per batch
    class FailsInSecondShard:
        shape, dtype = volume.shape, volume.dtype

        def __getitem__(self, region):
            if region[0].start >= 32:
                raise OSError("the source went away")
            return volume[region]

    path = tmp_path / "fail.ome.zarr"
    with pytest.raises(OSError, match="went away"):
        write_pyramid(FailsInSecondShard(), path, levels=2, chunks=16, shards=32,
                      engine=engine, workers=2)
    # the four shards of z 0-31 were written whole; the failing shard and all after
    # it (and level 1) were never written, not even in part
    shards = sorted(str(f.relative_to(path / "0" / "c")) for f in (path / "0" / "c").rglob("*")
                    if f.is_file())
    assert shards == ["0/0/0", "0/0/1", "0/1/0", "0/1/1"]
    level0 = zarr.open_array(path / "0", mode="r")
    np.testing.assert_array_equal(level0[:32], volume[:32])
    assert not (path / "1" / "c").exists()
