"""Helpers for the book *Storing big bioimaging data with Zarr and OME-Zarr*.

One module per concern:

- :mod:`data_helpers.data` -- sample data, hash-verified, with an offline mirror.
- :mod:`data_helpers.phantom` -- a deterministic synthetic fluorescence volume of any size.
- :mod:`data_helpers.plot` -- slices, orthogonal views and montages.
- :mod:`data_helpers.files` -- what a Zarr hierarchy looks like on disk.
- :mod:`data_helpers.measure` -- count what crosses a store; time operations.
- :mod:`data_helpers.engines` -- Zarr engines side by side; the machine's limits.
- :mod:`data_helpers.latency` -- a store wrapper that delays every read, like a remote store.
- :mod:`data_helpers.servers` -- real local S3 (:mod:`~data_helpers.s3`, SeaweedFS) and HTTP
  (:mod:`~data_helpers.httpd`) servers, on 127.0.0.1.
- :mod:`data_helpers.catalogue` -- an image catalogue: SQLite rows + OME-Zarr objects.
- :mod:`data_helpers.record` -- record the numbers the prose quotes (glued, and printed in notebooks).
- :mod:`data_helpers.build`, :mod:`data_helpers.notebooks` -- execute and render the book; make the notebooks.

Imports are lazy: ``import data_helpers`` loads nothing a chapter did not install.

Example
-------
>>> from data_helpers import load_heart
>>> load_heart("numpy").shape
(120, 120, 139)
"""

import importlib
from typing import TYPE_CHECKING

# Lazy imports: each chapter installs only its own extras (on Colab too), so importing
# the package must not import what another chapter needs (S3 clients, ITK, ...).
_WHERE = {
    "Catalogue": "catalogue", "ImageRecord": "catalogue",
    "DATASETS": "data", "MIRROR_ENV": "data", "DataUnavailableError": "data",
    "fetch": "data", "load_heart": "data",
    "disk_usage": "files", "tree": "files",
    "CountingStore": "measure", "Timing": "measure", "time_it": "measure",
    "CHANNELS": "phantom", "make_phantom": "phantom",
    "http_server": "servers", "s3_server": "servers",
    "montage": "plot", "orthoviews": "plot", "show_chunk_grid": "plot", "show_slice": "plot",
    "record": "record",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        value = getattr(importlib.import_module(f"data_helpers.{_WHERE[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'data_helpers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))


if TYPE_CHECKING:  # for type checkers and IDEs
    from data_helpers.catalogue import Catalogue, ImageRecord
    from data_helpers.data import DATASETS, MIRROR_ENV, DataUnavailableError, fetch, load_heart
    from data_helpers.files import disk_usage, tree
    from data_helpers.measure import CountingStore, Timing, time_it
    from data_helpers.phantom import CHANNELS, make_phantom
    from data_helpers.plot import montage, orthoviews, show_chunk_grid, show_slice
    from data_helpers.record import record
    from data_helpers.servers import http_server, s3_server
