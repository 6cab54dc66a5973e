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


def pytest_collection_finish(session):
    """Start executing the chapters (two kernels) as soon as the book's tests are collected.

    The unit tests mostly wait on servers and sockets, so the chapters run beside them;
    `tests/test_book.py` then waits for the executions (see its `report` fixture).
    """
    if any(item.get_closest_marker("book") for item in session.items):
        from concurrent.futures import ThreadPoolExecutor

        from data_helpers import build

        os.environ.setdefault(MIRROR_ENV, str(mirror_path()))
        force = os.environ.get("ZARR_BOOK_FORCE") == "1"
        pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="chapters")
        session.config._chapter_execution = pool.submit(build.execute, force=force, log=lambda _: None)
        pool.shutdown(wait=False)


def pytest_terminal_summary(terminalreporter, config):
    """Each chapter's execution time (or failure), at the end of every run that executed them."""
    future = getattr(config, "_chapter_execution", None)
    if future is None or not future.done() or future.exception():
        return
    report = future.result()
    terminalreporter.section("chapters executed (seconds to the last cell, and with the "
                             "kernel's shutdown; two at a time)")
    for name, entry in sorted(report.items(), key=lambda kv: -kv[1].get("seconds", 0)):
        state = "ok" if entry.get("ok") else "FAILED"
        seconds = entry.get("seconds", 0)
        terminalreporter.write_line(
            f"{name:<24} {state:<7} {seconds:6.1f} {entry.get('with kernel shutdown', seconds):6.1f}")


def pytest_collection_modifyitems(session, config, items):
    """The book's tests (which wait for the chapters) run last, after the unit tests."""
    items.sort(key=lambda item: item.get_closest_marker("book") is not None)
