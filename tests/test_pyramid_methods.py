"""Every multiscale-spatial-image method the book uses, on today's stack, with real checks.

multiscale-spatial-image 2.1.0 is installed with its upper pins overridden (it pins
``ngff-zarr<0.19``, ``dask<2026``, ``xarray<2026``): these tests are what tells us when a
stack change breaks it. The chapter "Multiscale pyramids" uses ``ITK_BIN_SHRINK`` and
states that it is the block mean rounded half up; the default and the deprecated
``XARRAY_COARSEN`` must give the same; ``ITK_GAUSSIAN`` must give the same shapes and a
smoothed image. Every tree is written with ``.msi.to_zarr`` and read back with
zarr-python and with tensorstore (a second implementation).
"""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import zarr

msi = pytest.importorskip("multiscale_spatial_image")
pytest.importorskip("itk")
from multiscale_spatial_image import Methods, to_multiscale  # noqa: E402
from spatial_image import to_spatial_image  # noqa: E402

SHAPE = (12, 20, 18)  # (z, y, x); 12/4, 20/4 whole; 18/4 is not: 4 with 2 left over
SPACING = {"z": 2.0, "y": 0.5, "x": 0.5}
FACTORS = [2, 4]
METHODS = {
    "default": None,
    "ITK_BIN_SHRINK": Methods.ITK_BIN_SHRINK,
    "XARRAY_COARSEN": Methods.XARRAY_COARSEN,
    "ITK_GAUSSIAN": Methods.ITK_GAUSSIAN,
}
BIN_SHRINK_LIKE = ["default", "ITK_BIN_SHRINK", "XARRAY_COARSEN"]


@pytest.fixture(scope="module")
def image():
    rng = np.random.default_rng(3)
    values = rng.integers(0, 4000, SHAPE, dtype=np.uint16)
    return to_spatial_image(
        values, dims=("z", "y", "x"), name="img", scale=SPACING,
        translation={d: 0.0 for d in "zyx"},
        axis_units={d: "micrometer" for d in "zyx"},
    )


@pytest.fixture(scope="module")
def trees(image):
    out = {}
    for name, method in METHODS.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # msi 2.1 marks its own Methods deprecated
            out[name] = to_multiscale(image, scale_factors=FACTORS, method=method,
                                      chunks=8)
    return out


def levels_of(tree):
    return [tree[s]["img"].values for s in tree.children]


def block_mean_half_up(a, f):
    """Exact mean of whole f x f x f blocks, rounded half up (edges that do not fill a block dropped)."""
    cut = tuple(s // f * f for s in a.shape)
    blocks = a[: cut[0], : cut[1], : cut[2]].astype("float64")
    blocks = blocks.reshape(cut[0] // f, f, cut[1] // f, f, cut[2] // f, f)
    return np.floor(blocks.mean(axis=(1, 3, 5)) + 0.5)


@pytest.mark.parametrize("name", list(METHODS))
def test_shapes_per_level(trees, image, name):
    levels = levels_of(trees[name])
    assert [a.shape for a in levels] == [SHAPE] + [
        tuple(s // f for s in SHAPE) for f in FACTORS
    ]
    assert all(a.dtype == np.uint16 for a in levels)
    np.testing.assert_array_equal(levels[0], image.values)


@pytest.mark.parametrize("name", list(METHODS))
def test_scale_and_translation_per_level(trees, name):
    """Level k: spacing * factor, voxel 0 centred at spacing * (factor - 1) / 2."""
    tree = trees[name]
    for f, scale in zip([1, *FACTORS], tree.children):
        da = tree[scale]["img"]
        for d in "zyx":
            step = float(da[d][1] - da[d][0])
            assert step == pytest.approx(SPACING[d] * f)
            assert float(da[d][0]) == pytest.approx(SPACING[d] * (f - 1) / 2)


@pytest.mark.parametrize("name", BIN_SHRINK_LIKE)
def test_bin_shrink_is_block_mean_rounded_half_up(trees, image, name):
    """Each level is the half-up block mean of the level below (already rounded), not of level 0."""
    levels = levels_of(trees[name])
    np.testing.assert_array_equal(levels[1], block_mean_half_up(image.values, 2))
    np.testing.assert_array_equal(levels[2], block_mean_half_up(levels[1], 2))
    # level 2 from level 0 directly differs by at most one grey level (double rounding)
    direct = block_mean_half_up(image.values, 4)
    assert np.abs(levels[2] - direct).max() <= 1


def test_bin_shrink_rounds_ties_up_not_to_even():
    """A block of 2 x 2 x 2 values whose mean is exactly 2.5 must become 3 (not 2)."""
    values = np.zeros((2, 2, 4), dtype=np.uint16)
    values[:, :, :2] = [[2, 3], [2, 3]]  # mean 2.5
    values[:, :, 2:] = [[4, 5], [4, 5]]  # mean 4.5: half to even would give 4
    img = to_spatial_image(values, dims=("z", "y", "x"), name="img")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = to_multiscale(img, scale_factors=[2], method=Methods.ITK_BIN_SHRINK)
    assert tree["scale1"]["img"].values.ravel().tolist() == [3, 5]


def test_gaussian_smooths(trees, image):
    """ITK_GAUSSIAN: same shapes as the bin shrink, values inside the input range, noise smoothed."""
    gauss = levels_of(trees["ITK_GAUSSIAN"])
    shrink = levels_of(trees["ITK_BIN_SHRINK"])
    for g, s in zip(gauss[1:], shrink[1:]):
        assert g.shape == s.shape
        assert image.values.min() <= g.min() and g.max() <= image.values.max()
        assert not np.array_equal(g, s)
        assert g.std() < 0.8 * image.values.std()
        assert abs(float(g.mean()) - float(image.values.mean())) < 0.05 * float(image.values.mean())


@pytest.mark.parametrize("name", list(METHODS))
def test_to_zarr_round_trip(trees, tmp_path, name):
    """.msi.to_zarr writes OME-Zarr 0.4 on Zarr format 2; zarr and tensorstore read it back."""
    ts = pytest.importorskip("tensorstore")
    tree = trees[name]
    path = tmp_path / f"{name}.ome.zarr"
    tree.msi.to_zarr(path)
    group = zarr.open_group(path, mode="r")
    assert group.metadata.zarr_format == 2
    ms = group.attrs["multiscales"][0]
    assert ms["version"] == "0.4"
    assert [a["name"] for a in ms["axes"]] == ["z", "y", "x"]
    expected = levels_of(tree)
    assert len(ms["datasets"]) == len(expected)
    for ds, want in zip(ms["datasets"], expected):
        np.testing.assert_array_equal(group[ds["path"]][:], want)
        scale = ds["coordinateTransformations"][0]["scale"]
        assert len(scale) == 3
        spec = {"driver": "zarr", "kvstore": {"driver": "file", "path": str(path / ds["path"])}}
        np.testing.assert_array_equal(ts.open(spec, read=True).result().read().result(), want)
    # the OME metadata parses as JSON with the axes' units
    zattrs = json.loads((path / ".zattrs").read_text())
    assert zattrs["multiscales"][0]["axes"][0].get("unit") == "micrometer"


@pytest.mark.parametrize("name", list(METHODS))
def test_constant_image_stays_constant(name):
    """A constant image stays constant at every level.

    The bin shrink keeps it exactly. ITK's Gaussian sums weights that add up to
    1 - tiny and casts to uint16 by truncation: 1234 becomes 1233 (measured on itk 5.4.7).
    """
    img = to_spatial_image(np.full(SHAPE, 1234, dtype=np.uint16), dims=("z", "y", "x"),
                           name="img", scale=SPACING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = to_multiscale(img, scale_factors=FACTORS, method=METHODS[name], chunks=8)
    levels = levels_of(tree)
    assert np.unique(levels[0]).tolist() == [1234]
    for level in levels[1:]:
        if name in BIN_SHRINK_LIKE:
            assert np.unique(level).tolist() == [1234]
        else:
            assert len(np.unique(level)) == 1 and 1233 <= level.min() <= 1234
