"""Every docstring example in data_helpers runs and prints what it says."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = ["data", "files", "measure", "phantom", "plot", "pyramid", "servers"]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name, mirror, fresh_cache, monkeypatch):
    monkeypatch.setenv("ZARR_BOOK_DATA_MIRROR", str(mirror))
    module = importlib.import_module(f"data_helpers.{name}")
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0, f"data_helpers.{name} has no examples"
    assert result.failed == 0
