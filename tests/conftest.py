"""Shared fixtures: the offline data mirror and an isolated download cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from data_helpers.data import CACHE_ENV, MIRROR_ENV

REPO = Path(__file__).resolve().parents[1]


def mirror_path() -> Path:
    """The data mirror: $ZARR_BOOK_DATA_MIRROR, else ../shared/data beside the repository."""
    env = os.environ.get(MIRROR_ENV)
    path = Path(env) if env else REPO.parent / "shared" / "data"
    if not (path / "hoa_heart.zarr").is_dir():
        pytest.fail(
            f"No data mirror at {path}: set {MIRROR_ENV} to a folder holding hoa_heart.zarr "
            "(the tests run offline and need it)."
        )
    return path


@pytest.fixture
def mirror() -> Path:
    return mirror_path()


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty download cache for this test only."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(CACHE_ENV, str(cache))
    return cache


def pytest_unconfigure(config):
    """s3fs keeps aiohttp sessions in its instance cache; at interpreter exit aiohttp
    reports them as 'Unclosed client session' after pytest's summary line. They hold
    nothing of ours (every server is gone by then), so keep the end of the log clean."""
    import logging

    logging.getLogger("asyncio").setLevel(logging.CRITICAL)
