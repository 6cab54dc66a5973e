"""Add a fixed delay to every read of a zarr store, to see what remote storage costs.

On loopback (a local HTTP or S3 server) a request takes well under a millisecond,
so the number of requests hardly shows in a timing. Real object stores answer in
10-100 ms. :class:`LatencyStore` wraps any zarr-python 3 store and sleeps
``latency`` seconds before every read it forwards (``get``, each byte range of
``get_partial_values``, each merged range of ``get_ranges``), without blocking
other requests: ``n`` concurrent reads cost about one delay, ``n`` sequential
reads cost ``n`` delays, as on a real network.

zarr-python ships a similar wrapper, ``zarr.testing.store.LatencyStore``, but it
lives in zarr's test suite and needs pytest to import; this one does not.

Example
-------
>>> import time, numpy as np, zarr
>>> store = LatencyStore(zarr.storage.MemoryStore(), latency=0.05)
>>> arr = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="u1")
>>> arr[:] = np.arange(4, dtype="u1")
>>> start = time.perf_counter(); _ = arr[:]; took = time.perf_counter() - start
>>> 0.05 <= took < 0.5      # two chunks, read concurrently: about one delay
True
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from zarr.abc.store import ByteRequest, Store
from zarr.storage import WrapperStore

if TYPE_CHECKING:
    from zarr.core.buffer import Buffer, BufferPrototype


class LatencyStore(WrapperStore[Store]):
    """A store that waits ``latency`` seconds before every read, then forwards it.

    Writes, listings and ``exists`` are forwarded without delay: the point is
    to count what *reading* costs when each request has a round trip.

    Example
    -------
    >>> import zarr
    >>> LatencyStore(zarr.storage.MemoryStore(), latency=0.02).latency
    0.02
    """

    def __init__(self, store: Store, *, latency: float) -> None:
        if not isinstance(store, Store):
            raise TypeError(
                "LatencyStore wraps a zarr store object, e.g. "
                "LatencyStore(zarr.storage.LocalStore('data.zarr'), latency=0.02); "
                f"got {type(store).__name__}."
            )
        if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not (
            0 <= latency <= 60
        ):
            raise ValueError(
                f"latency is a delay in seconds between 0 and 60, e.g. latency=0.02 "
                f"for 20 ms; got {latency!r}."
            )
        super().__init__(store)
        self.latency = float(latency)

    def _with_store(self, store: Store) -> "LatencyStore":
        return type(self)(store, latency=self.latency)

    def __repr__(self) -> str:
        return f"LatencyStore({self._store!r}, latency={self.latency})"

    def __str__(self) -> str:
        return f"latency-{self._store}"

    def __eq__(self, value: object) -> bool:
        return (
            isinstance(value, LatencyStore)
            and self._store == value._store
            and self.latency == value.latency
        )

    async def get(
        self, key: str, prototype: "BufferPrototype", byte_range: ByteRequest | None = None
    ) -> "Buffer | None":
        await asyncio.sleep(self.latency)
        return await self._store.get(key, prototype, byte_range)

    def get_sync(self, key: str, *, prototype: Any = None, byte_range: ByteRequest | None = None):
        time.sleep(self.latency)
        return super().get_sync(key, prototype=prototype, byte_range=byte_range)

    async def get_partial_values(
        self, prototype: "BufferPrototype", key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> "list[Buffer | None]":
        return list(
            await asyncio.gather(*(self.get(k, prototype, r) for k, r in key_ranges))
        )

    def get_ranges(
        self,
        key: str,
        byte_ranges: Sequence[ByteRequest | None],
        *,
        prototype: "BufferPrototype",
        **kwargs: Any,
    ) -> AsyncIterator[Sequence[tuple[int, "Buffer | None"]]]:
        # zarr's default implementation merges nearby ranges and calls self.get
        # once per merged range, so each real request pays the delay once.
        return Store.get_ranges(self, key, byte_ranges, prototype=prototype, **kwargs)

    def get_ranges_sync(
        self,
        key: str,
        byte_ranges: Sequence[ByteRequest | None],
        *,
        prototype: "BufferPrototype",
        **kwargs: Any,
    ) -> Sequence["Buffer | None"]:
        return Store.get_ranges_sync(self, key, byte_ranges, prototype=prototype, **kwargs)

    async def _get_many(self, requests: Iterable[tuple[str, "BufferPrototype", ByteRequest | None]]):
        requests = list(requests)
        results = await asyncio.gather(*(self.get(k, p, r) for k, p, r in requests))
        for (key, _, _), buf in zip(requests, results):
            yield key, buf
