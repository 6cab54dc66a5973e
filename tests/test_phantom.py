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


def _reference_block(start, stop, spacing, seed):
    """The phantom written plainly, voxel-array by voxel-array (the original implementation).

    The fast tiled code must match it bit for bit: same float32 operations, same order.
    """
    from data_helpers.phantom import _GOLDEN, _Cells, _mix

    coords = [np.arange(a, b, dtype=np.float32) for a, b in zip(start, stop)]
    k0 = [np.floor(c / spacing - 0.5).astype(np.int64) for c in coords]
    lo = np.array([k.min() for k in k0])
    cells = _Cells(lo, np.array([k.max() + 1 for k in k0]), spacing, seed)
    ny, nx = cells.n[1], cells.n[2]
    shape = tuple(b - a for a, b in zip(start, stop))
    d1 = np.full(shape, np.inf, np.float32)
    d2 = np.full(shape, np.inf, np.float32)
    owner = np.zeros(shape, np.int64)
    rel = [k - l for k, l in zip(k0, lo)]
    for dz, dy, dx in [(a, b, c) for a in (0, 1) for b in (0, 1) for c in (0, 1)]:
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
    radius = cells.radius.take(owner)
    labels = np.where(d1 < radius, cells.label.take(owner), np.uint32(0)).astype(np.uint32)
    bright = cells.brightness.take(owner)
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
    zi, yi, xi = (np.arange(a, b, dtype=np.uint64) for a, b in zip(start, stop))
    key = (zi[:, None, None] << np.uint64(42)) | (yi[None, :, None] << np.uint64(21)) | xi
    image = np.empty((len(CHANNELS),) + shape, np.uint16)
    for c, lam in enumerate(expected):
        lam = np.maximum(lam, 0).astype(np.float32)
        h = _mix(key ^ _mix(np.uint64(seed * 1024 + 10 + c + 1) ^ _GOLDEN))
        scale = np.float32(2.0**-32)
        u1 = ((h & np.uint64(0xFFFFFFFF)).astype(np.float32) + np.float32(0.5)) * scale
        u1 = np.minimum(u1, np.float32(1 - 2**-24))
        u2 = ((h >> np.uint64(32)).astype(np.float32) + np.float32(0.5)) * scale
        normal = np.sqrt(-2.0 * np.log(u1)) * np.cos(np.float32(2 * np.pi) * u2)
        adu = CAMERA_OFFSET + lam + np.sqrt(lam + 2.0**2) * normal
        image[c] = np.clip(np.rint(adu), 0, 65535).astype(np.uint16)
    return image, labels


@pytest.mark.parametrize("tile_voxels", [1, 700, 1 << 16])
@pytest.mark.parametrize(
    ("start", "stop", "spacing", "seed"),
    [
        ((0, 0, 0), (21, 45, 37), 18.0, 7),
        ((3, 1000, 77), (40, 1031, 130), 4.0, 3),  # many small cells
        ((500, 20, 9), (530, 120, 50), 60.0, 11),  # runs longer than a tile
        ((2**21 - 30, 2**21 - 25, 2**21 - 40), (2**21 - 1,) * 3, 9.3, 2**20 - 1),
    ],
)
def test_tiled_code_matches_the_plain_definition_bit_for_bit(
    monkeypatch, tile_voxels, start, stop, spacing, seed
):
    from data_helpers import phantom

    monkeypatch.setattr(phantom, "_TILE_VOXELS", tile_voxels)
    want_image, want_labels = _reference_block(start, stop, spacing, seed)
    image, labels = phantom._render(start, stop, spacing, seed)
    np.testing.assert_array_equal(image, want_image)
    np.testing.assert_array_equal(labels, want_labels)
    np.testing.assert_array_equal(phantom._image_block(start, stop, spacing, seed), want_image)
    np.testing.assert_array_equal(phantom._labels_block(start, stop, spacing, seed), want_labels)


@pytest.mark.parametrize("shape", [(1024, 4096, 4096), (8192, 8192, 8192), (2**21 - 1,) * 3])
def test_building_a_lazy_phantom_is_instant_whatever_its_size(shape):
    import time

    start = time.perf_counter()
    image, labels = make_phantom(shape, chunks=(64, 128, 128), seed=3)
    region = image[:, 5:7, 1000:1002, 300]
    seconds = time.perf_counter() - start
    assert seconds < 1.0, f"building took {seconds:.2f} s"
    assert image.npartitions >= 16384
    want = make_phantom((7, 1002, 301), seed=3)[0][:, 5:7, 1000:1002, 300]
    np.testing.assert_array_equal(region.compute(), want)


def test_eager_phantom_too_big_for_memory_fails_before_allocating(monkeypatch):
    import psutil

    class Small:
        available = 2**30

    monkeypatch.setattr(psutil, "virtual_memory", lambda: Small())
    with pytest.raises(MemoryError, match=r"chunks=.*lazy dask"):
        make_phantom((512, 512, 520))  # over 1 GiB of image + labels
    image, _ = make_phantom((512, 512, 512), chunks=128)  # lazy is fine
    assert image.shape == (2, 512, 512, 512)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shape": "64"}, "three positive sizes"),
        ({"shape": 64}, "three positive sizes"),
        ({"shape": (8, 8.5, 8)}, "shape: expected whole numbers"),
        ({"shape": (8, "8", 8)}, "shape: expected whole numbers"),
        ({"shape": (8, None, 8)}, "shape: expected whole numbers"),
        ({"shape": (8, 8, 2**21)}, "below"),
        ({"shape": (8, 8, 8), "chunks": "4"}, "chunks must be"),
        ({"shape": (8, 8, 8), "chunks": (4, 4, 4.5)}, "chunks: expected whole numbers"),
        ({"shape": (8, 8, 8), "chunks": True}, "chunks must be"),
        ({"shape": (8, 8, 8), "seed": 1.5}, "seed: expected whole numbers"),
        ({"shape": (8, 8, 8), "seed": "1"}, "seed: expected whole numbers"),
        ({"shape": (8, 8, 8), "seed": 2**20}, "seed must be"),
        ({"shape": (8, 8, 8), "spacing": float("nan")}, "spacing must be"),
        ({"shape": (8, 8, 8), "spacing": "18"}, "spacing must be"),
        ({"shape": (8, 8, 8), "spacing": float("inf")}, "spacing must be"),
    ],
)
def test_more_bad_input_gets_a_clear_error(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_phantom(**kwargs)


def test_float_sizes_that_are_whole_numbers_are_accepted():
    image, _ = make_phantom((4.0, 8, np.int64(8)), chunks=(2.0, 8, 8), seed=np.int64(1), spacing=8)
    np.testing.assert_array_equal(image.compute(), make_phantom((4, 8, 8), seed=1, spacing=8)[0])
