"""Sample data: hash verification, the offline mirror, corrupted caches, clear errors."""

from __future__ import annotations

import dataclasses
import errno
import os
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


# ----------------------------------------------------------------- verified reads


def test_reads_are_verified_after_opening(mirror, fresh_cache, monkeypatch):
    """Issue 13 #6: a chunk deleted after opening read back as zeros, and 61 of 100
    single-bit flips gave silently wrong values."""
    from data_helpers.data import DataCorruptedError

    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    heart = load_heart("zarr")
    path = fetch("hoa_heart")
    good = heart[...]
    flipped = path / "0.1.1"
    data_bytes = bytearray(flipped.read_bytes())
    data_bytes[len(data_bytes) // 2] ^= 0x10  # one bit
    flipped.write_bytes(bytes(data_bytes))
    with pytest.raises(DataCorruptedError, match=r"0\.1\.1 .*SHA-256.*load_heart"):
        heart[0:64, 64:128, 64:128]
    np.testing.assert_array_equal(heart[64:, :64, :64], good[64:, :64, :64])  # others fine
    (path / "1.0.0").unlink()
    with pytest.raises(DataCorruptedError, match=r"1\.0\.0 is missing"):
        heart[64:, :64, :64]
    np.testing.assert_array_equal(load_heart("numpy"), good)  # reopening repairs both


# ----------------------------------------------------------------- local failures


def test_local_failures_are_not_reported_as_network_failures(
    mirror, fresh_cache, tmp_path, monkeypatch
):
    """Issue 13 #7: disk full, a bad cache path and a folder in place of a cached file
    were reported as network failures ("without internet, set ...MIRROR")."""
    from data_helpers.data import CACHE_ENV, CacheError

    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    # the cache path is a file
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")
    monkeypatch.setenv(CACHE_ENV, str(blocker / "cache"))
    with pytest.raises(CacheError, match="problem on this computer, not the network") as err:
        fetch()
    assert "without internet" not in str(err.value).lower()
    assert "a file stands where a folder should be" in str(err.value)
    # a cached file replaced by a folder
    monkeypatch.setenv(CACHE_ENV, str(fresh_cache))
    path = fetch()
    (path / "0.0.1").unlink()
    (path / "0.0.1").mkdir()
    with pytest.raises(CacheError, match=r"0\.0\.1.*a folder stands where a file should be"):
        fetch()
    (path / "0.0.1").rmdir()
    # the disk fills up during the copy
    (path / "0.0.2").unlink()

    def disk_full(src, dst):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(dst))

    monkeypatch.setattr(data.shutil, "copyfile", disk_full)
    with pytest.raises(CacheError, match="disk is full") as err:
        fetch()
    assert err.value.errno == errno.ENOSPC
    monkeypatch.undo()
    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    monkeypatch.setenv(CACHE_ENV, str(fresh_cache))
    assert fetch() == path and sha256(path / "0.0.2") == HEART.files["0.0.2"]


_COPY_THEN_HANG = """
import os, sys, time, types
pkg = types.ModuleType("data_helpers"); pkg.__path__ = [sys.argv[1]]
sys.modules["data_helpers"] = pkg
from data_helpers import data

def slow_copy(src, dst):
    with open(src, "rb") as s, open(dst, "wb") as d:
        d.write(s.read()[:1000]); d.flush()
    print("copying", flush=True)
    time.sleep(60)

data.shutil.copyfile = slow_copy
data.fetch()
"""


def test_kill_during_a_mirror_copy_leaves_nothing_trusted(mirror, fresh_cache, monkeypatch):
    """Issue 13 #7: a kill -9 during a mirror copy left a partial temp file inside the
    cached dataset for good."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    monkeypatch.setenv(MIRROR_ENV, str(mirror))
    package = str(Path(data.__file__).parent)
    proc = subprocess.Popen([sys.executable, "-c", _COPY_THEN_HANG, package],
                            stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert proc.stdout.readline().strip() == "copying"
    finally:
        proc.kill()
        proc.wait()
    folder = fresh_cache / "hoa_heart.zarr"
    temps = [p for p in folder.iterdir() if p.name not in HEART.files]
    assert len(temps) == 1 and 0 < temps[0].stat().st_size <= 1000  # what kill -9 left
    old = time.time() - data.STALE_TEMP_SECONDS - 1
    os.utime(temps[0], (old, old))
    path = fetch()
    assert sorted(p.name for p in path.iterdir()) == sorted(HEART.files)
    for name, digest in HEART.files.items():
        assert sha256(path / name) == digest
