"""The book's big-data pyramid recipe: an OME-Zarr 0.5 pyramid, sharded, built level by level.

Rules the recipe follows (chapter "Big data"):

1. **Each task owns whole shards.** Every write covers whole shards, so no two
   writers ever read-modify-write the same shard (:func:`check_aligned` refuses
   any other plan, :func:`shard_regions` makes the plan).
2. **Each level is computed from the stored level above it**, one output shard
   at a time: never one giant graph, never the whole volume in memory. Memory is
   about one output shard per worker, whatever the size of the volume.
3. **Block means, rounded half up, in exact integer arithmetic**: each voxel of
   level ``k + 1`` is ``(sum of its 2 x 2 x 2 block + 4) // 8`` (:func:`block_mean`).
   Partial blocks at an odd edge are dropped (level shape ``n // 2``).
4. **Metadata states what was done**: scales double per level, and the
   translation ``voxel * (2**k - 1) / 2`` puts each level's voxel centres on the
   centres of the blocks they average (the half-voxel shift); the multiscale
   ``type`` and ``metadata`` name the method.

The chunk I/O goes through one of two engines: ``"tensorstore"`` (the default,
fast: its C++ codec pipeline compresses on every core) or ``"zarr"``
(zarr-python). Both write the same compressed chunks from the same metadata
(only the order of the chunks inside a shard may differ).

Example
-------
>>> import numpy as np, tempfile, zarr
>>> volume = np.arange(64**3, dtype="uint16").reshape(64, 64, 64)
>>> path = write_pyramid(volume, tempfile.mkdtemp() + "/v.ome.zarr", levels=3,
...                      chunks=16, shards=32, voxel_size=(0.5, 0.2, 0.2))
>>> group = zarr.open_group(path, mode="r")
>>> [group[str(k)].shape for k in range(3)]
[(64, 64, 64), (32, 32, 32), (16, 16, 16)]
>>> bool((group["1"][:] == block_mean(volume)).all())
True
"""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

Region = tuple[slice, ...]


def _as_tuple(value: int | Sequence[int], ndim: int, what: str) -> tuple[int, ...]:
    """``value`` (one int or one per axis) as a tuple of ``ndim`` positive ints."""
    values = (value,) * ndim if isinstance(value, (int, np.integer)) else tuple(value)
    if len(values) != ndim or not all(isinstance(v, (int, np.integer)) and v > 0 for v in values):
        raise ValueError(f"{what} must be one positive int or {ndim} of them; got {value!r}.")
    return tuple(int(v) for v in values)


def aligned_shape(chunks: Sequence[int], shards: Sequence[int]) -> tuple[int, ...]:
    """The smallest task shape that holds ``chunks`` and is made of whole shards.

    >>> aligned_shape((300, 256, 256), (128, 128, 128))
    (384, 256, 256)
    """
    return tuple(-(-c // s) * s for c, s in zip(chunks, shards))


def check_aligned(
    chunks: Sequence[int] | Sequence[Sequence[int]], shards: Sequence[int]
) -> None:
    """Raise ``ValueError`` if dask ``chunks`` would make two tasks write into one shard.

    ``chunks`` is a dask array's ``.chunks`` (block sizes per axis) or one block
    shape. Every block boundary must fall on a shard boundary; the last block
    of an axis may be shorter (it ends at the array's edge).

    >>> check_aligned(((256, 256), (512,)), (256, 256))   # fine: whole shards
    >>> check_aligned((100, 512), (256, 256))
    Traceback (most recent call last):
    ...
    ValueError: dask chunks (100, 512) split shards (256, 256): along axis 0 a task boundary at 100 falls inside a shard, so two tasks would read-modify-write the same shard and one would lose the other's values. Use whole shards per task, e.g. chunks (256, 512) (array.rechunk((256, 512))).
    """
    shards = tuple(int(s) for s in shards)
    nested = all(isinstance(c, (tuple, list)) for c in chunks)
    blocks = [tuple(c) for c in chunks] if nested else [(int(c),) for c in chunks]
    if len(blocks) != len(shards):
        raise ValueError(
            f"chunks {tuple(chunks)} and shards {shards} have different numbers of axes."
        )
    shape = tuple(b[0] for b in blocks)
    aligned = aligned_shape(shape, shards)
    for axis, (sizes, shard) in enumerate(zip(blocks, shards)):
        for boundary in itertools.accumulate(sizes[:-1] if nested else sizes):
            if boundary % shard:
                raise ValueError(
                    f"dask chunks {tuple(chunks) if not nested else shape} split shards {shards}: "
                    f"along axis {axis} a task boundary at {boundary} falls inside a shard, so "
                    "two tasks would read-modify-write the same shard and one would lose the "
                    f"other's values. Use whole shards per task, e.g. chunks {aligned} "
                    f"(array.rechunk({aligned}))."
                )


def shard_regions(shape: Sequence[int], shards: Sequence[int]) -> list[Region]:
    """One region per shard of an array of ``shape``: the tasks of a safe parallel write.

    >>> shard_regions((5, 4), (4, 4))
    [(slice(0, 4, None), slice(0, 4, None)), (slice(4, 5, None), slice(0, 4, None))]
    """
    starts = [range(0, n, s) for n, s in zip(shape, shards)]
    return [
        tuple(slice(a, min(a + s, n)) for a, s, n in zip(corner, shards, shape))
        for corner in itertools.product(*starts)
    ]


def block_mean(a: np.ndarray, factor: int = 2) -> np.ndarray:
    """Mean of ``factor``-wide blocks along every axis; partial edge blocks dropped.

    Integers: the exact sum, then rounded half up, ``(sum + n // 2) // n`` with
    ``n = factor**ndim``, computed in 64-bit integers (no float rounding at all).
    Floats: the mean in the array's own dtype.

    >>> block_mean(np.array([[1, 2], [2, 2]], dtype="uint8"))  # 7 / 4 = 1.75
    array([[2]], dtype=uint8)
    >>> block_mean(np.array([[1, 1], [2, 2]], dtype="uint8"))  # 1.5 rounds up
    array([[2]], dtype=uint8)
    """
    out_shape = tuple(s // factor for s in a.shape)
    n = factor**a.ndim
    integer = np.issubdtype(a.dtype, np.integer)
    total = np.zeros(out_shape, np.int64 if integer else a.dtype)
    for offsets in itertools.product(range(factor), repeat=a.ndim):
        total += a[tuple(slice(o, o + factor * s, factor) for o, s in zip(offsets, out_shape))]
    if integer:
        total += n // 2
        total //= n
        return total.astype(a.dtype)
    return total / n


def level_shapes(shape: Sequence[int], levels: int) -> list[tuple[int, ...]]:
    """Shapes of ``levels`` factor-2 levels: each axis halves (rounded down).

    >>> level_shapes((100, 64, 64), 3)
    [(100, 64, 64), (50, 32, 32), (25, 16, 16)]
    """
    shapes = [tuple(int(s) for s in shape)]
    for _ in range(levels - 1):
        shapes.append(tuple(s // 2 for s in shapes[-1]))
    if min(shapes[-1]) < 1:
        raise ValueError(
            f"{levels} levels of {tuple(shape)} would shrink an axis to 0; use at most "
            f"{int(math.log2(min(shape))) + 1} levels."
        )
    return shapes


def ome_metadata(
    name: str, axes: Sequence[str], unit: str, voxel_size: Sequence[float], levels: int
) -> dict[str, Any]:
    """The OME-Zarr 0.5 ``ome`` attribute of a factor-2 block-mean pyramid."""
    return {
        "version": "0.5",
        "multiscales": [{
            "name": name,
            "axes": [{"name": a, "type": "space", "unit": unit} for a in axes],
            "datasets": [
                {
                    "path": str(k),
                    "coordinateTransformations": [
                        {"type": "scale", "scale": [v * 2**k for v in voxel_size]},
                        {"type": "translation",
                         "translation": [v * (2**k - 1) / 2 for v in voxel_size]},
                    ],
                }
                for k in range(levels)
            ],
            "type": "mean",
            "metadata": {
                "description": "block mean of 2 x 2 x 2 voxels of the level above, "
                               "rounded half up; partial edge blocks dropped",
                "method": "data_helpers.pyramid.block_mean",
                "kwargs": {"factor": 2},
            },
        }],
    }


class _Level:
    """Read and write one stored level with the chosen engine."""

    def __init__(self, path: Path, engine: str, ts_context: Any = None):
        self.engine = engine
        if engine == "tensorstore":
            import tensorstore as ts

            self._ts = ts
            self.array = ts.open(
                {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path)}},
                open=True, context=ts_context,
            ).result()
        else:
            import zarr

            self.array = zarr.open_array(path, mode="r+")

    def read(self, region: Region) -> np.ndarray:
        if self.engine == "tensorstore":
            return self.array[region].read().result()
        return self.array[region]

    def write(self, region: Region, pieces: Callable[[], Any]) -> None:
        """Write one shard region from ``pieces()``: pairs (sub-region, values) that tile it.

        tensorstore stages the pieces in one transaction and encodes the shard
        once at commit; zarr-python gets the whole region in one assignment.
        """
        if self.engine == "tensorstore":
            txn = self._ts.Transaction()
            view = self.array.with_transaction(txn)
            for sub, values in pieces():
                view[sub].write(values).result()
            txn.commit_sync()
        else:
            block = np.empty(tuple(s.stop - s.start for s in region), self.array.dtype)
            for sub, values in pieces():
                block[tuple(slice(a.start - r.start, a.stop - r.start) for a, r in zip(sub, region))] = values
            self.array[region] = block


def write_pyramid(
    image: Any,
    path: str | os.PathLike,
    *,
    levels: int = 4,
    chunks: int | Sequence[int] = 128,
    shards: int | Sequence[int] | None = 512,
    voxel_size: Sequence[float] | None = None,
    unit: str = "micrometer",
    axes: str = "zyx",
    name: str = "image",
    clevel: int = 5,
    engine: str = "tensorstore",
    workers: int | None = None,
    start_level: int = 0,
    progress: bool = False,
) -> Path:
    """Write ``image`` as a sharded OME-Zarr 0.5 pyramid of factor-2 block means.

    Parameters
    ----------
    image
        Level 0: a NumPy array, a dask array, or anything sliced into NumPy
        arrays (a zarr or tensorstore array). Read one shard at a time.
    path
        The OME-Zarr group to create (must not exist yet, unless ``start_level``
        is above 0: then levels ``< start_level`` are already stored there).
    levels, chunks, shards
        Number of levels; chunk and shard shape (one int for all axes). A
        level smaller than a shard gets one shard, rounded up to whole chunks;
        ``shards=None`` writes plain chunks (each task then owns whole chunks).
    voxel_size, unit, axes, name
        Level 0's voxel size (default 1 per axis), its unit, the axis names.
    clevel
        zstd level of the blosc compressor (byte shuffle).
    engine
        ``"tensorstore"`` or ``"zarr"`` (zarr-python) for the chunk I/O.
    workers
        Shards processed at the same time (default ``os.cpu_count()``); memory
        is about ``workers`` x one shard of the level being written.
    start_level
        Skip the levels below it: they are already stored (case "level 0 on disk").
    progress
        Print one line per level: shards written, seconds, MB/s of input.
    """
    import time

    import zarr
    from zarr.codecs import BloscCodec

    if engine not in ("tensorstore", "zarr"):
        raise ValueError(f"engine must be 'tensorstore' or 'zarr'; got {engine!r}.")
    ndim = len(image.shape)
    if len(axes) != ndim:
        raise ValueError(f"axes {axes!r} must name each of the {ndim} axes of the image, e.g. 'zyx'.")
    chunks = _as_tuple(chunks, ndim, "chunks")
    shards = chunks if shards is None else _as_tuple(shards, ndim, "shards")
    if any(s % c for s, c in zip(shards, chunks)):
        raise ValueError(
            f"shards {shards} must be whole multiples of chunks {chunks}, e.g. "
            f"{aligned_shape(shards, chunks)}."
        )
    voxel_size = tuple(float(v) for v in (voxel_size or (1.0,) * ndim))
    shapes = level_shapes(image.shape, levels)
    path = Path(path)
    workers = workers or os.cpu_count() or 1

    compressors = [BloscCodec(cname="zstd", clevel=clevel, shuffle="shuffle")]
    if start_level == 0:
        group = zarr.create_group(path, zarr_format=3, attributes={
            "ome": ome_metadata(name, axes, unit, voxel_size, levels)})
    else:
        group = zarr.open_group(path, mode="r+")
        group.attrs["ome"] = ome_metadata(name, axes, unit, voxel_size, levels)
    # a level smaller than a shard gets one shard, rounded up to whole chunks
    level_shards = [
        tuple(min(s, -(-n // c) * c) for s, c, n in zip(shards, chunks, shape)) for shape in shapes
    ]
    for k in range(start_level, levels):
        zarr.create_array(
            group.store, name=str(k), shape=shapes[k], dtype=image.dtype, chunks=chunks,
            shards=None if level_shards[k] == chunks else level_shards[k],
            compressors=compressors, fill_value=0, dimension_names=tuple(axes),
            overwrite=start_level > 0,
        )

    ts_context = None
    if engine == "tensorstore":
        import tensorstore as ts

        ts_context = ts.Context({"cache_pool": {"total_bytes_limit": 0}})

    for k in range(start_level, levels):
        start = time.perf_counter()
        target = _Level(path / str(k), engine, ts_context)
        if k == 0:
            def pieces(region: Region) -> Callable[[], Any]:
                return lambda: [(region, np.asarray(image[region]))]
        else:
            source = _Level(path / str(k - 1), engine, ts_context)

            def pieces(region: Region, source: _Level = source) -> Callable[[], Any]:
                # one chunk of the output at a time, from the 2x larger block above
                def make():
                    for sub in shard_regions([s.stop - s.start for s in region], chunks):
                        out = tuple(slice(r.start + s.start, r.start + s.stop) for r, s in zip(region, sub))
                        above = source.read(tuple(slice(2 * o.start, 2 * o.stop) for o in out))
                        yield out, block_mean(above)
                return make

        regions = shard_regions(shapes[k], level_shards[k])
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(lambda r: target.write(r, pieces(r)), regions))
        if progress:
            seconds = time.perf_counter() - start
            nbytes = math.prod(shapes[max(k - 1, 0)]) * image.dtype.itemsize
            print(f"level {k}: {len(regions)} shard(s) of {level_shards[k]} written, "
                  f"{seconds:.2f} s, {nbytes / 1e6 / seconds:.0f} MB/s read")
    return path
