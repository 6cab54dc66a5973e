"""Get images out of OME-Zarr: a small OME-Zarr writer for examples, and a streamed OME-TIFF export.

The chapter "Export and interchange" uses these helpers; the lesson (which tifffile
and tensorstore calls do the work) stays in the chapter.

- :func:`yx_pyramid` halves the last two axes (Y, X) ``levels - 1`` times;
- :func:`write_ome_zarr` writes a list of levels as a validated OME-Zarr 0.5
  (Zarr format 3, optionally sharded) or 0.4 (Zarr format 2) image;
- :func:`export_ome_tiff` streams an OME-Zarr image into a tiled, compressed,
  pyramidal OME-TIFF (sub-resolutions in SubIFDs), one tile in memory at a time,
  written under a temporary name and renamed only when complete.

>>> import tempfile, numpy as np, tifffile
>>> d = tempfile.mkdtemp()
>>> img = np.arange(2 * 4 * 64 * 64, dtype="uint16").reshape(2, 4, 64, 64)
>>> _ = write_ome_zarr(f"{d}/a.ome.zarr", yx_pyramid(img, 2), axes="czyx",
...                    scale=(1.0, 0.5, 0.2, 0.2), channel_names=["a", "b"])
>>> out = export_ome_tiff(f"{d}/a.ome.zarr", f"{d}/a.ome.tif", tile=(32, 32))
>>> with tifffile.TiffFile(out) as tif:
...     s = tif.series[0]
...     s.axes, s.shape, len(s.levels), bool((s.asarray() == img).all())
('CZYX', (2, 4, 64, 64), 2, True)
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

__all__ = [
    "ExportError",
    "OME_TIFF_UNITS",
    "export_ome_tiff",
    "ome_tiff_metadata",
    "tiles",
    "write_ome_zarr",
    "yx_pyramid",
]

#: OME-Zarr unit names (UDUNITS-2) and the OME-XML symbols OME-TIFF uses for them.
OME_TIFF_UNITS: dict[str, str] = {
    "angstrom": "Å",
    "nanometer": "nm",
    "micrometer": "µm",
    "millimeter": "mm",
    "centimeter": "cm",
    "meter": "m",
    "millisecond": "ms",
    "second": "s",
    "minute": "min",
    "hour": "h",
}

#: OME-TIFF's five dimensions; OME-Zarr axes must be named after them to be exported.
_OME_AXES = "tczyx"


class ExportError(ValueError):
    """An image that cannot be exported faithfully; the message names the fix."""


# -- building example OME-Zarr images -------------------------------------------


def yx_pyramid(
    image: np.ndarray, levels: int, *, method: Literal["mean", "nearest"] = "mean"
) -> list[np.ndarray]:
    """``levels`` arrays: ``image`` and copies with Y and X (the last two axes) halved each time.

    ``"mean"`` averages 2 x 2 blocks (rounded half up, same dtype); ``"nearest"``
    keeps every second pixel, which is what a label image needs (a mean invents
    ids). Odd edges are dropped, as in a block mean. Other axes are untouched, so
    every level has the same number of planes: the shape an OME-TIFF pyramid needs.

    >>> [a.shape for a in yx_pyramid(np.zeros((3, 10, 9), "uint8"), 3)]
    [(3, 10, 9), (3, 5, 4), (3, 2, 2)]
    """
    if levels < 1:
        raise ValueError(f"levels must be at least 1; got {levels}.")
    if method not in ("mean", "nearest"):
        raise ValueError(f"method must be 'mean' or 'nearest'; got {method!r}.")
    out = [np.asarray(image)]
    for _ in range(levels - 1):
        a = out[-1]
        ny, nx = a.shape[-2] // 2, a.shape[-1] // 2
        if ny == 0 or nx == 0:
            raise ValueError(f"{levels} levels halve Y/X of {image.shape} below one pixel; use fewer.")
        a = a[..., : ny * 2, : nx * 2]
        if method == "nearest":
            out.append(np.ascontiguousarray(a[..., ::2, ::2]))
        else:
            blocks = a.reshape(a.shape[:-2] + (ny, 2, nx, 2)).astype(np.float64)
            mean = blocks.mean(axis=(-3, -1))
            if np.issubdtype(a.dtype, np.integer):
                mean = np.floor(mean + 0.5)
            out.append(mean.astype(a.dtype))
    return out


def _axes_json(axes: str, unit: str) -> list[dict[str, str]]:
    kinds = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}
    out = []
    for name in axes:
        entry = {"name": name, "type": kinds.get(name, "space")}
        if entry["type"] == "space":
            entry["unit"] = unit
        elif entry["type"] == "time":
            entry["unit"] = "second"
        out.append(entry)
    return out


def write_ome_zarr(
    path: str | os.PathLike,
    levels: Sequence[np.ndarray],
    *,
    axes: str,
    scale: Sequence[float],
    unit: str = "micrometer",
    channel_names: Sequence[str] | None = None,
    chunks: Sequence[int] | None = None,
    shards: Sequence[int] | None = None,
    name: str = "image",
    version: Literal["0.5", "0.4"] = "0.5",
    compressor: Literal["zstd", "blosc"] = "zstd",
) -> Path:
    """Write ``levels`` (from :func:`yx_pyramid`) as one OME-Zarr image and validate it.

    ``axes`` is one letter per dimension from ``tczyx`` (e.g. ``"czyx"``); ``scale``
    is level 0's voxel size per axis. Each level's scale and translation follow from
    the halving of Y and X (the centre of a 2 x 2 block moves by half a voxel).
    ``version="0.5"`` writes Zarr format 3 (``shards`` allowed), ``"0.4"`` format 2.
    ``channel_names`` go into ``omero.channels[].label``. Returns the path.

    >>> import tempfile
    >>> p = write_ome_zarr(tempfile.mkdtemp() + "/b.ome.zarr",
    ...                    yx_pyramid(np.ones((8, 8), "uint8"), 2), axes="yx", scale=(1, 1))
    >>> json.loads((p / "zarr.json").read_text())["attributes"]["ome"]["version"]
    '0.5'
    """
    import zarr
    from ome_zarr_models import open_ome_zarr

    path = Path(path)
    axes = axes.lower()
    if len(set(axes)) != len(axes) or any(a not in _OME_AXES for a in axes):
        raise ValueError(f"axes must be distinct letters from 'tczyx', e.g. 'czyx'; got {axes!r}.")
    if not levels or any(np.ndim(a) != len(axes) for a in levels):
        raise ValueError(f"each level must have {len(axes)} dimensions, one per axis {axes!r}.")
    if len(scale) != len(axes):
        raise ValueError(f"scale needs one value per axis {axes!r}; got {list(scale)}.")
    if version not in ("0.5", "0.4"):
        raise ValueError(f"version must be '0.5' or '0.4'; got {version!r}.")
    if shards is not None and version != "0.5":
        raise ValueError("shards need Zarr format 3: pass version='0.5' or drop shards=.")
    chunks = tuple(chunks) if chunks is not None else tuple(levels[0].shape)
    datasets = []
    for k, a in enumerate(levels):
        f = [2.0**k if (i >= len(axes) - 2) else 1.0 for i in range(len(axes))]
        s = [float(v) * fk for v, fk in zip(scale, f)]
        t = [float(v) * (fk - 1) / 2 for v, fk in zip(scale, f)]
        transforms: list[dict[str, Any]] = [{"type": "scale", "scale": s}]
        if any(t):
            transforms.append({"type": "translation", "translation": t})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    multiscale: dict[str, Any] = {
        "name": name,
        "axes": _axes_json(axes, unit),
        "datasets": datasets,
        "type": "mean 2x2 in y and x",
        "metadata": {"method": "data_helpers.export.yx_pyramid"},
    }
    ome: dict[str, Any] = {"multiscales": [multiscale]}
    if channel_names is not None:
        if "c" not in axes or len(channel_names) != levels[0].shape[axes.index("c")]:
            raise ValueError("channel_names needs a 'c' axis and one name per channel.")
        lo, hi = int(np.min(levels[-1])), int(np.max(levels[-1]))
        ome["omero"] = {
            "channels": [
                {"label": str(n), "active": True, "color": "FFFFFF",
                 "window": {"min": lo, "max": hi, "start": lo, "end": hi}}
                for n in channel_names
            ]
        }
    if version == "0.5":
        group = zarr.open_group(path, mode="w", zarr_format=3)
        group.attrs.put({"ome": {"version": "0.5", **ome}})
    else:
        multiscale["version"] = "0.4"
        if "omero" in ome:
            ome["omero"]["version"] = "0.4"
        group = zarr.open_group(path, mode="w", zarr_format=2)
        group.attrs.put(ome)
    for k, a in enumerate(levels):
        c = tuple(min(ci, si) for ci, si in zip(chunks, a.shape))
        kwargs: dict[str, Any] = {}
        if version == "0.5":
            kwargs["dimension_names"] = tuple(axes)
            if shards is not None:
                c = tuple(min(ci, si) for ci, si in zip(chunks, shards))
                kwargs["shards"] = tuple(
                    -(-min(sh, n) // ci) * ci for sh, n, ci in zip(shards, a.shape, c)
                )
            if compressor == "blosc":
                kwargs["compressors"] = zarr.codecs.BloscCodec(cname="zstd", clevel=5)
        else:
            import numcodecs

            kwargs["compressors"] = (
                numcodecs.Blosc(cname="zstd", clevel=5) if compressor == "blosc" else numcodecs.Zstd(level=3)
            )
            kwargs["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
        arr = group.create_array(str(k), shape=a.shape, dtype=a.dtype, chunks=c, fill_value=0, **kwargs)
        arr[...] = a
    open_ome_zarr(zarr.open_group(path, mode="r"), version=version)  # raises if invalid
    return path


# -- streamed OME-TIFF export ------------------------------------------------------


def _open_image(src: Any) -> tuple[Any, dict[str, Any], dict[str, Any]]:
    """The zarr group, its multiscale and its attributes, for OME-Zarr 0.4 or 0.5."""
    import zarr

    group = src if isinstance(src, zarr.Group) else zarr.open_group(src, mode="r")
    attrs = group.attrs.asdict()
    ome = attrs.get("ome", attrs)
    multiscales = ome.get("multiscales")
    if not multiscales:
        raise ExportError(
            f"{src} is not an OME-Zarr image (no 'multiscales' in its attributes). "
            "Export an image group, e.g. 'image.ome.zarr', not its parent or one of its arrays; "
            "for a plain Zarr array, write it as OME-Zarr first (write_ome_zarr)."
        )
    return group, multiscales[0], ome


def ome_tiff_metadata(src: Any) -> dict[str, Any]:
    """The tifffile ``metadata=`` dict for an OME-Zarr image: axes, physical sizes, channel names.

    Raises :class:`ExportError` for axes OME-TIFF has no place for.

    >>> import tempfile
    >>> p = write_ome_zarr(tempfile.mkdtemp() + "/m.ome.zarr", [np.zeros((2, 4, 4), "u1")],
    ...                    axes="cyx", scale=(1, 0.5, 0.25), channel_names=["dapi", "gfp"])
    >>> m = ome_tiff_metadata(p)
    >>> m["axes"], m["PhysicalSizeX"], m["PhysicalSizeXUnit"], m["Channel"]
    ('CYX', 0.25, 'µm', {'Name': ['dapi', 'gfp']})
    """
    _, ms, ome = _open_image(src)
    names = [a["name"] for a in ms["axes"]]
    lower = [n.lower() for n in names]
    bad = [n for n in names if n.lower() not in _OME_AXES]
    if bad or len(set(lower)) != len(lower):
        raise ExportError(
            f"OME-TIFF has the dimensions T, C, Z, Y, X only; this image's axes are {names}. "
            f"Rename or fold {bad or names} into t, c, z, y, x (e.g. tiles or angles as positions "
            "written to separate files) before exporting."
        )
    if lower[-2:] != ["y", "x"]:
        raise ExportError(f"the last two axes must be y and x to write tiled TIFF planes; got {names}.")
    scale = next(t["scale"] for t in ms["datasets"][0]["coordinateTransformations"] if t["type"] == "scale")
    meta: dict[str, Any] = {"axes": "".join(lower).upper(), "Name": ms.get("name", "image")}
    for axis, s in zip(ms["axes"], scale):
        n = axis["name"].lower()
        unit = axis.get("unit")
        if n in "zyx":
            meta[f"PhysicalSize{n.upper()}"] = float(s)
            if unit is not None:
                if unit not in OME_TIFF_UNITS:
                    raise ExportError(f"axis {n!r} has unit {unit!r}, which has no OME-XML symbol here; "
                                      f"use one of {sorted(OME_TIFF_UNITS)}.")
                meta[f"PhysicalSize{n.upper()}Unit"] = OME_TIFF_UNITS[unit]
        elif n == "t":
            meta["TimeIncrement"] = float(s)
            if unit in OME_TIFF_UNITS:
                meta["TimeIncrementUnit"] = OME_TIFF_UNITS[unit]
    channels = ome.get("omero", {}).get("channels")
    if channels and "c" in lower:
        meta["Channel"] = {"Name": [ch.get("label", f"Channel {i}") for i, ch in enumerate(channels)]}
    return meta


def tiles(array: Any, tile: tuple[int, int]) -> Iterator[np.ndarray]:
    """Yield ``array``'s tiles in TIFF order: plane by plane, then tile rows, then columns.

    Each tile is read from ``array`` (a zarr array, or anything sliceable) only when
    it is asked for, and padded to the full tile size at the right and bottom edges.

    >>> [t.tolist() for t in tiles(np.arange(6).reshape(2, 3), (2, 2))]
    [[[0, 1], [3, 4]], [[2, 0], [5, 0]]]
    """
    ty, tx = tile
    ny, nx = array.shape[-2:]
    for plane in np.ndindex(*array.shape[:-2]):
        for y in range(0, ny, ty):
            for x in range(0, nx, tx):
                block = np.asarray(array[plane + (slice(y, y + ty), slice(x, x + tx))])
                if block.shape != (ty, tx):
                    block = np.pad(block, ((0, ty - block.shape[0]), (0, tx - block.shape[1])))
                yield block


def export_ome_tiff(
    src: Any,
    dst: str | os.PathLike,
    *,
    tile: tuple[int, int] = (256, 256),
    compression: str = "zlib",
    levels: int | None = None,
    overwrite: bool = False,
) -> Path:
    """Stream an OME-Zarr image (0.4 or 0.5) into a pyramidal, tiled, compressed OME-TIFF.

    Level 0 becomes the main image, with OME-XML carrying the axis order, physical
    pixel sizes (and units) and channel names; levels 1, 2, ... become SubIFDs
    (reduced-resolution copies of each plane), which QuPath, Bio-Formats and
    tifffile read as a pyramid. Only one tile is held in memory at a time. The
    file is written as ``dst + ".partial"`` and renamed to ``dst`` only when
    complete, so an interrupted export never leaves a file that looks finished.

    Refuses (with :class:`ExportError`) a group that is not an OME-Zarr image, axes
    other than t, c, z, y, x, and sub-levels that change anything but Y and X
    (an OME-TIFF SubIFD is a smaller copy of *one plane*; pass ``levels=1`` to
    export level 0 only). Tile sides must be multiples of 16 (TIFF's rule).
    """
    import tifffile

    dst = Path(dst)
    if dst.exists() and not overwrite:
        raise FileExistsError(f"{dst} exists; pass overwrite=True to replace it.")
    if tile[0] % 16 or tile[1] % 16 or min(tile) <= 0:
        raise ValueError(f"TIFF tile sides must be positive multiples of 16; got {tile}.")
    group, ms, _ = _open_image(src)
    meta = ome_tiff_metadata(group)
    arrays = [group[d["path"]] for d in ms["datasets"]]
    if levels is not None:
        if not 1 <= levels <= len(arrays):
            raise ValueError(f"levels must be between 1 and {len(arrays)}; got {levels}.")
        arrays = arrays[:levels]
    base = arrays[0]
    for k, a in enumerate(arrays[1:], start=1):
        if a.shape[:-2] != base.shape[:-2] or a.dtype != base.dtype:
            raise ExportError(
                f"level {k} has shape {a.shape} ({a.dtype}) but level 0 has {base.shape} ({base.dtype}): "
                "OME-TIFF sub-resolutions reduce Y and X only. Pass levels=1 to export level 0 "
                "alone, or build a pyramid that halves Y and X only (yx_pyramid)."
            )
    partial = dst.with_name(dst.name + ".partial")
    options = dict(tile=tile, compression=compression, photometric="minisblack")
    try:
        with tifffile.TiffWriter(partial, bigtiff=True, ome=True) as tif:
            tif.write(tiles(base, tile), shape=base.shape, dtype=base.dtype,
                      subifds=len(arrays) - 1, metadata=meta, **options)
            for a in arrays[1:]:
                tif.write(tiles(a, tile), shape=a.shape, dtype=a.dtype, subfiletype=1,
                          metadata=None, **options)
        os.replace(partial, dst)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return dst

