"""Sample data: hash verification, the offline mirror, corrupted caches, clear errors."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import shutil
import socket
import threading

import numpy as np
import pytest
import xarray as xr
import zarr

from data_helpers import data
from data_helpers.data import (
    DATASETS,
    HEART,
    HEART_VOXEL_SIZE_UM,
    MIRROR_ENV,
    DataUnavailableError,
    fetch,
    load_heart,
)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_mirror_hashes_match_registry(mirror):
    """The registry in the code and the mirror's SHA256SUMS agree, file by file."""
    sums = dict(
        line.split()[::-1] for line in (mirror / "SHA256SUMS").read_text().splitlines() if line.strip()
    )
    assert sums == HEART.files


def test_fetch_from_mirror_gives_verified_files(mirror, fresh_cache, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    path = fetch("hoa_heart")
    assert path.parent.parent == fresh_cache or fresh_cache in path.parents
    names = sorted(p.name for p in path.iterdir())
    assert names == sorted(HEART.files)
    for name, digest in HEART.files.items():
        assert sha256(path / name) == digest


def test_load_heart_forms(mirror, fresh_cache, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    arr = load_heart("zarr")
    assert isinstance(arr, zarr.Array)
    assert arr.metadata.zarr_format == 2
    assert arr.shape == (120, 120, 139) and arr.dtype == np.uint8
    np_arr = load_heart("numpy")
    assert isinstance(np_arr, np.ndarray)
    np.testing.assert_array_equal(np_arr, arr[...])
    assert 0 < np_arr.mean() < 255  # real content, not fill values
    da = load_heart("xarray")
    assert isinstance(da, xr.DataArray)
    assert da.dims == ("z", "y", "x")
    assert da.attrs["units"] == "µm"
    assert HEART_VOXEL_SIZE_UM == pytest.approx(19.89 * 64)
    for dim in da.dims:
        np.testing.assert_allclose(np.diff(da[dim].values), HEART_VOXEL_SIZE_UM)
    np.testing.assert_array_equal(da.values, np_arr)


def test_corrupted_cache_file_is_replaced(mirror, fresh_cache, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    path = fetch("hoa_heart")
    victim = path / "0.1.1"
    good = victim.read_bytes()
    victim.write_bytes(good[: len(good) // 2])  # truncated
    (path / ".zarray").write_text('{"garbage": true}')  # edited
    path2 = fetch("hoa_heart")
    assert path2 == path
    assert victim.read_bytes() == good
    assert sha256(path / ".zarray") == HEART.files[".zarray"]
    assert load_heart("zarr").shape == (120, 120, 139)


def test_corrupted_mirror_file_is_rejected(mirror, fresh_cache, tmp_path, monkeypatch):
    bad_mirror = tmp_path / "mirror"
    shutil.copytree(mirror / "hoa_heart.zarr", bad_mirror / "hoa_heart.zarr")
    target = bad_mirror / "hoa_heart.zarr" / "1.0.1"
    target.chmod(0o644)
    target.write_bytes(b"\x00" + target.read_bytes()[1:])
    monkeypatch.setenv(MIRROR_ENV, str(bad_mirror))
    with pytest.raises(DataUnavailableError, match="SHA-256"):
        fetch("hoa_heart")
    # the bad copy never reached the cache
    assert not list(fresh_cache.rglob("1.0.1"))


def test_missing_mirror_file_names_the_fix(mirror, fresh_cache, tmp_path, monkeypatch):
    partial = tmp_path / "mirror"
    shutil.copytree(mirror / "hoa_heart.zarr", partial / "hoa_heart.zarr")
    (partial / "hoa_heart.zarr" / "0.0.2").unlink()
    monkeypatch.setenv(MIRROR_ENV, str(partial))
    with pytest.raises(DataUnavailableError, match="missing from the mirror"):
        fetch("hoa_heart")


def test_mirror_not_a_directory(fresh_cache, tmp_path, monkeypatch):
    monkeypatch.setenv(MIRROR_ENV, str(tmp_path / "nope"))
    with pytest.raises(DataUnavailableError, match=MIRROR_ENV):
        fetch("hoa_heart")


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_no_network_no_mirror_names_the_variable(fresh_cache, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    unreachable = dataclasses.replace(HEART, base_url=f"http://127.0.0.1:{_closed_port()}/data/")
    monkeypatch.setitem(DATASETS, "hoa_heart", unreachable)
    with pytest.raises(DataUnavailableError) as err:
        fetch("hoa_heart")
    assert MIRROR_ENV in str(err.value)
    assert not [p for p in fresh_cache.rglob("*") if p.is_file() and p.name in HEART.files]


@pytest.fixture
def http_mirror(mirror):
    """Serve the mirror read-only over real HTTP on 127.0.0.1."""
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(mirror))
    handler.log_message = lambda *a, **k: None  # type: ignore[method-assign]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def test_download_over_http_is_verified(http_mirror, fresh_cache, monkeypatch):
    """The real pooch download path, against a local HTTP server."""
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    monkeypatch.setitem(DATASETS, "hoa_heart", dataclasses.replace(HEART, base_url=http_mirror))
    path = fetch("hoa_heart")
    for name, digest in HEART.files.items():
        assert sha256(path / name) == digest


def test_download_with_wrong_hash_is_rejected(http_mirror, fresh_cache, monkeypatch):
    monkeypatch.delenv(MIRROR_ENV, raising=False)
    files = dict(HEART.files) | {"0.0.0": "0" * 64}
    monkeypatch.setitem(DATASETS, "hoa_heart", dataclasses.replace(HEART, base_url=http_mirror, files=files))
    with pytest.raises(DataUnavailableError, match="SHA-256"):
        fetch("hoa_heart")
    assert not list(fresh_cache.rglob("0.0.0"))


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="hoa_heart"):
        fetch("hoa_lung")


def test_unknown_form_lists_the_choices():
    with pytest.raises(ValueError, match="'zarr', 'numpy' or 'xarray'"):
        load_heart("tiff")  # type: ignore[arg-type]


def test_default_cache_is_outside_the_repository(monkeypatch):
    monkeypatch.delenv(data.CACHE_ENV, raising=False)
    from tests.conftest import REPO

    assert REPO not in data._cache_dir().parents
