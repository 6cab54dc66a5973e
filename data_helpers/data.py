"""Sample data: hash-verified downloads with an offline mirror.

Every file is fetched with :mod:`pooch` from a pinned public URL and checked
against its SHA-256 before it is used. A cached file whose hash does not match
(corrupted, truncated, edited) is fetched again, never used.

Offline, set the environment variable named by :data:`MIRROR_ENV` to a
directory holding byte-identical copies (laid out like the download URLs);
files are then copied from there and verified against the same hashes.

Example
-------
>>> from data_helpers.data import load_heart
>>> heart = load_heart("xarray")
>>> heart.dims, heart.attrs["units"]
(('z', 'y', 'x'), 'µm')
"""

from __future__ import annotations

import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

import numpy as np
import pooch

if TYPE_CHECKING:
    import xarray as xr
    import zarr

MIRROR_ENV = "ZARR_BOOK_DATA_MIRROR"
"""Environment variable naming an offline mirror directory of the sample data."""

CACHE_ENV = "ZARR_BOOK_CACHE"
"""Environment variable naming the download cache (default: the OS cache dir)."""


class DataUnavailableError(RuntimeError):
    """A sample file could be neither downloaded nor taken from a mirror."""


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
    return Path(env) if env else Path(pooch.os_cache("zarr-bioimaging-book"))


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
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {name!r}; choose one of {sorted(DATASETS)}.")
    ds = DATASETS[name]
    mirror = _mirror_dir()
    registry = {f"{ds.root}/{f}": sha for f, sha in ds.files.items()}
    store = pooch.create(path=_cache_dir(), base_url=ds.base_url, registry=registry)
    with _quiet_pooch():
        for relpath in registry:
            try:
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
            except Exception as err:  # network failures of any kind
                raise DataUnavailableError(
                    f"Could not download {relpath} from {ds.base_url} ({type(err).__name__}). "
                    f"Without internet, set {MIRROR_ENV} to a directory holding the "
                    "data (for example ../shared/data)."
                ) from err
    return Path(store.abspath) / ds.root


def open_heart() -> "zarr.Array":
    """The heart as a read-only zarr array (Zarr format 2, as published).

    Example
    -------
    >>> arr = open_heart()
    >>> arr.metadata.zarr_format, arr.dtype
    (2, dtype('uint8'))
    """
    import zarr

    return zarr.open_array(store=str(fetch("hoa_heart")), mode="r", zarr_format=2)


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
