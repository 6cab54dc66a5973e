"""An image catalogue: a SQLite index of what we know about images, an object store
holding the images themselves as self-describing OME-Zarr 0.5.

This is the plumbing behind the chapter "An image catalogue". :class:`Catalogue`
keeps database rows and bucket objects consistent:

- every SQL statement is parameterised (``?`` placeholders, never string formatting);
- an upload first commits a row in state ``'uploading'`` (a short transaction that
  reserves the name), then writes the objects with no database lock held, then, in a
  second short transaction, adds the ROIs, tables, labels, datasets and provenance
  rows, writes the group's ``zarr.json`` (the last object) and sets the state to
  ``'ready'``. Any failure (or Ctrl-C) stops the writes, deletes what was written and
  removes the row. Readers only ever see ``'ready'`` images;
- a delete marks the row ``'deleting'``, deletes the objects, then the row; if the
  object store is down the row stays (hidden) and the error says what was left;
- a busy database is waited for (``lock_timeout``), and reported as
  :class:`CatalogueBusyError`, never as a raw ``database is locked``;
- opening a catalogue reports what a crash left behind (and cleans uploads whose
  process is gone); :meth:`Catalogue.cleanup` removes the rest;
- the OME-Zarr stands alone: its name, channel names, axes, units, pyramid, labels,
  key/value metadata, ROIs, datasets and provenance are all in the bucket, so
  :meth:`Catalogue.rebuild` recreates the database from the bucket alone.

Bucket layout: everything about one image is under ``images/<random id>/``::

    images/3f2a.../image.ome.zarr/zarr.json      OME-Zarr 0.5 group (+ "catalogue" block)
    images/3f2a.../image.ome.zarr/0/...          full resolution, then 1/, 2/, ...
    images/3f2a.../image.ome.zarr/labels/nuclei  label images (OME-Zarr image-label)
    images/3f2a.../tables/<id>.parquet           measurement tables

Example
-------
>>> import tempfile, numpy as np, xarray as xr
>>> from pathlib import Path
>>> from obstore.store import LocalStore
>>> tmp = Path(tempfile.mkdtemp())
>>> cat = Catalogue(tmp / "cat.sqlite",
...                 lambda prefix: LocalStore(tmp / "bucket" / prefix, mkdir=True))
>>> img = xr.DataArray(np.zeros((4, 6), "uint8"), dims=("y", "x"))
>>> rec = cat.upload(img, name="blank", metadata={"stain": "none"})
>>> rec.shape, rec.dims
((4, 6), ('y', 'x'))
>>> [r.name for r in cat.find(metadata={"stain": "none"})]
['blank']
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import math
import numbers
import os
import socket
import sqlite3
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from zarr.storage import WrapperStore

if TYPE_CHECKING:  # pragma: no cover
    import dask.array
    import pandas as pd
    import xarray as xr
    import zarr

__all__ = [
    "AXIS_TYPES",
    "CANONICAL_DIMS",
    "ROI",
    "SCHEMA",
    "Catalogue",
    "CatalogueBusyError",
    "CatalogueWarning",
    "DeleteIncompleteError",
    "ImageRecord",
    "to_canonical",
]

#: The OME-NGFF order of the five dimensions: time, channel, then space slowest to fastest.
CANONICAL_DIMS: tuple[str, ...] = ("t", "c", "z", "y", "x")

#: OME-NGFF axis type of each dimension.
AXIS_TYPES: dict[str, str] = {
    "t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"
}

#: Space units the OME-Zarr 0.5 specification lists (UDUNITS-2 names).
SPACE_UNITS = frozenset(
    "angstrom attometer centimeter decimeter exameter femtometer foot gigameter "
    "hectometer inch kilometer megameter meter micrometer mile millimeter nanometer "
    "parsec petameter picometer terameter yard yoctometer yottameter zeptometer "
    "zettameter".split()
)
#: Time units the OME-Zarr 0.5 specification lists.
TIME_UNITS = frozenset(
    "attosecond centisecond day decisecond exasecond femtosecond gigasecond "
    "hectosecond hour kilosecond megasecond microsecond millisecond minute "
    "nanosecond petasecond picosecond second terasecond yoctosecond yottasecond "
    "zeptosecond zettasecond".split()
)

#: Kinds of region of interest, as in OMERO's shapes (a mask refers to a label image).
ROI_KINDS: tuple[str, ...] = ("point", "rectangle", "polygon", "mask")

#: The catalogue's tables. ``images`` has one row per image, with NULL for the axes an
#: image does not have; every other table hangs off an image and disappears with it.
SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    state      TEXT    NOT NULL CHECK (state IN ('uploading', 'ready', 'deleting')),
    dims       TEXT    NOT NULL,          -- the axes the image has, e.g. 'czyx'
    size_t     INTEGER,                   -- NULL: the image has no such axis
    size_c     INTEGER,
    size_z     INTEGER,
    size_y     INTEGER NOT NULL,
    size_x     INTEGER NOT NULL,
    dtype      TEXT    NOT NULL,          -- numpy name, e.g. 'uint16'
    nbytes     INTEGER NOT NULL,          -- uncompressed size of full resolution
    scale_t    REAL,                      -- time between points (NULL: no t axis)
    scale_z    REAL,                      -- physical size of a voxel (NULL: no z) ...
    scale_y    REAL    NOT NULL,
    scale_x    REAL    NOT NULL,
    unit       TEXT,                      -- ... in this unit; NULL: pixels, size unknown
    time_unit  TEXT,
    levels     INTEGER NOT NULL,          -- resolution levels in the pyramid
    created_at TEXT    NOT NULL,          -- ISO 8601, UTC
    owner      TEXT    NOT NULL,          -- host:pid of the client that wrote it
    location   TEXT    NOT NULL UNIQUE,   -- key prefix in the bucket: images/<id>
    url        TEXT    NOT NULL           -- e.g. s3://bucket/images/<id>/image.ome.zarr
);
CREATE TABLE IF NOT EXISTS metadata (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    key      TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (image_id, key)
);
CREATE INDEX IF NOT EXISTS metadata_by_key_value ON metadata(key, value);
CREATE TABLE IF NOT EXISTS channels (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    idx      INTEGER NOT NULL,
    name     TEXT    NOT NULL,
    PRIMARY KEY (image_id, idx)
);
CREATE TABLE IF NOT EXISTS datasets (
    id          INTEGER PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS dataset_images (     -- many-to-many
    dataset_id INTEGER NOT NULL REFERENCES datasets(id) ON DELETE CASCADE,
    image_id   INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    PRIMARY KEY (dataset_id, image_id)
);
CREATE TABLE IF NOT EXISTS rois (
    id         INTEGER PRIMARY KEY,
    image_id   INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    name       TEXT    NOT NULL,
    kind       TEXT    NOT NULL CHECK (kind IN ('point', 'rectangle', 'polygon', 'mask')),
    t          INTEGER,                   -- plane indices; NULL: every t / c / z
    c          INTEGER,
    z          INTEGER,
    points     TEXT    NOT NULL,          -- JSON [[y, x], ...] in full-resolution pixels
    mask       TEXT,                      -- for kind 'mask': the label image's name ...
    mask_value INTEGER,                   -- ... and the label value
    UNIQUE (image_id, name)
);
CREATE TABLE IF NOT EXISTS tables (
    id       INTEGER PRIMARY KEY,
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    roi_id   INTEGER REFERENCES rois(id) ON DELETE SET NULL,
    name     TEXT    NOT NULL,
    key      TEXT    NOT NULL UNIQUE,     -- the Parquet object in the bucket
    n_rows   INTEGER NOT NULL,
    columns  TEXT    NOT NULL,            -- JSON list of column names
    UNIQUE (image_id, name)
);
CREATE TABLE IF NOT EXISTS labels (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    name     TEXT    NOT NULL,            -- image.ome.zarr/labels/<name>
    n_labels INTEGER NOT NULL,            -- distinct non-zero values
    PRIMARY KEY (image_id, name)
);
CREATE TABLE IF NOT EXISTS provenance (
    image_id        INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    source_location TEXT    NOT NULL,     -- the source image (it may be deleted later)
    step            TEXT    NOT NULL,     -- what made this image from the source
    PRIMARY KEY (image_id, source_location)
);
"""

_IMAGE_COLUMNS = (
    "id, name, dims, size_t, size_c, size_z, size_y, size_x, dtype, nbytes, "
    "scale_t, scale_z, scale_y, scale_x, unit, time_unit, levels, created_at, "
    "location, url"
)

ROOT = "images"
ZARR_NAME = "image.ome.zarr"
#: Blosc (a core Zarr v3 codec, so every Zarr v3 reader has it) with zstd inside.
_BLOSC = {"name": "blosc", "configuration": {"cname": "zstd", "clevel": 5,
                                             "shuffle": "shuffle"}}

StoreFactory = Callable[[str], Any]
Progress = Callable[[int, int], None]


class CatalogueBusyError(RuntimeError):
    """The database stayed locked by another writer for longer than ``lock_timeout``."""


class DeleteIncompleteError(RuntimeError):
    """Deleting an image's objects failed; its row is kept (hidden) in state 'deleting'."""


class CatalogueWarning(UserWarning):
    """What a catalogue found when it was opened: leftovers of crashed clients."""


# --------------------------------------------------------------------------- input


def to_canonical(data: Any) -> xr.DataArray:
    """Return ``data`` with its dims in OME-NGFF order (``t, c, z, y, x``, those it has).

    No axis is invented: a 2-D image stays ``(y, x)``. Coordinates are kept. Raises
    ``TypeError`` for anything that is not an :class:`xarray.DataArray` and
    ``ValueError`` for dims outside ``tczyx`` or an image without ``y`` and ``x``.

    Example
    -------
    >>> import numpy as np, xarray as xr
    >>> a = xr.DataArray(np.zeros((3, 4, 2)), dims=("y", "x", "c"))
    >>> to_canonical(a).dims, to_canonical(a).shape
    (('c', 'y', 'x'), (2, 3, 4))
    """
    import xarray as xr

    if not isinstance(data, xr.DataArray):
        raise TypeError(
            "Images are uploaded as xarray.DataArray with named dims, e.g. "
            "xr.DataArray(array, dims=('z', 'y', 'x')); "
            f"got {type(data).__module__}.{type(data).__name__}."
        )
    dims = [str(d) for d in data.dims]
    unknown = [d for d in dims if d not in CANONICAL_DIMS]
    if unknown:
        raise ValueError(
            f"Unknown dims {unknown}; the catalogue stores the dims {CANONICAL_DIMS}. "
            "Rename yours first, e.g. data.rename({'row': 'y', 'col': 'x', "
            "'channel': 'c'})."
        )
    if not {"y", "x"} <= set(dims):
        raise ValueError(
            f"An OME-Zarr image needs at least the dims 'y' and 'x'; got {tuple(dims)}. "
            "Add one with data.expand_dims('y') if your data really is 1-D."
        )
    if 0 in data.shape:
        raise ValueError(f"Cannot store an empty image (shape {data.shape}).")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise ValueError(
            f"Pixels must be integers or floats; got dtype {data.dtype}. Convert with "
            "data.astype('uint16') (or another numeric dtype)."
        )
    return data.transpose(*[d for d in CANONICAL_DIMS if d in dims])


def _spacing(data: xr.DataArray, dim: str, given: Mapping[str, float]) -> float | None:
    """Physical step along ``dim``: from ``given``, else evenly spaced coords, else None."""
    if dim in given:
        value = given[dim]
        if not isinstance(value, numbers.Real) or isinstance(value, bool) \
                or not math.isfinite(value) or not value > 0:
            raise ValueError(
                f"scale[{dim!r}] must be a positive number; got {value!r}.")
        return float(value)
    if dim in data.coords and data.sizes[dim] > 1:
        coord = np.asarray(data.coords[dim].values)
        if np.issubdtype(coord.dtype, np.number):
            steps = np.diff(coord.astype(float))
            if not np.allclose(steps, steps[0], rtol=1e-6) or steps[0] <= 0:
                raise ValueError(
                    f"Coordinates along {dim!r} are not evenly increasing; pass the "
                    f"voxel size explicitly, e.g. scale={{{dim!r}: 0.5}}."
                )
            return float(steps[0])
    return None


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty str; got {value!r}.")
    return value


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    if metadata is not None and not isinstance(metadata, Mapping):
        raise TypeError(
            f"metadata is a dict of key -> value, e.g. {{'stain': 'DAPI'}}; got "
            f"{type(metadata).__name__}.")
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"Metadata keys must be non-empty strings; got {key!r}.")
        if not isinstance(value, (str, int, float, bool, np.integer, np.floating)):
            raise ValueError(
                f"Metadata value for {key!r} is a {type(value).__name__}; values are "
                "stored as text: pass a str, int or float (json.dumps a list or dict)."
            )
        out[key] = str(value)
    return out


def _check_name(name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"An image needs a non-empty name (a str); got {name!r}.")
    return name


def _default_chunks(shape: tuple[int, ...], dims: tuple[str, ...],
                    itemsize: int) -> tuple[int, ...]:
    """One time point and one channel per chunk; z, y, x up to about 1 MiB."""
    size = dict(zip(dims, shape))
    out = {"t": 1, "c": 1, "y": min(size["y"], 256), "x": min(size["x"], 256)}
    if "z" in size:
        out["z"] = max(1, min(size["z"], (1 << 20) // (out["y"] * out["x"] * itemsize)))
    return tuple(out[d] for d in dims)


def _check_chunks(chunks: Any, shape: tuple[int, ...], dims: tuple[str, ...],
                  itemsize: int) -> tuple[int, ...]:
    if chunks is None:
        return _default_chunks(shape, dims, itemsize)
    if isinstance(chunks, Mapping):
        extra = set(chunks) - set(dims)
        if extra:
            raise ValueError(f"chunks names dims {sorted(extra)} the image does not have "
                             f"(its dims are {dims}).")
        default = _default_chunks(shape, dims, itemsize)
        chunks = tuple(chunks.get(d, c) for d, c in zip(dims, default))
    try:
        out = tuple(int(c) for c in chunks)
        ok = len(out) == len(dims) and all(c >= 1 for c in out) and all(
            isinstance(c, numbers.Integral) for c in chunks)
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise ValueError(
            f"chunks must be {len(dims)} positive ints in the image's dim order {dims}, "
            f"or a dict such as {{'z': 8, 'y': 256}}; got {chunks!r}.")
    return tuple(min(c, n) for c, n in zip(out, shape))


def _pyramid_plan(shape: tuple[int, ...], dims: tuple[str, ...],
                  scale: Mapping[str, float], levels: Any) -> list[dict[str, int]]:
    """Down-sampling factor per dim for each level after the first (2 or 1).

    y and x are halved at every level; z only while its voxel is not coarser than the
    xy voxel (so anisotropic stacks become isotropic, never more anisotropic); t and c
    never. ``levels="auto"`` stops when y and x fit in 256 pixels.
    """
    if levels != "auto" and (not isinstance(levels, numbers.Integral)
                             or isinstance(levels, bool) or levels < 1):
        raise ValueError(f"levels must be a positive int or 'auto'; got {levels!r}.")
    size = dict(zip(dims, shape))
    step = {d: scale.get(d) or 1.0 for d in ("z", "y", "x")}
    plan: list[dict[str, int]] = []
    while True:
        if levels == "auto":
            if max(size["y"], size["x"]) <= 256 or min(size["y"], size["x"]) < 2:
                break
        elif len(plan) + 1 >= levels:
            break
        if min(size["y"], size["x"]) < 2:
            raise ValueError(f"levels={levels}: the image is too small for that many "
                             "levels; use levels='auto'.")
        f = {d: 1 for d in dims}
        f["y"] = f["x"] = 2
        if "z" in size and size["z"] >= 2 and step["z"] <= min(step["y"], step["x"]):
            f["z"] = 2
        for d, k in f.items():
            size[d] //= k
            if d in step:
                step[d] *= k
        plan.append(f)
    return plan


@dataclass(frozen=True)
class ROI:
    """A region of interest on an image, like an OMERO shape.

    ``points`` are ``(y, x)`` pairs in full-resolution pixels: one for a point, two
    opposite corners for a rectangle, the vertices for a polygon, none for a mask (a
    mask names a label image of the same image and a label value). ``t``, ``c``, ``z``
    are the plane indices the shape lies on; ``None`` means every plane.

    Example
    -------
    >>> ROI("rectangle", [(10, 20), (30, 60)], name="cell 1", z=3).kind
    'rectangle'
    """

    kind: str
    points: Sequence[Sequence[float]] = ()
    name: str | None = None
    t: int | None = None
    c: int | None = None
    z: int | None = None
    mask: str | None = None
    mask_value: int | None = None


def _check_roi(roi: Any, dims: tuple[str, ...], shape: tuple[int, ...],
               label_names: Iterable[str]) -> dict[str, Any]:
    if not isinstance(roi, ROI):
        raise TypeError(f"ROIs are data_helpers.catalogue.ROI objects, e.g. "
                        f"ROI('point', [(12, 40)]); got {type(roi).__name__}.")
    if roi.kind not in ROI_KINDS:
        raise ValueError(f"ROI kind must be one of {ROI_KINDS}; got {roi.kind!r}.")
    size = dict(zip(dims, shape))
    planes = {}
    for d in ("t", "c", "z"):
        v = getattr(roi, d)
        if v is None:
            planes[d] = None
            continue
        if d not in size:
            raise ValueError(f"ROI {roi.name!r} sets {d}={v} but the image has no {d!r} axis "
                             f"(its dims are {dims}); leave {d}=None.")
        if not isinstance(v, numbers.Integral) or isinstance(v, bool) or not 0 <= v < size[d]:
            raise ValueError(f"ROI {roi.name!r}: {d} must be an int in [0, {size[d]}); got {v!r}.")
        planes[d] = int(v)
    try:
        points = [[float(p[0]), float(p[1])] for p in roi.points]
        ok = all(len(p) == 2 for p in roi.points) and all(
            math.isfinite(v) for p in points for v in p)
    except (TypeError, ValueError, IndexError):
        ok = False
    if not ok:
        raise ValueError(f"ROI {roi.name!r}: points are (y, x) pairs of numbers; "
                         f"got {roi.points!r}.")
    need = {"point": (1, 1), "rectangle": (2, 2), "polygon": (3, None), "mask": (0, 0)}
    lo, hi = need[roi.kind]
    if len(points) < lo or (hi is not None and len(points) > hi):
        raise ValueError(f"A {roi.kind} ROI has {lo}{'' if hi == lo else '+'} points; "
                         f"got {len(points)}.")
    for y, x in points:
        if not (0 <= y <= size["y"] and 0 <= x <= size["x"]):
            raise ValueError(f"ROI {roi.name!r}: point ({y}, {x}) lies outside the image "
                             f"(y < {size['y']}, x < {size['x']}).")
    if roi.kind == "mask":
        if roi.mask not in set(label_names):
            raise ValueError(f"A mask ROI names one of the image's label images "
                             f"{sorted(label_names)}; got mask={roi.mask!r}.")
        if not isinstance(roi.mask_value, numbers.Integral) or roi.mask_value <= 0:
            raise ValueError(f"A mask ROI needs mask_value, a positive int label; "
                             f"got {roi.mask_value!r}.")
    elif roi.mask is not None or roi.mask_value is not None:
        raise ValueError(f"Only kind='mask' ROIs take mask= and mask_value=; "
                         f"got a {roi.kind}.")
    return {"name": roi.name, "kind": roi.kind, **planes, "points": points,
            "mask": roi.mask,
            "mask_value": None if roi.mask_value is None else int(roi.mask_value)}


def _check_table(name: Any, table: Any) -> pd.DataFrame:
    import pandas as pd

    _text(name, "A table name")
    if not isinstance(table, pd.DataFrame):
        raise TypeError(f"Table {name!r} must be a pandas DataFrame; got "
                        f"{type(table).__name__} (wrap it: pd.DataFrame(...)).")
    if not all(isinstance(c, str) for c in table.columns):
        raise ValueError(f"Table {name!r}: column names must be strings "
                         f"(df.columns = df.columns.astype(str)).")
    return table


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_is_dead(owner: str) -> bool:
    """True if ``owner`` (host:pid) is a process on this host that no longer runs."""
    host, _, pid = owner.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _is_busy(err: sqlite3.OperationalError) -> bool:
    text = str(err).lower()
    return "locked" in text or "busy" in text


class _WriteGuard(WrapperStore):
    """Forwards writes until :meth:`close_and_wait`; counts the writes in flight."""

    def __init__(self, store: Any, _state: dict[str, Any] | None = None) -> None:
        super().__init__(store)
        self._state = _state if _state is not None else {
            "closed": False, "in_flight": 0, "lock": threading.Lock()}

    def _with_store(self, store: Any) -> _WriteGuard:
        return type(self)(store, self._state)

    def _enter(self, key: str) -> None:
        with self._state["lock"]:
            if self._state["closed"]:
                raise RuntimeError(f"Upload aborted; not writing {key}.")
            self._state["in_flight"] += 1

    def _exit(self) -> None:
        with self._state["lock"]:
            self._state["in_flight"] -= 1

    async def set(self, key: str, value: Any) -> None:
        self._enter(key)
        try:
            await self._store.set(key, value)
        finally:
            self._exit()

    async def set_if_not_exists(self, key: str, value: Any) -> None:
        self._enter(key)
        try:
            await self._store.set_if_not_exists(key, value)
        finally:
            self._exit()

    def close_and_wait(self, timeout: float = 60.0) -> None:
        """Refuse further writes and wait until the running ones have finished."""
        with self._state["lock"]:
            self._state["closed"] = True
        deadline = time.monotonic() + timeout
        quiet = 0
        while quiet < 3 and time.monotonic() < deadline:  # stable at zero for 30 ms
            quiet = quiet + 1 if self._state["in_flight"] == 0 else 0
            time.sleep(0.01)


def _run(coro: Any) -> Any:
    """Run a zarr coroutine on zarr's event loop; on Ctrl-C or error, cancel it.

    ``zarr``'s own ``sync()`` leaves the coroutine running when the caller is
    interrupted, and Python later prints "Task was destroyed but it is pending!" for
    each of its tasks; cancelling lets them finish quietly.
    """
    from zarr.core.sync import _get_loop

    future = asyncio.run_coroutine_threadsafe(coro, _get_loop())
    try:
        return future.result()
    except BaseException:
        future.cancel()
        raise


def _slabs(shape: tuple[int, ...], chunks: tuple[int, ...], itemsize: int,
           budget: int, start: Sequence[int] | None = None) -> Iterator[tuple[slice, ...]]:
    """Chunk-aligned regions covering ``shape``, each at most about ``budget`` bytes.

    ``start`` (e.g. the source's dask chunk shape) is the smallest region worth reading
    at once; it is rounded up to whole chunks and used if it fits in the budget, so a
    lazy source's chunks are computed once, not once per zarr chunk.
    """
    slab = list(chunks)
    if start is not None:
        wanted = [min(n, -(-s // c) * c) for s, c, n in zip(start, chunks, shape)]
        if math.prod(wanted) * itemsize <= budget:
            slab = wanted
    for ax in reversed(range(len(shape))):
        while slab[ax] < shape[ax]:
            grown = slab.copy()
            grown[ax] = min(shape[ax], slab[ax] + chunks[ax])
            if math.prod(grown) * itemsize > budget:
                break
            slab = grown
    grid = [range(0, n, s) for n, s in zip(shape, slab)]
    for start in np.ndindex(*[len(g) for g in grid]):
        yield tuple(slice(g[i], min(g[i] + s, n))
                    for g, i, s, n in zip(grid, start, slab, shape))


def _block_mean(block: np.ndarray, factors: Sequence[int], dtype: np.dtype) -> np.ndarray:
    """Mean over blocks of ``factors`` (sizes are multiples), cast back to ``dtype``."""
    shape = []
    for n, f in zip(block.shape, factors):
        shape += [n // f, f]
    means = block.reshape(shape).mean(axis=tuple(range(1, 2 * block.ndim, 2)),
                                      dtype=np.float64)
    if np.issubdtype(dtype, np.integer):
        means = np.floor(means + 0.5)  # round half up, as the pyramids chapter's ITK
    return means.astype(dtype)


# --------------------------------------------------------------------------- record


@dataclass(repr=False)
class ImageRecord:
    """One ready image of a :class:`Catalogue`: a *local* copy of its row and metadata.

    Changing ``name`` or ``metadata`` changes nothing in the database until
    :meth:`save`. The pixels are read lazily: :attr:`data` is a dask array that fetches
    chunks from the object store only when computed.

    Example
    -------
    >>> cat = _demo_catalogue()
    >>> rec = cat.get("cells")
    >>> rec
    ImageRecord(id=1, name='cells', dims='zyx', shape=(2, 8, 8), dtype='uint8', levels=1)
    >>> rec.metadata["checked"] = "yes"          # local only ...
    >>> cat.get("cells").metadata
    {'stain': 'DAPI'}
    >>> _ = rec.save()                           # ... until saved
    >>> cat.get("cells").metadata
    {'checked': 'yes', 'stain': 'DAPI'}
    """

    id: int
    name: str
    dims: tuple[str, ...]
    shape: tuple[int, ...]
    dtype: str
    nbytes: int
    scale: dict[str, float]
    unit: str | None
    time_unit: str | None
    channels: tuple[str, ...]
    levels: int
    created_at: datetime
    location: str
    url: str
    metadata: dict[str, str] = field(default_factory=dict)
    catalogue: Catalogue | None = field(default=None, compare=False)

    def __repr__(self) -> str:
        return (f"ImageRecord(id={self.id}, name={self.name!r}, dims={''.join(self.dims)!r}, "
                f"shape={self.shape}, dtype={self.dtype!r}, levels={self.levels})")

    def _cat(self) -> Catalogue:
        if self.catalogue is None:
            raise RuntimeError("This record is not attached to a Catalogue.")
        return self.catalogue

    @property
    def zarr_location(self) -> str:
        """The key prefix of the image's OME-Zarr group in the bucket."""
        return f"{self.location}/{ZARR_NAME}"

    def zarr_store(self, read_only: bool = True) -> zarr.abc.store.Store:
        """A zarr store rooted at this image's OME-Zarr group in the object store."""
        return self._cat().zarr_store(self.zarr_location, read_only=read_only)

    def open_data(self, store: zarr.abc.store.Store | None = None,
                  level: int = 0) -> dask.array.Array:
        """The pixels of one pyramid level as a lazy dask array, one dask chunk per zarr chunk.

        ``store`` replaces the image's own store, e.g. a
        :class:`~data_helpers.measure.CountingStore` wrapped around
        :meth:`zarr_store` to count what a read transfers.
        """
        import dask.array as da
        import zarr

        if not isinstance(level, numbers.Integral) or not 0 <= level < self.levels:
            raise ValueError(f"level must be an int in [0, {self.levels}); got {level!r}.")
        arr = zarr.open_array(store or self.zarr_store(), path=str(level), mode="r",
                              zarr_format=3)
        return da.from_zarr(arr)

    @property
    def data(self) -> dask.array.Array:
        """The full-resolution pixels, lazily (see :meth:`open_data`)."""
        return self.open_data()

    def thumbnail(self, store: zarr.abc.store.Store | None = None) -> np.ndarray:
        """The lowest-resolution level, read in full (it is small by construction)."""
        return self.open_data(store, level=self.levels - 1).compute()

    def to_xarray(self) -> xr.DataArray:
        """The pixels as a lazy DataArray with physical coordinates and channel names."""
        import xarray as xr

        coords: dict[str, Any] = {d: np.arange(n) * self.scale[d]
                                  for d, n in zip(self.dims, self.shape) if d in self.scale}
        if "c" in self.dims:
            coords["c"] = list(self.channels)
        return xr.DataArray(self.data, dims=self.dims, coords=coords, name=self.name,
                            attrs={"unit": self.unit, **self.metadata})

    def label_image(self, name: str, level: int = 0) -> dask.array.Array:
        """A label image stored in this image's ``labels/`` group, lazily."""
        import dask.array as da
        import zarr

        group = zarr.open_group(self.zarr_store(), mode="r", zarr_format=3)
        if name not in self._cat()._label_names(self.id):
            raise KeyError(f"{self.name!r} has no label image {name!r}; it has "
                           f"{self._cat()._label_names(self.id)}.")
        return da.from_zarr(group[f"labels/{name}/{level}"])

    @property
    def rois(self) -> list[ROI]:
        """The image's regions of interest (read from the database now)."""
        return self._cat().rois(self)

    def tables(self) -> pd.DataFrame:
        """The measurement tables linked to this image (names, sizes, keys)."""
        return self._cat().tables(self)

    def read_table(self, name: str) -> pd.DataFrame:
        """One measurement table, read from its Parquet object."""
        return self._cat().read_table(self, name)

    def save(self) -> ImageRecord:
        """Write this record's ``name`` and ``metadata`` (database and bucket)."""
        return self._cat().update(self)

    def delete(self) -> int:
        """Delete this image: its rows and its objects."""
        return self._cat().delete(self)


# --------------------------------------------------------------------------- catalogue


class Catalogue:
    """A catalogue of images: rows in a SQLite file, OME-Zarr 0.5 in an object store.

    Parameters
    ----------
    database:
        Path of the SQLite file (created with :data:`SCHEMA` if needed).
    object_store:
        A factory ``prefix -> obstore store`` giving a store rooted at ``prefix`` of
        the bucket, e.g. ``S3Server.obstore_store`` or
        ``lambda p: obstore.store.LocalStore(root / p, mkdir=True)``.
        ``object_store("")`` is the whole bucket.
    lock_timeout:
        Seconds to wait for another writer's transaction before raising
        :class:`CatalogueBusyError`.
    check:
        On opening, look for what crashed clients left (one listing of ``images/``):
        uploads whose process is gone on this host are removed, anything else is
        reported in a :class:`CatalogueWarning` (see :meth:`health`, :meth:`cleanup`).

    Example
    -------
    >>> import tempfile, numpy as np, xarray as xr
    >>> from pathlib import Path
    >>> from obstore.store import LocalStore
    >>> tmp = Path(tempfile.mkdtemp())
    >>> cat = Catalogue(tmp / "c.sqlite", lambda p: LocalStore(tmp / p, mkdir=True))
    >>> rec = cat.upload(xr.DataArray(np.ones((2, 3), "u1"), dims=("y", "x")), name="a")
    >>> int(rec.data.sum().compute()), len(cat)
    (6, 1)
    """

    def __init__(self, database: str | Path, object_store: StoreFactory, *,
                 lock_timeout: float = 30.0, check: bool = True) -> None:
        if not callable(object_store):
            raise TypeError(
                "object_store is a factory prefix -> obstore store, e.g. "
                "s3.obstore_store or lambda p: LocalStore(root / p, mkdir=True); "
                f"got {type(object_store).__name__}."
            )
        if not isinstance(database, (str, Path)) or str(database) in ("", ":memory:"):
            raise TypeError(f"database is the path of a SQLite file, e.g. "
                            f"'catalogue.sqlite'; got {database!r}.")
        if not isinstance(lock_timeout, numbers.Real) or not lock_timeout > 0:
            raise ValueError(f"lock_timeout is a positive number of seconds; got {lock_timeout!r}.")
        self.database = Path(database)
        if not self.database.parent.is_dir():
            raise FileNotFoundError(f"The folder {self.database.parent} does not exist; "
                                    "create it first (Path(...).mkdir(parents=True)).")
        self.object_store = object_store
        self.lock_timeout = float(lock_timeout)
        # Autocommit mode: nothing is held open between calls, and every write below
        # runs in an explicit BEGIN IMMEDIATE ... COMMIT (see _write). WAL lets readers
        # read while a writer writes.
        self.connection = sqlite3.connect(self.database, autocommit=True,
                                          timeout=min(self.lock_timeout, 0.1))
        self._retry(lambda: self.connection.execute("PRAGMA journal_mode = WAL"))
        self.connection.execute("PRAGMA foreign_keys = ON")
        self._retry(lambda: self.connection.executescript(SCHEMA))
        self.last_check: dict[str, list[str]] = {}
        if check:
            self._check_on_open()

    # -- plumbing ----------------------------------------------------------------
    def close(self) -> None:
        """Close the database connection."""
        self.connection.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self._one("SELECT count(*) FROM images WHERE state = 'ready'")[0]

    def __repr__(self) -> str:
        return f"Catalogue({str(self.database)!r}, {len(self)} images)"

    def _retry(self, action: Callable[[], Any]) -> Any:
        """Run ``action``; while the database is locked, wait and retry until lock_timeout."""
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                return action()
            except sqlite3.OperationalError as err:
                if not _is_busy(err):
                    raise
                if time.monotonic() >= deadline:
                    raise CatalogueBusyError(
                        f"Another writer kept the catalogue {self.database.name} locked for "
                        f"more than {self.lock_timeout:g} s. Nothing was changed; try again, "
                        "or open the catalogue with a larger lock_timeout=."
                    ) from None
                time.sleep(0.02 + 0.03 * np.random.random())

    def _one(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return self._retry(lambda: self.connection.execute(sql, params).fetchone())

    def _all(self, sql: str, params: Sequence[Any] = ()) -> list[Any]:
        return self._retry(lambda: self.connection.execute(sql, params).fetchall())

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction: BEGIN IMMEDIATE (waiting while another writer
        holds the lock), COMMIT on success, ROLLBACK on any error."""
        con = self.connection
        self._retry(lambda: con.execute("BEGIN IMMEDIATE"))
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        try:
            self._retry(lambda: con.execute("COMMIT"))
        except BaseException:
            if con.in_transaction:
                con.execute("ROLLBACK")
            raise

    def zarr_store(self, location: str, read_only: bool = True) -> zarr.abc.store.Store:
        """A :class:`zarr.storage.ObjectStore` rooted at ``location`` in the bucket."""
        from zarr.storage import ObjectStore

        return ObjectStore(self.object_store(location), read_only=read_only)

    def url(self, location: str) -> str:
        """A URL naming ``location``: ``s3://bucket/...`` for S3, else ``file://...``."""
        store = self.object_store(location)
        config = getattr(store, "config", None) or {}
        prefix = str(getattr(store, "prefix", None) or location)
        if "bucket" in config:
            return f"s3://{config['bucket']}/{prefix}"
        return Path(prefix).as_uri() if Path(prefix).is_absolute() else prefix

    def keys(self, prefix: str = "") -> list[str]:
        """Every object key in the bucket under ``prefix`` (one obstore list), sorted."""
        import obstore

        store = self.object_store("")
        return sorted(
            meta["path"]
            for batch in obstore.list(store, prefix=prefix or None)
            for meta in batch
        )

    def _delete_objects(self, location: str) -> int:
        """Delete every object under ``location``; return how many there were."""
        import obstore

        prefix = location.rstrip("/") + "/"
        keys = self.keys(prefix)
        if keys:
            obstore.delete(self.object_store(""), keys)
        return len(keys)

    def _get_json(self, key: str) -> dict[str, Any]:
        import obstore

        return json.loads(bytes(obstore.get(self.object_store(""), key).bytes()))

    def _put_json(self, key: str, document: Mapping[str, Any]) -> None:
        import obstore

        obstore.put(self.object_store(""), key, json.dumps(document, indent=2).encode())

    # -- resolving arguments -----------------------------------------------------
    def _image_id(self, image: Any, states: tuple[str, ...] = ("ready",)) -> int:
        """The id of ``image``: an ImageRecord, a name (str) or an id (any int type)."""
        if isinstance(image, ImageRecord):
            column, value = "id", image.id
        elif isinstance(image, str):
            column, value = "name", image
        elif isinstance(image, numbers.Integral) and not isinstance(image, bool):
            column, value = "id", int(image)  # numpy and pandas ints too
        else:
            raise TypeError(
                f"An image is named by its record, its name (a str) or its id (an int); "
                f"got {type(image).__name__} {image!r}.")
        marks = ", ".join("?" * len(states))
        row = self._one(f"SELECT id FROM images WHERE {column} = ? AND state IN ({marks})",
                        (value, *states))
        if row is None:
            raise KeyError(
                f"No image with {column} {value!r}; cat.find() or cat.table() lists them.")
        return row[0]

    # -- writing -----------------------------------------------------------------
    def upload(
        self,
        data: xr.DataArray,
        *,
        name: str,
        metadata: Mapping[str, Any] | None = None,
        scale: Mapping[str, float] | None = None,
        unit: str = "micrometer",
        time_unit: str = "second",
        channel_names: Sequence[str] | None = None,
        chunks: Sequence[int] | Mapping[str, int] | None = None,
        levels: int | str = "auto",
        labels: Mapping[str, Any] | None = None,
        rois: Sequence[ROI] = (),
        tables: Mapping[str, pd.DataFrame] | None = None,
        datasets: Sequence[str] = (),
        derived_from: Sequence[Any] = (),
        step: str | None = None,
        progress: Progress | None = None,
        slab_bytes: int = 64 << 20,
    ) -> ImageRecord:
        """Store ``data`` as a self-describing OME-Zarr 0.5 pyramid and register it.

        ``data`` is an :class:`xarray.DataArray` with dims among ``t, c, z, y, x``
        (it must have ``y`` and ``x``); no other axis is added. Voxel sizes come from
        ``scale`` (e.g. ``{"z": 0.5, "y": 0.1, "x": 0.1}``) or evenly spaced
        coordinates; an axis with neither is stored with scale 1 and, if no space axis
        has a size, no unit (pixels). Channel names come from ``channel_names`` or
        string ``c`` coordinates. ``labels`` maps names to label images (the image's
        dims without ``c``); ``rois``, ``tables`` (name -> DataFrame, stored as
        Parquet), ``datasets`` (names; created if new), ``derived_from`` (images) with
        ``step`` are stored with it. Pixels are streamed in regions of about
        ``slab_bytes``, so a lazy (dask) image larger than memory uploads in bounded
        memory; ``progress(done_bytes, total_bytes)`` is called after each region.

        Either everything is stored or nothing is (see the module docstring).

        Example
        -------
        >>> import numpy as np, xarray as xr
        >>> cat = _demo_catalogue()
        >>> vol = xr.DataArray(np.ones((3, 4, 5), "uint16"), dims=("z", "y", "x"))
        >>> rec = cat.upload(vol, name="stack", scale={"z": 0.5, "y": 0.1, "x": 0.1})
        >>> rec.shape, rec.scale["z"], rec.unit
        ((3, 4, 5), 0.5, 'micrometer')
        """
        import pandas as pd  # noqa: F401  (tables)

        # 1. Check everything before writing anything.
        name = _check_name(name)
        meta = _check_metadata(metadata)
        image = to_canonical(data)
        dims = tuple(str(d) for d in image.dims)
        shape = tuple(int(n) for n in image.shape)
        dtype = np.dtype(image.dtype)
        if scale is not None and not isinstance(scale, Mapping):
            raise TypeError(f"scale is a dict dim -> voxel size, e.g. {{'z': 0.5, 'x': 0.1}}; "
                            f"got {type(scale).__name__}.")
        bad = set(scale or {}) - (set(dims) - {"c"})
        if bad:
            raise ValueError(
                f"scale has keys {sorted(bad)} that are not spatial or time dims of this "
                f"image (its dims are {dims}); e.g. scale={{'z': 0.5, 'x': 0.1}}.")
        known = {d: _spacing(image, d, scale or {}) for d in dims if d != "c"}
        space_known = any(known.get(d) is not None for d in ("z", "y", "x"))
        if space_known and unit not in SPACE_UNITS:
            raise ValueError(f"unit must be an OME-Zarr space unit such as 'micrometer' or "
                             f"'nanometer'; got {unit!r}.")
        if "t" in dims and known.get("t") is not None and time_unit not in TIME_UNITS:
            raise ValueError(f"time_unit must be an OME-Zarr time unit such as 'second'; "
                             f"got {time_unit!r}.")
        scales = {d: (v if v is not None else 1.0) for d, v in known.items()}
        space_unit = unit if space_known else None
        t_unit = time_unit if known.get("t") is not None else None
        channels = self._channel_names(image, dims, channel_names)
        chunk_shape = _check_chunks(chunks, shape, dims, dtype.itemsize)
        plan = _pyramid_plan(shape, dims, scales, levels)
        label_arrays = self._check_labels(labels, image, dims, shape)
        roi_rows = self._check_rois(rois, dims, shape, label_arrays)
        table_frames = {k: _check_table(k, v) for k, v in (tables or {}).items()}
        if isinstance(datasets, str):
            raise TypeError(f"datasets is a list of names; got the str {datasets!r} "
                            f"(write datasets=[{datasets!r}]).")
        dataset_names = [_text(d, "A dataset name") for d in datasets]
        if isinstance(derived_from, (str, ImageRecord)) or isinstance(derived_from, numbers.Integral):
            derived_from = [derived_from]
        sources = [self._image_id(s) for s in derived_from]
        if sources and not (isinstance(step, str) and step.strip()):
            raise ValueError("derived_from needs step=, a short description of what made "
                             "this image, e.g. step='max projection along z'.")
        if not isinstance(slab_bytes, numbers.Integral) or slab_bytes < 1:
            raise ValueError(f"slab_bytes must be a positive int; got {slab_bytes!r}.")
        if progress is not None and not callable(progress):
            raise TypeError("progress is a function progress(done_bytes, total_bytes).")

        # 2. Reserve the name: a row in state 'uploading' (one short transaction).
        location = f"{ROOT}/{uuid.uuid4().hex}"
        created = datetime.now(UTC).replace(microsecond=0)
        size = dict(zip(dims, shape))
        row = {
            "name": name, "state": "uploading", "dims": "".join(dims),
            **{f"size_{d}": size.get(d) for d in CANONICAL_DIMS},
            "dtype": dtype.name, "nbytes": math.prod(shape) * dtype.itemsize,
            **{f"scale_{d}": scales.get(d) for d in ("t", "z", "y", "x")},
            "unit": space_unit, "time_unit": t_unit, "levels": len(plan) + 1,
            "created_at": created.isoformat(), "owner": _owner(), "location": location,
            "url": self.url(f"{location}/{ZARR_NAME}"),
        }
        try:
            with self._write() as con:
                if con.execute("SELECT 1 FROM images WHERE name = ?", (name,)).fetchone():
                    raise ValueError(
                        f"An image named {name!r} already exists and names are unique: "
                        "choose another name, or delete the old image first "
                        "(catalogue.delete(name)).")
                image_id = con.execute(
                    f"INSERT INTO images ({', '.join(row)}) VALUES "
                    f"({', '.join('?' * len(row))})", tuple(row.values())).lastrowid
                con.executemany(
                    "INSERT INTO metadata (image_id, key, value) VALUES (?, ?, ?)",
                    [(image_id, k, v) for k, v in meta.items()])
                con.executemany(
                    "INSERT INTO channels (image_id, idx, name) VALUES (?, ?, ?)",
                    [(image_id, i, c) for i, c in enumerate(channels)])
        except sqlite3.IntegrityError as err:
            raise ValueError(f"Could not register {name!r}: {err}. Names are unique: choose "
                             "another name, or delete the old image first.") from None

        # 3. Write the objects with no database lock held; 4. link and mark ready.
        try:
            windows = self._write_objects(image, location, dims, chunk_shape, plan,
                                          label_arrays, progress, slab_bytes,
                                          scales, space_unit, t_unit)
            table_keys = {t: f"{location}/tables/{uuid.uuid4().hex[:12]}.parquet"
                          for t in table_frames}
            for t, frame in table_frames.items():
                self._put_parquet(table_keys[t], frame, image=name, table=t)
            with self._write() as con:
                for roi in roi_rows:
                    self._insert_roi(con, image_id, roi)
                for t, frame in table_frames.items():
                    self._insert_table(con, image_id, t, table_keys[t], frame, None)
                con.executemany(
                    "INSERT INTO labels (image_id, name, n_labels) VALUES (?, ?, ?)",
                    [(image_id, k, n) for k, (_, n) in label_arrays.items()])
                for d in dataset_names:
                    self._link_dataset(con, d, "", image_id)
                con.executemany(
                    "INSERT INTO provenance (image_id, source_location, step) "
                    "SELECT ?, location, ? FROM images WHERE id = ?",
                    [(image_id, step, s) for s in sources])
                ome = self._ome_attrs(name, dims, scales, space_unit, t_unit, plan,
                                      channels, windows)
                self._put_root(con, image_id, location, ome)  # the last object
                con.execute("UPDATE images SET state = 'ready' WHERE id = ?", (image_id,))
        except BaseException as err:
            self._abort_upload(image_id, location, err)
            raise
        return self.get(image_id)

    def _channel_names(self, image: xr.DataArray, dims: tuple[str, ...],
                       given: Sequence[str] | None) -> list[str]:
        if "c" not in dims:
            if given is not None:
                raise ValueError("channel_names needs a 'c' axis; add one with "
                                 "data.expand_dims('c').")
            return []
        n = image.sizes["c"]
        if given is None and "c" in image.coords:
            values = [v for v in np.asarray(image.coords["c"].values).tolist()]
            if all(isinstance(v, str) for v in values):
                given = values
        if given is None:
            return [f"channel {i}" for i in range(n)]
        if isinstance(given, str) or len(given) != n:
            raise ValueError(f"channel_names needs one name per channel ({n}); got {given!r}.")
        return [_text(c, "A channel name") for c in given]

    def _check_labels(self, labels: Mapping[str, Any] | None, image: xr.DataArray,
                      dims: tuple[str, ...], shape: tuple[int, ...]
                      ) -> dict[str, tuple[Any, int]]:
        import xarray as xr

        if labels is None:
            return {}
        if not isinstance(labels, Mapping):
            raise TypeError("labels is a dict name -> label image, e.g. {'nuclei': lab}.")
        out = {}
        size = dict(zip(dims, shape))
        for key, lab in labels.items():
            _text(key, "A label image name")
            if "/" in key or key in (".", ".."):
                raise ValueError(f"A label image name cannot contain '/'; got {key!r}.")
            if not isinstance(lab, xr.DataArray):
                plain = [d for d in dims if d != "c"]
                if np.ndim(lab) != len(plain):
                    raise ValueError(
                        f"Label image {key!r} has {np.ndim(lab)} dims; give it the image's "
                        f"dims without 'c' {tuple(plain)}, or pass an xarray.DataArray.")
                lab = xr.DataArray(lab, dims=plain)
            lab_dims = [str(d) for d in lab.dims]
            if set(lab_dims) - set(dims) or "c" in lab_dims:
                raise ValueError(f"Label image {key!r} has dims {tuple(lab_dims)}; it takes the "
                                 f"image's dims without 'c' ({[d for d in dims if d != 'c']}).")
            if not np.issubdtype(lab.dtype, np.integer):
                raise ValueError(f"Label image {key!r} must hold integers; got {lab.dtype}.")
            for d in lab_dims:
                if lab.sizes[d] != size[d]:
                    raise ValueError(f"Label image {key!r} has {d}={lab.sizes[d]}, the image "
                                     f"{d}={size[d]}: they must match.")
            missing = [d for d in dims if d not in lab_dims]
            lab = lab.expand_dims(missing).transpose(*dims)  # c (and any other) of size 1
            if hasattr(lab.data, "dask"):  # distinct values chunk by chunk, never all voxels
                import dask.array as da

                values = da.unique(lab.data).compute()
            else:
                values = np.unique(np.asarray(lab.data))
            n = int(np.count_nonzero(values))
            out[key] = (lab, n)
        return out

    def _check_rois(self, rois: Sequence[ROI], dims: tuple[str, ...], shape: tuple[int, ...],
                    labels: Mapping[str, Any], existing: Iterable[str] = ()
                    ) -> list[dict[str, Any]]:
        if isinstance(rois, ROI):
            rois = [rois]
        rows = [_check_roi(r, dims, shape, labels) for r in rois]
        taken = set(existing)
        for i, r in enumerate(rows):
            if r["name"] is None:
                r["name"] = f"{r['kind']} {len(taken) + 1}"
            _text(r["name"], "A ROI name")
            if r["name"] in taken:
                raise ValueError(f"Two ROIs are named {r['name']!r}; ROI names are unique "
                                 "per image.")
            taken.add(r["name"])
        return rows

    def _write_objects(self, image: xr.DataArray, location: str, dims: tuple[str, ...],
                       chunks: tuple[int, ...], plan: list[dict[str, int]],
                       labels: Mapping[str, tuple[Any, int]], progress: Progress | None,
                       slab_bytes: int, scales: Mapping[str, float], unit: str | None,
                       t_unit: str | None) -> list[tuple[float, float]]:
        """Write every level and label image, slab by slab; return each channel's min/max."""
        import zarr

        store = _WriteGuard(self.zarr_store(f"{location}/{ZARR_NAME}", read_only=False))
        self._abort_hooks = [store.close_and_wait]
        dtype = np.dtype(image.dtype)
        total = image.nbytes
        done = 0
        c_axis = dims.index("c") if "c" in dims else None
        n_c = image.sizes.get("c", 1)
        lo = np.full(n_c, np.inf)
        hi = np.full(n_c, -np.inf)

        def create(path: str, shape: tuple[int, ...], dt: np.dtype) -> zarr.Array:
            return zarr.create_array(
                store, name=path, shape=shape, dtype=dt,
                chunks=tuple(min(c, n) for c, n in zip(chunks, shape)),
                compressors=[_BLOSC], fill_value=0, dimension_names=dims,
                zarr_format=3, overwrite=False)

        def write(arr: zarr.Array, region: tuple[slice, ...], block: np.ndarray) -> None:
            _run(arr._async_array.setitem(region, block))

        source = image.data
        level0 = create("0", tuple(image.shape), dtype)
        start = [max(c) for c in source.chunks] if hasattr(source, "dask") else None
        for region in _slabs(level0.shape, level0.chunks, dtype.itemsize, slab_bytes, start):
            block = np.asarray(source[region])
            if block.size:
                axes = tuple(i for i in range(block.ndim) if i != c_axis)
                mins, maxs = block.min(axis=axes), block.max(axis=axes)
                lo = np.minimum(lo, np.atleast_1d(mins))
                hi = np.maximum(hi, np.atleast_1d(maxs))
            write(level0, region, block)
            done += block.nbytes
            if progress is not None:
                progress(done, total)
        self._write_pyramid(level0, plan, create, write, slab_bytes, _block_mean)
        for key, (lab, _) in labels.items():
            ldt = np.dtype(lab.dtype)
            arr = create(f"labels/{key}/0", tuple(lab.shape), ldt)
            for region in _slabs(arr.shape, arr.chunks, ldt.itemsize, slab_bytes):
                write(arr, region, np.asarray(lab.data[region]))
            self._write_pyramid(arr, plan, lambda p, s, d, k=key: create(f"labels/{k}/{p}", s, d),
                                write, slab_bytes,
                                lambda b, f, d: b[tuple(slice(None, None, k) for k in f)])
            # group documents after the arrays (zarr may have written implicit parents)
            ome = self._ome_attrs(key, dims, scales, unit, t_unit, plan, [], [], label=True)
            ome["image-label"] = {"source": {"image": "../../"}}
            self._put_json(f"{location}/{ZARR_NAME}/labels/{key}/zarr.json", {
                "zarr_format": 3, "node_type": "group", "attributes": {"ome": ome}})
        if labels:
            self._put_json(f"{location}/{ZARR_NAME}/labels/zarr.json", {
                "zarr_format": 3, "node_type": "group",
                "attributes": {"ome": {"version": "0.5", "labels": list(labels)}}})
        return [(float(a), float(b)) for a, b in zip(lo, hi)]

    def _write_pyramid(self, level0: zarr.Array, plan: list[dict[str, int]],
                       create: Callable[..., zarr.Array], write: Callable[..., None],
                       slab_bytes: int, reduce: Callable[..., np.ndarray]) -> None:
        """Write levels 1.. from the level above, read back slab by slab (bounded memory)."""
        dims = tuple(level0.metadata.dimension_names)
        prev = level0
        for k, factors in enumerate(plan, start=1):
            f = [factors[d] for d in dims]
            shape = tuple(n // fi for n, fi in zip(prev.shape, f))
            arr = create(str(k), shape, prev.dtype)
            budget = max(1, slab_bytes // math.prod(f))
            for region in _slabs(shape, arr.chunks, prev.dtype.itemsize, budget):
                up = tuple(slice(s.start * fi, s.stop * fi) for s, fi in zip(region, f))
                block = _run(prev._async_array.getitem(up))
                write(arr, region, reduce(np.asarray(block), f, prev.dtype))
            prev = arr

    def _ome_attrs(self, name: str, dims: tuple[str, ...], scales: Mapping[str, float],
                   unit: str | None, t_unit: str | None, plan: list[dict[str, int]],
                   channels: Sequence[str], windows: Sequence[tuple[float, float]],
                   label: bool = False) -> dict[str, Any]:
        """OME-Zarr 0.5 attributes: axes of the dims the image has, one dataset per level."""
        axes = []
        for d in dims:
            axis: dict[str, Any] = {"name": d, "type": AXIS_TYPES[d]}
            u = {"t": t_unit, "c": None}.get(d, unit)
            if u is not None:
                axis["unit"] = u
            axes.append(axis)
        datasets = []
        factor = {d: 1 for d in dims}
        for k in range(len(plan) + 1):
            if k:
                factor = {d: factor[d] * plan[k - 1][d] for d in dims}
            s = [scales.get(d, 1.0) * factor[d] for d in dims]
            # a block mean's first voxel is centred between the first `factor` voxels
            shift = [0.0 if label else scales.get(d, 1.0) * (factor[d] - 1) / 2 for d in dims]
            transforms: list[dict[str, Any]] = [{"type": "scale", "scale": s}]
            if any(shift):
                transforms.append({"type": "translation", "translation": shift})
            datasets.append({"path": str(k), "coordinateTransformations": transforms})
        multiscale = {
            "name": name, "axes": axes, "datasets": datasets,
            "type": "subsample" if label else "mean",
            "metadata": {"description": (
                "every 2nd voxel along the halved axes" if label else
                "block mean over 2 voxels along each halved axis, rounded half up"),
                "method": "data_helpers.catalogue"},
        }
        ome: dict[str, Any] = {"version": "0.5", "multiscales": [multiscale]}
        if channels and not label:
            colors = ["00FFFF", "FF00FF", "FFFF00", "00FF00", "FF0000", "0000FF"]
            ome["omero"] = {"channels": [
                {"label": c, "color": colors[i % len(colors)], "active": True,
                 "window": {"min": lo, "max": hi, "start": lo, "end": hi}}
                for i, (c, (lo, hi)) in enumerate(zip(channels, windows))]}
        return ome

    def _describe(self, con: sqlite3.Connection, image_id: int) -> dict[str, Any]:
        """The catalogue's facts about one image, as stored beside the OME metadata."""
        name, created = con.execute(
            "SELECT name, created_at FROM images WHERE id = ?", (image_id,)).fetchone()
        rois = [{"name": n, "kind": k, "t": t, "c": c, "z": z, "points": json.loads(p),
                 "mask": m, "mask_value": mv}
                for n, k, t, c, z, p, m, mv in con.execute(
                    "SELECT name, kind, t, c, z, points, mask, mask_value FROM rois "
                    "WHERE image_id = ? ORDER BY id", (image_id,))]
        tables = [{"name": n, "key": k.rsplit("/", 2)[-2] + "/" + k.rsplit("/", 1)[-1],
                   "roi": r, "n_rows": nr, "columns": json.loads(cols)}
                  for n, k, r, nr, cols in con.execute(
                      "SELECT t.name, t.key, r.name, t.n_rows, t.columns FROM tables t "
                      "LEFT JOIN rois r ON r.id = t.roi_id WHERE t.image_id = ? "
                      "ORDER BY t.id", (image_id,))]
        return {
            "version": 1, "name": name, "created_at": created,
            "metadata": dict(con.execute(
                "SELECT key, value FROM metadata WHERE image_id = ? ORDER BY key",
                (image_id,))),
            "datasets": [{"name": n, "description": d} for n, d in con.execute(
                "SELECT d.name, d.description FROM datasets d JOIN dataset_images di "
                "ON di.dataset_id = d.id WHERE di.image_id = ? ORDER BY d.name",
                (image_id,))],
            "derived_from": [{"location": loc, "step": s} for loc, s in con.execute(
                "SELECT source_location, step FROM provenance WHERE image_id = ? "
                "ORDER BY source_location", (image_id,))],
            "labels": [{"name": n, "n_labels": k} for n, k in con.execute(
                "SELECT name, n_labels FROM labels WHERE image_id = ? ORDER BY name",
                (image_id,))],
            "rois": rois, "tables": tables,
        }

    def _put_root(self, con: sqlite3.Connection, image_id: int, location: str,
                  ome: Mapping[str, Any] | None = None) -> None:
        """Write the image group's zarr.json: OME metadata plus the catalogue block."""
        key = f"{location}/{ZARR_NAME}/zarr.json"
        if ome is None:
            ome = self._get_json(key)["attributes"]["ome"]
        block = self._describe(con, image_id)
        ome = json.loads(json.dumps(ome))
        ome["multiscales"][0]["name"] = block["name"]
        self._put_json(key, {"zarr_format": 3, "node_type": "group",
                             "attributes": {"ome": ome, "catalogue": block}})

    def _put_parquet(self, key: str, frame: pd.DataFrame, **meta: str) -> None:
        import obstore
        import pyarrow as pa
        import pyarrow.parquet as pq

        table = pa.Table.from_pandas(frame, preserve_index=False)
        table = table.replace_schema_metadata({
            **(table.schema.metadata or {}),
            b"catalogue": json.dumps(meta).encode()})
        buf = io.BytesIO()
        pq.write_table(table, buf)
        obstore.put(self.object_store(""), key, buf.getvalue())

    def _insert_roi(self, con: sqlite3.Connection, image_id: int, roi: Mapping[str, Any]) -> int:
        return con.execute(
            "INSERT INTO rois (image_id, name, kind, t, c, z, points, mask, mask_value) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (image_id, roi["name"], roi["kind"], roi["t"], roi["c"], roi["z"],
             json.dumps(roi["points"]), roi["mask"], roi["mask_value"])).lastrowid

    def _insert_table(self, con: sqlite3.Connection, image_id: int, name: str, key: str,
                      frame: Any, roi_name: str | None, n_rows: int | None = None,
                      columns: list[str] | None = None) -> None:
        roi_id = None
        if roi_name is not None:
            row = con.execute("SELECT id FROM rois WHERE image_id = ? AND name = ?",
                              (image_id, roi_name)).fetchone()
            if row is None:
                raise KeyError(f"The image has no ROI named {roi_name!r}.")
            roi_id = row[0]
        con.execute(
            "INSERT INTO tables (image_id, roi_id, name, key, n_rows, columns) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (image_id, roi_id, name, key, len(frame) if n_rows is None else n_rows,
             json.dumps(list(map(str, frame.columns)) if columns is None else columns)))

    def _link_dataset(self, con: sqlite3.Connection, dataset: str, description: str,
                      image_id: int | None) -> int:
        con.execute("INSERT OR IGNORE INTO datasets (name, description) VALUES (?, ?)",
                    (dataset, description))
        dataset_id = con.execute("SELECT id FROM datasets WHERE name = ?",
                                 (dataset,)).fetchone()[0]
        if image_id is not None:
            con.execute("INSERT OR IGNORE INTO dataset_images (dataset_id, image_id) "
                        "VALUES (?, ?)", (dataset_id, image_id))
        return dataset_id

    def _abort_upload(self, image_id: int, location: str, err: BaseException) -> None:
        """Stop writes in flight, delete what was written, then the row; note failures."""
        for hook in getattr(self, "_abort_hooks", []):
            with contextlib.suppress(BaseException):
                hook()
        self._abort_hooks = []
        try:
            self._delete_objects(location)
        except BaseException as cleanup:
            err.add_note(f"Deleting the objects under {location}/ failed too ({cleanup!r}); "
                         "the row stays in state 'uploading': cat.cleanup() removes both.")
            return
        try:
            with self._write() as con:
                con.execute("DELETE FROM images WHERE id = ? AND state = 'uploading'",
                            (image_id,))
        except BaseException as cleanup:
            err.add_note(f"Removing the 'uploading' row failed ({cleanup!r}); "
                         "cat.cleanup() removes it.")

    def _edit(self, image_id: int, change: Callable[[sqlite3.Connection], Any]) -> Any:
        """Change rows of one image and rewrite its zarr.json, in one short transaction."""
        location = self._one("SELECT location FROM images WHERE id = ?", (image_id,))[0]
        with self._write() as con:
            result = change(con)
            self._put_root(con, image_id, location)
        return result

    def update(self, record: ImageRecord) -> ImageRecord:
        """Save ``record.name`` and ``record.metadata`` (database and the OME-Zarr); return
        the stored record.

        Only the name and the key/value metadata are editable here: the pixels and what
        describes them (shape, dtype, voxel sizes, location) are immutable.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> rec = cat.get("cells")
        >>> rec.name = "nuclei"
        >>> cat.update(rec).name                     # same as rec.save()
        'nuclei'
        """
        if not isinstance(record, ImageRecord):
            raise TypeError(f"update() takes an ImageRecord (from cat.get(...)); got "
                            f"{type(record).__name__}.")
        stored = self.get(record.id)
        for attr in ("dims", "shape", "dtype", "nbytes", "scale", "unit", "location",
                     "channels", "levels"):
            if getattr(record, attr) != getattr(stored, attr):
                raise ValueError(
                    f"{attr} cannot be changed: the pixels are immutable. Upload a new "
                    "image (and delete this one) instead.")
        name = _check_name(record.name)
        meta = _check_metadata(record.metadata)

        def change(con: sqlite3.Connection) -> None:
            con.execute("UPDATE images SET name = ? WHERE id = ?", (name, record.id))
            con.execute("DELETE FROM metadata WHERE image_id = ?", (record.id,))
            con.executemany("INSERT INTO metadata (image_id, key, value) VALUES (?, ?, ?)",
                            [(record.id, k, v) for k, v in meta.items()])

        try:
            self._edit(record.id, change)
        except sqlite3.IntegrityError:
            raise ValueError(f"Cannot rename to {name!r}: an image with that name exists. "
                             "Choose another name.") from None
        return self.get(record.id)

    def delete(self, image: ImageRecord | str | int) -> int:
        """Delete an image (a record, a name or an id): mark it, delete its objects, then
        its rows. Returns how many objects were deleted.

        If the object store fails, the row stays in state ``'deleting'`` (hidden from
        :meth:`get` and :meth:`find`) and :class:`DeleteIncompleteError` says how many
        objects are left; calling ``delete`` (or :meth:`cleanup`) again finishes it.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> location = cat.get("cells").location
        >>> cat.delete("cells")                      # objects deleted
        4
        >>> len(cat), cat.keys(location + "/")
        (0, [])
        """
        image_id = self._image_id(image, states=("ready", "deleting"))
        name, location = self._one("SELECT name, location FROM images WHERE id = ?",
                                   (image_id,))
        with self._write() as con:
            con.execute("UPDATE images SET state = 'deleting' WHERE id = ?", (image_id,))
        try:
            deleted = self._delete_objects(location)
        except Exception as err:
            try:
                left = f"{len(self.keys(location + '/'))} objects are"
            except Exception:
                left = "an unknown number of objects (the store does not answer) is"
            raise DeleteIncompleteError(
                f"Could not delete the objects of {name!r} ({type(err).__name__}: "
                f"{str(err).splitlines()[0][:200]}). {left} left under {location}/; its "
                f"rows are kept, hidden, in state 'deleting'. Run cat.delete({name!r}) or "
                "cat.cleanup() again when the object store answers.") from None
        with self._write() as con:
            con.execute("DELETE FROM images WHERE id = ?", (image_id,))
        return deleted

    # -- ROIs, tables, datasets ----------------------------------------------------
    def add_rois(self, image: Any, rois: Sequence[ROI] | ROI) -> list[int]:
        """Attach ROIs to an image (database and its zarr.json); return their ids.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> ids = cat.add_rois("cells", [ROI("point", [(2, 3)], name="p", z=1)])
        >>> cat.rois("cells")
        [ROI(kind='point', points=((2.0, 3.0),), name='p', t=None, c=None, z=1, mask=None, mask_value=None)]
        """
        rec = self.get(image)
        existing = [r.name for r in self.rois(rec)]
        rows = self._check_rois(rois, rec.dims, rec.shape, self._label_names(rec.id), existing)
        try:
            return self._edit(rec.id, lambda con: [self._insert_roi(con, rec.id, r)
                                                   for r in rows])
        except sqlite3.IntegrityError:  # pragma: no cover - a concurrent writer's name
            raise ValueError("A ROI with that name was added meanwhile; choose another "
                             "name.") from None

    def rois(self, image: Any) -> list[ROI]:
        """The ROIs of an image, in the order they were added."""
        image_id = self._image_id(image)
        return [ROI(kind=k, points=tuple(tuple(p) for p in json.loads(pts)), name=n, t=t,
                    c=c, z=z, mask=m, mask_value=mv)
                for n, k, t, c, z, pts, m, mv in self._all(
                    "SELECT name, kind, t, c, z, points, mask, mask_value FROM rois "
                    "WHERE image_id = ? ORDER BY id", (image_id,))]

    def add_table(self, image: Any, name: str, table: pd.DataFrame,
                  roi: str | None = None) -> str:
        """Store a measurement table as a Parquet object beside the image; return its key.

        ``roi`` optionally links the table to one of the image's ROIs (by name).

        Example
        -------
        >>> import pandas as pd
        >>> cat = _demo_catalogue()
        >>> key = cat.add_table("cells", "stats", pd.DataFrame({"mean": [1.5]}))
        >>> cat.read_table("cells", "stats")
           mean
        0   1.5
        """
        rec = self.get(image)
        frame = _check_table(name, table)
        if roi is not None and roi not in {r.name for r in self.rois(rec)}:
            raise KeyError(f"{rec.name!r} has no ROI named {roi!r}; add it first "
                           "(cat.add_rois).")
        key = f"{rec.location}/tables/{uuid.uuid4().hex[:12]}.parquet"
        self._put_parquet(key, frame, image=rec.name, table=name)
        try:
            self._edit(rec.id, lambda con: self._insert_table(con, rec.id, name, key,
                                                              frame, roi))
        except BaseException as err:
            import obstore

            with contextlib.suppress(Exception):
                obstore.delete(self.object_store(""), key)
            if isinstance(err, sqlite3.IntegrityError):
                raise ValueError(f"{rec.name!r} already has a table named {name!r}; "
                                 "choose another name.") from None
            raise
        return key

    def tables(self, image: Any = None) -> pd.DataFrame:
        """Measurement tables (of one image, or all): name, image, ROI, rows, columns, key."""
        import pandas as pd

        sql = ("SELECT t.id, i.name AS image, t.name, r.name AS roi, t.n_rows, t.columns, "
               "t.key FROM tables t JOIN images i ON i.id = t.image_id "
               "LEFT JOIN rois r ON r.id = t.roi_id WHERE i.state = 'ready'")
        params: tuple = ()
        if image is not None:
            sql += " AND i.id = ?"
            params = (self._image_id(image),)
        rows = self._all(sql + " ORDER BY t.id", params)
        return pd.DataFrame(rows, columns=["id", "image", "name", "roi", "n_rows",
                                           "columns", "key"]).set_index("id")

    def read_table(self, image: Any, name: str) -> pd.DataFrame:
        """Read one measurement table from its Parquet object."""
        import obstore
        import pyarrow.parquet as pq

        image_id = self._image_id(image)
        row = self._one("SELECT key FROM tables WHERE image_id = ? AND name = ?",
                        (image_id, name))
        if row is None:
            raise KeyError(f"No table {name!r} on that image; cat.tables(image) lists them.")
        data = bytes(obstore.get(self.object_store(""), row[0]).bytes())
        return pq.read_table(io.BytesIO(data)).to_pandas()

    def add_to_dataset(self, dataset: str, images: Sequence[Any] | Any,
                       description: str = "") -> int:
        """Put images in a dataset (created if new; an image can be in many); return its id.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> _ = cat.add_to_dataset("screen 1", ["cells"], description="first screen")
        >>> [r.name for r in cat.find(dataset="screen 1")]
        ['cells']
        """
        _text(dataset, "A dataset name")
        if not isinstance(description, str):
            raise TypeError(f"description must be a str; got {type(description).__name__}.")
        if isinstance(images, (str, ImageRecord)) or isinstance(images, numbers.Integral):
            images = [images]
        ids = [self._image_id(i) for i in images]
        with self._write() as con:
            dataset_id = self._link_dataset(con, dataset, description, None)
            if description:
                con.execute("UPDATE datasets SET description = ? WHERE id = ?",
                            (description, dataset_id))
        for i in ids:
            self._edit(i, lambda con, i=i: self._link_dataset(con, dataset, description, i))
        return dataset_id

    def datasets(self) -> pd.DataFrame:
        """Every dataset with its description and number of images."""
        import pandas as pd

        return pd.DataFrame(self._all(
            "SELECT d.name, d.description, count(i.id) AS images FROM datasets d "
            "LEFT JOIN dataset_images di ON di.dataset_id = d.id "
            "LEFT JOIN images i ON i.id = di.image_id AND i.state = 'ready' "
            "GROUP BY d.id ORDER BY d.name"), columns=["name", "description", "images"])

    def provenance(self, image: Any) -> pd.DataFrame:
        """Where an image came from: its sources (name if still catalogued) and steps."""
        import pandas as pd

        image_id = self._image_id(image)
        return pd.DataFrame(self._all(
            "SELECT p.source_location, s.name, p.step FROM provenance p "
            "LEFT JOIN images s ON s.location = p.source_location WHERE p.image_id = ?",
            (image_id,)), columns=["source_location", "source", "step"])

    def _label_names(self, image_id: int) -> list[str]:
        return [r[0] for r in self._all(
            "SELECT name FROM labels WHERE image_id = ? ORDER BY name", (image_id,))]

    # -- reading -----------------------------------------------------------------
    def _record(self, row: tuple) -> ImageRecord:
        (id_, name, dims, st, sc, sz, sy, sx, dtype, nbytes, tt, tz, ty, tx, unit,
         t_unit, levels, created, location, url) = row
        size = {"t": st, "c": sc, "z": sz, "y": sy, "x": sx}
        scale = {"t": tt, "z": tz, "y": ty, "x": tx}
        metadata = dict(self._all(
            "SELECT key, value FROM metadata WHERE image_id = ? ORDER BY key", (id_,)))
        channels = tuple(r[0] for r in self._all(
            "SELECT name FROM channels WHERE image_id = ? ORDER BY idx", (id_,)))
        return ImageRecord(
            id=id_, name=name, dims=tuple(dims), shape=tuple(size[d] for d in dims),
            dtype=dtype, nbytes=nbytes,
            scale={d: scale[d] for d in dims if d != "c"}, unit=unit, time_unit=t_unit,
            channels=channels, levels=levels, created_at=datetime.fromisoformat(created),
            location=location, url=url, metadata=metadata, catalogue=self,
        )

    def get(self, image: ImageRecord | str | int) -> ImageRecord:
        """The record of the image with this name (a str) or id (an int, numpy ints too).

        Example
        -------
        >>> import numpy as np
        >>> _demo_catalogue().get(np.int64(1)).shape
        (2, 8, 8)
        """
        image_id = self._image_id(image)
        return self._record(self._one(
            f"SELECT {_IMAGE_COLUMNS} FROM images WHERE id = ?", (image_id,)))

    def find(
        self,
        *,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        min_nbytes: int | None = None,
        max_nbytes: int | None = None,
        dataset: str | None = None,
        channel: str | None = None,
    ) -> list[ImageRecord]:
        """Ready images matching every condition given, oldest first.

        ``name`` is a SQL ``LIKE`` pattern (``%`` any text, ``_`` one character);
        ``metadata`` requires each key to have exactly that value; ``min_nbytes`` and
        ``max_nbytes`` bound the uncompressed size; ``dataset`` and ``channel`` name a
        dataset the image is in and a channel it has.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> [r.name for r in cat.find(name="cell%", metadata={"stain": "DAPI"})]
        ['cells']
        >>> cat.find(min_nbytes=10**6)
        []
        """
        where, params = ["state = 'ready'"], []
        if name is not None:
            where.append("name LIKE ?")
            params.append(_text(name, "name"))
        for key, value in _check_metadata(metadata).items():
            where.append("EXISTS (SELECT 1 FROM metadata m "
                         "WHERE m.image_id = images.id AND m.key = ? AND m.value = ?)")
            params += [key, value]
        for bound, op in ((min_nbytes, ">="), (max_nbytes, "<=")):
            if bound is not None:
                if not isinstance(bound, numbers.Integral) or isinstance(bound, bool):
                    raise TypeError(f"min_nbytes/max_nbytes are ints (bytes); got {bound!r}.")
                where.append(f"nbytes {op} ?")
                params.append(int(bound))
        if dataset is not None:
            where.append("EXISTS (SELECT 1 FROM dataset_images di JOIN datasets d ON "
                         "d.id = di.dataset_id WHERE di.image_id = images.id AND d.name = ?)")
            params.append(_text(dataset, "dataset"))
        if channel is not None:
            where.append("EXISTS (SELECT 1 FROM channels ch WHERE ch.image_id = images.id "
                         "AND ch.name = ?)")
            params.append(_text(channel, "channel"))
        rows = self._all(f"SELECT {_IMAGE_COLUMNS} FROM images WHERE "
                         + " AND ".join(where) + " ORDER BY id", params)
        return [self._record(r) for r in rows]

    def query(self, sql: str, params: Sequence[Any] | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Run one read-only SQL query (with ``?`` placeholders) and return a DataFrame.

        The query runs on a separate read-only connection whose authorizer allows
        reading only: statements that write, ``ATTACH``, ``VACUUM INTO`` or ``PRAGMA``
        are refused with a ``ValueError``.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> cat.query("SELECT name, nbytes FROM images WHERE size_z > ?", (1,))
            name  nbytes
        0  cells     128
        """
        import pandas as pd

        if not isinstance(sql, str):
            raise TypeError(f"sql is a str; got {type(sql).__name__}.")
        allowed = {sqlite3.SQLITE_SELECT, sqlite3.SQLITE_READ, sqlite3.SQLITE_FUNCTION,
                   getattr(sqlite3, "SQLITE_RECURSIVE", 33)}
        refused: list[str] = []

        def authorize(action: int, *args: Any) -> int:
            if action in allowed:
                return sqlite3.SQLITE_OK
            refused.append(str(args[0]) if args and args[0] else str(action))
            return sqlite3.SQLITE_DENY

        uri = f"{self.database.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True,
                                                timeout=self.lock_timeout)) as ro:
            ro.execute("PRAGMA query_only = ON")
            ro.set_authorizer(authorize)
            try:
                return pd.read_sql_query(sql, ro, params=params)
            except (sqlite3.DatabaseError, pd.errors.DatabaseError) as err:
                if refused or "not authorized" in str(err):
                    raise ValueError(
                        "query() runs read-only SELECT statements; this one was refused "
                        f"({', '.join(refused) or 'not authorized'}). Change the catalogue "
                        "through its methods (upload, update, delete, add_rois, ...).") from None
                raise

    def table(self) -> pd.DataFrame:
        """Every ready image, one row each, with its metadata as one ``key=value`` string.

        Example
        -------
        >>> _demo_catalogue().table()[["name", "dims", "shape", "metadata"]]  # doctest: +NORMALIZE_WHITESPACE
             name dims  shape    metadata
        id
        1   cells  zyx  2x8x8  stain=DAPI
        """
        import pandas as pd

        frame = self.query(
            "SELECT i.id, i.name, i.dims, i.size_t, i.size_c, i.size_z, i.size_y, i.size_x, "
            "i.dtype, i.nbytes, i.levels, i.created_at, i.location, "
            "(SELECT group_concat(m.key || '=' || m.value, '; ') FROM "
            "(SELECT * FROM metadata WHERE image_id = i.id ORDER BY key) m) AS metadata "
            "FROM images i WHERE i.state = 'ready' ORDER BY i.id").set_index("id")
        sizes = frame[[f"size_{d}" for d in CANONICAL_DIMS]]
        frame.insert(2, "shape", ["x".join(str(int(v)) for v in row if pd.notna(v))
                                  for row in sizes.itertuples(index=False)])
        return frame.drop(columns=sizes.columns)

    # -- consistency ---------------------------------------------------------------
    def orphans(self) -> list[str]:
        """Image prefixes in the bucket that no row points to (left by a crash).

        Example
        -------
        >>> import obstore
        >>> cat = _demo_catalogue()
        >>> cat.orphans()                            # bucket and database agree
        []
        >>> _ = obstore.put(cat.object_store(""), "images/lost/image.ome.zarr/zarr.json", b"{}")
        >>> cat.orphans()
        ['images/lost']
        """
        # List keys rather than "folders": SeaweedFS (like a file system) keeps empty
        # directories, which a delimiter listing reports as common prefixes.
        prefixes = {"/".join(k.split("/")[:2]) for k in self.keys(f"{ROOT}/")}
        known = {r[0] for r in self._all("SELECT location FROM images")}
        return sorted(prefixes - known)

    def health(self) -> dict[str, list[str]]:
        """What is not in a clean state: uploads in progress (or abandoned), deletes that
        did not finish, and orphan prefixes (objects without a row).

        Example
        -------
        >>> _demo_catalogue().health()
        {'abandoned uploads': [], 'uploads in progress': [], 'unfinished deletes': [], 'orphans': []}
        """
        uploading = self._all("SELECT name, owner FROM images WHERE state = 'uploading'")
        return {
            "abandoned uploads": [n for n, o in uploading if _owner_is_dead(o)],
            "uploads in progress": [n for n, o in uploading if not _owner_is_dead(o)],
            "unfinished deletes": [r[0] for r in self._all(
                "SELECT name FROM images WHERE state = 'deleting'")],
            "orphans": self.orphans(),
        }

    def cleanup(self, *, orphans: bool = True) -> dict[str, list[str]]:
        """Remove what crashes left: abandoned uploads (their process is gone), unfinished
        deletes and (``orphans=True``) objects no row points to. Returns what was removed.

        Uploads of running clients are never touched.
        """
        report = self.health()
        removed: dict[str, list[str]] = {k: [] for k in report}
        for key, states in (("abandoned uploads", ("uploading",)),
                            ("unfinished deletes", ("deleting",))):
            for name in report[key]:
                image_id, location = self._one(
                    "SELECT id, location FROM images WHERE name = ? AND state = ?",
                    (name, states[0]))
                self._delete_objects(location)
                with self._write() as con:
                    con.execute("DELETE FROM images WHERE id = ?", (image_id,))
                removed[key].append(name)
        if orphans:
            for prefix in self.orphans():
                self._delete_objects(prefix)
                removed["orphans"].append(prefix)
        return removed

    def _check_on_open(self) -> None:
        try:
            report = self.health()
        except Exception as err:  # the store may be down: say so, do not fail to open
            warnings.warn(CatalogueWarning(
                f"Could not check the bucket on opening ({type(err).__name__}); "
                "cat.health() checks again."), stacklevel=3)
            return
        if report["abandoned uploads"]:
            cleaned = self.cleanup(orphans=False)["abandoned uploads"]
            report["abandoned uploads"] = []
            report["cleaned"] = cleaned
        self.last_check = report
        problems = {k: v for k, v in report.items() if v and k != "cleaned"}
        if report.get("cleaned") or problems:
            parts = [f"{k}: {len(v)} ({', '.join(map(str, v[:3]))}{', ...' if len(v) > 3 else ''})"
                     for k, v in report.items() if v]
            warnings.warn(CatalogueWarning(
                f"Catalogue {self.database.name}: " + "; ".join(parts) +
                (". cat.cleanup() removes orphans and unfinished deletes." if problems
                 else ". Removed the uploads of clients that are gone.")), stacklevel=3)

    # -- the bucket is the truth -----------------------------------------------------
    @classmethod
    def rebuild(cls, database: str | Path, object_store: StoreFactory,
                **kwargs: Any) -> Catalogue:
        """A new catalogue whose rows are recreated from the bucket alone.

        Every ``images/<id>/image.ome.zarr/zarr.json`` is read: the OME metadata gives
        the name, axes, units, voxel sizes, channel names and levels; the array gives
        shape and dtype; the ``catalogue`` block gives metadata, datasets, ROIs, tables,
        labels and provenance. Prefixes without a complete ``zarr.json`` (interrupted
        uploads) are left alone and reported by :meth:`orphans`.
        """
        if Path(database).exists():
            raise FileExistsError(f"{database} exists; rebuild() writes a new database: "
                                  "pass a new path (or remove the old file first).")
        cat = cls(database, object_store, check=False, **kwargs)
        roots = [k for k in cat.keys(f"{ROOT}/")
                 if k.count("/") == 3 and k.endswith(f"/{ZARR_NAME}/zarr.json")]
        found = []
        for key in roots:
            attrs = cat._get_json(key).get("attributes", {})
            if "catalogue" in attrs and "ome" in attrs:
                found.append((attrs["catalogue"]["created_at"], key, attrs))
        for _, key, attrs in sorted(found):
            cat._restore(key.rsplit("/", 2)[0], attrs)
        return cat

    def _restore(self, location: str, attrs: Mapping[str, Any]) -> None:
        import zarr

        block, ome = attrs["catalogue"], attrs["ome"]
        ms = ome["multiscales"][0]
        dims = tuple(a["name"] for a in ms["axes"])
        units = {a["name"]: a.get("unit") for a in ms["axes"]}
        scale0 = next(t["scale"] for t in ms["datasets"][0]["coordinateTransformations"]
                      if t["type"] == "scale")
        arr = zarr.open_array(self.zarr_store(f"{location}/{ZARR_NAME}"),
                              path=ms["datasets"][0]["path"], mode="r", zarr_format=3)
        size = dict(zip(dims, arr.shape))
        scale = dict(zip(dims, scale0))
        space_units = {units[d] for d in dims if AXIS_TYPES[d] == "space"}
        row = {
            "name": block["name"], "state": "ready", "dims": "".join(dims),
            **{f"size_{d}": size.get(d) for d in CANONICAL_DIMS},
            "dtype": arr.dtype.name, "nbytes": arr.nbytes,
            **{f"scale_{d}": (scale[d] if d in dims else None) for d in ("t", "z", "y", "x")},
            "unit": space_units.pop() if len(space_units) == 1 else None,
            "time_unit": units.get("t"), "levels": len(ms["datasets"]),
            "created_at": block["created_at"], "owner": _owner(), "location": location,
            "url": self.url(f"{location}/{ZARR_NAME}"),
        }
        channels = [c.get("label", f"channel {i}")
                    for i, c in enumerate(ome.get("omero", {}).get("channels", []))]
        with self._write() as con:
            image_id = con.execute(
                f"INSERT INTO images ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                tuple(row.values())).lastrowid
            con.executemany("INSERT INTO metadata (image_id, key, value) VALUES (?, ?, ?)",
                            [(image_id, k, v) for k, v in block["metadata"].items()])
            con.executemany("INSERT INTO channels (image_id, idx, name) VALUES (?, ?, ?)",
                            [(image_id, i, c) for i, c in enumerate(channels)])
            for d in block["datasets"]:
                self._link_dataset(con, d["name"], d["description"], image_id)
                con.execute("UPDATE datasets SET description = ? WHERE name = ?",
                            (d["description"], d["name"]))
            con.executemany("INSERT INTO provenance (image_id, source_location, step) "
                            "VALUES (?, ?, ?)",
                            [(image_id, p["location"], p["step"]) for p in block["derived_from"]])
            con.executemany("INSERT INTO labels (image_id, name, n_labels) VALUES (?, ?, ?)",
                            [(image_id, lab["name"], lab["n_labels"]) for lab in block["labels"]])
            for roi in block["rois"]:
                self._insert_roi(con, image_id, roi)
            for t in block["tables"]:
                self._insert_table(con, image_id, t["name"], f"{location}/{t['key']}", None,
                                   t["roi"], n_rows=t["n_rows"], columns=t["columns"])

    def snapshot(self) -> dict[str, pd.DataFrame]:
        """Every ready row of every table, keyed by names rather than ids (which a
        rebuilt database may number differently): for comparing two catalogues.
        """
        queries = {
            "images": f"SELECT {_IMAGE_COLUMNS.removeprefix('id, ')} FROM images "
                      "WHERE state = 'ready' ORDER BY name",
            "metadata": "SELECT i.name, m.key, m.value FROM metadata m JOIN images i ON "
                        "i.id = m.image_id WHERE i.state = 'ready' ORDER BY 1, 2",
            "channels": "SELECT i.name, c.idx, c.name FROM channels c JOIN images i ON "
                        "i.id = c.image_id WHERE i.state = 'ready' ORDER BY 1, 2",
            "datasets": "SELECT d.name, d.description, i.name FROM datasets d JOIN "
                        "dataset_images di ON di.dataset_id = d.id JOIN images i ON "
                        "i.id = di.image_id WHERE i.state = 'ready' ORDER BY 1, 3",
            "rois": "SELECT i.name, r.name, r.kind, r.t, r.c, r.z, r.points, r.mask, "
                    "r.mask_value FROM rois r JOIN images i ON i.id = r.image_id "
                    "WHERE i.state = 'ready' ORDER BY 1, 2",
            "tables": "SELECT i.name, t.name, r.name, t.key, t.n_rows, t.columns FROM "
                      "tables t JOIN images i ON i.id = t.image_id LEFT JOIN rois r ON "
                      "r.id = t.roi_id WHERE i.state = 'ready' ORDER BY 1, 2",
            "labels": "SELECT i.name, l.name, l.n_labels FROM labels l JOIN images i ON "
                      "i.id = l.image_id WHERE i.state = 'ready' ORDER BY 1, 2",
            "provenance": "SELECT i.name, p.source_location, p.step FROM provenance p JOIN "
                          "images i ON i.id = p.image_id WHERE i.state = 'ready' "
                          "ORDER BY 1, 2",
        }
        return {k: self.query(q) for k, q in queries.items()}


def _demo_catalogue() -> Catalogue:
    """A throw-away catalogue (temporary folder, local object store) with one image,
    ``"cells"``: 2 x 8 x 8 uint8 with ``{"stain": "DAPI"}``. For the examples.
    """
    import tempfile

    import xarray as xr
    from obstore.store import LocalStore

    tmp = Path(tempfile.mkdtemp(prefix="catalogue-demo-"))
    cat = Catalogue(tmp / "demo.sqlite",
                    lambda prefix: LocalStore(tmp / "bucket" / prefix, mkdir=True))
    cat.upload(xr.DataArray(np.arange(128, dtype="uint8").reshape(2, 8, 8),
                            dims=("z", "y", "x")),
               name="cells", metadata={"stain": "DAPI"}, chunks=(1, 8, 8))
    return cat
