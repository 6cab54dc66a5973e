"""An image catalogue: a SQLite database for what we know about images, an object store
for their pixels (OME-Zarr 0.5).

This is the plumbing behind the chapter "An image catalogue". The chapter shows the
schema (:data:`SCHEMA`) and one upload done by hand; :class:`Catalogue` packages the
same steps with the care a real tool needs:

- every SQL statement is parameterised (``?`` placeholders, never string formatting);
- an upload either completes (a row *and* its objects) or leaves nothing behind: the
  row is inserted inside a transaction that is committed only after the pixels are
  written, and on any error the transaction is rolled back and the objects written so
  far are deleted;
- a record is a plain local object: changing it changes nothing in the database until
  :meth:`ImageRecord.save`;
- deleting an image removes its row (and, by ``ON DELETE CASCADE``, its metadata rows)
  and every object under its prefix.

Objects live under ``images/<random id>.ome.zarr/`` in the bucket, so renaming an image
never moves data. The object store is any obstore store; :class:`Catalogue` asks a
*factory* (``prefix -> store``) for a store rooted at each image's prefix, e.g.
``S3Server.obstore_store`` from :mod:`data_helpers.servers`.

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
((1, 1, 1, 4, 6), ('t', 'c', 'z', 'y', 'x'))
>>> [r.name for r in cat.find(metadata={"stain": "none"})]
['blank']
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
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
    "SCHEMA",
    "Catalogue",
    "ImageRecord",
    "to_canonical",
]

#: The OME-NGFF order of the five dimensions: time, channel, then space slowest to fastest.
CANONICAL_DIMS: tuple[str, ...] = ("t", "c", "z", "y", "x")

#: OME-NGFF axis type of each dimension.
AXIS_TYPES: dict[str, str] = {
    "t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"
}

#: The catalogue's tables. ``images`` has one row per image; ``metadata`` holds
#: free-form key/value pairs, one row each, and disappears with its image.
SCHEMA = """
CREATE TABLE IF NOT EXISTS images (
    id         INTEGER PRIMARY KEY,
    name       TEXT    NOT NULL UNIQUE,
    dims       TEXT    NOT NULL,          -- 'tczyx': the order of the stored axes
    size_t     INTEGER NOT NULL,
    size_c     INTEGER NOT NULL,
    size_z     INTEGER NOT NULL,
    size_y     INTEGER NOT NULL,
    size_x     INTEGER NOT NULL,
    dtype      TEXT    NOT NULL,          -- numpy name, e.g. 'uint16'
    nbytes     INTEGER NOT NULL,          -- uncompressed size
    scale_t    REAL    NOT NULL,          -- seconds per time point
    scale_z    REAL    NOT NULL,          -- physical size of a voxel ...
    scale_y    REAL    NOT NULL,
    scale_x    REAL    NOT NULL,
    unit       TEXT    NOT NULL,          -- ... in this unit, e.g. 'micrometer'
    created_at TEXT    NOT NULL,          -- ISO 8601, UTC
    location   TEXT    NOT NULL UNIQUE,   -- key prefix in the bucket
    url        TEXT    NOT NULL           -- e.g. s3://bucket/images/....ome.zarr
);
CREATE TABLE IF NOT EXISTS metadata (
    image_id INTEGER NOT NULL REFERENCES images(id) ON DELETE CASCADE,
    key      TEXT    NOT NULL,
    value    TEXT    NOT NULL,
    PRIMARY KEY (image_id, key)
);
CREATE INDEX IF NOT EXISTS metadata_by_key_value ON metadata(key, value);
"""

# Columns of `images` in the order of ImageRecord's constructor arguments.
_COLUMNS = (
    "id, name, dims, size_t, size_c, size_z, size_y, size_x, dtype, nbytes, "
    "scale_t, scale_z, scale_y, scale_x, unit, created_at, location, url"
)

ROOT = "images"

StoreFactory = Callable[[str], Any]


# --------------------------------------------------------------------------- input


def to_canonical(data: Any) -> xr.DataArray:
    """Return ``data`` with exactly the dims ``t, c, z, y, x``, in that order.

    Dims that are missing are added with length 1; the others are transposed into
    OME-NGFF order. Coordinates are kept. Raises ``TypeError`` for anything that is not
    an :class:`xarray.DataArray` and ``ValueError`` for dims outside ``tczyx``.

    Example
    -------
    >>> import numpy as np, xarray as xr
    >>> a = xr.DataArray(np.zeros((3, 4, 2)), dims=("y", "x", "c"))
    >>> to_canonical(a).dims, to_canonical(a).shape
    (('t', 'c', 'z', 'y', 'x'), (1, 2, 1, 3, 4))
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
    if data.ndim == 0 or 0 in data.shape:
        raise ValueError(f"Cannot store an empty image (shape {data.shape}).")
    if not (np.issubdtype(data.dtype, np.number) or data.dtype == bool):
        raise ValueError(
            f"Pixels must be numbers; got dtype {data.dtype}. Convert with "
            "data.astype('uint16') (or another numeric dtype)."
        )
    missing = [d for d in CANONICAL_DIMS if d not in dims]
    out = data.expand_dims(missing) if missing else data
    return out.transpose(*CANONICAL_DIMS)


def _spacing(data: xr.DataArray, dim: str, given: Mapping[str, float]) -> float:
    """Physical step along ``dim``: from ``given``, else from evenly spaced coords, else 1."""
    if dim in given:
        value = float(given[dim])
        if not value > 0:
            raise ValueError(f"Physical size along {dim!r} must be > 0; got {value}.")
        return value
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
    return 1.0


def _check_metadata(metadata: Mapping[str, Any] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for key, value in (metadata or {}).items():
        if not isinstance(key, str) or not key:
            raise ValueError(f"Metadata keys must be non-empty strings; got {key!r}.")
        if not isinstance(value, (str, int, float, bool)):
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


def _default_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """One time point and one channel per chunk; z, y, x up to about 1 MiB."""
    t, c, z, y, x = shape
    cy, cx = min(y, 256), min(x, 256)
    cz = max(1, min(z, (1 << 20) // (cy * cx * itemsize)))
    return (1, 1, cz, cy, cx)


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
        while self._state["in_flight"] and time.monotonic() < deadline:
            time.sleep(0.01)


# --------------------------------------------------------------------------- record


@dataclass
class ImageRecord:
    """One image of a :class:`Catalogue`: a *local* copy of its row and metadata.

    Changing ``name`` or ``metadata`` changes nothing in the database until
    :meth:`save`. The pixels are read lazily: :attr:`data` is a dask array that fetches
    chunks from the object store only when computed.

    Example
    -------
    >>> cat = _demo_catalogue()
    >>> rec = cat.get("cells")
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
    unit: str
    created_at: datetime
    location: str
    url: str
    metadata: dict[str, str] = field(default_factory=dict)
    catalogue: Catalogue | None = field(default=None, repr=False, compare=False)

    def _cat(self) -> Catalogue:
        if self.catalogue is None:
            raise RuntimeError("This record is not attached to a Catalogue.")
        return self.catalogue

    def zarr_store(self, read_only: bool = True) -> zarr.abc.store.Store:
        """A zarr store rooted at this image's OME-Zarr group in the object store."""
        return self._cat().zarr_store(self.location, read_only=read_only)

    def open_data(self, store: zarr.abc.store.Store | None = None) -> dask.array.Array:
        """The full-resolution pixels as a lazy dask array, one dask chunk per zarr chunk.

        ``store`` replaces the image's own store, e.g. a
        :class:`~data_helpers.measure.CountingStore` wrapped around
        :meth:`zarr_store` to count what a read transfers.
        """
        import dask.array as da
        import zarr

        arr = zarr.open_array(store or self.zarr_store(), path="0", mode="r")
        return da.from_zarr(arr)

    @property
    def data(self) -> dask.array.Array:
        """The pixels, lazily (see :meth:`open_data`)."""
        return self.open_data()

    def to_xarray(self) -> xr.DataArray:
        """The pixels as a lazy DataArray with dims ``tczyx`` and physical coordinates."""
        import xarray as xr

        coords = {
            d: np.arange(n) * self.scale[d]
            for d, n in zip(self.dims, self.shape) if d in self.scale
        }
        return xr.DataArray(self.data, dims=self.dims, coords=coords, name=self.name,
                            attrs={"unit": self.unit, **self.metadata})

    def save(self) -> ImageRecord:
        """Write this record's ``name`` and ``metadata`` to the database (one transaction)."""
        return self._cat().update(self)

    def delete(self) -> None:
        """Delete this image: its row, its metadata rows and its objects."""
        self._cat().delete(self)


# --------------------------------------------------------------------------- catalogue


class Catalogue:
    """A catalogue of images: rows in a SQLite file, pixels as OME-Zarr 0.5 in an object store.

    Parameters
    ----------
    database:
        Path of the SQLite file (created with :data:`SCHEMA` if needed).
    object_store:
        A factory ``prefix -> obstore store`` giving a store rooted at ``prefix`` of
        the bucket, e.g. ``S3Server.obstore_store`` or
        ``lambda p: obstore.store.LocalStore(root / p, mkdir=True)``.
        ``object_store("")`` is the whole bucket.

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

    def __init__(self, database: str | Path, object_store: StoreFactory) -> None:
        if not callable(object_store):
            raise TypeError(
                "object_store is a factory prefix -> obstore store, e.g. "
                "s3.obstore_store or lambda p: LocalStore(root / p, mkdir=True); "
                f"got {type(object_store).__name__}."
            )
        self.database = Path(database)
        self.object_store = object_store
        # Autocommit mode: nothing is held open between calls, and every write below
        # runs in an explicit BEGIN ... COMMIT (see _transaction).
        self.connection = sqlite3.connect(self.database, autocommit=True)
        self.connection.execute("PRAGMA foreign_keys = ON")
        self.connection.executescript(SCHEMA)

    # -- plumbing ----------------------------------------------------------------
    def close(self) -> None:
        """Close the database connection."""
        self.connection.close()

    def __enter__(self) -> Catalogue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __len__(self) -> int:
        return self.connection.execute("SELECT count(*) FROM images").fetchone()[0]

    def __repr__(self) -> str:
        return f"Catalogue({str(self.database)!r}, {len(self)} images)"

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE (take the write lock now), COMMIT on success, else ROLLBACK."""
        con = self.connection
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

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

    # -- writing -----------------------------------------------------------------
    def upload(
        self,
        data: xr.DataArray,
        *,
        name: str,
        metadata: Mapping[str, Any] | None = None,
        scale: Mapping[str, float] | None = None,
        unit: str = "micrometer",
        chunks: tuple[int, ...] | None = None,
    ) -> ImageRecord:
        """Store ``data`` as OME-Zarr 0.5 and register it; return its :class:`ImageRecord`.

        ``data`` is an :class:`xarray.DataArray` whose dims are a subset of
        ``t, c, z, y, x`` (missing ones are added with length 1). Voxel sizes come from
        ``scale`` (e.g. ``{"z": 0.5, "y": 0.1, "x": 0.1}``), else from evenly spaced
        coordinates, else 1. ``chunks`` is a 5-tuple in ``tczyx`` order.

        Either everything is stored (row, metadata rows, objects) or nothing is: the
        row is committed only after the pixels are written, and on failure the objects
        written so far are deleted.

        Example
        -------
        >>> import numpy as np, xarray as xr
        >>> cat = _demo_catalogue()
        >>> vol = xr.DataArray(np.ones((3, 4, 5), "uint16"), dims=("z", "y", "x"))
        >>> rec = cat.upload(vol, name="stack", scale={"z": 0.5, "y": 0.1, "x": 0.1})
        >>> rec.shape, rec.scale["z"], rec.location.startswith("images/")
        ((1, 1, 3, 4, 5), 0.5, True)
        """
        from ome_zarr_models.v05.axes import Axis
        from ome_zarr_models.v05.image import Image
        from pydantic_zarr.v3 import ArraySpec

        name = _check_name(name)
        meta = _check_metadata(metadata)
        image = to_canonical(data)
        bad = set(scale or {}) - set(CANONICAL_DIMS) - {"c"}
        if bad or "c" in (scale or {}):
            raise ValueError(
                f"scale has keys {sorted(set(scale or {}))}; give voxel sizes for the "
                "dims 't', 'z', 'y', 'x' only, e.g. scale={'z': 0.5, 'x': 0.1}."
            )
        scales = {d: _spacing(image, d, scale or {}) for d in ("t", "z", "y", "x")}
        shape = tuple(int(n) for n in image.shape)
        dtype = np.dtype(image.dtype)
        if chunks is None:
            chunks = _default_chunks(shape, dtype.itemsize)
        if len(chunks) != 5 or any(int(c) < 1 for c in chunks):
            raise ValueError(
                f"chunks must be 5 positive sizes in t, c, z, y, x order; got {chunks}."
            )
        chunks = tuple(min(int(c), n) for c, n in zip(chunks, shape))
        if self.connection.execute(
            "SELECT 1 FROM images WHERE name = ?", (name,)
        ).fetchone():
            raise ValueError(
                f"An image named {name!r} already exists and names are unique: choose "
                "another name, or delete the old image first (catalogue.delete(name))."
            )

        location = f"{ROOT}/{uuid.uuid4().hex}.ome.zarr"
        created = datetime.now(UTC).replace(microsecond=0)
        spec = ArraySpec(
            shape=shape,
            data_type=dtype.name,
            chunk_grid={"name": "regular", "configuration": {"chunk_shape": chunks}},
            chunk_key_encoding={"name": "default", "configuration": {"separator": "/"}},
            fill_value=0,
            codecs=[
                {"name": "bytes", "configuration": {"endian": "little"}},
                {"name": "zstd", "configuration": {"level": 3, "checksum": False}},
            ],
            attributes={},
            dimension_names=list(CANONICAL_DIMS),
        )
        units = {"t": "second", "z": unit, "y": unit, "x": unit}
        ome = Image.new(
            array_specs=[spec],
            paths=["0"],
            axes=[Axis(name=d, type=AXIS_TYPES[d], unit=units.get(d))
                  for d in CANONICAL_DIMS],
            scales=[[scales.get(d, 1.0) for d in CANONICAL_DIMS]],
            translations=[None],
            # No name in the OME metadata: the database owns names (they can change).
            name=None,
        )
        row = (name, "".join(CANONICAL_DIMS), *shape, dtype.name,
               int(np.prod(shape)) * dtype.itemsize,
               scales["t"], scales["z"], scales["y"], scales["x"], unit,
               created.isoformat(), location, self.url(location))
        try:
            with self._transaction() as con:
                cur = con.execute(
                    f"INSERT INTO images ({_COLUMNS.removeprefix('id, ')}) "
                    f"VALUES ({', '.join('?' * 17)})",
                    row,
                )
                image_id = cur.lastrowid
                con.executemany(
                    "INSERT INTO metadata (image_id, key, value) VALUES (?, ?, ?)",
                    [(image_id, k, v) for k, v in meta.items()],
                )
                self._write_pixels(ome, image, location)
        except sqlite3.IntegrityError as err:
            self._delete_objects(location)
            raise ValueError(
                f"Could not register {name!r}: {err}. Names are unique: choose another "
                "name, or delete the old image first."
            ) from err
        except BaseException as err:
            try:
                self._delete_objects(location)
            except Exception as cleanup:  # pragma: no cover - reported, not hidden
                err.add_note(
                    f"Cleaning up {location} failed too ({cleanup!r}); "
                    "catalogue.orphans() lists what is left."
                )
            raise
        return self.get(image_id)

    def _write_pixels(self, ome: Any, image: xr.DataArray, location: str) -> None:
        """Write the OME-Zarr group (metadata), then the pixels, then validate."""
        import dask.array as da
        import zarr
        from ome_zarr_models.v05.image import Image

        store = _WriteGuard(self.zarr_store(location, read_only=False))
        try:
            group = ome.to_zarr(store, "")
            array = group["0"]
            values = image.data
            if isinstance(values, da.Array):
                da.store(values.rechunk(array.chunks), array, lock=False)
            else:
                array[...] = np.asarray(values)
        except BaseException:
            # zarr writes chunks concurrently and does not cancel the other writes
            # when one fails: stop new writes and let running ones finish, so that
            # the clean-up that follows really deletes everything.
            store.close_and_wait()
            raise
        # Read the metadata back and validate it against the OME-Zarr 0.5 models.
        Image.from_zarr(zarr.open_group(store, mode="r"))

    def update(self, record: ImageRecord) -> ImageRecord:
        """Save ``record.name`` and ``record.metadata`` to the database; return the stored record.

        Only the name and the key/value metadata are editable: the pixels and what
        describes them (shape, dtype, voxel sizes, location) are immutable.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> rec = cat.get("cells")
        >>> rec.name = "nuclei"
        >>> cat.update(rec).name                     # same as rec.save()
        'nuclei'
        """
        stored = self.get(record.id)
        for attr in ("dims", "shape", "dtype", "nbytes", "scale", "unit", "location"):
            if getattr(record, attr) != getattr(stored, attr):
                raise ValueError(
                    f"{attr} cannot be changed: the pixels are immutable. Upload a new "
                    "image (and delete this one) instead."
                )
        name = _check_name(record.name)
        meta = _check_metadata(record.metadata)
        try:
            with self._transaction() as con:
                con.execute("UPDATE images SET name = ? WHERE id = ?", (name, record.id))
                con.execute("DELETE FROM metadata WHERE image_id = ?", (record.id,))
                con.executemany(
                    "INSERT INTO metadata (image_id, key, value) VALUES (?, ?, ?)",
                    [(record.id, k, v) for k, v in meta.items()],
                )
        except sqlite3.IntegrityError as err:
            raise ValueError(
                f"Cannot rename to {name!r}: an image with that name exists. "
                "Choose another name."
            ) from err
        return self.get(record.id)

    def delete(self, image: ImageRecord | str | int) -> int:
        """Delete an image (a record, a name or an id): its rows, then its objects.

        The row goes first, in one transaction with its metadata rows, so the catalogue
        never points at half-deleted pixels; if deleting objects then fails, the
        leftovers are reported by :meth:`orphans`. Returns how many objects were deleted.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> location = cat.get("cells").location
        >>> cat.delete("cells")                      # objects deleted
        4
        >>> len(cat), cat.keys(location + "/")
        (0, [])
        """
        record = image if isinstance(image, ImageRecord) else self.get(image)
        with self._transaction() as con:
            gone = con.execute("DELETE FROM images WHERE id = ?", (record.id,)).rowcount
        if not gone:
            raise KeyError(f"Image {record.name!r} (id {record.id}) is not in the catalogue.")
        return self._delete_objects(record.location)

    # -- reading -----------------------------------------------------------------
    def _record(self, row: tuple) -> ImageRecord:
        (id_, name, dims, st, sc, sz, sy, sx, dtype, nbytes,
         tt, tz, ty, tx, unit, created, location, url) = row
        metadata = dict(self.connection.execute(
            "SELECT key, value FROM metadata WHERE image_id = ? ORDER BY key", (id_,)
        ).fetchall())
        return ImageRecord(
            id=id_, name=name, dims=tuple(dims), shape=(st, sc, sz, sy, sx),
            dtype=dtype, nbytes=nbytes, scale={"t": tt, "z": tz, "y": ty, "x": tx},
            unit=unit, created_at=datetime.fromisoformat(created), location=location,
            url=url, metadata=metadata, catalogue=self,
        )

    def get(self, image: str | int) -> ImageRecord:
        """The record of the image with this name (a str) or id (an int).

        Example
        -------
        >>> _demo_catalogue().get("cells").shape
        (1, 1, 2, 8, 8)
        """
        column = "id" if isinstance(image, int) else "name"
        row = self.connection.execute(
            f"SELECT {_COLUMNS} FROM images WHERE {column} = ?", (image,)
        ).fetchone()
        if row is None:
            raise KeyError(
                f"No image with {column} {image!r}; cat.find() or cat.table() lists them."
            )
        return self._record(row)

    def find(
        self,
        *,
        name: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        min_nbytes: int | None = None,
        max_nbytes: int | None = None,
    ) -> list[ImageRecord]:
        """Images matching every condition given, oldest first.

        ``name`` is a SQL ``LIKE`` pattern (``%`` any text, ``_`` one character);
        ``metadata`` requires each key to have exactly that value; ``min_nbytes`` and
        ``max_nbytes`` bound the uncompressed size.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> [r.name for r in cat.find(name="cell%", metadata={"stain": "DAPI"})]
        ['cells']
        >>> cat.find(min_nbytes=10**6)
        []
        """
        where, params = [], []
        if name is not None:
            where.append("name LIKE ?")
            params.append(name)
        for key, value in _check_metadata(metadata).items():
            where.append(
                "EXISTS (SELECT 1 FROM metadata m "
                "WHERE m.image_id = images.id AND m.key = ? AND m.value = ?)"
            )
            params += [key, value]
        if min_nbytes is not None:
            where.append("nbytes >= ?")
            params.append(int(min_nbytes))
        if max_nbytes is not None:
            where.append("nbytes <= ?")
            params.append(int(max_nbytes))
        sql = f"SELECT {_COLUMNS} FROM images"
        if where:
            sql += " WHERE " + " AND ".join(where)
        rows = self.connection.execute(sql + " ORDER BY id", params).fetchall()
        return [self._record(r) for r in rows]

    def query(self, sql: str, params: tuple | Mapping[str, Any] = ()) -> pd.DataFrame:
        """Run one read-only SQL query (with ``?`` placeholders) and return a DataFrame.

        The query runs on a separate read-only connection, so it cannot change anything.

        Example
        -------
        >>> cat = _demo_catalogue()
        >>> cat.query("SELECT name, nbytes FROM images WHERE size_z > ?", (1,))
            name  nbytes
        0  cells     128
        """
        import pandas as pd

        uri = f"{self.database.resolve().as_uri()}?mode=ro"
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as ro:
            return pd.read_sql_query(sql, ro, params=params)

    def table(self) -> pd.DataFrame:
        """Every image, one row each, with its metadata as one ``key=value`` string.

        Example
        -------
        >>> _demo_catalogue().table()[["name", "shape_tczyx", "metadata"]]  # doctest: +NORMALIZE_WHITESPACE
             name shape_tczyx    metadata
        id
        1   cells   1x1x2x8x8  stain=DAPI
        """
        return self.query(
            "SELECT i.id, i.name, i.size_t || 'x' || i.size_c || 'x' || i.size_z "
            "|| 'x' || i.size_y || 'x' || i.size_x AS shape_tczyx, i.dtype, i.nbytes, "
            "i.created_at, i.location, "
            "(SELECT group_concat(m.key || '=' || m.value, '; ') FROM "
            "(SELECT * FROM metadata WHERE image_id = i.id ORDER BY key) m) AS metadata "
            "FROM images i ORDER BY i.id"
        ).set_index("id")

    def orphans(self) -> list[str]:
        """Image prefixes in the bucket that no row points to (left by a crash).

        Example
        -------
        >>> import obstore
        >>> cat = _demo_catalogue()
        >>> cat.orphans()                            # bucket and database agree
        []
        >>> _ = obstore.put(cat.object_store(""), "images/lost.ome.zarr/zarr.json", b"{}")
        >>> cat.orphans()
        ['images/lost.ome.zarr']
        """
        # List keys rather than "folders": SeaweedFS (like a file system) keeps empty
        # directories, which a delimiter listing reports as common prefixes.
        prefixes = {"/".join(k.split("/")[:2]) for k in self.keys(f"{ROOT}/")}
        known = {r[0] for r in self.connection.execute("SELECT location FROM images")}
        return sorted(prefixes - known)


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
               name="cells", metadata={"stain": "DAPI"}, chunks=(1, 1, 1, 8, 8))
    return cat
