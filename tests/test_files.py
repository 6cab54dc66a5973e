"""Listings of what lands on disk."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from data_helpers.files import disk_usage, tree


def test_tree_shows_format3_layout(tmp_path):
    arr = zarr.create_array(tmp_path / "a.zarr", shape=(4, 4), chunks=(2, 2), dtype="u1")
    arr[:2, :] = 1
    listing = tree(tmp_path / "a.zarr")
    lines = listing.splitlines()
    assert lines[0] == "a.zarr/"
    assert any(line.endswith("c/") for line in lines)
    assert "zarr.json" in listing
    n_files, n_bytes = disk_usage(tmp_path / "a.zarr")
    assert n_files == 3  # zarr.json + the two written chunks
    assert n_bytes == sum(p.stat().st_size for p in (tmp_path / "a.zarr").rglob("*") if p.is_file())


def test_tree_shortens_big_folders(tmp_path):
    arr = zarr.create_array(tmp_path / "b.zarr", shape=(40,), chunks=(1,), dtype="u1", zarr_format=2)
    arr[:] = np.arange(1, 41)  # no chunk equals the fill value, so all 40 are stored
    listing = tree(tmp_path / "b.zarr", max_entries=5)
    assert "… 37 more" in listing  # 42 entries: .zarray, .zattrs, 40 chunks
    assert len(listing.splitlines()) == 1 + 5 + 1
    assert [line.split()[1] for line in listing.splitlines()[3:6]] == ["0", "1", "2"]


def test_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        tree(tmp_path / "nothing.zarr")
    with pytest.raises(FileNotFoundError):
        disk_usage(tmp_path / "nothing.zarr")
