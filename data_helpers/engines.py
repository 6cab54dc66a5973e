"""Zarr engines side by side, and the machine's limits they are measured against.

An *engine* is the code that turns an in-memory array into stored chunks and back.
Five are measured here, all on the same Zarr format 3 array on local disk:

- ``zarr-python``: zarr-python 3's default codec pipeline (``BatchedCodecPipeline``);
- ``zarr-python fused``: zarr-python's opt-in ``FusedCodecPipeline`` (zarr >= 3.3);
- ``zarrs pipeline``: zarr-python with the Rust codec pipeline from the ``zarrs``
  package (``zarr.config.set({"codec_pipeline.path": "zarrs.ZarrsCodecPipeline"})``);
- ``tensorstore``: Google's C++ library, its ``zarr3`` driver;
- ``zarrista``: Python bindings of the Rust ``zarrs`` crate (what ngff-zarr uses).

The array's metadata is written once by zarr-python (:func:`create`), so every engine
writes the same codecs and chunk grid; engines then open it and fill or read it.
Opening is not timed: the timed part is the write or the read of the whole array.

Example
-------
>>> import numpy as np, tempfile
>>> data = np.arange(2 * 64 * 64, dtype="uint16").reshape(2, 64, 64)
>>> path = f"{tempfile.mkdtemp()}/a.zarr"
>>> create(path, data, chunks=(1, 32, 32))
>>> writer("tensorstore", path)(data)
>>> bool((reader("zarrista", path)() == data).all())
True
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import zarr

#: zarr-python codec pipelines, by engine name (the value of ``codec_pipeline.path``).
PIPELINES: dict[str, str] = {
    "zarr-python": "zarr.core.codec_pipeline.BatchedCodecPipeline",
    "zarr-python fused": "zarr.core.codec_pipeline.FusedCodecPipeline",
    "zarrs pipeline": "zarrs.ZarrsCodecPipeline",
}

#: Every engine this module can drive, in the order tables list them.
ENGINES: tuple[str, ...] = (*PIPELINES, "tensorstore", "zarrista")


def _check_engine(engine: str) -> None:
    if engine not in ENGINES:
        raise ValueError(f"Unknown engine {engine!r}; pick one of {', '.join(ENGINES)}.")


def default_compressor() -> zarr.codecs.BloscCodec:
    """The compressor the engine comparison uses: blosc-zstd level 1 with byte shuffle."""
    return zarr.codecs.BloscCodec(cname="zstd", clevel=1, shuffle="shuffle", typesize=2)


def create(
    path: str | os.PathLike,
    data: np.ndarray,
    *,
    chunks: Sequence[int],
    shards: Sequence[int] | None = None,
    compressors: Any = "default",
) -> None:
    """Write (only) the Zarr format 3 metadata of an array shaped like ``data`` at ``path``.

    Anything already at ``path`` is deleted first. ``compressors="default"`` means
    :func:`default_compressor`; pass ``None`` for none.
    """
    path = Path(path)
    if path.exists():
        shutil.rmtree(path)
    if isinstance(compressors, str) and compressors == "default":
        compressors = default_compressor()
    zarr.create_array(
        str(path), shape=data.shape, dtype=data.dtype, chunks=tuple(chunks),
        shards=None if shards is None else tuple(shards),
        compressors=compressors, zarr_format=3, fill_value=0,
    )


@contextmanager
def _pipeline(engine: str) -> Iterator[None]:
    with zarr.config.set({"codec_pipeline.path": PIPELINES[engine]}):
        yield


def _ts_open(path: str | os.PathLike, sync: bool = False) -> Any:
    import tensorstore as ts

    spec = {
        "driver": "zarr3",
        "kvstore": {"driver": "file", "path": str(path)},
        # tensorstore syncs every file it writes by default; the other engines do
        # not, so it is turned off here to compare like with like.
        "context": {"file_io_sync": sync},
    }
    return ts.open(spec, open=True).result()


def writer(engine: str, path: str | os.PathLike, *, fsync: bool = False) -> Callable[[np.ndarray], None]:
    """Open the array at ``path`` with ``engine``; return a function that writes it whole.

    ``fsync=True`` only applies to tensorstore (its default); the others never sync.
    """
    _check_engine(engine)
    if engine in PIPELINES:
        with _pipeline(engine):
            arr = zarr.open_array(str(path), mode="r+")

        def write(data: np.ndarray) -> None:
            with _pipeline(engine):
                arr[...] = data

        return write
    if engine == "tensorstore":
        arr = _ts_open(path, sync=fsync)
        return lambda data: arr.write(data).result()
    import zarrista
    from zarrista.store import FilesystemStore

    za = zarrista.Array.open(FilesystemStore(str(path)), "/")

    def write_zarrista(data: np.ndarray) -> None:
        za[...] = np.ascontiguousarray(data)

    return write_zarrista


def reader(engine: str, path: str | os.PathLike) -> Callable[[], np.ndarray]:
    """Open the array at ``path`` with ``engine``; return a function that reads it whole."""
    _check_engine(engine)
    if engine in PIPELINES:
        with _pipeline(engine):
            arr = zarr.open_array(str(path), mode="r")

        def read() -> np.ndarray:
            with _pipeline(engine):
                return arr[...]

        return read
    if engine == "tensorstore":
        arr = _ts_open(path)
        return lambda: arr.read().result()
    import zarrista
    from zarrista.store import FilesystemStore

    za = zarrista.Array.open(FilesystemStore(str(path)), "/")
    return lambda: za[...].to_numpy()


def timed(func: Callable[[], Any]) -> tuple[float, Any]:
    """Call ``func`` once; return ``(seconds, its result)``.

    Example
    -------
    >>> seconds, value = timed(lambda: 6 * 7)
    >>> value, seconds >= 0
    (42, True)
    """
    start = time.perf_counter()
    out = func()
    return time.perf_counter() - start, out


def compare_engines(
    data: np.ndarray,
    *,
    chunks: Sequence[int],
    layouts: dict[str, Sequence[int] | None],
    engines: Sequence[str] = ENGINES,
    rounds: int = 3,
    workdir: str | os.PathLike | None = None,
    seed: int = 0,
) -> "Any":
    """Write and read ``data`` with every engine and layout, in interleaved rounds.

    ``layouts`` maps a name to a shard shape (``None``: unsharded). Each round
    visits every (layout, engine) pair in a shuffled order, so a burst of load
    from elsewhere on the machine hits all engines alike. In each visit the
    engine writes a fresh array, then the *next* engine in ``engines`` reads it
    back (timed as that engine's read) and the result is compared with ``data``
    byte for byte: every engine reads another engine's output.

    Returns a pandas DataFrame with one row per timed operation: ``layout``,
    ``engine``, ``op`` (``write``/``read``), ``round``, ``seconds``, ``MB/s``,
    ``written by`` and ``equal`` (bool).
    """
    import pandas as pd

    for e in engines:
        _check_engine(e)
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1; got {rounds}.")
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="engines-"))
    rng = random.Random(seed)
    rows = []
    expected = np.ascontiguousarray(data)
    for r in range(rounds):
        visits = [(layout, e) for layout in layouts for e in engines]
        rng.shuffle(visits)
        for layout, e in visits:
            path = root / f"{layout}.zarr"
            create(path, data, chunks=chunks, shards=layouts[layout])
            write = writer(e, path)
            seconds, _ = timed(lambda: write(expected))
            rows.append((layout, e, "write", r, seconds, e, True))
            other = engines[(engines.index(e) + 1) % len(engines)]
            read = reader(other, path)
            seconds, out = timed(read)
            out = np.asarray(out)
            equal = out.dtype == expected.dtype and out.shape == expected.shape and (
                out.tobytes() == expected.tobytes()
            )
            rows.append((layout, other, "read", r, seconds, e, bool(equal)))
    shutil.rmtree(root, ignore_errors=True) if workdir is None else None
    frame = pd.DataFrame(
        rows, columns=["layout", "engine", "op", "round", "seconds", "written by", "equal"]
    )
    frame["MB/s"] = data.nbytes / frame["seconds"] / 1e6
    frame.attrs["nbytes"] = data.nbytes
    return frame


def summarise(runs: "Any", *, peer: str = "zarr-python") -> "Any":
    """Best MB/s per (layout, op, engine), the noise of the rounds and the ratio to ``peer``.

    ``MB/s`` comes from the fastest round (others can only have been slowed down
    by load from elsewhere); ``spread`` is (median - fastest) / fastest of the
    rounds' times, the noise of that cell; ``equal`` is True when every read of
    that cell returned the data byte for byte.
    """
    g = runs.groupby(["layout", "op", "engine"], sort=False)
    out = g["seconds"].agg(["min", "median"])
    out["MB/s"] = runs.attrs["nbytes"] / out["min"] / 1e6
    out["spread"] = (out["median"] - out["min"]) / out["min"]
    peer_mb = out.xs(peer, level="engine")["MB/s"]
    out["× zarr-python"] = [
        row["MB/s"] / peer_mb.loc[(layout, op)] for (layout, op, _), row in out.iterrows()
    ]
    out["equal"] = g["equal"].all()
    return out.drop(columns=["median"]).rename(columns={"min": "seconds"})


# -- the machine's limits ---------------------------------------------------------


def best_seconds(
    func: Callable[[], Any], repeat: int = 3, setup: Callable[[], Any] | None = None
) -> float:
    """The fastest of ``repeat`` timed calls of ``func`` (``setup`` runs untimed before each).

    On a shared machine other programs can only slow a run down, so the fastest
    run is the closest to what the code itself costs.

    Example
    -------
    >>> best_seconds(lambda: sum(range(1000))) > 0
    True
    """
    if repeat < 1:
        raise ValueError(f"repeat must be at least 1; got {repeat}.")
    times = []
    for _ in range(repeat):
        if setup:
            setup()
        seconds, _ = timed(func)
        times.append(seconds)
    return min(times)


def memory_copy_speed(data: np.ndarray, *, repeat: int = 5) -> float:
    """MB/s of copying ``data`` into an already allocated array (best of ``repeat``)."""
    dst = np.empty_like(data)
    np.copyto(dst, data)  # touch every page once
    return data.nbytes / best_seconds(lambda: np.copyto(dst, data), repeat) / 1e6


def disk_speeds(
    nbytes: int, *, workdir: str | os.PathLike | None = None, repeat: int = 3,
    block: int = 4 << 20,
) -> dict[str, float]:
    """MB/s of writing ``nbytes`` to one file sequentially (buffered, then with fsync), and reading it.

    ``write`` ends when the operating system has the bytes (its page cache);
    ``write + fsync`` when the disk has them. ``read`` reads the file just
    written, so it mostly comes from the page cache, as a re-read of freshly
    written chunks does (clearing the cache needs root and disturbs everyone else).
    """
    root = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="disk-"))
    path = root / "disk-speed.bin"
    payload = np.random.default_rng(0).integers(0, 255, block, dtype=np.uint8).tobytes()
    n_blocks = max(1, nbytes // block)

    def write(sync: bool) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            for _ in range(n_blocks):
                os.write(fd, payload)
            if sync:
                os.fsync(fd)
        finally:
            os.close(fd)

    def read() -> None:
        with open(path, "rb", buffering=0) as f:
            buf = bytearray(block)
            while f.readinto(buf):
                pass

    def remove() -> None:
        path.unlink(missing_ok=True)

    size = n_blocks * block
    try:
        out = {
            "write": size / best_seconds(lambda: write(False), repeat, remove) / 1e6,
            "write + fsync": size / best_seconds(lambda: write(True), repeat, remove) / 1e6,
        }
        out["read"] = size / best_seconds(read, repeat) / 1e6
    finally:
        remove()
        if workdir is None:
            shutil.rmtree(root, ignore_errors=True)
    return out


def blosc_codec(cname: str, clevel: int = 5, shuffle: int = 1) -> Any:
    """A numcodecs Blosc codec (``shuffle``: 0 none, 1 byte, 2 bit) that runs single-threaded inside."""
    from numcodecs import Blosc

    return Blosc(cname=cname, clevel=clevel, shuffle=shuffle)


def codec_speeds(
    chunks: Sequence[np.ndarray],
    codecs: dict[str, Any],
    *,
    threads: Sequence[int] = (1,),
    repeat: int = 3,
) -> "Any":
    """Encode and decode MB/s of each codec on ``chunks``, with 1 or more threads (best of ``repeat``).

    Each thread encodes whole chunks (as Zarr engines do); blosc's own internal
    threads are switched off while this runs. Returns a DataFrame with one row
    per (codec, threads): ``ratio``, ``encode MB/s``, ``decode MB/s``.
    """
    import numcodecs.blosc
    import pandas as pd

    nbytes = sum(c.nbytes for c in chunks)
    rows = []
    saved = numcodecs.blosc.use_threads
    numcodecs.blosc.use_threads = False
    try:
        for name, codec in codecs.items():
            encoded = [codec.encode(c) for c in chunks]
            ratio = nbytes / sum(len(e) for e in encoded)
            for n in threads:
                with ThreadPoolExecutor(n) as pool:
                    enc = best_seconds(lambda: list(pool.map(codec.encode, chunks)), repeat)
                    dec = best_seconds(lambda: list(pool.map(codec.decode, encoded)), repeat)
                rows.append((name, n, ratio, nbytes / enc / 1e6, nbytes / dec / 1e6))
    finally:
        numcodecs.blosc.use_threads = saved
    return pd.DataFrame(
        rows, columns=["codec", "threads", "ratio", "encode MB/s", "decode MB/s"]
    ).set_index(["codec", "threads"])


def bounds(
    *, encode: float, decode: float, ratio: float, disk_write: float, disk_read: float,
    memory_copy: float,
) -> dict[str, float]:
    """The ceiling and the serial estimate for writing and reading a compressed array, in MB/s.

    All speeds in MB/s of *uncompressed* data, except the disk's (bytes on disk,
    which are ``ratio`` times fewer). ``write ceiling``: the slowest stage, as if
    encoding and disk writes overlapped perfectly; no engine can beat it.
    ``write serial``: one stage after the other (time = sum of the stages); a good
    engine overlaps them and beats it. Reads add one memory copy into the output.
    """
    disk_w, disk_r = disk_write * ratio, disk_read * ratio
    return {
        "write ceiling": min(encode, disk_w),
        "write serial": 1 / (1 / encode + 1 / disk_w),
        "read ceiling": min(decode, disk_r, memory_copy),
        "read serial": 1 / (1 / decode + 1 / disk_r + 1 / memory_copy),
    }


# -- knobs ------------------------------------------------------------------------


def set_zarr_thread_pool(max_workers: int | None) -> None:
    """Make zarr-python use a thread pool of ``max_workers`` threads from now on.

    zarr-python reads ``threading.max_workers`` once, when it first makes its
    pool; this replaces the pool so a new value takes effect (``None``: zarr's
    default, Python's own default pool size).
    """
    import zarr.core.sync as zsync

    if max_workers is not None and (isinstance(max_workers, bool) or int(max_workers) < 1):
        raise ValueError(f"max_workers must be a positive int or None; got {max_workers!r}.")
    zarr.config.set({"threading.max_workers": max_workers})
    old = zsync._executor
    zsync._executor = None
    if max_workers is not None:
        zsync._get_executor()
    else:
        from concurrent.futures import ThreadPoolExecutor as _Pool

        zsync._get_loop().set_default_executor(_Pool(thread_name_prefix="zarr_default"))
    if old is not None:
        old.shutdown(wait=False)


def ties(values: "Any", *, tolerance: float) -> list[str]:
    """Names whose value is within ``tolerance`` (a fraction) of the largest: all the "best" ones.

    Example
    -------
    >>> import pandas as pd
    >>> ties(pd.Series({"a": 100.0, "b": 95.0, "c": 60.0}), tolerance=0.1)
    ['a', 'b']
    """
    if not 0 <= tolerance < 1:
        raise ValueError(f"tolerance is a fraction between 0 and 1, e.g. 0.1; got {tolerance!r}.")
    best = values.max()
    return [str(k) for k, v in values.items() if v >= best * (1 - tolerance)]


def fit_chunk_overhead(n_chunks: Sequence[int], seconds: Sequence[float], nbytes: int) -> tuple[float, float]:
    """The fixed cost per chunk and the speed without it, from a sweep of chunk sizes.

    ``speed`` (MB/s) is the best the array went at any chunk size; ``overhead``
    (seconds per chunk) is what the run with the most chunks took beyond moving
    its bytes at that speed, divided by its number of chunks (0 if nothing is
    left). Two points instead of a least-squares line: a fit through a few noisy
    timings on a shared machine can come out negative.

    Example
    -------
    >>> fit_chunk_overhead([1, 10, 100], [0.1, 0.11, 0.2], 10**8)
    (0.001, 1000.0)
    """
    n = np.asarray(n_chunks, float)
    t = np.asarray(seconds, float)
    if len(n) != len(t) or len(n) < 2:
        raise ValueError("Pass at least two chunk counts and as many timings.")
    speed = nbytes / t.min()
    i = int(n.argmax())
    overhead = max(0.0, (t[i] - nbytes / speed) / n[i])
    return round(float(overhead), 9), round(float(speed) / 1e6, 6)
