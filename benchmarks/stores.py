"""S3 clients at size: obstore against fsspec/s3fs, on a local SeaweedFS server.

Size: ``STORES_BENCH_MB`` (default 256) MB of two-channel uint16 phantom, 1024 x
1024 pixels per plane (rounded down to whole 16-plane chunks), in 1 x 16 x 256 x
256 chunks (2 MiB uncompressed each), written once with obstore, then read whole
with each client: once without shards and once with 1 x 16 x 1024 x 1024 shards
(16 chunks each), to count requests per read at size. Peer: obstore's read,
measured in the same run; the number to watch is the fsspec/obstore time ratio
(absolute MB/s depend on the machine). Credentials come from the environment, as
in the chapter.

Run: ``.venv/bin/python benchmarks/stores.py``
"""

from __future__ import annotations

import os

import zarr
from obstore.store import S3Store
from zarr.storage import FsspecStore, ObjectStore

from data_helpers import CountingStore, make_phantom, s3_server, time_it


def main() -> None:
    mb = float(os.environ.get("STORES_BENCH_MB", "256"))
    side = 1024
    nz = max(16, int(mb * 1e6 / 4 / side**2) // 16 * 16)  # 2 channels x 2 bytes
    image, _ = make_phantom((nz, side, side), chunks=(16, 256, 256), seed=1)
    chunks = (1, 16, 256, 256)
    saved = dict(os.environ)
    try:
        with s3_server() as s3:
            os.environ.update(s3.env)  # stand-in for the reader's shell profile
            for name, shards in [("plain", None), ("sharded", (1, 16, 1024, 1024))]:
                target = ObjectStore(S3Store(s3.bucket, prefix=f"{name}.zarr"))
                arr = zarr.create_array(target, shape=image.shape, dtype=image.dtype,
                                        chunks=chunks, shards=shards)
                image.store(arr, lock=False)
            data = image.compute()
            print(f"shape {data.shape}, {data.nbytes / 1e6:.0f} MB, chunks {chunks}")
            times = {}
            for name in ("plain", "sharded"):
                stores = {
                    "obstore": ObjectStore(
                        S3Store(s3.bucket, prefix=f"{name}.zarr"), read_only=True),
                    "fsspec": FsspecStore.from_url(
                        s3.url(f"{name}.zarr"), read_only=True),
                }
                for client, store in stores.items():
                    counted = CountingStore(store)
                    a = zarr.open_array(counted, mode="r")
                    counted.reset()
                    a[:]
                    calls = counted.requests
                    t = time_it(lambda: a[:], repeat=3, nbytes=data.nbytes,
                                warmup=False)
                    times[name, client] = t.seconds
                    print(f"{name:8s} {client:8s} {calls:5d} store calls/read  {t}")
            for name in ("plain", "sharded"):
                ratio = times[name, "fsspec"] / times[name, "obstore"]
                print(f"{name}: fsspec/obstore read time ratio {ratio:.2f}")
    finally:
        os.environ.clear()
        os.environ.update(saved)


if __name__ == "__main__":
    main()
