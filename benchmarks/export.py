"""OME-Zarr -> pyramidal OME-TIFF and back, at size: peak memory and time.

The chapter "Export and interchange" says the streamed export's peak memory is set
by the Zarr chunk a tile is decoded from, and the TIFF -> OME-Zarr copy's by the
shard, not by the image. This writes the phantom at two sizes (``EXPORT_BENCH_MB``,
default 256 MB of two-channel uint16, and a sixteenth of it) and reports, for each:
level-0 size, the streamed export's peak Python allocation (tracemalloc) and time,
and the shard-by-shard import's peak and time. Peer for the ratio: the small size,
measured in the same run; the number to watch is how the peaks change when the
image grows sixteen-fold (they should not).

Run: ``.venv/bin/python benchmarks/export.py``
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile
import zarr

from data_helpers.export import export_ome_tiff, write_ome_zarr, yx_pyramid
from data_helpers.measure import peak_memory
from data_helpers.phantom import CHANNELS, make_phantom

CHUNKS = (1, 8, 128, 128)
SHARDS = (1, 8, 256, 256)


def copy_tiff_to_zarr(tif_path: Path, out: Path) -> None:
    """Level 0 of an OME-TIFF into a sharded Zarr array, one shard at a time."""
    with tifffile.TiffFile(tif_path) as tif, tif.aszarr(level=0) as store:
        src = zarr.open_array(store, mode="r")
        dst = zarr.create_array(out, shape=src.shape, dtype=src.dtype, chunks=CHUNKS,
                                shards=SHARDS, fill_value=0)
        for block in np.ndindex(*(-(-n // s) for n, s in zip(src.shape, SHARDS))):
            region = tuple(slice(i * s, (i + 1) * s) for i, s in zip(block, SHARDS))
            dst[region] = src[region]


def run(mb: float, workdir: Path) -> dict[str, float]:
    side = 512
    nz = max(8, int(mb * 1e6 / 4 / side**2) // 8 * 8)
    image, _ = make_phantom((nz, side, side))
    src = write_ome_zarr(workdir / f"p{nz}.ome.zarr", yx_pyramid(image, 3), axes="czyx",
                         scale=(1.0, 0.5, 0.2, 0.2), channel_names=list(CHANNELS),
                         chunks=CHUNKS, shards=SHARDS)
    del image
    tif = workdir / f"p{nz}.ome.tif"
    t0 = time.perf_counter()
    _, export_peak = peak_memory(lambda: export_ome_tiff(src, tif, tile=(128, 128)))
    export_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    _, import_peak = peak_memory(lambda: copy_tiff_to_zarr(tif, workdir / f"back{nz}.zarr"))
    import_s = time.perf_counter() - t0
    level0 = zarr.open_array(src / "0", mode="r")
    return {"level0_MiB": level0.nbytes / 2**20, "export_peak_MiB": export_peak / 2**20,
            "export_s": export_s, "import_peak_MiB": import_peak / 2**20, "import_s": import_s}


def main() -> None:
    mb = float(os.environ.get("EXPORT_BENCH_MB", "256"))
    workdir = Path(tempfile.mkdtemp(prefix="bench-export-"))
    try:
        rows = {f"{mb / 16:g} MB": run(mb / 16, workdir), f"{mb:g} MB": run(mb, workdir)}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    keys = list(next(iter(rows.values())))
    print(f"{'':>10}" + "".join(f"{k:>17}" for k in keys))
    for name, r in rows.items():
        print(f"{name:>10}" + "".join(f"{r[k]:>17.2f}" for k in keys))


if __name__ == "__main__":
    main()
