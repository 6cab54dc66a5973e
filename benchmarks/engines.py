"""Zarr engines at size: the "How fast can it go" matrix at 1-2 GiB, each engine in its own process.

Writes and reads a two-channel uint16 phantom (``ENGINES_BENCH_MB`` MB, default 1024,
1024 x 1024 pixels per plane, rounded down to whole 32-plane slabs) as Zarr format 3,
blosc-zstd level 1 with byte shuffle, in 1 x 32 x 128 x 128 chunks (1 MiB), unsharded
and in 1 x 32 x 512 x 512 shards (16 chunks each), with zarr-python's default codec
pipeline, its fused pipeline, the zarrs pipeline, tensorstore and zarrista.

Every write and every read runs in a fresh Python process, which reports its time and
its peak resident memory above what it held just before the operation (``extra RAM``,
sampled every 5 ms: for a write the data is not counted; for a read the result is). Each read is done by the *next* engine in the list, on the
array the previous one wrote, and compared with the data byte for byte. The machine's
limits (memory copy, disk write with and without fsync, disk read, the codec with one
and all cores, the codec before and after the matrix, keeping the faster) are measured
in the same run, and every result is given as a fraction
of the ceiling they imply and as a ratio to zarr-python's default from the same run.
Rounds (``ENGINES_BENCH_ROUNDS``, default 2) are interleaved; the table keeps the
fastest round and the spread (median - fastest) / fastest.

Run: ``.venv/bin/python benchmarks/engines.py`` (about 10 minutes at 1 GiB on 2 cores);
``ENGINES_BENCH_MB=2048`` for 2 GiB. Temporary files go to ``ENGINES_BENCH_DIR``
(default: the system temporary folder) and are deleted at the end.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

SIDE = 1024
SLAB = 32
CHUNKS = (1, SLAB, 128, 128)
SHARDS = (1, SLAB, 512, 512)
LAYOUTS = {"unsharded": None, "sharded": SHARDS}


def make_data(mb: float) -> np.ndarray:
    """The benchmark array: one phantom block, mirrored to fill (2, z, 1024, 1024)."""
    from data_helpers import make_phantom

    nz = max(SLAB, int(mb * 1e6 / 4 / SIDE**2) // SLAB * SLAB)
    block, _ = make_phantom((SLAB, 256, 256), seed=1)
    row = np.concatenate([block, block[..., ::-1]] * 2, axis=-1)        # x: 1024
    plane = np.concatenate([row, row[:, :, ::-1]] * 2, axis=-2)          # y: 1024
    slab = np.concatenate([plane, plane[:, ::-1]], axis=1)               # z: 64
    reps = -(-nz // slab.shape[1])
    return np.ascontiguousarray(np.concatenate([slab] * reps, axis=1)[:, :nz])


class PeakMemory:
    """Samples this process's resident memory every 5 ms while in a ``with`` block.

    ``extra_mb``: the highest resident memory seen, minus what it was on entry.
    """

    def __enter__(self) -> "PeakMemory":
        import psutil

        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)

    @property
    def extra_mb(self) -> float:
        return (self.peak - self.start) / 1e6


def worker(op: str, engine: str, path: str, mb: float) -> dict:
    """One timed write or read in this process; returns a JSON-able dict."""
    from data_helpers import engines as en

    if op == "write":
        data = make_data(mb)
        write = en.writer(engine, path)
        with PeakMemory() as mem:
            start = time.perf_counter()
            write(data)
            seconds = time.perf_counter() - start
        return {"seconds": seconds, "extra_mb": mem.extra_mb, "equal": True,
                "nbytes": data.nbytes}
    read = en.reader(engine, path)
    with PeakMemory() as mem:
        start = time.perf_counter()
        out = np.asarray(read())
        seconds = time.perf_counter() - start
    extra = mem.extra_mb
    data = make_data(mb)
    equal = out.dtype == data.dtype and out.shape == data.shape and out.tobytes() == data.tobytes()
    return {"seconds": seconds, "extra_mb": extra, "equal": bool(equal), "nbytes": data.nbytes}


def run_worker(op: str, engine: str, path: Path, mb: float) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--worker", op, engine, str(path), str(mb)],
        check=True, capture_output=True, text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import pandas as pd

    from data_helpers import engines as en

    mb = float(os.environ.get("ENGINES_BENCH_MB", "1024"))
    rounds = int(os.environ.get("ENGINES_BENCH_ROUNDS", "2"))
    root = Path(tempfile.mkdtemp(prefix="engines-bench-", dir=os.environ.get("ENGINES_BENCH_DIR")))
    try:
        data = make_data(mb)
        print(f"array {data.shape} uint16, {data.nbytes / 1e6:.0f} MB; chunks {CHUNKS}, "
              f"shards {SHARDS}; {os.cpu_count()} CPUs; rounds: {rounds}")
        # -- the machine's limits, in this run --
        memory = en.memory_copy_speed(data[:, :SLAB])
        disk = en.disk_speeds(data.nbytes, workdir=root)
        tiles = [np.ascontiguousarray(data[c, :, y:y + 128, x:x + 128])
                 for c in range(2) for y in range(0, 512, 128) for x in range(0, 512, 128)]

        def codec() -> "pd.DataFrame":
            return en.codec_speeds(tiles, {"blosc-zstd": en.blosc_codec("zstd", 1, 1)},
                                   threads=(1, os.cpu_count())).loc["blosc-zstd"]

        def ceilings(speeds: "pd.DataFrame") -> dict[str, float]:
            return en.bounds(encode=speeds["encode MB/s"].max(),
                             decode=speeds["decode MB/s"].max(), ratio=speeds["ratio"].iloc[0],
                             disk_write=disk["write"], disk_read=disk["read"], memory_copy=memory)

        speeds = codec()
        print(f"memory copy {memory:.0f} MB/s; disk write {disk['write']:.0f}, "
              f"write+fsync {disk['write + fsync']:.0f}, read {disk['read']:.0f} MB/s")
        print(speeds.round(2).to_string())
        print("bounds before the matrix (MB/s):", {k: round(v) for k, v in ceilings(speeds).items()})
        shape = data.shape
        del data
        # -- the matrix --
        engines = en.ENGINES
        rng = random.Random(0)
        rows = []
        for r in range(rounds):
            visits = [(layout, e) for layout in LAYOUTS for e in engines]
            rng.shuffle(visits)
            for layout, e in visits:
                path = root / f"{layout}.zarr"
                # metadata only: a zero-strided view gives create() the shape and dtype
                en.create(path, np.broadcast_to(np.uint16(0), shape), chunks=CHUNKS,
                          shards=LAYOUTS[layout])
                w = run_worker("write", e, path, mb)
                rows.append((layout, "write", e, r, w["seconds"], w["extra_mb"], True, w["nbytes"]))
                other = engines[(engines.index(e) + 1) % len(engines)]
                rd = run_worker("read", other, path, mb)
                rows.append((layout, "read", other, r, rd["seconds"], rd["extra_mb"], rd["equal"],
                             rd["nbytes"]))
                print(f"  round {r} {layout:9s} {e:18s} write {w['seconds']:6.2f} s | "
                      f"{other:18s} read {rd['seconds']:6.2f} s, equal={rd['equal']}", flush=True)
        # the codec again: load from elsewhere may have slowed the first measurement
        speeds = np.maximum(speeds, codec())
        bound = ceilings(speeds)
        print("bounds, faster of before and after the matrix (MB/s):",
              {k: round(v) for k, v in bound.items()})
        runs = pd.DataFrame(rows, columns=["layout", "op", "engine", "round", "seconds",
                                           "extra MB", "equal", "nbytes"])
        runs.attrs["nbytes"] = int(runs["nbytes"].iloc[0])
        table = en.summarise(runs).sort_index()
        table["of ceiling"] = [row["MB/s"] / bound[f"{op} ceiling"]
                               for (_, op, _), row in table.iterrows()]
        table["extra RAM GB"] = runs.groupby(["layout", "op", "engine"])["extra MB"].max() / 1000
        print()
        print(table[["seconds", "MB/s", "× zarr-python", "of ceiling", "spread",
                     "extra RAM GB", "equal"]].sort_index(ascending=False).round(2).to_string())
        print()
        noise = min(0.5, max(0.10, float(table["spread"].median())))
        recommended = list(en.PIPELINES)  # zarr-python with any of its codec pipelines
        for (layout, op), group in table.groupby(level=[0, 1]):
            mbps = group.droplevel([0, 1])["MB/s"]
            fastest = mbps.idxmax()
            rec = mbps[recommended].max()
            print(f"{op:5s} {layout:9s}: fastest {fastest} {mbps.max():.0f} MB/s "
                  f"({group.droplevel([0, 1]).loc[fastest, 'of ceiling']:.0%} of the ceiling); "
                  f"ties within {noise:.0%}: {', '.join(en.ties(mbps, tolerance=noise))}; "
                  f"book default (zarr-python, best pipeline: {mbps[recommended].idxmax()}) "
                  f"is {mbps.max() / rec:.2f}x slower than the fastest")
        print("every read equal to the data:", bool(runs["equal"].all()))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _, _, op, engine, path, mb = sys.argv
        print(json.dumps(worker(op, engine, path, float(mb))))
    else:
        main()
