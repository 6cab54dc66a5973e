"""Plots return figures, honour a given Axes, and touch no global state."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import xarray as xr
from matplotlib.figure import Figure

from data_helpers.plot import label_colours, montage, orthoviews, show_slice

VOLUME = np.arange(4 * 5 * 6, dtype=np.uint16).reshape(4, 5, 6)


@pytest.fixture(autouse=True)
def no_global_state():
    before_figs = plt.get_fignums()
    before_rc = dict(matplotlib.rcParams)
    yield
    assert plt.get_fignums() == before_figs, "a helper created a pyplot figure"
    assert dict(matplotlib.rcParams) == before_rc, "a helper changed rcParams"


@pytest.mark.parametrize(("axis", "expected"), [(0, (5, 6)), ("y", (4, 6)), (-1, (4, 5))])
def test_show_slice_picks_the_plane(axis, expected):
    fig = show_slice(VOLUME, axis=axis)
    assert isinstance(fig, Figure)
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == expected


def test_show_slice_values_and_default_index():
    fig = show_slice(VOLUME, axis="x")
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), VOLUME[:, :, 3])
    assert fig.axes[0].get_title() == "x = 3"


def test_show_slice_draws_on_given_axes():
    fig = Figure()
    ax = fig.add_subplot()
    assert show_slice(VOLUME, 0, 1, ax=ax) is fig
    np.testing.assert_array_equal(ax.images[0].get_array(), VOLUME[1])


def test_xarray_dims_and_spacing_are_used():
    arr = xr.DataArray(
        VOLUME, dims=("z", "y", "x"),
        coords={"z": np.arange(4) * 3.0, "y": np.arange(5) * 1.0, "x": np.arange(6) * 1.0},
    )
    fig = show_slice(arr, axis="x")
    ax = fig.axes[0]
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("y", "z")
    assert ax.get_aspect() == pytest.approx(3.0)


def test_orthoviews_three_panels_share_a_colour_range():
    fig = orthoviews(VOLUME, point=(1, 2, 3))
    assert len(fig.axes) == 3
    limits = {im.get_clim() for ax in fig.axes for im in ax.images}
    assert len(limits) == 1
    np.testing.assert_array_equal(fig.axes[0].images[0].get_array(), VOLUME[1])
    np.testing.assert_array_equal(fig.axes[2].images[0].get_array(), VOLUME[:, :, 3])


def test_montage_tiles():
    fig = montage(VOLUME, axis=0, indices=[0, 3])
    canvas = fig.axes[0].images[0].get_array()
    assert canvas.shape == (5, 12)
    np.testing.assert_array_equal(canvas[:, 6:], VOLUME[3])


def test_dask_and_zarr_inputs():
    import dask.array as da
    import zarr

    z = zarr.create_array(zarr.storage.MemoryStore(), data=VOLUME, chunks=(2, 2, 2))
    for source in (da.from_array(VOLUME, chunks=2), z):
        np.testing.assert_array_equal(show_slice(source, 0, 2).axes[0].images[0].get_array(), VOLUME[2])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: show_slice(VOLUME, axis="t"), ValueError, r"\['z', 'y', 'x'\]"),
        (lambda: show_slice(VOLUME, axis=3), ValueError, "use 0, 1, 2"),
        (lambda: show_slice(VOLUME, index=9), ValueError, "use 0..3"),
        (lambda: show_slice(VOLUME[0]), ValueError, "3-D volume"),
        (lambda: show_slice(np.zeros((2, 3, 4, 5))), ValueError, "Select one channel"),
        (lambda: show_slice([[1, 2]]), TypeError, "numpy, zarr, dask or xarray"),
        (lambda: orthoviews(VOLUME, point=(9, 0, 0)), ValueError, "inside shape"),
        (lambda: montage(VOLUME, indices=[7]), ValueError, "outside axis"),
        (lambda: show_slice(VOLUME, ax="left"), TypeError, "matplotlib Axes"),
    ],
)
def test_bad_input_says_what_works(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_label_colours_are_distinct_per_id_and_black_background():
    plane = np.array([[0, 1, 2], [3, 1, 0]])
    rgb = label_colours(plane)
    assert rgb.shape == (2, 3, 3)
    assert (rgb[plane == 0] == 0).all()
    np.testing.assert_array_equal(rgb[0, 1], rgb[1, 1])  # same id, same colour
    colours = {tuple(rgb[0, 1]), tuple(rgb[0, 2]), tuple(rgb[1, 0])}
    assert len(colours) == 3
    # neighbouring ids differ clearly, not by a shade
    assert np.abs(label_colours(np.array([[1000, 1001]]))[0, 0] - label_colours(np.array([[1000, 1001]]))[0, 1]).max() > 0.2


def test_show_slice_labels_mode_draws_rgb():
    labels = np.zeros((2, 4, 4), dtype=np.uint32)
    labels[1, 1:3, 1:3] = 7
    fig = show_slice(labels, 0, 1, cmap="labels")
    shown = fig.axes[0].images[0].get_array()
    assert shown.shape == (4, 4, 3)
    np.testing.assert_array_equal(shown[1, 1], label_colours(np.array([[7]]))[0, 0])
def test_show_chunk_grid_draws_the_boundaries():
    from data_helpers.plot import show_chunk_grid

    fig = show_chunk_grid(np.zeros((8, 10, 12)), chunks=(4, 5, 5), axis="y", index=7)
    ax = fig.axes[0]
    # the plane is (z, x): boundaries at z = 4 and x = 5, 10
    lines = [(tuple(ln.get_xdata()), tuple(ln.get_ydata())) for ln in ax.lines]
    horizontal = sorted(y[0] for x, y in lines if y[0] == y[1] and x[0] != x[1])
    vertical = sorted(x[0] for x, y in lines if x[0] == x[1] and y[0] != y[1])
    assert horizontal == [3.5]
    assert vertical == [4.5, 9.5]
    assert ax.get_title().startswith("y = 7 (chunk 2 of 2)")


def test_show_chunk_grid_reads_chunks_from_zarr_and_dask():
    import dask.array as da
    import zarr

    from data_helpers.plot import show_chunk_grid

    z = zarr.create_array(
        zarr.storage.MemoryStore(), shape=(6, 6, 6), chunks=(2, 3, 6), dtype="u1"
    )
    assert len(show_chunk_grid(z).axes[0].lines) == 1  # y boundary at 3; none along x
    d = da.zeros((6, 6, 6), chunks=((2, 4), (1, 5), (6,)))
    fig = show_chunk_grid(d, axis=0, index=0)
    assert len(fig.axes[0].lines) == 1
    assert "irregular" in fig.axes[0].get_title()


def test_show_chunk_grid_on_given_axes_and_bad_input():
    from data_helpers.plot import show_chunk_grid

    fig = Figure()
    ax = fig.add_subplot()
    assert show_chunk_grid(VOLUME, chunks=(2, 2, 2), ax=ax) is fig
    with pytest.raises(ValueError, match="pass chunks="):
        show_chunk_grid(VOLUME)
    with pytest.raises(ValueError, match="one entry per axis"):
        show_chunk_grid(VOLUME, chunks=(2, 2))
    with pytest.raises(ValueError, match="add up to"):
        show_chunk_grid(VOLUME, chunks=((1, 1), 2, 2))
    with pytest.raises(ValueError, match="positive"):
        show_chunk_grid(VOLUME, chunks=(0, 2, 2))
