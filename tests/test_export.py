"""data_helpers.export: OME-Zarr -> OME-TIFF round trips, refusals, no half-written files."""

from __future__ import annotations

import json
import zipfile

import imagecodecs
import numpy as np
import pytest
import tifffile
import zarr
from ome_types import from_xml

from data_helpers import export
from data_helpers.export import (
    ExportError,
    export_ome_tiff,
    ome_tiff_metadata,
    write_ome_zarr,
    yx_pyramid,
)

VOXEL = (0.8, 0.25, 0.25)  # anisotropic z, y, x


@pytest.fixture
def three_channels():
    rng = np.random.default_rng(1)
    return rng.integers(0, 4000, size=(3, 5, 70, 90), dtype=np.uint16)


def _read_all(path):
    with tifffile.TiffFile(path) as tif:
        levels = [level.asarray() for level in tif.series[0].levels]
        return tif.series[0].axes, levels, from_xml(tif.ome_metadata)


def test_multichannel_round_trip(tmp_path, three_channels):
    levels = yx_pyramid(three_channels, 3)
    src = write_ome_zarr(tmp_path / "a.ome.zarr", levels, axes="czyx", scale=(1.0, *VOXEL),
                         channel_names=["dapi", "gfp", "rfp"], chunks=(1, 2, 32, 32),
                         shards=(1, 4, 64, 64))
    out = export_ome_tiff(src, tmp_path / "a.ome.tif", tile=(32, 32))
    axes, back, ome = _read_all(out)
    assert axes == "CZYX"
    assert len(back) == 3
    for a, b in zip(levels, back):
        assert a.shape == b.shape and np.array_equal(a, b)
    px = ome.images[0].pixels
    assert (px.physical_size_z, px.physical_size_y, px.physical_size_x) == VOXEL
    assert px.physical_size_z_unit.value == "µm"
    assert [c.name for c in px.channels] == ["dapi", "gfp", "rfp"]
    # libtiff (a second implementation) decodes the level-0 pages to the same pixels
    pages = imagecodecs.tiff_decode(out.read_bytes(), index=None)
    assert np.array_equal(pages, three_channels.reshape(-1, 70, 90))
    assert not list(tmp_path.glob("*.partial"))


def test_label_image_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 2**32 - 1, size=(4, 64, 48), dtype=np.uint32)
    levels = yx_pyramid(labels, 2, method="nearest")
    src = write_ome_zarr(tmp_path / "l.ome.zarr", levels, axes="zyx", scale=VOXEL)
    out = export_ome_tiff(src, tmp_path / "l.ome.tif", tile=(16, 16))
    axes, back, ome = _read_all(out)
    assert axes == "ZYX" and back[0].dtype == np.uint32
    assert np.array_equal(back[0], labels) and np.array_equal(back[1], labels[:, ::2, ::2])
    assert set(np.unique(back[1])) <= set(np.unique(labels))


def test_ome_zarr_04_input(tmp_path, three_channels):
    src = write_ome_zarr(tmp_path / "old.ome.zarr", yx_pyramid(three_channels, 2), axes="czyx",
                         scale=(1.0, *VOXEL), version="0.4", compressor="blosc",
                         channel_names=["a", "b", "c"])
    assert (src / ".zattrs").exists()
    out = export_ome_tiff(src, tmp_path / "old.ome.tif", tile=(32, 32))
    _, back, ome = _read_all(out)
    assert np.array_equal(back[0], three_channels)
    assert [c.name for c in ome.images[0].pixels.channels] == ["a", "b", "c"]


def test_refuses_a_group_that_is_not_an_image(tmp_path):
    g = zarr.open_group(tmp_path / "plain.zarr", mode="w")
    g.create_array("x", shape=(4, 4), dtype="u1")
    with pytest.raises(ExportError, match="not an OME-Zarr image"):
        export_ome_tiff(tmp_path / "plain.zarr", tmp_path / "x.ome.tif")
    assert not list(tmp_path.glob("x.ome.tif*"))


def test_refuses_axes_ome_tiff_cannot_hold(tmp_path):
    g = zarr.open_group(tmp_path / "angles.ome.zarr", mode="w", zarr_format=3)
    g.create_array("0", shape=(2, 8, 8), dtype="u1", dimension_names=("angle", "y", "x"))
    g.attrs["ome"] = {"version": "0.5", "multiscales": [{
        "axes": [{"name": "angle", "type": "space"}, {"name": "y", "type": "space"},
                 {"name": "x", "type": "space"}],
        "datasets": [{"path": "0", "coordinateTransformations": [
            {"type": "scale", "scale": [1.0, 1.0, 1.0]}]}]}]}
    with pytest.raises(ExportError, match="T, C, Z, Y, X"):
        export_ome_tiff(g, tmp_path / "angles.ome.tif")


def test_refuses_z_downsampled_pyramid_and_names_the_fix(tmp_path):
    a = np.zeros((8, 32, 32), "u2")
    src = write_ome_zarr(tmp_path / "z.ome.zarr", [a, a[::2, ::2, ::2]], axes="zyx", scale=VOXEL)
    with pytest.raises(ExportError, match="levels=1"):
        export_ome_tiff(src, tmp_path / "z.ome.tif", tile=(16, 16))
    out = export_ome_tiff(src, tmp_path / "z.ome.tif", tile=(16, 16), levels=1)
    with tifffile.TiffFile(out) as tif:
        assert len(tif.series[0].levels) == 1


def test_bad_tile_and_existing_file(tmp_path, three_channels):
    src = write_ome_zarr(tmp_path / "a.ome.zarr", [three_channels], axes="czyx", scale=(1.0, *VOXEL))
    with pytest.raises(ValueError, match="multiples of 16"):
        export_ome_tiff(src, tmp_path / "a.ome.tif", tile=(30, 30))
    (tmp_path / "a.ome.tif").write_bytes(b"keep me")
    with pytest.raises(FileExistsError, match="overwrite=True"):
        export_ome_tiff(src, tmp_path / "a.ome.tif", tile=(32, 32))
    assert (tmp_path / "a.ome.tif").read_bytes() == b"keep me"
    export_ome_tiff(src, tmp_path / "a.ome.tif", tile=(32, 32), overwrite=True)
    assert tifffile.imread(tmp_path / "a.ome.tif").shape == three_channels.shape


def test_interrupted_export_leaves_no_file(tmp_path, three_channels, monkeypatch):
    src = write_ome_zarr(tmp_path / "a.ome.zarr", yx_pyramid(three_channels, 2), axes="czyx",
                         scale=(1.0, *VOXEL))
    real_tiles = export.tiles

    def failing_tiles(array, tile):
        for k, t in enumerate(real_tiles(array, tile)):
            if k == 5:
                raise OSError("disk full (simulated)")
            yield t

    monkeypatch.setattr(export, "tiles", failing_tiles)
    with pytest.raises(OSError, match="simulated"):
        export_ome_tiff(src, tmp_path / "a.ome.tif", tile=(32, 32))
    assert not (tmp_path / "a.ome.tif").exists()
    assert not list(tmp_path.glob("*.partial"))


def test_metadata_units_and_time(tmp_path):
    a = np.zeros((3, 2, 16, 16), "u1")
    src = write_ome_zarr(tmp_path / "t.ome.zarr", [a], axes="tcyx", scale=(2.5, 1.0, 0.1, 0.1),
                         unit="nanometer", channel_names=["x", "y"])
    meta = ome_tiff_metadata(src)
    assert meta["axes"] == "TCYX"
    assert meta["PhysicalSizeXUnit"] == "nm" and meta["TimeIncrement"] == 2.5
    assert meta["TimeIncrementUnit"] == "s"


def test_write_ome_zarr_checks_input(tmp_path):
    a = np.zeros((4, 4), "u1")
    with pytest.raises(ValueError, match="tczyx"):
        write_ome_zarr(tmp_path / "a", [a], axes="ab", scale=(1, 1))
    with pytest.raises(ValueError, match="one value per axis"):
        write_ome_zarr(tmp_path / "a", [a], axes="yx", scale=(1,))
    with pytest.raises(ValueError, match="Zarr format 3"):
        write_ome_zarr(tmp_path / "a", [a], axes="yx", scale=(1, 1), version="0.4", shards=(4, 4))


def test_yx_pyramid_rounds_half_up_and_keeps_planes():
    a = np.array([[[1, 2], [2, 2]]], dtype=np.uint8)  # mean 1.75 -> 2
    assert yx_pyramid(a, 2)[1].tolist() == [[[2]]]
    b = np.array([[[1, 2], [1, 2]]], dtype=np.uint8)  # mean 1.5 -> 2
    assert yx_pyramid(b, 2)[1].tolist() == [[[2]]]
    with pytest.raises(ValueError, match="fewer"):
        yx_pyramid(np.zeros((1, 2, 2), "u1"), 3)


def test_ngff_zarr_writes_rfc9_ozx_that_zarr_python_reads(tmp_path, three_channels):
    """The chapter says ngff-zarr writes .ozx; check its layout and read it with zarr-python."""
    nz = pytest.importorskip("ngff_zarr")
    src = write_ome_zarr(tmp_path / "a.ome.zarr", yx_pyramid(three_channels, 2), axes="czyx",
                         scale=(1.0, *VOXEL), chunks=(1, 5, 32, 32))
    ms = nz.from_ngff_zarr(str(src))
    nz.to_ngff_zarr(str(tmp_path / "a.ozx"), ms, version="0.5")
    with zipfile.ZipFile(tmp_path / "a.ozx") as zf:
        names = zf.namelist()
        assert names[0] == "zarr.json"
        n_json = sum(n.endswith("zarr.json") for n in names)
        assert all(n.endswith("zarr.json") for n in names[:n_json])
        assert all(i.compress_type == zipfile.ZIP_STORED for i in zf.infolist())
        assert json.loads(zf.comment)["ome"]["version"] == "0.5"
    with zarr.storage.ZipStore(tmp_path / "a.ozx", mode="r") as store:
        g = zarr.open_group(store, mode="r")
        assert np.array_equal(g["0"][:], three_channels)
