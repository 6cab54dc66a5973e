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


def _uniform_pair(keys: np.ndarray, stream: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Two independent float32 uniforms in (0, 1) from one 64-bit hash per key."""
    salt = _mix(np.uint64(seed * 1024 + stream + 1) ^ _GOLDEN)
    h = _mix(keys ^ salt)
    scale = np.float32(2.0**-32)
    lo = ((h & np.uint64(0xFFFFFFFF)).astype(np.float32) + np.float32(0.5)) * scale
    hi = ((h >> np.uint64(32)).astype(np.float32) + np.float32(0.5)) * scale
    return np.minimum(lo, np.float32(1 - 2**-24)), hi


def _check_shape(shape: Sequence[int]) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(
            f"shape must be three positive sizes (z, y, x), e.g. (64, 256, 256); got {shape}."
        )
    if max(shape) >= 1 << 21:
        raise ValueError(f"each size must be below {1 << 21}; got {shape}.")
    return shape  # type: ignore[return-value]


def _check_chunks(chunks: int | Sequence[int], shape: tuple[int, int, int]) -> tuple[int, int, int]:
    if isinstance(chunks, int):
        chunks = (chunks,) * 3
    chunks = tuple(int(c) for c in chunks)
    if len(chunks) != 3 or min(chunks) < 1:
        raise ValueError(
            f"chunks must be one positive int or three (z, y, x), e.g. (32, 128, 128); got {chunks}."
        )
    return tuple(min(c, s) for c, s in zip(chunks, shape))  # type: ignore[return-value]


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


def _geometry(start: Sequence[int], stop: Sequence[int], spacing: float, seed: int):
    """Nearest and second-nearest cell distances, owner radius/brightness/label per voxel."""
    coords = [np.arange(a, b, dtype=np.float32) for a, b in zip(start, stop)]
    k0 = [np.floor(c / spacing - 0.5).astype(np.int64) for c in coords]
    lo = np.array([k.min() for k in k0])
    hi = np.array([k.max() + 1 for k in k0])
    cells = _Cells(lo, hi, spacing, seed)
    ny, nx = cells.n[1], cells.n[2]
    shape = tuple(b - a for a, b in zip(start, stop))
    d1 = np.full(shape, np.inf, np.float32)
    d2 = np.full(shape, np.inf, np.float32)
    owner = np.zeros(shape, np.int64)
    rel = [k - l for k, l in zip(k0, lo)]
    for dz in (0, 1):
        for dy in (0, 1):
            for dx in (0, 1):
                flat = (
                    ((rel[0] + dz) * (ny * nx))[:, None, None]
                    + ((rel[1] + dy) * nx)[None, :, None]
                    + (rel[2] + dx)[None, None, :]
                )
                d = (coords[0][:, None, None] - cells.centre[0].take(flat)) ** 2
                d += (coords[1][None, :, None] - cells.centre[1].take(flat)) ** 2
                d += (coords[2][None, None, :] - cells.centre[2].take(flat)) ** 2
                np.sqrt(d, out=d)
                closer = d < d1
                np.copyto(d2, np.where(closer, d1, np.minimum(d2, d)))
                np.copyto(owner, flat, where=closer)
                np.minimum(d1, d, out=d1)
    return coords, d1, d2, cells, owner


def _labels_block(start, stop, spacing: float, seed: int) -> np.ndarray:
    _, d1, _, cells, owner = _geometry(start, stop, spacing, seed)
    inside = d1 < cells.radius.take(owner)
    return np.where(inside, cells.label.take(owner), np.uint32(0)).astype(np.uint32)


def _image_block(start, stop, spacing: float, seed: int) -> np.ndarray:
    coords, d1, d2, cells, owner = _geometry(start, stop, spacing, seed)
    radius = cells.radius.take(owner)
    bright = cells.brightness.take(owner)
    # expected photo-electrons per voxel
    nucleus = 1.0 / (1.0 + np.exp(np.clip((d1 - radius) / np.float32(0.8), -30, 30)))
    membrane = np.exp(-(((d2 - d1) / np.float32(1.2)) ** 2))
    z, y, x = coords
    background = (
        20.0
        + 8.0 * np.sin(z / 97.0)[:, None, None]
        + 8.0 * np.cos(y / 131.0)[None, :, None]
        + 8.0 * np.sin(x / 113.0 + 1.0)[None, None, :]
    ).astype(np.float32)
    expected = [
        background + 500.0 * bright * nucleus * (1.0 - 0.35 * (d1 / np.maximum(radius, 1)) ** 2),
        background + 300.0 * membrane + 25.0 * (1.0 - nucleus) * bright,
    ]
    # chunking-independent noise: keyed on global voxel coordinates
    zi, yi, xi = (np.arange(a, b, dtype=np.uint64) for a, b in zip(start, stop))
    key = (zi[:, None, None] << np.uint64(42)) | (yi[None, :, None] << np.uint64(21)) | xi[None, None, :]
    out = np.empty((len(CHANNELS),) + d1.shape, np.uint16)
    for c, lam in enumerate(expected):
        lam = np.maximum(lam, 0).astype(np.float32)
        u1, u2 = _uniform_pair(key, 10 + c, seed)
        normal = np.sqrt(-2.0 * np.log(u1)) * np.cos(np.float32(2 * np.pi) * u2)
        adu = CAMERA_OFFSET + lam + np.sqrt(lam + READ_NOISE**2) * normal
        out[c] = np.clip(np.rint(adu), 0, 65535).astype(np.uint16)
    return out


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
        ``None`` computes numpy arrays now. An int or ``(z, y, x)`` returns lazy
        dask arrays built chunk by chunk: image chunks ``(2, cz, cy, cx)``,
        labels ``(cz, cy, cx)``. The values never depend on the chunking.
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
    """
    shape = _check_shape(shape)
    if not spacing >= 4:
        raise ValueError(f"spacing must be at least 4 voxels, e.g. 18.0; got {spacing}.")
    seed = int(seed)
    if not 0 <= seed < 2**20:
        raise ValueError(f"seed must be an int in [0, 2**20); got {seed}.")
    if chunks is None:
        return (
            _image_block((0, 0, 0), shape, spacing, seed),
            _labels_block((0, 0, 0), shape, spacing, seed),
        )

    import dask.array as da

    chunks = _check_chunks(chunks, shape)

    def image_block(block_info=None):
        loc = block_info[None]["array-location"][1:]
        return _image_block([a for a, _ in loc], [b for _, b in loc], spacing, seed)

    def labels_block(block_info=None):
        loc = block_info[None]["array-location"]
        return _labels_block([a for a, _ in loc], [b for _, b in loc], spacing, seed)

    image = da.map_blocks(
        image_block,
        chunks=da.core.normalize_chunks((len(CHANNELS),) + chunks, (len(CHANNELS),) + shape),
        dtype=np.uint16,
        name=f"phantom-image-{seed}-{spacing}-{'x'.join(map(str, shape))}-{'x'.join(map(str, chunks))}",
        meta=np.empty((0, 0, 0, 0), np.uint16),
    )
    labels = da.map_blocks(
        labels_block,
        chunks=da.core.normalize_chunks(chunks, shape),
        dtype=np.uint32,
        name=f"phantom-labels-{seed}-{spacing}-{'x'.join(map(str, shape))}-{'x'.join(map(str, chunks))}",
        meta=np.empty((0, 0, 0), np.uint32),
    )
    return image, labels
