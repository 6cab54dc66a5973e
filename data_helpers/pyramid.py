"""The book's big-data pyramid recipe: an OME-Zarr 0.5 pyramid, sharded, built level by level.

Rules the recipe follows (chapter "Big data"):

1. **Each task owns whole shards.** Every write covers whole shards, so no two
   writers ever read-modify-write the same shard (:func:`check_aligned` refuses
   any other plan, :func:`shard_regions` makes the plan).
2. **Each level is computed from the stored level above it**, one output shard
   at a time (its chunks on ``workers`` threads), and the finished shard is
   encoded while the next one is computed: never one giant graph, never the whole
   volume in memory. Memory is a few shards (one being filled, up to two being
   encoded; small shards are grouped into batches of ``CHUNKS_PER_WORKER`` chunks
   per worker), whatever the size of the volume.
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
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

Region = tuple[slice, ...]
#: Consecutive shards are written together in batches of at least this many
#: chunks per worker (and at least one shard), so that every core has chunks to
#: encode while a batch is written.
CHUNKS_PER_WORKER = 4
#: Freed memory is given back to the system (:func:`release_freed_memory`) after
#: every this many pieces, and after every batch written.
TRIM_EVERY = 8


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
    ``n = factor**ndim``, in an integer type wide enough for the sum (no float
    rounding at all). Floats: the mean in the array's own dtype. The sum is taken
    one axis at a time, so each step works on a smaller array than the last.

    >>> block_mean(np.array([[1, 2], [2, 2]], dtype="uint8"))  # 7 / 4 = 1.75
    array([[2]], dtype=uint8)
    >>> block_mean(np.array([[1, 1], [2, 2]], dtype="uint8"))  # 1.5 rounds up
    array([[2]], dtype=uint8)
    """
    n = factor**a.ndim
    integer = np.issubdtype(a.dtype, np.integer)
    if integer:
        # int32 holds n values of 8 or 16 bits as long as n <= 2**15
        wide = np.int32 if a.dtype.itemsize <= 2 and n <= 2**15 else np.int64
    else:
        wide = a.dtype
    total = a
    for axis in range(a.ndim):
        size = a.shape[axis] // factor

        def part(offset: int, axis: int = axis, size: int = size) -> np.ndarray:
            index = [slice(None)] * a.ndim
            index[axis] = slice(offset, offset + factor * size, factor)
            return total[tuple(index)]

        step = part(0).astype(wide)
        for offset in range(1, factor):
            step += part(offset)
        total = step
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
            self.itemsize = self.array.dtype.numpy_dtype.itemsize
        else:
            import zarr

            self.array = zarr.open_array(path, mode="r+")
            self.itemsize = self.array.dtype.itemsize

    def read(self, region: Region) -> np.ndarray:
        if self.engine == "tensorstore":
            return self.array[region].read().result()
        return self.array[region]

    def write_shards(
        self, regions: list[Region], jobs: Callable[[Region], list[Callable[[], Any]]],
        workers: int, batch_bytes: int,
    ) -> None:
        """Write whole shard ``regions`` from their ``jobs``: callables returning (sub-region, values).

        Consecutive shards are grouped into batches of at least ``batch_bytes``
        (one shard if it is that big). The jobs run in order on ``workers``
        threads, at most ``workers`` at a time, and a batch is written when all
        its pieces are in: every shard is written once, whole, by one writer.
        While batches are being encoded and written, the next one is computed
        (two batches in flight when a batch is a big shard, up to four when
        batches are small).

        tensorstore stages the pieces of a batch in one transaction (a piece that
        is whole chunks, such as level 0's whole shards, by reference, with no
        copy) and encodes its chunks on its own threads at commit; zarr-python gets
        one assignment per shard, on a writer thread.
        """
        batches: list[list[Region]] = []
        size = largest = batch_bytes
        for region in regions:
            if size >= batch_bytes:
                batches.append([])
                largest, size = max(largest, size), 0
            batches[-1].append(region)
            size += math.prod(r.stop - r.start for r in region) * self.itemsize
        # batches being written at once: two if a batch is a big shard, up to four if small
        limit = max(2, 4 * batch_bytes // max(largest, size))

        # every job of the level, in order, tagged with its batch: the threads never
        # wait at the end of a batch, the next batch's pieces are already computing
        plan = [(b, job) for b, batch in enumerate(batches)
                for region in batch for job in jobs(region)]
        left = [0] * len(batches)  # pieces of each batch not staged yet
        for b, _ in plan:
            left[b] += 1

        writing: deque = deque()  # writes in flight: tensorstore commits or zarr writes
        pool, writer = ThreadPoolExecutor(workers), ThreadPoolExecutor(1)
        todo, running = iter(plan), deque()
        filling, staged = -1, 0
        try:
            for b, job in itertools.islice(todo, workers):
                running.append((b, pool.submit(job)))
            while running:
                b, future = running.popleft()
                sub, values = future.result()
                following = next(todo, None)
                if following is not None:
                    running.append((following[0], pool.submit(following[1])))
                if b != filling:  # the first piece of the next batch
                    filling, pieces = b, []
                    if self.engine == "tensorstore":
                        txn = self._ts.Transaction()
                        view = self.array.with_transaction(txn)
                if self.engine == "tensorstore":
                    view[sub].write(values, can_reference_source_data_indefinitely=True).result()
                    staged += 1
                    if staged % TRIM_EVERY == 0:
                        release_freed_memory()
                else:
                    pieces.append((sub, values))
                del values
                left[b] -= 1
                if left[b]:
                    continue
                # the batch is complete: write it (after the oldest write, if too many)
                while len(writing) >= limit:
                    writing.popleft().result()
                    release_freed_memory()
                if self.engine == "tensorstore":
                    writing.append(txn.commit_async())
                else:
                    writing.append(writer.submit(self._write_zarr, batches[b], pieces))
            while writing:
                writing.popleft().result()
                release_freed_memory()
        finally:
            # on an error: no new piece starts, the batch being filled is never
            # written, and the batches already being written finish before we return
            pool.shutdown(wait=True, cancel_futures=True)
            for future in writing:
                future.exception()
            writer.shutdown(wait=True)

    def _write_zarr(self, batch: list[Region], pieces: list[tuple[Region, np.ndarray]]) -> None:
        """zarr-python: each shard of ``batch`` in one assignment, put together from ``pieces``."""
        for region in batch:
            inside = [(sub, values) for sub, values in pieces
                      if all(r.start <= a.start and a.stop <= r.stop for a, r in zip(sub, region))]
            if len(inside) == 1 and inside[0][0] == region:
                self.array[region] = inside[0][1]
                continue
            block = np.empty(tuple(r.stop - r.start for r in region), self.array.dtype)
            for sub, values in inside:
                block[tuple(slice(a.start - r.start, a.stop - r.start)
                            for a, r in zip(sub, region))] = values
            self.array[region] = block


def release_freed_memory() -> None:
    """Give memory that was freed, but kept by the C allocator, back to the system.

    glibc keeps freed memory for reuse, in pieces that a long run of large
    allocations from several threads may never reuse, so a process's resident
    memory grows past what it uses. ``malloc_trim(0)`` returns it. (dask's workers
    get the same effect from the environment variable ``MALLOC_TRIM_THRESHOLD_``,
    which must be set before the process starts.) Elsewhere than Linux with glibc
    this does nothing.

    >>> release_freed_memory()
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):  # not glibc (e.g. musl): nothing to do
        pass


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
        Threads computing the pieces of a shard (default ``os.cpu_count()``).
        Memory is a few shards of the level being written (one being filled, up
        to two being encoded; small shards are grouped into batches of at least
        ``CHUNKS_PER_WORKER * workers`` chunks), plus ``workers`` pieces being
        computed. Level 0 from a NumPy array is not copied at all.
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
    # a tensorstore array's dtype is tensorstore's own; its .numpy_dtype is NumPy's
    dtype = np.dtype(getattr(image.dtype, "numpy_dtype", image.dtype))
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
            group.store, name=str(k), shape=shapes[k], dtype=dtype, chunks=chunks,
            shards=None if level_shards[k] == chunks else level_shards[k],
            compressors=compressors, fill_value=0, dimension_names=tuple(axes),
            overwrite=start_level > 0,
        )

    ts_context = None
    if engine == "tensorstore":
        import tensorstore as ts

        ts_context = ts.Context({"cache_pool": {"total_bytes_limit": 0}})

    piece = (max(1, chunks[0] // 2), *chunks[1:])
    batch_bytes = CHUNKS_PER_WORKER * workers * math.prod(chunks) * dtype.itemsize
    for k in range(start_level, levels):
        start = time.perf_counter()
        target = _Level(path / str(k), engine, ts_context)
        if k == 0:
            def jobs(region: Region) -> list[Callable[[], Any]]:
                return [lambda: (region, np.asarray(image[region]))]
        else:
            source = _Level(path / str(k - 1), engine, ts_context)

            def jobs(region: Region, source: _Level = source) -> list[Callable[[], Any]]:
                # one job per half output chunk (halved along the first axis, to keep
                # memory small): read the 2x larger block above (whole chunks of the
                # level above) and average it
                def job(out: Region) -> tuple[Region, np.ndarray]:
                    return out, block_mean(source.read(tuple(slice(2 * o.start, 2 * o.stop) for o in out)))

                return [
                    lambda out=tuple(slice(r.start + s.start, r.start + s.stop)
                                     for r, s in zip(region, sub)): job(out)
                    for sub in shard_regions([r.stop - r.start for r in region], piece)
                ]

        regions = shard_regions(shapes[k], level_shards[k])
        target.write_shards(regions, jobs, workers, batch_bytes)
        if progress:
            seconds = time.perf_counter() - start
            nbytes = math.prod(shapes[max(k - 1, 0)]) * dtype.itemsize
            print(f"level {k}: {len(regions)} shard(s) of {level_shards[k]} written, "
                  f"{seconds:.2f} s, {nbytes / 1e6 / seconds:.0f} MB/s read")
    return path
