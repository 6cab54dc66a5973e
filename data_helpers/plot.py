"""Plots of 3-D volumes: a slice along any axis, orthogonal views, montages; the book's figure style.

Every function takes an optional Matplotlib ``Axes`` (or ``Figure``), returns
the figure it drew on, and changes no global state: figures are created with
:class:`matplotlib.figure.Figure`, not through ``pyplot``, and no rcParams are
touched. In a notebook, end the cell with the returned figure to show it.

Importing this module (``import data_helpers`` does) applies the book's figure
style once, :func:`use_book_style`: figures default to the width of the book's
text column (:data:`COLUMN_INCHES` at 100 dpi = 730 px, 750 px with the margin notebooks add), fonts stay legible at that
width, and notebooks show figures as pixel-doubled ("retina") PNGs, so they are
sharp on high-resolution screens and displayed at their drawn size. A figure drawn
wider than :data:`COLUMN_INCHES` is shrunk by the browser and its text with it.

Inputs may be numpy, zarr, dask or xarray arrays; an xarray ``DataArray``
gives axis names, physical units and the aspect ratio.

Example
-------
>>> import numpy as np
>>> fig = show_slice(np.zeros((4, 5, 6)), axis="y")
>>> fig.axes[0].get_title()
'y = 2'
"""

from __future__ import annotations

import numbers
from typing import Any, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

_DEFAULT_DIMS = ("z", "y", "x")

#: The book's text column is ~757 CSS px wide; at ``figure.dpi`` 100 a figure up to
#: this many inches wide is shown at its drawn size (tests/test_rendering.py checks it).
COLUMN_INCHES = 7.3

#: rcParams of the book's figures (a matplotlibrc in dict form).
BOOK_STYLE: dict[str, Any] = {
    "figure.figsize": (COLUMN_INCHES, 4.0),
    "figure.dpi": 100,  # 1 inch = 100 CSS px in the rendered page
    "savefig.dpi": 200,  # files saved with savefig are sharp on 2x screens
    "font.size": 10,  # 10 pt at 100 dpi = 14 px
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "xtick.labelsize": 9,  # 12.5 px: the smallest text the book draws
    "ytick.labelsize": 9,
    "legend.fontsize": 9,
    "figure.titlesize": 12,
}


def use_book_style() -> None:
    """Apply :data:`BOOK_STYLE`, and in IPython show figures as retina PNGs.

    Called once when this module is imported. A retina PNG has twice the pixels and
    says so in its metadata, so notebooks and the book show it at the drawn size.

    Example
    -------
    >>> import matplotlib
    >>> use_book_style()
    >>> tuple(matplotlib.rcParams["figure.figsize"])
    (7.3, 4.0)
    """
    import sys

    import matplotlib

    matplotlib.rcParams.update(BOOK_STYLE)
    if "IPython" not in sys.modules:
        return
    from IPython import get_ipython

    shell = get_ipython()
    if shell is None or not hasattr(shell, "kernel"):
        return
    try:
        from matplotlib_inline.backend_inline import set_matplotlib_formats
        from matplotlib_inline.config import InlineBackend
    except ImportError:  # pragma: no cover - matplotlib-inline comes with ipykernel
        return
    # Also as the inline backend's setting, which it re-applies when pyplot loads later.
    InlineBackend.instance(parent=shell).figure_formats = {"retina"}
    set_matplotlib_formats("retina")


def _dims(volume: Any) -> tuple[str, ...]:
    dims = getattr(volume, "dims", None)
    if isinstance(dims, tuple) and all(isinstance(d, str) for d in dims):
        return dims
    return _DEFAULT_DIMS[-np.ndim(volume):] if np.ndim(volume) <= 3 else tuple(
        f"dim_{i}" for i in range(np.ndim(volume))
    )


def _check_volume(volume: Any) -> tuple[str, ...]:
    shape = getattr(volume, "shape", None)
    if shape is None:
        raise TypeError(
            f"Expected a numpy, zarr, dask or xarray array, got {type(volume).__name__}"
            + (" (wrap it with np.asarray(...) first)." if isinstance(volume, (list, tuple)) else ".")
        )
    if len(shape) != 3:
        raise ValueError(
            f"Expected a 3-D volume (z, y, x); got shape {tuple(shape)}. "
            "Select one channel and time point first, e.g. image[0]."
        )
    return _dims(volume)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_index(index: Any, n: int, dim: str) -> int:
    """``index`` along an axis of size ``n`` (negative counts from the end), as 0..n-1."""
    if not _is_int(index):
        raise TypeError(f"index must be an integer slice number along {dim!r}, 0..{n - 1}; got {index!r}.")
    index = int(index)
    if not -n <= index < n:
        raise ValueError(f"index {index} is outside axis {dim!r} of size {n}; use 0..{n - 1}.")
    return index % n


def _check_display(cmap: Any, vmin: Any, vmax: Any) -> None:
    for name, value in (("vmin", vmin), ("vmax", vmax)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Real)):
            raise TypeError(f"{name} must be a number or None (automatic); got {value!r}.")
    if vmin is not None and vmax is not None and vmin > vmax:
        raise ValueError(f"vmin ({vmin}) must not be above vmax ({vmax}); swap them.")
    if cmap is None or cmap == "labels":
        return
    from matplotlib import colormaps
    from matplotlib.colors import Colormap

    if isinstance(cmap, Colormap):
        return
    if not isinstance(cmap, str) or cmap not in colormaps:
        raise ValueError(
            f"Unknown colormap {cmap!r}; use a Matplotlib colormap name such as 'gray', "
            "'viridis' or 'magma', or 'labels' for a label image."
        )


def _axis_index(axis: int | str, dims: Sequence[str]) -> int:
    if isinstance(axis, str):
        if axis not in dims:
            raise ValueError(f"Unknown axis {axis!r}; use one of {list(dims)} or 0, 1, 2.")
        return list(dims).index(axis)
    if isinstance(axis, (int, np.integer)) and -3 <= axis < 3:
        return int(axis) % 3
    raise ValueError(f"Unknown axis {axis!r}; use 0, 1, 2 or one of {list(dims)}.")


def _spacing(volume: Any, dims: Sequence[str]) -> list[float]:
    """Physical spacing per axis from xarray coordinates, else 1."""
    out = []
    for d in dims:
        coord = getattr(volume, "coords", {}).get(d) if hasattr(volume, "coords") else None
        if coord is not None and coord.size > 1:
            out.append(float(coord[1] - coord[0]))
        else:
            out.append(1.0)
    return out


def _values(volume: Any, index: tuple) -> np.ndarray:
    part = volume[index]
    part = getattr(part, "values", part)  # xarray
    if hasattr(part, "compute"):  # dask
        part = part.compute()
    return np.asarray(part)


def label_colours(plane: np.ndarray) -> np.ndarray:
    """RGB image of a label plane: a stable bright colour per id, black for 0.

    Colours depend only on the id, so a nucleus keeps its colour across slices
    and plots (ids next to each other still get very different colours).

    Example
    -------
    >>> rgb = label_colours(np.array([[0, 1], [2, 1]]))
    >>> rgb.shape, rgb[0, 0].tolist(), bool((rgb[0, 1] == rgb[1, 1]).all())
    ((2, 2, 3), [0.0, 0.0, 0.0], True)
    """
    from matplotlib.colors import hsv_to_rgb

    arr = np.asarray(plane) if plane is not None else None
    if arr is None or arr.dtype.kind not in "iub":
        raise TypeError(
            "label_colours needs an integer label image (0 = background, 1, 2, ... = "
            f"objects); got {type(plane).__name__}"
            + (f" of dtype {arr.dtype}" if arr is not None else "")
            + ". Convert with .astype(np.uint32) if the values are whole numbers."
        )
    if arr.dtype.kind == "i" and arr.size and arr.min() < 0:
        raise ValueError(
            f"Label ids must not be negative (found {arr.min()}); 0 is the background."
        )
    ids = arr.astype(np.uint64)
    with np.errstate(over="ignore"):
        h = (ids * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(40)
    hue = (h & np.uint64(0xFFFF)).astype(np.float64) / 0xFFFF
    sat = 0.55 + 0.45 * ((h >> np.uint64(16)) & np.uint64(0xFF)).astype(np.float64) / 0xFF
    hsv = np.stack([hue, sat, np.ones_like(hue)], axis=-1)
    rgb = hsv_to_rgb(hsv)
    rgb[ids == 0] = 0.0
    return rgb


def _new_axes(ax: Axes | None, figsize: tuple[float, float]) -> Axes:
    if ax is not None:
        if not isinstance(ax, Axes):
            raise TypeError(f"ax must be a matplotlib Axes, got {type(ax).__name__}.")
        return ax
    return Figure(figsize=figsize, layout="constrained").add_subplot()


def show_slice(
    volume: Any,
    axis: int | str = 0,
    index: int | None = None,
    *,
    ax: Axes | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
    colorbar: bool = False,
) -> Figure:
    """Show the 2-D slice ``index`` (default: the middle) perpendicular to ``axis``.

    ``cmap="labels"`` shows a label image with one distinct colour per id
    (see :func:`label_colours`) instead of a colour ramp.

    Example
    -------
    >>> fig = show_slice(np.arange(24).reshape(2, 3, 4), axis=2, index=1)
    >>> fig.axes[0].images[0].get_array().shape
    (2, 3)
    """
    dims = _check_volume(volume)
    a = _axis_index(axis, dims)
    n = volume.shape[a]
    index = n // 2 if index is None else _check_index(index, n, dims[a])
    _check_display(cmap, vmin, vmax)
    if not isinstance(colorbar, bool):
        raise TypeError(f"colorbar must be True or False; got {colorbar!r}.")
    sel = [slice(None)] * 3
    sel[a] = index
    plane = _values(volume, tuple(sel))
    rest = [d for i, d in enumerate(dims) if i != a]
    spacing = [s for i, s in enumerate(_spacing(volume, dims)) if i != a]
    ax = _new_axes(ax, (5, 5 * plane.shape[0] / max(plane.shape[1], 1) + 0.6))
    if cmap == "labels":
        plane, cmap, colorbar = label_colours(plane), None, False
    im = ax.imshow(plane, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest",
                   aspect=spacing[0] / spacing[1])
    ax.set_xlabel(rest[1])
    ax.set_ylabel(rest[0])
    ax.set_title(title if title is not None else f"{dims[a]} = {index}")
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return ax.figure


def orthoviews(
    volume: Any,
    point: Sequence[int] | None = None,
    *,
    fig: Figure | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
) -> Figure:
    """Three orthogonal slices through ``point`` (default: the centre), with cross-hairs.

    Example
    -------
    >>> fig = orthoviews(np.random.default_rng(0).random((8, 9, 10)))
    >>> len(fig.axes)
    3
    """
    dims = _check_volume(volume)
    if point is None:
        point = [s // 2 for s in volume.shape]
    else:
        given = point
        try:
            point = list(point)
        except TypeError:
            point = None
        if (
            isinstance(given, str)
            or point is None
            or len(point) != 3
            or not all(_is_int(p) for p in point)
            or any(not 0 <= p < s for p, s in zip(point, volume.shape))
        ):
            raise ValueError(
                f"point must be 3 indices inside shape {tuple(volume.shape)}, e.g. "
                f"{tuple(s // 2 for s in volume.shape)}; got {given!r}."
            )
        point = [int(p) for p in point]
    _check_display(cmap, vmin, vmax)
    if fig is not None:
        from matplotlib.figure import FigureBase

        if not isinstance(fig, FigureBase):
            raise TypeError(f"fig must be a matplotlib Figure (or None); got {type(fig).__name__}.")
    spacing = _spacing(volume, dims)
    if vmin is None or vmax is None:
        planes = [_values(volume, tuple(p if i == a else slice(None) for i, p in enumerate(point)))
                  for a in range(3)]
        lo = min(float(p.min()) for p in planes)
        hi = max(float(p.max()) for p in planes)
        vmin = lo if vmin is None else vmin
        vmax = hi if vmax is None else vmax
    fig = Figure(figsize=(COLUMN_INCHES, 3.0), layout="constrained") if fig is None else fig
    axes = fig.subplots(1, 3)
    for a, ax in enumerate(axes):
        show_slice(volume, a, point[a], ax=ax, cmap=cmap, vmin=vmin, vmax=vmax)
        others = [i for i in range(3) if i != a]
        ax.axhline(point[others[0]], color="tab:orange", lw=0.8, alpha=0.8)
        ax.axvline(point[others[1]], color="tab:orange", lw=0.8, alpha=0.8)
    if title:
        fig.suptitle(title)
    return fig


def montage(
    volume: Any,
    axis: int | str = 0,
    n: int = 9,
    *,
    indices: Sequence[int] | None = None,
    ncols: int | None = None,
    ax: Axes | None = None,
    cmap: str = "gray",
    vmin: float | None = None,
    vmax: float | None = None,
    title: str | None = None,
) -> Figure:
    """Tile ``n`` evenly spaced slices (or the given ``indices``) along ``axis`` into one image.

    Example
    -------
    >>> fig = montage(np.zeros((10, 4, 4)), n=4)
    >>> fig.axes[0].images[0].get_array().shape
    (8, 8)
    """
    dims = _check_volume(volume)
    a = _axis_index(axis, dims)
    size = volume.shape[a]
    if indices is None:
        if not _is_int(n):
            raise TypeError(f"n must be an integer number of slices, at least 1; got {n!r}.")
        if n < 1:
            raise ValueError(f"n must be at least 1; got {n}.")
        indices = np.unique(np.linspace(0, size - 1, min(n, size)).round().astype(int)).tolist()
    else:
        if isinstance(indices, str) or not all(_is_int(i) for i in indices):
            raise TypeError(f"indices must be a list of integers, e.g. [0, 10, 20]; got {indices!r}.")
        indices = [int(i) for i in indices]
        if not indices:
            raise ValueError("indices is empty; give at least one slice number, e.g. [0].")
    bad = [i for i in indices if not 0 <= i < size]
    if bad:
        raise ValueError(f"indices {bad} are outside axis {dims[a]!r} of size {size}; use 0..{size - 1}.")
    if ncols is not None and (not _is_int(ncols) or ncols < 1):
        raise ValueError(f"ncols must be an integer of at least 1, or None; got {ncols!r}.")
    _check_display(cmap, vmin, vmax)
    tiles = [_values(volume, tuple(i if k == a else slice(None) for k in range(3))) for i in indices]
    ncols = ncols or int(np.ceil(np.sqrt(len(tiles))))
    nrows = int(np.ceil(len(tiles) / ncols))
    th, tw = tiles[0].shape
    canvas = np.full((nrows * th, ncols * tw), np.nan, dtype=np.float64)
    for k, tile in enumerate(tiles):
        r, c = divmod(k, ncols)
        canvas[r * th:(r + 1) * th, c * tw:(c + 1) * tw] = tile
    ax = _new_axes(ax, (COLUMN_INCHES, COLUMN_INCHES * canvas.shape[0] / canvas.shape[1] + 0.5))
    ax.imshow(canvas, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    for k, i in enumerate(indices):
        r, c = divmod(k, ncols)
        ax.text(c * tw + 2, r * th + 2, f"{dims[a]}={i}", color="yellow", fontsize=8, va="top")
    ax.set_axis_off()
    ax.set_title(title if title is not None else f"{len(tiles)} slices along {dims[a]}")
    return ax.figure


def _boundaries(chunks: Any, size: int) -> list[int]:
    """Inner chunk boundaries along one axis: regular (an int) or explicit (dask sizes)."""
    if _is_int(chunks):
        step = int(chunks)
        if step < 1:
            raise ValueError(f"chunk sizes must be positive; got {step}.")
        return list(range(step, size, step))
    if isinstance(chunks, str) or not hasattr(chunks, "__iter__") or not all(
        _is_int(c) for c in chunks
    ):
        raise ValueError(
            "chunk sizes along an axis must be one integer (a regular grid, e.g. 64) or a "
            f"sequence of integers (e.g. dask's (64, 64, 8)); got {chunks!r}."
        )
    sizes = [int(c) for c in chunks]
    if sum(sizes) != size or min(sizes, default=0) < 1:
        raise ValueError(f"chunk sizes {sizes} must be positive and add up to {size}.")
    return np.cumsum(sizes)[:-1].tolist()


def show_chunk_grid(
    volume: Any,
    chunks: Sequence[Any] | None = None,
    axis: int | str = 0,
    index: int | None = None,
    *,
    ax: Axes | None = None,
    cmap: str = "gray",
    color: str = "tab:orange",
    title: str | None = None,
) -> Figure:
    """Show a slice of ``volume`` with the chunk boundaries drawn over it.

    ``chunks`` is one entry per axis: an int (a regular grid, as in Zarr) or a
    sequence of chunk sizes (as in ``dask_array.chunks``). By default it is
    taken from ``volume.chunks`` (a zarr or dask array). The title names the
    chunk along ``axis`` that the slice falls in.

    Example
    -------
    >>> fig = show_chunk_grid(np.zeros((8, 10, 12)), chunks=(4, 5, 5))
    >>> ax = fig.axes[0]
    >>> len(ax.lines)   # 1 boundary along y, 2 along x
    3
    >>> ax.get_title()
    'z = 4 (chunk 2 of 2), chunks 4 x 5 x 5'
    """
    dims = _check_volume(volume)
    if chunks is None:
        chunks = getattr(volume, "chunks", None)
        if chunks is None:
            raise ValueError(
                "This array has no .chunks; pass chunks=, e.g. chunks=(64, 64, 64)."
            )
    if isinstance(chunks, str) or not hasattr(chunks, "__iter__"):
        raise ValueError(f"chunks needs one entry per axis (3), e.g. (64, 64, 64); got {chunks!r}.")
    chunks = tuple(chunks)
    if len(chunks) != 3:
        raise ValueError(f"chunks needs one entry per axis (3), e.g. (64, 64, 64); got {chunks!r}.")
    a = _axis_index(axis, dims)
    bounds = [_boundaries(c, n) for c, n in zip(chunks, volume.shape)]
    n = volume.shape[a]
    index = n // 2 if index is None else _check_index(index, n, dims[a])
    which = sum(b <= index for b in bounds[a])
    label = " x ".join(
        str(c) if isinstance(c, (int, np.integer)) else "irregular" for c in chunks
    )
    if title is None:
        where = f"chunk {which + 1} of {len(bounds[a]) + 1}"
        title = f"{dims[a]} = {index} ({where}), chunks {label}"
    fig = show_slice(volume, a, index, ax=ax, cmap=cmap, title=title)
    ax = fig.axes[0] if ax is None else ax
    rows, cols = [i for i in range(3) if i != a]
    for b in bounds[rows]:
        ax.axhline(b - 0.5, color=color, lw=1)
    for b in bounds[cols]:
        ax.axvline(b - 0.5, color=color, lw=1)
    return fig


use_book_style()
