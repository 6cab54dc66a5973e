"""Measure what crosses a store, and how fast: request counting and timing helpers.

:class:`CountingStore` wraps any zarr-python 3 store (memory, local, zip, S3,
HTTP, ...) and counts every call that crosses it, with the bytes moved per call
and per key. It builds on zarr's own :class:`zarr.storage.WrapperStore`; zarr's
:class:`~zarr.storage.LoggingStore` counts calls too, but not bytes, and logs
every call to stdout, so we count here instead.

Example
-------
>>> import numpy as np, zarr
>>> store = CountingStore(zarr.storage.MemoryStore())
>>> arr = zarr.create_array(store, shape=(100,), chunks=(10,), dtype="u1")
>>> arr[:] = np.arange(100, dtype="u1")
>>> store.reset()
>>> _ = arr[5:25]           # touches chunks 0, 1 and 2
>>> store.counts["get"]
3
"""

from __future__ import annotations

import numbers
import statistics
import threading
import time
from collections import defaultdict
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from zarr.abc.store import ByteRequest, Store
from zarr.storage import WrapperStore

if TYPE_CHECKING:
    import pandas as pd
    from zarr.core.buffer import Buffer, BufferPrototype

#: The kinds of call a :class:`CountingStore` counts.
OPERATIONS = ("get", "partial get", "exists", "set", "delete", "list")


@dataclass
class Event:
    """One call that crossed the store."""

    op: str
    key: str
    nbytes: int
    byte_range: ByteRequest | None = None
    found: bool = True


@dataclass
class _Stats:
    """Counters shared by a CountingStore and the copies zarr makes of it."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    events: list[Event] = field(default_factory=list)

    def add(
        self, op: str, key: str, nbytes: int = 0,
        byte_range: ByteRequest | None = None, found: bool = True,
    ) -> None:
        with self.lock:
            self.events.append(Event(op, key, nbytes, byte_range, found))


def _nbytes(buf: Any) -> int:
    return 0 if buf is None else len(buf)


class CountingStore(WrapperStore[Store]):
    """A store that forwards every call to ``store`` and counts it.

    Counted operations (see :data:`OPERATIONS`): ``get`` (a whole value),
    ``partial get`` (a byte range of a value, as sharding or ranged reads use),
    ``exists``, ``set``, ``delete`` and ``list``. Bytes are those of the values
    read or written. Counters survive the read-only copies zarr makes when an
    array is opened with ``mode="r"``.

    Example
    -------
    >>> import zarr
    >>> store = CountingStore(zarr.storage.MemoryStore())
    >>> _ = zarr.create_array(store, shape=(4,), chunks=(2,), dtype="u1")
    >>> store.counts["set"]   # zarr.json
    1
    """

    def __init__(self, store: Store, *, _stats: _Stats | None = None) -> None:
        if isinstance(store, CountingStore):
            raise TypeError("This store is already counted; use it directly.")
        if not isinstance(store, Store):
            raise TypeError(
                "CountingStore wraps a zarr store object, e.g. "
                "CountingStore(zarr.storage.LocalStore('data.zarr')) or "
                f"CountingStore(zarr.storage.MemoryStore()); got {type(store).__name__}."
            )
        super().__init__(store)
        self._stats = _stats if _stats is not None else _Stats()

    # -- results -------------------------------------------------------------
    @property
    def events(self) -> list[Event]:
        """Every counted call, in order."""
        with self._stats.lock:
            return list(self._stats.events)

    @property
    def counts(self) -> dict[str, int]:
        """Number of calls per operation (all of :data:`OPERATIONS`, zeros included)."""
        out = dict.fromkeys(OPERATIONS, 0)
        for e in self.events:
            out[e.op] += 1
        return out

    @property
    def requests(self) -> int:
        """Calls that read or wrote a value: gets, partial gets and sets."""
        c = self.counts
        return c["get"] + c["partial get"] + c["set"]

    @property
    def bytes_read(self) -> int:
        return sum(e.nbytes for e in self.events if e.op in ("get", "partial get"))

    @property
    def bytes_written(self) -> int:
        return sum(e.nbytes for e in self.events if e.op == "set")

    def reset(self) -> None:
        """Forget everything counted so far."""
        with self._stats.lock:
            self._stats.events.clear()

    def summary(self) -> "pd.DataFrame":
        """A table with one row per operation: calls, bytes, and calls that found nothing.

        Example
        -------
        >>> import zarr
        >>> s = CountingStore(zarr.storage.MemoryStore())
        >>> _ = zarr.create_array(s, shape=(4,), chunks=(2,), dtype="u1")
        >>> s.summary().loc["set", "calls"]
        np.int64(1)
        """
        import pandas as pd

        calls = self.counts
        nbytes: dict[str, int] = defaultdict(int)
        missing: dict[str, int] = defaultdict(int)
        for e in self.events:
            nbytes[e.op] += e.nbytes
            missing[e.op] += not e.found
        return pd.DataFrame(
            {
                "calls": [calls[op] for op in OPERATIONS],
                "bytes": [nbytes[op] for op in OPERATIONS],
                "not found": [missing[op] for op in OPERATIONS],
            },
            index=pd.Index(OPERATIONS, name="operation"),
        )

    def per_key(self) -> "pd.DataFrame":
        """A table with one row per key: calls and bytes by operation."""
        import pandas as pd

        rows: dict[tuple[str, str], list[int]] = defaultdict(lambda: [0, 0])
        for e in self.events:
            row = rows[(e.key, e.op)]
            row[0] += 1
            row[1] += e.nbytes
        frame = pd.DataFrame(
            [(k, op, c, b) for (k, op), (c, b) in rows.items()],
            columns=["key", "operation", "calls", "bytes"],
        )
        return frame.sort_values(["key", "operation"], ignore_index=True)

    # -- plumbing -------------------------------------------------------------
    def _with_store(self, store: Store) -> "CountingStore":
        return type(self)(store, _stats=self._stats)

    def __repr__(self) -> str:
        return f"CountingStore({self._store!r})"

    def __str__(self) -> str:
        return f"counting-{self._store}"

    def __eq__(self, value: object) -> bool:
        return isinstance(value, CountingStore) and self._store == value._store

    def _read(self, key: str, buf: Any, byte_range: ByteRequest | None) -> None:
        op = "get" if byte_range is None else "partial get"
        self._stats.add(op, key, _nbytes(buf), byte_range, found=buf is not None)

    async def get(
        self, key: str, prototype: "BufferPrototype", byte_range: ByteRequest | None = None
    ) -> "Buffer | None":
        buf = await self._store.get(key, prototype, byte_range)
        self._read(key, buf, byte_range)
        return buf

    def get_sync(self, key: str, *, prototype: Any = None, byte_range: ByteRequest | None = None):
        buf = super().get_sync(key, prototype=prototype, byte_range=byte_range)
        self._read(key, buf, byte_range)
        return buf

    async def get_partial_values(
        self, prototype: "BufferPrototype", key_ranges: Iterable[tuple[str, ByteRequest | None]]
    ) -> "list[Buffer | None]":
        key_ranges = list(key_ranges)
        bufs = await self._store.get_partial_values(prototype, key_ranges)
        for (key, byte_range), buf in zip(key_ranges, bufs):
            self._read(key, buf, byte_range)
        return bufs

    def get_ranges(
        self,
        key: str,
        byte_ranges: Sequence[ByteRequest | None],
        *,
        prototype: "BufferPrototype",
        **kwargs: Any,
    ) -> AsyncIterator[Sequence[tuple[int, "Buffer | None"]]]:
        # zarr's default implementation coalesces nearby ranges and calls
        # self.get for each merged range, so each real request is counted.
        return Store.get_ranges(self, key, byte_ranges, prototype=prototype, **kwargs)

    async def _get_many(
        self, requests: Iterable[tuple[str, "BufferPrototype", ByteRequest | None]]
    ) -> AsyncGenerator[tuple[str, "Buffer | None"], None]:
        requests = list(requests)
        ranges: dict[str, list[ByteRequest | None]] = defaultdict(list)
        for key, _, byte_range in requests:
            ranges[key].append(byte_range)
        async for key, buf in self._store._get_many(requests):
            self._read(key, buf, ranges[key].pop(0) if ranges[key] else None)
            yield key, buf

    async def exists(self, key: str) -> bool:
        found = await self._store.exists(key)
        self._stats.add("exists", key, found=found)
        return found

    async def set(self, key: str, value: "Buffer") -> None:
        await self._store.set(key, value)
        self._stats.add("set", key, _nbytes(value))

    def set_sync(self, key: str, value: "Buffer") -> None:
        super().set_sync(key, value)
        self._stats.add("set", key, _nbytes(value))

    async def set_if_not_exists(self, key: str, value: "Buffer") -> None:
        await self._store.set_if_not_exists(key, value)
        self._stats.add("set", key, _nbytes(value))

    async def _set_many(self, values: Iterable[tuple[str, "Buffer"]]) -> None:
        values = list(values)
        await self._store._set_many(values)
        for key, value in values:
            self._stats.add("set", key, _nbytes(value))

    async def delete(self, key: str) -> None:
        await self._store.delete(key)
        self._stats.add("delete", key)

    def delete_sync(self, key: str) -> None:
        super().delete_sync(key)
        self._stats.add("delete", key)

    async def delete_dir(self, prefix: str) -> None:
        await self._store.delete_dir(prefix)
        self._stats.add("delete", prefix)

    async def _listing(self, kind: str, it: AsyncIterator[str]) -> AsyncIterator[str]:
        self._stats.add("list", kind)
        async for key in it:
            yield key

    def list(self) -> AsyncIterator[str]:
        return self._listing("", self._store.list())

    def list_prefix(self, prefix: str) -> AsyncIterator[str]:
        return self._listing(prefix, self._store.list_prefix(prefix))

    def list_dir(self, prefix: str) -> AsyncIterator[str]:
        return self._listing(prefix, self._store.list_dir(prefix))


# -- timing ---------------------------------------------------------------------


@dataclass(frozen=True)
class Timing:
    """Repeated wall-clock timings of one operation.

    ``seconds`` is the median; ``runs`` holds every run. With ``nbytes`` set,
    ``mb_per_s`` is the median throughput in MB/s (10**6 bytes per second).
    """

    runs: tuple[float, ...]
    nbytes: int | None = None

    @property
    def seconds(self) -> float:
        if not self.runs:
            raise ValueError("This timing has no runs; it needs at least one (time_it(repeat=1)).")
        return statistics.median(self.runs)

    @property
    def mb_per_s(self) -> float:
        if not self.nbytes:
            raise ValueError("This timing has no byte count; pass nbytes= to time_it.")
        if self.seconds <= 0:
            raise ValueError(
                f"The median run took {self.seconds} s, too short to give a throughput: "
                "time more work per call (a bigger array, or a loop inside func)."
            )
        return self.nbytes / self.seconds / 1e6

    def __str__(self) -> str:
        text = f"{self.seconds * 1e3:.2f} ms (median of {len(self.runs)})"
        return text + (f", {self.mb_per_s:.0f} MB/s" if self.nbytes else "")


def time_it(
    func: Callable[[], Any],
    *,
    repeat: int = 5,
    nbytes: int | None = None,
    setup: Callable[[], Any] | None = None,
    warmup: bool = True,
) -> Timing:
    """Call ``func`` ``repeat`` times and return the :class:`Timing` (median and all runs).

    ``setup`` runs before every call, untimed (e.g. to delete what the last
    run wrote). ``warmup`` runs one untimed call first (imports, caches).

    Example
    -------
    >>> t = time_it(lambda: sum(range(1000)), repeat=3, nbytes=8000)
    >>> len(t.runs), t.seconds > 0, t.mb_per_s > 0
    (3, True, True)
    """
    if not callable(func):
        raise TypeError(
            f"func must be a callable that takes no arguments, e.g. lambda: arr[:]; got {func!r}."
        )
    if setup is not None and not callable(setup):
        raise TypeError(f"setup must be a callable that takes no arguments, or None; got {setup!r}.")
    if isinstance(repeat, bool) or not isinstance(repeat, numbers.Integral):
        raise TypeError(f"repeat must be an integer of at least 1, e.g. 5; got {repeat!r}.")
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1; got {repeat}.")
    if nbytes is not None:
        if isinstance(nbytes, bool) or not isinstance(nbytes, numbers.Integral):
            raise TypeError(
                f"nbytes must be the number of bytes each call moves (an int, e.g. arr.nbytes) "
                f"or None; got {nbytes!r}."
            )
        if nbytes < 0:
            raise ValueError(f"nbytes must be the number of bytes each call moves (>= 0); got {nbytes}.")
        nbytes = int(nbytes)
    if not isinstance(warmup, bool):
        raise TypeError(f"warmup must be True or False; got {warmup!r}.")
    if warmup:
        if setup:
            setup()
        func()
    runs = []
    for _ in range(repeat):
        if setup:
            setup()
        start = time.perf_counter()
        func()
        runs.append(time.perf_counter() - start)
    return Timing(tuple(runs), nbytes)


# -- memory -----------------------------------------------------------------------


def peak_memory(func: Callable[[], Any]) -> tuple[Any, int]:
    """Call ``func()`` and return ``(its result, the peak bytes Python allocated meanwhile)``.

    Counts what :mod:`tracemalloc` sees: every NumPy buffer and Python object
    allocated during the call, in any thread, above what was allocated before
    it started. Memory that C libraries allocate on their own (a codec's
    scratch space, tensorstore's caches) is not counted.

    Example
    -------
    >>> import numpy as np
    >>> _, peak = peak_memory(lambda: np.ones(1_000_000, dtype="u1").sum())
    >>> 1_000_000 <= peak < 2_000_000
    True
    """
    import tracemalloc

    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = func()
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return result, max(peak, 0)


def peak_rss() -> int:
    """The peak resident memory of this process so far, in bytes.

    On Linux this is ``VmHWM`` from ``/proc/self/status``: it starts afresh when a
    program starts (``exec``), so a subprocess reports its own peak. (``ru_maxrss``
    does not: Linux carries it over from the parent across ``fork`` and ``exec``, so a
    small child of a big notebook kernel would report the kernel's peak.) Elsewhere
    it falls back to ``ru_maxrss`` (bytes on macOS, KiB on other systems).

    Example
    -------
    >>> import psutil
    >>> peak_rss() >= psutil.Process().memory_info().rss
    True
    """
    import resource
    import sys

    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss if sys.platform == "darwin" else maxrss * 1024
