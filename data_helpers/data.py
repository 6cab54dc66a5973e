"""Sample data: hash-verified downloads with an offline mirror.

Every file is fetched with :mod:`pooch` from a pinned public URL and checked
against its SHA-256 before it is used. A cached file whose hash does not match
(corrupted, truncated, edited) is fetched again, never used.

Offline, set the environment variable named by :data:`MIRROR_ENV` to a
directory holding byte-identical copies (laid out like the download URLs);
files are then copied from there and verified against the same hashes.

Reads are verified too: :func:`open_heart` and :func:`load_heart` read through
a :class:`VerifiedStore`, which checks every file against its SHA-256 each time
zarr reads it, so a chunk deleted or corrupted after opening raises
:class:`DataCorruptedError` instead of reading back as zeros or wrong values.

Example
-------
>>> from data_helpers.data import load_heart
>>> heart = load_heart("xarray")
>>> heart.dims, heart.attrs["units"]
(('z', 'y', 'x'), 'µm')
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Literal

import numpy as np
import pooch
from zarr.abc.store import (
    ByteRequest,
    OffsetByteRequest,
    RangeByteRequest,
    Store,
    SuffixByteRequest,
)
from zarr.storage import LocalStore, WrapperStore

if TYPE_CHECKING:
    import xarray as xr
    import zarr
    from zarr.core.buffer import Buffer, BufferPrototype

MIRROR_ENV = "ZARR_BOOK_DATA_MIRROR"
"""Environment variable naming an offline mirror directory of the sample data."""

CACHE_ENV = "ZARR_BOOK_CACHE"
"""Environment variable naming the download cache (default: the OS cache dir)."""


class DataUnavailableError(RuntimeError):
    """A sample file could be neither downloaded nor taken from a mirror."""


class CacheError(DataUnavailableError):
    """A problem on this computer (disk full, a cache folder that cannot be written,
    a folder where a file should be), not with the network or the mirror.

    ``errno`` is the operating system's error number (e.g. ``errno.ENOSPC``).
    """

    def __init__(self, errno_: int | None, message: str) -> None:
        super().__init__(message)
        self.errno = errno_


class DataCorruptedError(DataUnavailableError):
    """A verified file changed or disappeared after it was fetched."""


STALE_TEMP_SECONDS = 600
"""Temporary files of an interrupted copy or download older than this are removed."""


@dataclass(frozen=True)
class Dataset:
    """A public dataset: where it lives, what it is, and the hash of every file."""

    name: str
    base_url: str
    root: str
    files: dict[str, str] = field(repr=False)
    description: str = ""
    license: str = ""
    credit: str = ""


_HEART_COMMIT = "8eea02c3bab54210af8be4132910773beff6fa03"

HEART = Dataset(
    name="hoa_heart",
    base_url=(
        "https://raw.githubusercontent.com/ome-zarr-models/ome-zarr-book/"
        f"{_HEART_COMMIT}/book/data/"
    ),
    root="hoa_heart.zarr",
    files={
        ".zarray": "6e53b6de6ad9d739c489dc18d27b124b9ebc809fe18ff65d58136227a234f6a1",
        "0.0.0": "1ae8ffe6041a39680dfd685e40f590e8de510dc34c378e16b600ddfd6d504945",
        "0.0.1": "dd3bd89017863c2197d65c1a8ee3afdb9350dd4dfd8d35038b675dfac8f505f1",
        "0.0.2": "e83fd3090a03dcc3f24e60527789dc6c0d8bbc33a747e109353081aa151dc857",
        "0.1.0": "afcc2708547b20a1a574d260b2ca24a854a9bc85fae23337eb54b80ddfb1e9ac",
        "0.1.1": "6482a24b48dc43d967ef6255ad390931c631b9455480f8e50fd61f097f37dc72",
        "0.1.2": "b66d241c39c0509f7e681fc15fe93c053e9f81af717d04a2c5226574722e8778",
        "1.0.0": "6fda0ffbf58e84f2b28c78c7c5cae3e916bd9aec13411cfe2dcd36aa563e4ff6",
        "1.0.1": "28680465bd407f591f4d2c9b1b2bc904b9ab05542409eb700495cfffcfddbbbe",
        "1.0.2": "45b184354509c1de0b9c51091b1623d02dabb74a93dd2a0877c6ba50b50efc4b",
        "1.1.0": "50a253223077eca97e418bc5beb62c949fc296930eed01e6c5ce91b0bfb53629",
        "1.1.1": "4606b28fcba611164eac6b4da687faf4ed48d09178688738212bed34efb8428b",
        "1.1.2": "3ffda08e913e2f7501f3e1a0f13b3d14456e81567f525a6fae859a4582042b72",
    },
    description=(
        "X-ray phase-contrast CT of a human heart (Human Organ Atlas, HiP-CT, "
        "ESRF BM18, sample LADAF-2020-27), pyramid level 6 of a 19.89 µm scan, "
        "rescaled to uint8; 120 x 120 x 139 voxels, Zarr format 2."
    ),
    license="CC-BY 4.0",
    credit=(
        "Human Organ Atlas / HiP-CT project; copy prepared by the HEFTIE "
        "project's OME-Zarr book"
    ),
)

DATASETS: dict[str, Dataset] = {HEART.name: HEART}
"""The datasets :func:`fetch` knows, by name."""

HEART_FULL_RES_UM = 19.89
"""Voxel size of the full-resolution heart scan, in micrometres."""

HEART_LEVEL = 6
"""Pyramid level of our copy; each level halves the resolution of the one before."""

HEART_VOXEL_SIZE_UM = HEART_FULL_RES_UM * 2**HEART_LEVEL
"""Isotropic voxel size of our copy: 19.89 µm x 2**6 = 1272.96 µm (about 1.27 mm)."""


def _cache_dir() -> Path:
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path(pooch.os_cache("zarr-bioimaging-book"))


_LOCAL_ERRNOS = {
    errno.ENOSPC: "the disk is full: free some space, or set {cache_env} to a folder on "
    "another disk",
    errno.EDQUOT: "the disk quota is exceeded: free some space, or set {cache_env} to a "
    "folder on another disk",
    errno.EACCES: "this folder cannot be written: set {cache_env} to a writable folder",
    errno.EPERM: "this folder cannot be written: set {cache_env} to a writable folder",
    errno.EROFS: "the file system is read-only: set {cache_env} to a writable folder",
    errno.ENOTDIR: "a file stands where a folder should be: remove it, or set {cache_env} "
    "to another folder",
    errno.EEXIST: "a file stands where a folder should be: remove it, or set {cache_env} "
    "to another folder",
    errno.EISDIR: "a folder stands where a file should be: delete that folder and run "
    "again",
    errno.ENAMETOOLONG: "the path is too long: set {cache_env} to a shorter folder",
    errno.ELOOP: "the path has a symbolic-link loop: set {cache_env} to another folder",
}


def _local_error(err: BaseException) -> OSError | None:
    """The OSError behind ``err`` when it is a problem on this computer."""
    seen: set[int] = set()
    e: BaseException | None = err
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _LOCAL_ERRNOS:
            return e
        e = e.__cause__ or e.__context__
    return None


def _remove_stale_temps(folder: Path, known: set[str]) -> int:
    """Delete the temporary files an interrupted copy or download left in ``folder``
    (pooch names them ``tmpXXXXXXXX``); fresh ones may belong to a running fetch."""
    removed = 0
    try:
        entries = list(folder.iterdir())
    except OSError:
        return 0
    now = time.time()
    for entry in entries:
        if entry.name in known or not re.fullmatch(r"tmp[a-z0-9_]{6,12}", entry.name):
            continue
        try:
            if entry.is_file() and not entry.is_symlink():
                if now - entry.stat().st_mtime > STALE_TEMP_SECONDS:
                    entry.unlink()
                    removed += 1
        except OSError:
            continue
    return removed


def _mirror_dir() -> Path | None:
    env = os.environ.get(MIRROR_ENV)
    if not env:
        return None
    mirror = Path(env).expanduser()
    if not mirror.is_dir():
        raise DataUnavailableError(
            f"{MIRROR_ENV}={env!r} is not a directory. Point it at a folder that "
            "holds the sample data (for example ../shared/data), or unset it to download."
        )
    return mirror


@contextmanager
def _quiet_pooch() -> Iterator[None]:
    logger = pooch.get_logger()
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


def _copy_from(mirror: Path, relpath: str):
    """A pooch downloader that copies ``relpath`` out of a mirror directory."""

    def download(url: str, output_file, pooch_obj, check_only: bool = False) -> bool | None:
        source = mirror / relpath
        if check_only:
            return source.is_file()
        if not source.is_file():
            raise DataUnavailableError(
                f"{source} is missing from the mirror named by {MIRROR_ENV}. "
                "Copy the dataset there, or unset the variable to download it."
            )
        if isinstance(output_file, (str, os.PathLike)):
            shutil.copyfile(source, output_file)
        else:
            with open(source, "rb") as fh:
                shutil.copyfileobj(fh, output_file)
        return None

    return download


def fetch(name: str = "hoa_heart") -> Path:
    """Make sure every file of dataset ``name`` is cached and verified; return its path.

    Files come from the mirror named by ``$ZARR_BOOK_DATA_MIRROR`` when it is
    set, otherwise from the pinned public URL. Either way each file must match
    its SHA-256; a cached file that does not is replaced.

    Example
    -------
    >>> path = fetch("hoa_heart")
    >>> sorted(p.name for p in path.iterdir())[:2]
    ['.zarray', '0.0.0']
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    ds = DATASETS[name]
    mirror = _mirror_dir()
    cache = _cache_dir()
    registry = {f"{ds.root}/{f}": sha for f, sha in ds.files.items()}
    store = pooch.create(path=cache, base_url=ds.base_url, registry=registry)
    _remove_stale_temps(Path(store.abspath) / ds.root, set(ds.files))
    with _quiet_pooch():
        for relpath in registry:
            target = Path(store.abspath) / relpath
            try:
                if target.is_dir():  # pooch would report it as a failed download
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
                if mirror is not None:
                    store.fetch(relpath, downloader=_copy_from(mirror, relpath))
                else:
                    store.fetch(relpath, downloader=pooch.HTTPDownloader(timeout=30, progressbar=False))
            except DataUnavailableError:
                raise
            except ValueError as err:  # pooch: hash mismatch of a fresh copy
                where = f"the mirror {mirror}" if mirror else ds.base_url
                raise DataUnavailableError(
                    f"{relpath} from {where} does not match its SHA-256, so it was not used. "
                    "Replace it with a byte-identical copy of the public file."
                ) from err
            except Exception as err:  # noqa: BLE001 - sorted into local and remote below
                local = _local_error(err)
                if local is not None:
                    where = local.filename or target
                    in_mirror = mirror is not None and str(where).startswith(str(mirror))
                    hint = _LOCAL_ERRNOS[local.errno].format(
                        cache_env=MIRROR_ENV if in_mirror else CACHE_ENV
                    )
                    raise CacheError(
                        local.errno,
                        f"Could not {'read' if in_mirror else 'write'} {relpath} "
                        f"{'from the mirror' if in_mirror else 'into the cache'} "
                        f"({where}: {local.strerror}). This is a problem on this computer, "
                        f"not the network: {hint}.",
                    ) from err
                if mirror is not None:
                    raise DataUnavailableError(
                        f"Could not copy {relpath} from the mirror {mirror} "
                        f"({type(err).__name__}: {err})."
                    ) from err
                raise DataUnavailableError(
                    f"Could not download {relpath} from {ds.base_url} ({type(err).__name__}). "
                    f"Without internet, set {MIRROR_ENV} to a directory holding the "
                    "data (for example ../shared/data)."
                ) from err
    return Path(store.abspath) / ds.root


def _slice(data: bytes, byte_range: ByteRequest | None) -> bytes:
    if byte_range is None:
        return data
    if isinstance(byte_range, RangeByteRequest):
        return data[byte_range.start : byte_range.end]
    if isinstance(byte_range, OffsetByteRequest):
        return data[byte_range.offset :]
    if isinstance(byte_range, SuffixByteRequest):
        return data[-byte_range.suffix :] if byte_range.suffix else b""
    raise TypeError(f"Unknown byte range {byte_range!r}")  # pragma: no cover


class VerifiedStore(WrapperStore[Store]):
    """A read-only store that checks every file it reads against a known SHA-256.

    Keys in ``hashes`` are read whole, hashed and compared each time; a changed file
    raises :class:`DataCorruptedError`, and so does a missing one (zarr would
    otherwise read a missing chunk back as fill values). Other keys (zarr's probes
    for metadata that does not exist) pass through.

    Example
    -------
    >>> import zarr
    >>> heart = open_heart()
    >>> type(heart.store).__name__, int(heart[60, 60, 60]) >= 0
    ('VerifiedStore', True)
    """

    def __init__(self, store: Store, hashes: dict[str, str]) -> None:
        if not isinstance(store, Store):
            raise TypeError(f"VerifiedStore wraps a zarr store; got {type(store).__name__}.")
        super().__init__(store)
        self._hashes = dict(hashes)

    def _with_store(self, store: Store) -> "VerifiedStore":
        return type(self)(store, self._hashes)

    def __repr__(self) -> str:
        return f"VerifiedStore({self._store!r})"

    def __eq__(self, value: object) -> bool:
        return isinstance(value, VerifiedStore) and self._store == value._store

    def _check(self, key: str, buf: "Buffer | None") -> None:
        expected = self._hashes.get(key)
        if expected is None:
            return
        if buf is None:
            raise DataCorruptedError(
                f"{key} is missing from {self._store} although it was verified when the "
                "array was opened. Open it again (load_heart() fetches and verifies every "
                "file anew)."
            )
        if hashlib.sha256(buf.to_bytes()).hexdigest() != expected:
            raise DataCorruptedError(
                f"{key} in {self._store} does not match its SHA-256 any more: the file "
                "changed after it was verified, so its values would be wrong. Open the "
                "array again (load_heart() replaces a corrupted file)."
            )

    async def get(
        self, key: str, prototype: "BufferPrototype", byte_range: ByteRequest | None = None
    ) -> "Buffer | None":
        if key not in self._hashes:
            return await self._store.get(key, prototype, byte_range)
        buf = await self._store.get(key, prototype, None)
        self._check(key, buf)
        if byte_range is None:
            return buf
        return prototype.buffer.from_bytes(_slice(buf.to_bytes(), byte_range))

    def get_sync(self, key: str, *, prototype: Any = None, byte_range: ByteRequest | None = None):
        if key not in self._hashes:
            return super().get_sync(key, prototype=prototype, byte_range=byte_range)
        buf = super().get_sync(key, prototype=prototype, byte_range=None)
        self._check(key, buf)
        if byte_range is None:
            return buf
        return type(buf).from_bytes(_slice(buf.to_bytes(), byte_range))

    async def get_partial_values(self, prototype, key_ranges):  # type: ignore[override]
        return [await self.get(key, prototype, rng) for key, rng in key_ranges]

    def get_ranges(self, key, byte_ranges, *, prototype, **kwargs):  # type: ignore[override]
        return Store.get_ranges(self, key, byte_ranges, prototype=prototype, **kwargs)

    async def _get_many(self, requests):  # type: ignore[override]
        for key, prototype, byte_range in requests:
            yield key, await self.get(key, prototype, byte_range)


def open_heart() -> "zarr.Array":
    """The heart as a read-only zarr array (Zarr format 2, as published).

    Every file is verified when the array is opened (:func:`fetch`) and again each
    time zarr reads it (:class:`VerifiedStore`).

    Example
    -------
    >>> arr = open_heart()
    >>> arr.metadata.zarr_format, arr.dtype
    (2, dtype('uint8'))
    """
    import zarr

    store = VerifiedStore(LocalStore(fetch("hoa_heart"), read_only=True), HEART.files)
    return zarr.open_array(store=store, mode="r", zarr_format=2)


def load_heart(form: Literal["zarr", "numpy", "xarray"] = "numpy"):
    """The HiP-CT heart as a zarr array, a numpy array, or an xarray DataArray.

    The DataArray has dims ``("z", "y", "x")`` and coordinates in micrometres
    at the voxel size :data:`HEART_VOXEL_SIZE_UM` (19.89 µm x 2**6): the copy
    is level 6 of a pyramid whose every level halves the resolution.

    Example
    -------
    >>> heart = load_heart("xarray")
    >>> float(heart.x[1] - heart.x[0])
    1272.96
    """
    if not isinstance(form, str) or form not in ("zarr", "numpy", "xarray"):
        raise ValueError(f"Unknown form {form!r}; use 'zarr', 'numpy' or 'xarray'.")
    if form == "zarr":
        return open_heart()
    if form == "numpy":
        return open_heart()[...]
    if form == "xarray":
        return _heart_dataarray(open_heart()[...])
    raise ValueError(f"Unknown form {form!r}; use 'zarr', 'numpy' or 'xarray'.")


def _heart_dataarray(data: np.ndarray) -> "xr.DataArray":
    import xarray as xr

    dims = ("z", "y", "x")
    coords = {d: np.arange(n) * HEART_VOXEL_SIZE_UM for d, n in zip(dims, data.shape)}
    return xr.DataArray(
        data,
        dims=dims,
        coords=coords,
        name="hoa_heart",
        attrs={
            "units": "µm",
            "voxel_size_um": HEART_VOXEL_SIZE_UM,
            "description": HEART.description,
            "license": HEART.license,
            "credit": HEART.credit,
        },
    )
