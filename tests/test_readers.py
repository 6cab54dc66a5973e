"""compare_readers: zarr-python and tensorstore agree, format 2 and 3, sharded, labels."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from data_helpers.readers import compare_readers

AXES = [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}]
DATASETS = [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}]


def test_format3_sharded_with_labels(tmp_path):
    root = tmp_path / "img.ome.zarr"
    g = zarr.open_group(root, mode="w", attributes={"ome": {
        "version": "0.5", "multiscales": [{"axes": AXES, "datasets": DATASETS}]}})
    data = np.arange(64 * 48, dtype="uint16").reshape(64, 48)
    g.create_array("0", data=data, chunks=(16, 16), shards=(32, 32))
    labels = g.create_group("labels", attributes={"ome": {"version": "0.5", "labels": ["n"]}})
    n = labels.create_group("n", attributes={"ome": {
        "version": "0.5", "multiscales": [{"axes": AXES, "datasets": DATASETS}]}})
    n.create_array("0", data=(data % 3).astype("uint32"), chunks=(32, 32))
    table = compare_readers(root)
    assert table["path"].tolist() == ["0", "labels/n/0"]
    assert table["sharded"].tolist() == [True, False]
    assert table["same voxels"].all()


def test_format2(tmp_path):
    root = tmp_path / "v04.ome.zarr"
    g = zarr.open_group(root, mode="w", zarr_format=2,
                        attributes={"multiscales": [{"version": "0.4", "axes": AXES,
                                                     "datasets": DATASETS}]})
    g.create_array("0", data=np.ones((5, 7), dtype="uint8"), chunks=(2, 3))
    assert compare_readers(root)["format"].tolist() == [2]


def test_not_an_image(tmp_path):
    with pytest.raises(FileNotFoundError, match="OME-Zarr image group"):
        compare_readers(tmp_path)
    zarr.open_group(tmp_path / "g", mode="w")
    with pytest.raises(ValueError, match="no 'multiscales'"):
        compare_readers(tmp_path / "g")
