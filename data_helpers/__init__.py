"""Helpers for the book *Storing big bioimaging data with Zarr and OME-Zarr*.

One module per concern:

- :mod:`data_helpers.data` -- sample data, hash-verified, with an offline mirror.
- :mod:`data_helpers.phantom` -- a deterministic synthetic fluorescence volume of any size.
- :mod:`data_helpers.plot` -- slices, orthogonal views and montages.
- :mod:`data_helpers.files` -- what a Zarr hierarchy looks like on disk.
- :mod:`data_helpers.measure` -- count what crosses a store; time operations.
- :mod:`data_helpers.engines` -- Zarr engines side by side; the machine's limits.
- :mod:`data_helpers.latency` -- a store wrapper that delays every read, like a remote store.
- :mod:`data_helpers.servers` -- real local S3 (SeaweedFS) and HTTP servers, on 127.0.0.1.
- :mod:`data_helpers.catalogue` -- an image catalogue: SQLite rows + OME-Zarr objects.

Example
-------
>>> from data_helpers import load_heart
>>> load_heart("numpy").shape
(120, 120, 139)
"""

from data_helpers.catalogue import Catalogue, ImageRecord
from data_helpers.data import (
    DATASETS,
    MIRROR_ENV,
    DataUnavailableError,
    fetch,
    load_heart,
)
from data_helpers.files import disk_usage, tree
from data_helpers.measure import CountingStore, Timing, time_it
from data_helpers.phantom import CHANNELS, make_phantom
from data_helpers.servers import http_server, s3_server
from data_helpers.plot import montage, orthoviews, show_chunk_grid, show_slice

__all__ = [
    "CHANNELS",
    "Catalogue",
    "CountingStore",
    "DATASETS",
    "MIRROR_ENV",
    "DataUnavailableError",
    "ImageRecord",
    "Timing",
    "disk_usage",
    "fetch",
    "http_server",
    "load_heart",
    "make_phantom",
    "montage",
    "orthoviews",
    "s3_server",
    "show_chunk_grid",
    "show_slice",
    "time_it",
    "tree",
]
