"""The synthetic phantom: deterministic, chunking-independent, realistic enough to teach with."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from data_helpers.phantom import CAMERA_OFFSET, CHANNELS, make_phantom


@pytest.fixture(scope="module")
def small():
    return make_phantom((24, 96, 80), seed=7)


def test_shapes_and_dtypes(small):
    image, labels = small
    assert image.shape == (len(CHANNELS), 24, 96, 80) and image.dtype == np.uint16
    assert labels.shape == (24, 96, 80) and labels.dtype == np.uint32


def test_same_seed_same_values_other_seed_other_values(small):
    image, labels = small
    again_image, again_labels = make_phantom((24, 96, 80), seed=7)
    np.testing.assert_array_equal(image, again_image)
    np.testing.assert_array_equal(labels, again_labels)
    other_image, other_labels = make_phantom((24, 96, 80), seed=8)
    assert (other_image != image).mean() > 0.5
    assert (other_labels != labels).mean() > 0.05


@pytest.mark.parametrize("chunks", [(24, 96, 80), (5, 17, 33), (8, 96, 1), 13])
def test_values_do_not_depend_on_chunking(small, chunks):
    image, labels = small
    lazy_image, lazy_labels = make_phantom((24, 96, 80), seed=7, chunks=chunks)
    assert isinstance(lazy_image, da.Array) and isinstance(lazy_labels, da.Array)
    assert lazy_image.chunksize[0] == len(CHANNELS)
    np.testing.assert_array_equal(lazy_image.compute(), image)
    np.testing.assert_array_equal(lazy_labels.compute(), labels)


def test_smaller_phantom_is_a_crop_of_a_bigger_one(small):
    image, labels = small
    crop_image, crop_labels = make_phantom((10, 40, 30), seed=7)
    np.testing.assert_array_equal(crop_image, image[:, :10, :40, :30])
    np.testing.assert_array_equal(crop_labels, labels[:10, :40, :30])


def test_huge_phantom_is_lazy_and_one_chunk_is_cheap():
    image, labels = make_phantom((4096, 4096, 4096), chunks=(64, 128, 128), seed=2)
    assert image.nbytes == 2 * 2 * 4096**3  # 128 GiB, never materialised
    block = image.blocks[0, 10, 3, 5].compute()
    assert block.shape == (2, 64, 128, 128)
    # the same region, cut from a differently chunked copy of the same phantom
    other, other_labels = make_phantom((4096, 4096, 4096), chunks=(100, 100, 300), seed=2)
    z0, y0, x0 = 10 * 64, 3 * 128, 5 * 128
    region = (slice(z0, z0 + 64), slice(y0, y0 + 128), slice(x0, x0 + 128))
    np.testing.assert_array_equal(block, other[(slice(None),) + region].compute())
    np.testing.assert_array_equal(labels.blocks[10, 3, 5].compute(), other_labels[region].compute())


def test_nuclei_are_bright_where_labelled(small):
    image, labels = small
    inside = image[0][labels > 0].mean()
    outside = image[0][labels == 0].mean()
    assert inside - CAMERA_OFFSET > 4 * (outside - CAMERA_OFFSET)
    n_nuclei = len(np.unique(labels)) - 1
    assert 20 < n_nuclei < 500  # many cells, each with its own id


def test_membranes_are_bright_between_nuclei(small):
    image, labels = small
    membrane = image[1]
    assert membrane[labels > 0].mean() < np.percentile(membrane, 50)
    assert np.percentile(membrane, 99) > 2 * np.percentile(membrane, 50)


def test_noise_is_shot_noise_like(small):
    """Variance tracks the signal above the camera offset, as Poisson noise does."""
    image, labels = small
    nuclei = image[0].astype(np.float64)
    inside = nuclei[labels > 0]
    bright = inside[inside > np.percentile(inside, 90)]
    dim = nuclei[labels == 0]
    dim = dim[dim < np.percentile(dim, 50)]
    # brighter regions are noisier; pure additive noise would keep variance flat
    assert bright.var() > 3 * dim.var()
    # near background the variance is about the mean photon count (Poisson)
    ratio = dim.var() / (dim.mean() - CAMERA_OFFSET)
    assert 0.3 < ratio < 2.0


def test_values_fit_uint16_without_clipping(small):
    image, _ = small
    assert image.min() > 0 and image.max() < 65535


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": (64, 64)}, "three positive sizes"),
        ({"shape": (0, 8, 8)}, "three positive sizes"),
        ({"shape": (8, 8, 8), "chunks": (4, 4)}, "chunks must be"),
        ({"shape": (8, 8, 8), "chunks": 0}, "chunks must be"),
        ({"shape": (8, 8, 8), "seed": -1}, "seed must be"),
        ({"shape": (8, 8, 8), "spacing": 1}, "spacing must be"),
    ],
)
def test_bad_input_says_what_works(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_phantom(**kwargs)
