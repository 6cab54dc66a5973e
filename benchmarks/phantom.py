"""How fast is the synthetic phantom? Generate N GiB lazily, chunk by chunk, on all cores.

Size: ``PHANTOM_BENCH_GIB`` (default 0.25; the target is "a few GiB on 2 cores").
Peer, measured in the same run on the same chunks: numpy's Poisson noise alone
(``rng.poisson`` per chunk), the cheapest thing a realistic phantom must do anyway.
The ratio phantom/peer is the number to watch; absolute MB/s depend on the machine.

Run: ``.venv/bin/python benchmarks/phantom.py``
"""

from __future__ import annotations

import os
import time

import dask
import dask.array as da
import numpy as np

from data_helpers import make_phantom


def main() -> None:
    gib = float(os.environ.get("PHANTOM_BENCH_GIB", "0.25"))
    chunk = (64, 256, 256)
    # 2 channels x uint16: bytes = 4 * voxels
    side_xy = 1024
    nz = max(chunk[0], int(gib * 2**30 / 4 / side_xy**2) // chunk[0] * chunk[0])
    shape = (nz, side_xy, side_xy)
    image, _ = make_phantom(shape, chunks=chunk, seed=1)
    nbytes = image.nbytes

    def peer_block(block_info=None):
        loc = block_info[None]["array-location"]
        seed = hash(tuple(a for a, _ in loc)) & 0xFFFFFFFF
        rng = np.random.default_rng(seed)
        size = tuple(b - a for a, b in loc)
        return rng.poisson(150.0, size).astype(np.uint16)

    peer = da.map_blocks(peer_block, chunks=image.chunks, dtype=np.uint16)

    results = {}
    with dask.config.set(scheduler="threads"):
        for name, arr in (("peer: numpy Poisson noise", peer), ("make_phantom", image)):
            start = time.perf_counter()
            arr.sum(dtype="uint64").compute()
            seconds = time.perf_counter() - start
            results[name] = seconds
            print(f"{name:28s} {nbytes / 2**30:.2f} GiB in {seconds:6.1f} s = {nbytes / seconds / 1e6:6.0f} MB/s")
    ratio = results["make_phantom"] / results["peer: numpy Poisson noise"]
    print(f"shape {shape} x 2 channels, chunks {chunk}, cores {os.cpu_count()}")
    print(f"phantom / peer time ratio: {ratio:.1f}")
    per_gib = results["make_phantom"] / (nbytes / 2**30)
    print(f"=> about {per_gib:.0f} s per GiB of phantom on this machine")


if __name__ == "__main__":
    main()
