"""A deterministic synthetic fluorescence volume of any size, with ground truth.

Cells sit on a jittered lattice; every voxel belongs to the nearest cell
centre (an approximate Voronoi tessellation). Each cell has a spherical
nucleus (channel 0, "nuclei") and a membrane where two cells meet
(channel 1, "membranes"). On top: a smooth background, Poisson shot noise
(normal approximation), a camera offset and read noise, stored as uint16.

Every value is a pure function of the voxel's global coordinates and the
seed, so a chunk computed alone equals the same region of the whole volume:
the dask version gives identical values whatever the chunking.

Example
-------
>>> image, labels = make_phantom((32, 64, 64), seed=1)
>>> image.shape, image.dtype, labels.dtype
((2, 32, 64, 64), dtype('uint16'), dtype('uint32'))
>>> lazy, _ = make_phantom((32, 64, 64), seed=1, chunks=(16, 32, 32))
>>> bool((lazy.compute() == image).all())
True
"""

from __future__ import annotations

import math
import sys
from typing import Sequence

import numpy as np

CHANNELS: tuple[str, ...] = ("nuclei", "membranes")
"""Channel names of the phantom, in order."""

CAMERA_OFFSET = 100
"""Camera offset in ADU added to every voxel (as on a real sCMOS camera)."""

READ_NOISE = 2.0
"""Camera read noise, standard deviation in ADU."""

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser: a fast, well-spread hash of uint64 values (wrapping on purpose)."""
    with np.errstate(over="ignore"):
        x = x ^ (x >> np.uint64(30))
        x = x * _M1
        x = x ^ (x >> np.uint64(27))
        x = x * _M2
        return x ^ (x >> np.uint64(31))


def _uniform(keys: np.ndarray, stream: int, seed: int) -> np.ndarray:
    """Uniform floats in (0, 1) that depend only on (keys, stream, seed)."""
    salt = _mix(np.uint64(seed * 1024 + stream + 1) ^ _GOLDEN)
    h = _mix(keys.astype(np.uint64) ^ salt)
    return ((h >> np.uint64(11)).astype(np.float64) + 0.5) / float(1 << 53)


def _as_int(value: object, what: str, example: str) -> int:
    """``value`` as an int, or a ValueError that names ``what`` and a working ``example``."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer, float, np.floating)):
        raise ValueError(f"{what}: expected whole numbers, e.g. {example}; got {value!r}.")
    if not math.isfinite(value) or not float(value).is_integer():
        raise ValueError(f"{what}: expected whole numbers, e.g. {example}; got {value!r}.")
    return int(value)


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    example = "(64, 256, 256)"
    if isinstance(shape, (str, bytes)) or not hasattr(shape, "__len__") or len(shape) != 3:
        raise ValueError(
            f"shape must be three positive sizes (z, y, x), e.g. {example}; got {shape!r}."
        )
    shape = tuple(_as_int(s, "shape", example) for s in shape)
    if min(shape) < 1:
        raise ValueError(
            f"shape must be three positive sizes (z, y, x), e.g. {example}; got {shape}."
        )
    if max(shape) >= 1 << 21:
        raise ValueError(f"each size must be below {1 << 21}; got {shape}.")
    return shape  # type: ignore[return-value]


def _check_chunks(chunks: int | Sequence[int], shape: tuple[int, int, int]) -> tuple[int, int, int]:
    example = "(32, 128, 128)"
    message = f"chunks must be one positive int or three (z, y, x), e.g. {example}; got {chunks!r}."
    if isinstance(chunks, (int, np.integer)) and not isinstance(chunks, (bool, np.bool_)):
        chunks = (chunks,) * 3
    if isinstance(chunks, (str, bytes)) or not hasattr(chunks, "__len__") or len(chunks) != 3:
        raise ValueError(message)
    chunks = tuple(_as_int(c, "chunks", example) for c in chunks)
    if min(chunks) < 1:
        raise ValueError(message)
    return tuple(min(c, s) for c, s in zip(chunks, shape))  # type: ignore[return-value]


BYTES_PER_VOXEL = 2 * len(CHANNELS) + 4
"""Memory an eager phantom needs per voxel: the uint16 image channels plus uint32 labels."""


def _check_fits_in_memory(shape: tuple[int, int, int]) -> None:
    """Refuse, before allocating, an eager phantom larger than the memory available now."""
    import psutil

    need = math.prod(shape) * BYTES_PER_VOXEL
    available = psutil.virtual_memory().available
    if need > available:
        raise MemoryError(
            f"make_phantom{shape} computed now needs {need / 2**30:.1f} GiB, but only "
            f"{available / 2**30:.1f} GiB of memory is available. Pass chunks=, e.g. "
            f"make_phantom({shape}, chunks=(64, 256, 256)), to get lazy dask arrays "
            "and compute or store them block by block."
        )


class _Cells:
    """Cell centres, radii and brightness for a range of lattice cells."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, spacing: float, seed: int):
        self.lo = lo
        self.n = hi - lo + 1
        idx = np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo, hi)], indexing="ij")
        # cell key: shift so negative lattice indices (at the border) stay distinct
        key = ((idx[0] + 1) << 42) | ((idx[1] + 1) << 21) | (idx[2] + 1)
        key = key.astype(np.uint64).ravel()
        self.centre = [
            ((idx[a].ravel() + 0.5 + 0.6 * (_uniform(key, a, seed) - 0.5)) * spacing).astype(np.float32)
            for a in range(3)
        ]
        self.radius = ((0.24 + 0.12 * _uniform(key, 3, seed)) * spacing).astype(np.float32)
        self.brightness = (0.6 + 0.4 * _uniform(key, 4, seed)).astype(np.float32)
        self.label = ((idx[0] + 1) * (1 << 20) + (idx[1] + 1) * (1 << 10) + idx[2] + 1).ravel()
        self.label = (self.label % (2**32 - 1) + 1).astype(np.uint32)


_TILE_VOXELS = 1 << 16
"""Voxels per tile: few enough that a tile's work arrays mostly stay in a core's cache,
enough that numpy's per-call overhead stays small."""

_CANDIDATES = tuple((dz, dy, dx) for dz in (0, 1) for dy in (0, 1) for dx in (0, 1))
"""The 8 lattice cells around a voxel that may hold its nearest centre, in search order."""


def _runs(k: np.ndarray) -> list[tuple[int, int]]:
    """``(start, stop)`` of each run of equal values in the sorted 1-D array ``k``."""
    bounds = [0, *(np.flatnonzero(np.diff(k)) + 1).tolist(), len(k)]
    return list(zip(bounds[:-1], bounds[1:]))


def _row_groups(runs: list[tuple[int, int]], rows: int) -> list[tuple[int, int]]:
    """Cut consecutive runs of rows into ``(start, stop)`` groups of about ``rows`` rows.

    A run of at least ``rows / 2`` rows is split evenly into groups inside it
    (so the tile spans one lattice cell along y); shorter runs are merged while
    the group stays within ``rows`` rows.
    """
    groups: list[tuple[int, int]] = []
    merging = False
    for a, b in runs:
        length = b - a
        if 2 * length >= rows:
            n = max(1, round(length / rows))
            bounds = [a + length * i // n for i in range(n + 1)]
            groups += list(zip(bounds[:-1], bounds[1:]))
            merging = False
        elif merging and b - groups[-1][0] <= rows:
            groups[-1] = (groups[-1][0], b)
        else:
            groups.append((a, b))
            merging = True
    return groups


class _Work:
    """Named work arrays reused from tile to tile, so the same memory stays in cache.

    ``work("d1", shape)`` returns a C-contiguous view of the array called "d1",
    grown if needed; its content is whatever the last tile left there.
    """

    def __init__(self) -> None:
        self._arrays: dict[tuple[str, type], np.ndarray] = {}

    def __call__(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        size = math.prod(shape)
        array = self._arrays.get((name, dtype))
        if array is None or array.size < size:
            array = self._arrays[name, dtype] = np.empty(size, dtype)
        return array[:size].reshape(shape)


class _Tile:
    """Nearest/second-nearest centre distances and owner cell of a box of voxels.

    The box spans one run of z slices that share their lattice cell ``kz``, so
    the 8 candidate cells of a voxel vary only with (y, x): their centres are
    2-D tables and each distance term is a 2-D array broadcast over the box.
    If the box also spans a single lattice cell along y, the z term varies only
    with (z, x) and is computed once per (z, x). The float32 arithmetic is the
    same, operation by operation, as computing
    ``sqrt((z - cz)**2 + (y - cy)**2 + (x - cx)**2)`` for every voxel and
    candidate, so values do not depend on how the volume is cut into tiles.
    ``second=False`` skips the second-nearest distance (labels need only the owner).
    """

    def __init__(
        self, cells: _Cells, z: np.ndarray, y: np.ndarray, x: np.ndarray,
        kz: int, ky: np.ndarray, kx: np.ndarray, work: _Work, second: bool = True,
    ) -> None:
        shape = (len(z), len(y), len(x))
        self.shape = shape
        ny, nx = int(cells.n[1]), int(cells.n[2])
        # per candidate and (y, x): flat index in ``cells``, z centre, y and x terms
        dz, dy, dx = (np.array(c)[:, None, None] for c in zip(*_CANDIDATES))
        self.flat = (kz + dz) * (ny * nx) + (ky[:, None] + dy) * nx + (kx + dx)
        one_y_cell = ky[0] == ky[-1]
        cz = cells.centre[0].take(self.flat[:, :1] if one_y_cell else self.flat)
        ty = np.subtract(y[:, None], cells.centre[1].take(self.flat))
        np.square(ty, out=ty)
        tx = np.subtract(x, cells.centre[2].take(self.flat))
        np.square(tx, out=tx)
        # distance to every candidate: sqrt(((z - cz)**2 + ty) + tx), as float32
        dist = work("dist", (len(_CANDIDATES),) + shape)
        tz = np.subtract(z[None, :, None, None], cz[:, None], out=None if one_y_cell else dist)
        np.square(tz, out=tz)
        np.add(tz, ty[:, None], out=dist)
        dist += tx[:, None]
        np.sqrt(dist, out=dist)
        d1 = dist[0]  # nearest distance so far
        d2 = work("d2", shape) if second else None  # second-nearest distance so far
        closer = work("closer", shape, np.uint8)
        owner = work("owner", shape, np.uint8)  # which candidate is nearest
        owner.fill(0)
        for n in range(1, len(_CANDIDATES)):
            d = dist[n]
            # keep the two smallest; only a strictly closer candidate takes over
            # as owner, and candidates come in increasing n: owner = max(n closer)
            np.less(d, d1, out=closer.view(bool))
            closer *= np.uint8(n)
            np.maximum(owner, closer, out=owner)
            if d2 is not None and n == 1:
                np.maximum(d1, d, out=d2)
            elif d2 is not None:  # d2 = min(d2, max(d1, d))
                np.minimum(d2, np.maximum(d1, d, out=work("tmp", shape)), out=d2)
            np.minimum(d1, d, out=d1)
        self.d1, self.d2 = d1, d2
        # index of each voxel's owner in self.flat
        plane = len(y) * len(x)
        self._pick = np.multiply(owner, np.intp(plane), out=work("pick", shape, np.intp))
        self._pick += np.arange(plane).reshape(len(y), len(x))

    def of_owner(self, values: np.ndarray, out: np.ndarray) -> np.ndarray:
        """``values`` (one per cell in ``cells``) of each voxel's nearest cell, into ``out``."""
        return np.take(values.take(self.flat), self._pick, out=out, mode="clip")


# the two 32-bit halves of a uint64, seen as a pair of uint32
_LOW, _HIGH = (0, 1) if sys.byteorder == "little" else (1, 0)


class _Noise:
    """Standard normal float32 noise keyed on global voxel coordinates and a stream.

    Per voxel: ``h = _mix(key ^ salt)`` with ``key = z << 42 | y << 21 | x``;
    two float32 uniforms from its 32-bit halves, ``u1 = min((lo + 0.5) / 2**32,
    1 - 2**-24)``, ``u2 = (hi + 0.5) / 2**32``; then Box-Muller
    ``sqrt(-2 log u1) * cos(2 pi u2)``. The first step of :func:`_mix`,
    ``v ^ (v >> 30)``, is linear in the bits of ``v`` and z, y, x occupy
    disjoint bits, so it is computed once per coordinate and combined by xor.
    """

    def __init__(self, start: Sequence[int], stop: Sequence[int], stream: int, seed: int):
        salt = _mix(np.uint64(seed * 1024 + stream + 1) ^ _GOLDEN)
        z, y, x = (np.arange(a, b, dtype=np.uint64) for a, b in zip(start, stop))
        z <<= np.uint64(42)
        y <<= np.uint64(21)
        shift = np.uint64(30)
        self.z = z ^ (z >> shift) ^ (salt ^ (salt >> shift))
        self.y = y ^ (y >> shift)
        self.x = x  # x < 2**21, so x >> 30 == 0

    def tile(self, z: slice, y: slice, work: _Work) -> np.ndarray:
        """Noise of the voxels ``[z, y, :]`` (relative to ``start``), in a work array."""
        zy = self.z[z, None] ^ self.y[None, y]
        shape = zy.shape + self.x.shape
        h = np.bitwise_xor(zy[:, :, None], self.x, out=work("hash", shape, np.uint64))
        tmp = work("hash_tmp", shape, np.uint64)
        # the rest of _mix, in place (array products wrap silently)
        h *= _M1
        np.right_shift(h, np.uint64(27), out=tmp)
        h ^= tmp
        h *= _M2
        np.right_shift(h, np.uint64(31), out=tmp)
        h ^= tmp
        # uniforms from the 32-bit halves; a contiguous copy first converts faster
        halves = h.view(np.uint32).reshape(shape + (2,))
        half = work("half", shape, np.uint32)
        scale = np.float32(2.0**-32)
        np.copyto(half, halves[..., _LOW])
        u1 = np.add(half, np.float32(0.5), out=work("u1", shape), dtype=np.float32)
        u1 *= scale
        np.minimum(u1, np.float32(1 - 2**-24), out=u1)
        np.copyto(half, halves[..., _HIGH])
        u2 = np.add(half, np.float32(0.5), out=work("u2", shape), dtype=np.float32)
        u2 *= scale
        np.log(u1, out=u1)
        u1 *= -2.0
        np.sqrt(u1, out=u1)
        u2 *= np.float32(2 * np.pi)
        np.cos(u2, out=u2)
        u1 *= u2
        return u1


def _to_adu(lam: np.ndarray, normal: np.ndarray, out: np.ndarray, work: _Work) -> None:
    """Camera counts from expected photo-electrons ``lam`` (overwritten) and noise, into ``out``."""
    np.maximum(lam, 0, out=lam)
    noise = np.add(lam, READ_NOISE**2, out=work("noise", lam.shape))
    np.sqrt(noise, out=noise)
    noise *= normal
    lam += CAMERA_OFFSET
    lam += noise
    np.rint(lam, out=lam)
    np.clip(lam, 0, 65535, out=lam)
    np.copyto(out, lam, casting="unsafe")


def _image_tile(
    tile: _Tile, cells: _Cells, background: np.ndarray, noise: list[_Noise],
    out: np.ndarray, z: slice, y: slice, work: _Work,
) -> None:
    """The two channels of one tile, into ``out`` (uint16, channels first)."""
    shape = tile.shape
    d1, d2 = tile.d1, tile.d2
    radius = tile.of_owner(cells.radius, work("radius", shape))
    bright = tile.of_owner(cells.brightness, work("bright", shape))
    # expected photo-electrons: nucleus = 1 / (1 + exp(clip((d1 - radius) / 0.8, -30, 30)))
    nucleus = np.subtract(d1, radius, out=work("nucleus", shape))
    nucleus /= np.float32(0.8)
    np.clip(nucleus, -30, 30, out=nucleus)
    np.exp(nucleus, out=nucleus)
    nucleus += 1.0
    np.divide(1.0, nucleus, out=nucleus)
    # nuclei = background + 500 * bright * nucleus * (1 - 0.35 * (d1 / max(radius, 1))**2)
    falloff = np.maximum(radius, 1, out=radius)
    np.divide(d1, falloff, out=falloff)
    np.square(falloff, out=falloff)
    falloff *= 0.35
    np.subtract(1.0, falloff, out=falloff)
    nuclei = np.multiply(bright, 500.0, out=work("nuclei", shape))
    nuclei *= nucleus
    nuclei *= falloff
    nuclei += background
    # membranes = background + 300 * exp(-((d2 - d1) / 1.2)**2) + 25 * (1 - nucleus) * bright
    membranes = np.subtract(d2, d1, out=d2)  # d2 is not needed any more
    membranes /= np.float32(1.2)
    np.square(membranes, out=membranes)
    np.negative(membranes, out=membranes)
    np.exp(membranes, out=membranes)
    membranes *= 300.0
    membranes += background
    dim = np.subtract(1.0, nucleus, out=nucleus)
    dim *= 25.0
    dim *= bright
    membranes += dim
    for c, lam in enumerate((nuclei, membranes)):
        _to_adu(lam, noise[c].tile(z, y, work), out[c, z, y], work)


def _render(
    start: Sequence[int], stop: Sequence[int], spacing: float, seed: int,
    *, image: bool = True, labels: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Image ``(2, z, y, x)`` uint16 and/or labels ``(z, y, x)`` uint32 of a box.

    The box ``[start, stop)`` is in global voxel coordinates. It is computed in
    tiles of whole rows along x (see :class:`_Tile`): each tile spans z slices
    that share their lattice cell and about ``_TILE_VOXELS`` voxels, so its work
    arrays are reused from tile to tile while they are still in cache. Image and
    labels share the cell geometry. Memory: the outputs plus ~100 bytes per tile voxel.
    """
    coords = [np.arange(a, b, dtype=np.float32) for a, b in zip(start, stop)]
    k0 = [np.floor(c / spacing - 0.5).astype(np.int64) for c in coords]
    lo = np.array([k.min() for k in k0])
    hi = np.array([k.max() + 1 for k in k0])
    cells = _Cells(lo, hi, spacing, seed)
    rel = [k - l for k, l in zip(k0, lo)]
    z, y, x = coords
    shape = tuple(len(c) for c in coords)
    img = np.empty((len(CHANNELS),) + shape, np.uint16) if image else None
    lab = np.empty(shape, np.uint32) if labels else None
    work = _Work()
    if img is not None:
        # smooth background, separable: (20 + 8 sin z/97) + 8 cos y/131 + 8 sin(x/113 + 1)
        bg_z = 20.0 + 8.0 * np.sin(z / 97.0)
        bg_y = 8.0 * np.cos(y / 131.0)
        bg_x = 8.0 * np.sin(x / 113.0 + 1.0)
        noise = [_Noise(start, stop, 10 + c, seed) for c in range(len(CHANNELS))]
    for z0, z1 in _runs(k0[0]):
        rows = max(1, _TILE_VOXELS // ((z1 - z0) * shape[2]))
        for y0, y1 in _row_groups(_runs(rel[1]), rows):
            zs, ys = slice(z0, z1), slice(y0, y1)
            tile = _Tile(
                cells, z[zs], y[ys], x, int(rel[0][z0]), rel[1][ys], rel[2], work, second=image
            )
            if lab is not None:
                radius = tile.of_owner(cells.radius, work("radius", tile.shape))
                inside = np.less(tile.d1, radius, out=work("inside", tile.shape, bool))
                ids = tile.of_owner(cells.label, work("ids", tile.shape, np.uint32))
                np.multiply(ids, inside, out=lab[zs, ys])
            if img is not None:
                background = np.add(
                    (bg_z[zs, None] + bg_y[None, ys])[:, :, None], bg_x,
                    out=work("background", tile.shape),
                )
                _image_tile(tile, cells, background, noise, img, zs, ys, work)
    return img, lab


def _labels_block(
    start: Sequence[int], stop: Sequence[int], spacing: float, seed: int
) -> np.ndarray:
    """Labels (uint32) of the box ``[start, stop)``."""
    return _render(start, stop, spacing, seed, image=False)[1]


def _image_block(
    start: Sequence[int], stop: Sequence[int], spacing: float, seed: int
) -> np.ndarray:
    """Image (uint16, channels first) of the box ``[start, stop)``."""
    return _render(start, stop, spacing, seed, labels=False)[0]


def make_phantom(
    shape: Sequence[int] = (64, 256, 256),
    *,
    seed: int = 0,
    chunks: int | Sequence[int] | None = None,
    spacing: float = 18.0,
):
    """A two-channel fluorescence-like volume and its nucleus labels.

    Parameters
    ----------
    shape
        ``(z, y, x)`` size in voxels; any size up to 2**21 per axis.
    seed
        Different seeds give different (but reproducible) cells and noise.
    chunks
        ``None`` computes numpy arrays now (refused with a ``MemoryError`` that
        suggests ``chunks=`` if they would not fit in the memory available). An
        int or ``(z, y, x)`` returns lazy dask arrays built chunk by chunk: image
        chunks ``(2, cz, cy, cx)``, labels ``(cz, cy, cx)``. Building them is
        instant whatever the size (a 1 TiB phantom is a graph of one layer); the
        values never depend on the chunking.
    spacing
        Mean distance between cell centres, in voxels.

    Returns
    -------
    image, labels
        ``image`` is uint16 with shape ``(2, z, y, x)``, channels
        :data:`CHANNELS`; ``labels`` is uint32 ``(z, y, x)``, 0 outside nuclei
        and one id per nucleus.

    Example
    -------
    >>> img, lab = make_phantom((16, 64, 64))
    >>> int(lab.max()) > 0, int(img.min()) >= 0
    (True, True)
    >>> huge, _ = make_phantom((4096, 8192, 8192), chunks=256)  # 1 TiB, lazy
    >>> huge.nbytes // 2**40, huge.numblocks
    (1, (1, 16, 32, 32))
    """
    shape = _check_shape(shape)
    if (
        isinstance(spacing, (bool, np.bool_))
        or not isinstance(spacing, (int, float, np.integer, np.floating))
        or not 4 <= spacing < 1 << 20
    ):
        raise ValueError(f"spacing must be a number of voxels >= 4, e.g. 18.0; got {spacing!r}.")
    spacing = float(spacing)
    seed = _as_int(seed, "seed", "seed=0")
    if not 0 <= seed < 2**20:
        raise ValueError(f"seed must be an int in [0, 2**20), e.g. seed=0; got {seed}.")
    if chunks is None:
        _check_fits_in_memory(shape)
        return _render((0, 0, 0), shape, spacing, seed)
    chunks = _check_chunks(chunks, shape)
    token = f"{seed}-{spacing}-{'x'.join(map(str, shape))}-{'x'.join(map(str, chunks))}"
    image = _lazy(
        _image_from_slices, (len(CHANNELS),) + shape, (len(CHANNELS),) + chunks,
        np.uint16, f"phantom-image-{token}", spacing, seed,
    )
    labels = _lazy(
        _labels_from_slices, shape, chunks, np.uint32, f"phantom-labels-{token}", spacing, seed
    )
    return image, labels


def _image_from_slices(slices: tuple[slice, ...], spacing: float, seed: int) -> np.ndarray:
    """One image block, from its slices ``(channel, z, y, x)`` into the whole image."""
    return _image_block([s.start for s in slices[1:]], [s.stop for s in slices[1:]], spacing, seed)


def _labels_from_slices(slices: tuple[slice, ...], spacing: float, seed: int) -> np.ndarray:
    """One labels block, from its slices ``(z, y, x)`` into the whole volume."""
    return _labels_block([s.start for s in slices], [s.stop for s in slices], spacing, seed)


def _lazy(func, shape, chunks, dtype, name, *args):
    """A dask array whose block ``i`` is ``func(slices_of_block_i, *args)``.

    The graph is one blockwise layer that stores only the chunk sizes and creates
    each task when it is needed, so building it costs the same for 10 blocks or 10
    million (``da.map_blocks`` with ``block_info`` builds a dict per block up front).
    """
    import dask.array as da
    from dask.blockwise import blockwise
    from dask.highlevelgraph import HighLevelGraph
    from dask.layers import ArraySliceDep

    chunks = da.core.normalize_chunks(chunks, shape)
    index = tuple(range(len(shape)))
    constants = [x for arg in args for x in (arg, None)]
    layer = blockwise(
        func, name, index, ArraySliceDep(chunks), index, *constants,
        numblocks={}, _data_producer=True,
    )
    graph = HighLevelGraph.from_collections(name, layer, dependencies=())
    return da.Array(graph, name, chunks, meta=np.empty((0,) * len(shape), dtype))
