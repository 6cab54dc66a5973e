"""Upload a lazy phantom of several GiB into the catalogue, streamed region by region.

The catalogue chapter uploads a small lazy phantom; this script scales it up and
reports throughput and the process's peak memory (RSS), sampled every 0.2 s, against
the size uploaded. Nothing is kept: the S3 server and the SQLite file live in a
temporary folder.

    CATALOGUE_BENCH_SHAPE=256,2048,2048 .venv/bin/python benchmarks/catalogue_upload.py

``CATALOGUE_BENCH_SHAPE`` is the phantom's ``z,y,x`` (two uint16 channels, so
``2 * 2 * z * y * x`` bytes; the default 128,2048,2048 is 2 GiB).
``CATALOGUE_BENCH_SLAB_MIB`` sets the region size (default 64).
"""

from __future__ import annotations

import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import psutil
import xarray as xr

from data_helpers.catalogue import Catalogue
from data_helpers.phantom import make_phantom
from data_helpers.servers import s3_server


def main() -> None:
    shape = tuple(int(n) for n in os.environ.get("CATALOGUE_BENCH_SHAPE",
                                                 "128,2048,2048").split(","))
    slab = int(os.environ.get("CATALOGUE_BENCH_SLAB_MIB", "64")) << 20
    image, _ = make_phantom(shape, chunks=(32, 512, 512))
    process = psutil.Process()
    baseline = process.memory_info().rss
    peak = [baseline]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], process.memory_info().rss)
            time.sleep(0.2)

    last = [0.0]

    def progress(done: int, total: int) -> None:
        now = time.perf_counter()
        if now - last[0] > 5 or done == total:
            last[0] = now
            print(f"  {done / 2**30:6.2f} / {total / 2**30:.2f} GiB "
                  f"(peak RSS +{(peak[0] - baseline) / 2**20:.0f} MiB)", flush=True)

    with tempfile.TemporaryDirectory() as tmp, s3_server(bucket="bench") as s3:
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cat = Catalogue(Path(tmp) / "bench.sqlite", s3.obstore_store)
        t0 = time.perf_counter()
        rec = cat.upload(xr.DataArray(image, dims=("c", "z", "y", "x")), name="big",
                         chunks=(1, 32, 256, 256), levels=1, slab_bytes=slab,
                         progress=progress)
        seconds = time.perf_counter() - t0
        stop.set()
        sub = rec.data[1, 10:20, 1000:1100, 500:600].compute()
        same = np.array_equal(sub, image[1, 10:20, 1000:1100, 500:600].compute())
        cat.close()
    print(f"uploaded {image.nbytes / 2**30:.2f} GiB in {seconds:.1f} s "
          f"({image.nbytes / 2**20 / seconds:.0f} MiB/s), region {slab >> 20} MiB, "
          f"peak RSS growth {(peak[0] - baseline) / 2**20:.0f} MiB, "
          f"sub-volume read back equal: {same}")


if __name__ == "__main__":
    main()
