"""A big volume to a 4-level OME-Zarr pyramid: the book's recipe against its peers.

Case A, in memory -> OME-Zarr: the phantom's nuclei channel, ``n``^3 uint16
(``n = 1024``, 2 GiB, by default) -> levels 1x, 2x, 4x, 8x, 128^3 chunks,
blosc-zstd level 5 with byte shuffle, with and without 512^3 shards. Each
tool runs in its own fresh process, which loads the input from a ``.npy``
file (cached in ``$ZARR_BOOK_BENCH_DIR``, default ``/tmp/zarr-book-bench``),
then writes the pyramid:

- ``recipe``: ``data_helpers.pyramid.write_pyramid`` (tensorstore engine; and
  the zarr-python engine);
- ``tensorstore``: level 0 written with tensorstore, each further level a
  ``ts.downsample(level above, [2, 2, 2], "mean")`` view written with tensorstore;
- ``ngff-zarr``: ``to_multiscales`` (default method, and ITK bin shrink) then
  ``to_ngff_zarr`` (0.5; ``chunks_per_shard=4`` for shards);
- ``multiscale-spatial-image``: ``to_multiscale`` (ITK bin shrink) then
  ``.msi.to_zarr`` (OME-Zarr 0.4 on Zarr format 2 only: no shards);
- ``dask + zarr``: ``da.from_zarr`` of the level above, a block mean with
  ``da.coarsen``, ``da.to_zarr`` into an array created with the same codecs.

Reported per run: level-0 MB/s (input bytes / wall time of the whole pyramid),
peak RSS and peak RSS above the loaded input (``ru_maxrss``), files written;
then, after the timing, level 0 byte-equal to the input, and level 1 against the
exact (unrounded) block mean: the largest deviation, and the rounding it
matches.

Case B, out of core: a ``n x 2n x 2n`` level 0 (8 GiB by default: four mirrored
copies of the case A volume) already stored as sharded Zarr on disk -> levels
1-3, by the recipe (``start_level=1``) and by tensorstore from the same store.
Level 0 is read once before each tool, so both read it from the page cache (the
machine's memory holds it; otherwise the first tool would warm it for the second).

``BIG_PYRAMID_GIB`` (default 2) sets case A's size; case B is 4x that.
Run:  PYTHONPATH=. .venv/bin/python benchmarks/big_pyramid.py
      BIG_PYRAMID_GIB=0.25 PYTHONPATH=. .venv/bin/python benchmarks/big_pyramid.py
The machine may be shared: compare ratios within one run, not absolute MB/s.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GIB = float(os.environ.get("BIG_PYRAMID_GIB", "2"))
N = max(128, int(round((GIB * 2**30 / 2) ** (1 / 3) / 128)) * 128)
WORK = Path(os.environ.get("ZARR_BOOK_BENCH_DIR", "/tmp/zarr-book-bench"))
CHUNK, SHARD, LEVELS, CLEVEL = 128, 512, 4, 5


# ---------------------------------------------------------------- input
def input_path(n: int = N) -> Path:
    """The case-A input volume as .npy (the phantom's nuclei channel), made once."""
    path = WORK / f"phantom-{n}.npy"
    bigger = sorted(WORK.glob("phantom-*.npy"), key=lambda p: int(p.stem.split("-")[1]))
    bigger = [p for p in bigger if int(p.stem.split("-")[1]) > n]
    if not path.exists() and bigger:
        # a smaller phantom is a crop of a bigger one (same values): cut it out
        np.save(path.with_suffix(".part.npy"), np.load(bigger[0], mmap_mode="r")[:n, :n, :n])
        path.with_suffix(".part.npy").rename(path)
    if not path.exists():
        import dask

        from data_helpers.phantom import make_phantom

        WORK.mkdir(parents=True, exist_ok=True)
        image, _ = make_phantom((n, n, n), chunks=(64, 256, n), seed=0)
        part = path.with_suffix(".part")
        out = np.lib.format.open_memmap(part, mode="w+", dtype="uint16", shape=(n, n, n))
        with dask.config.set(scheduler="threads"):
            image[0].store(out, lock=False)
        out.flush()
        del out
        part.rename(path)
    return path


def rss_now() -> int:
    import psutil

    return psutil.Process().memory_info().rss


class PeakRSS:
    """Sample this process's RSS every 20 ms in a thread; ``.peak`` is the largest seen.

    (``ru_maxrss`` is not used: on Linux a child inherits its parent's RSS high-water
    mark across fork and exec, which inflated the children's peaks.)
    """

    def __init__(self) -> None:
        import threading

        self.peak = rss_now()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            self.peak = max(self.peak, rss_now())

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_now())
        return self.peak


def codec():
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=CLEVEL, shuffle="shuffle")


# ---------------------------------------------------------------- the tools (run in a child)
def run_recipe(volume, out: Path, shards: bool, engine: str = "tensorstore") -> None:
    from data_helpers.pyramid import write_pyramid

    write_pyramid(volume, out, levels=LEVELS, chunks=CHUNK, shards=SHARD if shards else None,
                  clevel=CLEVEL, engine=engine)


def run_recipe_zarr(volume, out: Path, shards: bool) -> None:
    run_recipe(volume, out, shards, engine="zarr")


def _ts_levels(level0, out: Path, shards: bool, start: int) -> None:
    """Write levels ``start..LEVELS-1`` with tensorstore, each from the stored level above.

    ``level0`` is the level-0 data (``start == 0``) or the stored level 0 (only its shape
    is used then).
    """
    import tensorstore as ts
    import zarr

    from data_helpers.pyramid import level_shapes, ome_metadata

    context = ts.Context({"cache_pool": {"total_bytes_limit": 0}})

    def spec(k):
        return {"driver": "zarr3", "kvstore": {"driver": "file", "path": str(out / str(k))}}

    if start == 0:
        zarr.create_group(out, zarr_format=3, attributes={
            "ome": ome_metadata("image", "zyx", "micrometer", (1.0, 1.0, 1.0), LEVELS)})
    shapes = level_shapes(level0.shape, LEVELS)
    for k in range(start, LEVELS):
        shape = shapes[k]
        codecs = [{"name": "bytes", "configuration": {"endian": "little"}},
                  {"name": "blosc", "configuration": {"cname": "zstd", "clevel": CLEVEL,
                                                      "shuffle": "shuffle", "typesize": 2}}]
        grid = [CHUNK] * 3
        if shards and any(s > CHUNK for s in shape):
            grid = [min(SHARD, -(-s // CHUNK) * CHUNK) for s in shape]
            codecs = [{"name": "sharding_indexed", "configuration": {
                "chunk_shape": [CHUNK] * 3, "codecs": codecs,
                "index_codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                                 {"name": "crc32c"}]}}]
        target = ts.open(spec(k) | {"metadata": {
            "shape": list(shape), "data_type": "uint16", "dimension_names": list("zyx"),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": grid}},
            "codecs": codecs, "fill_value": 0}}, create=True, delete_existing=True,
            context=context).result()
        if k == 0:
            target.write(level0).result()
        else:
            above = ts.open(spec(k - 1), open=True, context=context).result()
            mean = ts.downsample(above, [2, 2, 2], "mean")
            target.write(mean[: shape[0], : shape[1], : shape[2]]).result()


def run_tensorstore(volume, out: Path, shards: bool) -> None:
    _ts_levels(volume, out, shards, 0)


def _ngff(volume, out: Path, shards: bool, method) -> None:
    import ngff_zarr as nz

    image = nz.to_ngff_image(volume, dims=["z", "y", "x"])
    ms = nz.to_multiscales(image, scale_factors=[2, 4, 8], method=method, chunks=CHUNK)
    nz.to_ngff_zarr(out, ms, version="0.5", chunks_per_shard=SHARD // CHUNK if shards else None,
                    compressors=[codec()])


def run_ngff_default(volume, out: Path, shards: bool) -> None:
    _ngff(volume, out, shards, None)


def run_ngff_itk(volume, out: Path, shards: bool) -> None:
    import ngff_zarr as nz

    _ngff(volume, out, shards, nz.Methods.ITK_BIN_SHRINK)


def run_msi(volume, out: Path, shards: bool) -> None:
    import warnings

    from multiscale_spatial_image import Methods, to_multiscale
    from numcodecs import Blosc
    from spatial_image import to_spatial_image

    warnings.filterwarnings("ignore")
    image = to_spatial_image(volume, dims=("z", "y", "x"), name="image")
    tree = to_multiscale(image, scale_factors=[2, 4, 8], method=Methods.ITK_BIN_SHRINK,
                         chunks=CHUNK)
    for scale in tree.children:
        tree[scale]["image"].variable.encoding["compressors"] = (
            Blosc(cname="zstd", clevel=CLEVEL, shuffle=Blosc.SHUFFLE),)
    tree.msi.to_zarr(out)


def run_dask_zarr(volume, out: Path, shards: bool) -> None:
    import dask
    import dask.array as da
    import zarr

    from data_helpers.pyramid import ome_metadata

    group = zarr.create_group(out, zarr_format=3, attributes={
        "ome": ome_metadata("image", "zyx", "micrometer", (1.0, 1.0, 1.0), LEVELS)})
    shape = volume.shape
    source = da.from_array(volume, chunks=SHARD if shards else CHUNK)
    for k in range(LEVELS):
        if k:
            shape = tuple(s // 2 for s in shape)
            above = da.from_zarr(group[str(k - 1)])
            total = da.coarsen(np.sum, above.astype(np.uint32), {0: 2, 1: 2, 2: 2})
            source = ((total + 4) // 8).astype(np.uint16)
        level_shards = (tuple(min(SHARD, -(-s // CHUNK) * CHUNK) for s in shape)
                        if shards and max(shape) > CHUNK else None)
        target = group.create_array(str(k), shape=shape, dtype="uint16", chunks=(CHUNK,) * 3,
                                    shards=level_shards, compressors=[codec()],
                                    dimension_names=("z", "y", "x"))
        # an existing array: dask rechunks to whole shards, but only if a shard fits in
        # its array.chunk-size (default 128 MiB); otherwise it only warns and loses data
        shard_bytes = int(np.prod(level_shards or (CHUNK,) * 3)) * 2
        with dask.config.set({"array.chunk-size": max(shard_bytes, 128 * 2**20)}):
            da.to_zarr(source, target)


TOOLS = {
    "recipe (tensorstore engine)": run_recipe,
    "recipe (zarr-python engine)": run_recipe_zarr,
    "tensorstore": run_tensorstore,
    "dask + zarr": run_dask_zarr,
    "ngff-zarr, ITK bin shrink": run_ngff_itk,
    "ngff-zarr, default method": run_ngff_default,
    "multiscale-spatial-image": run_msi,
}


# ---------------------------------------------------------------- checks (in the child, after timing)
def level_paths(out: Path) -> list[str]:
    import zarr

    attrs = dict(zarr.open_group(out, mode="r").attrs)
    ms = (attrs.get("ome") or attrs)["multiscales"][0]
    return [d["path"] for d in ms["datasets"]]


def verify(volume: np.ndarray, out: Path) -> dict:
    """Level 0 byte-equal; level 1 against the exact block mean, slab by slab."""
    import zarr

    group = zarr.open_group(out, mode="r")
    paths = level_paths(out)
    level0, level1 = group[paths[0]], group[paths[1]]
    equal = level0.shape == volume.shape
    worst, half_up, half_even = 0.0, True, True
    step = 128
    for z in range(0, volume.shape[0], step):
        if equal:
            equal = np.array_equal(level0[z:z + step], volume[z:z + step])
        block = volume[z:z + step].astype(np.int64)
        sums = sum(block[a::2, b::2, c::2] for a in (0, 1) for b in (0, 1) for c in (0, 1))
        stored = level1[z // 2:(z + step) // 2].astype(np.int64)
        if stored.shape != sums.shape:
            return {"level 0 equal": equal, "level 1 vs exact mean": f"shape {level1.shape}"}
        worst = max(worst, float(np.abs(8 * stored - sums).max()) / 8)
        half_up &= bool(np.array_equal(stored, (sums + 4) // 8))
        half_even &= bool(np.array_equal(stored, np.round(sums / 8)))
    rounding = "half up" if half_up else "half to even" if half_even else "not a rounded mean"
    return {"level 0 equal": equal, "level 1 max |error|": worst, "level 1 rounding": rounding}


def count_files(out: Path) -> int:
    return sum(len(files) for _, _, files in os.walk(out))


def child(tool: str, shards: bool) -> None:
    """Run one tool in this process and print one JSON line of results."""
    import warnings

    warnings.filterwarnings("ignore")
    volume = np.load(input_path())
    # load the tool's modules before the clock starts (ITK's first call still pays its set-up)
    import dask.array  # noqa: F401
    import tensorstore  # noqa: F401
    import zarr  # noqa: F401

    if "ngff" in tool or "spatial" in tool:
        import itk  # noqa: F401
        import ngff_zarr  # noqa: F401
    if "spatial" in tool:
        import multiscale_spatial_image  # noqa: F401
    base = rss_now()
    out = WORK / f"out-{abs(hash((tool, shards)))}.ome.zarr"
    shutil.rmtree(out, ignore_errors=True)
    sampler = PeakRSS()
    start = time.perf_counter()
    TOOLS[tool](volume, out, shards)
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    result = {"tool": tool, "shards": f"{SHARD}³" if shards else "none",
              "MB/s": volume.nbytes / 1e6 / seconds, "seconds": seconds,
              "peak RSS (GiB)": peak / 2**30, "RSS above input (GiB)": (peak - base) / 2**30,
              "files": count_files(out)}
    result.update(verify(volume, out))
    shutil.rmtree(out, ignore_errors=True)
    print(json.dumps(result))


# ---------------------------------------------------------------- case B
def level0_on_disk() -> Path:
    """A sharded level 0 of n x 2n x 2n on disk: four mirrored copies of the case A volume."""
    from data_helpers.pyramid import write_pyramid

    path = WORK / f"caseB-{N}.ome.zarr"
    if not (path / "0" / "zarr.json").exists():
        shutil.rmtree(path, ignore_errors=True)
        volume = np.load(input_path(), mmap_mode="r")
        n = volume.shape[0]

        class Mirrored:
            """Tiles of the volume, flipped in y and/or x so that neighbours meet without seams."""

            shape, dtype, ndim = (n, 2 * n, 2 * n), volume.dtype, 3

            @staticmethod
            def pieces(start, stop):
                """(output slice, source slice, flipped) per tile crossed by [start, stop)."""
                o = start
                while o < stop:
                    tile, r = divmod(o, n)
                    length = min(n - r, stop - o)
                    src = slice(n - r - length, n - r) if tile % 2 else slice(r, r + length)
                    yield slice(o - start, o - start + length), src, tile % 2 == 1
                    o += length

            def __getitem__(self, region):
                z, y, x = region
                out = np.empty(tuple(s.stop - s.start for s in region), volume.dtype)
                for oy, sy, fy in self.pieces(y.start, y.stop):
                    for ox, sx, fx in self.pieces(x.start, x.stop):
                        block = volume[z, sy, sx]
                        out[:, oy, ox] = block[:, ::-1 if fy else 1, ::-1 if fx else 1]
                return out

        write_pyramid(Mirrored(), path, levels=1, chunks=CHUNK, shards=SHARD, clevel=CLEVEL)
    return path


def child_b(tool: str) -> None:
    import tensorstore as ts
    import zarr

    from data_helpers.pyramid import write_pyramid

    path = level0_on_disk()
    base = rss_now()
    for k in range(1, LEVELS):
        shutil.rmtree(path / str(k), ignore_errors=True)
    level0 = zarr.open_array(path / "0", mode="r")
    sampler = PeakRSS()
    start = time.perf_counter()
    if tool == "recipe (tensorstore engine)":
        write_pyramid(level0, path, levels=LEVELS, chunks=CHUNK, shards=SHARD, clevel=CLEVEL,
                      start_level=1)
    else:
        _ts_levels(level0, path, True, 1)
    seconds = time.perf_counter() - start
    peak = sampler.stop()
    nbytes = level0.nbytes
    # check level 1 on one slab against the exact block mean
    a = ts.open({"driver": "zarr3", "kvstore": {"driver": "file", "path": str(path / "0")}},
                open=True).result()[:64].read().result().astype(np.int64)
    sums = sum(a[i::2, j::2, k::2] for i in (0, 1) for j in (0, 1) for k in (0, 1))
    stored = zarr.open_array(path / "1", mode="r")[:32].astype(np.int64)
    print(json.dumps({
        "tool": tool, "level 0 (GiB)": nbytes / 2**30, "MB/s": nbytes / 1e6 / seconds,
        "seconds": seconds, "peak RSS (GiB)": peak / 2**30,
        "RSS above start (GiB)": (peak - base) / 2**30,
        "level 1 max |error| (first slab)": float(np.abs(8 * stored - sums).max()) / 8,
    }))


# ---------------------------------------------------------------- parent
def spawn(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True,
                          env=env, timeout=3600)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode or not lines:
        return {"tool": args[-1], "error": (proc.stderr.strip().splitlines() or ["?"])[-1]}
    return json.loads(lines[-1])


def main() -> None:
    import pandas as pd

    only = os.environ.get("BIG_PYRAMID_TOOLS")
    tools = [t for t in TOOLS if not only or any(o.strip() in t for o in only.split(","))]
    input_path()
    if os.environ.get("BIG_PYRAMID_SKIP_A"):
        return case_b()
    print(f"case A: {N}³ uint16 = {N**3 * 2 / 2**30:.2f} GiB; {os.cpu_count()} CPUs; "
          f"load average at start {os.getloadavg()[0]:.1f}", flush=True)
    rows = []
    for shards in (True, False):
        for tool in tools:
            if tool == "multiscale-spatial-image" and shards:
                continue  # Zarr format 2 only
            row = spawn("--child", tool, "1" if shards else "0")
            rows.append(row)
            print(json.dumps(row), flush=True)
    table = pd.DataFrame(rows)
    ref = {r["shards"]: r["MB/s"] for r in rows if r.get("tool") == "tensorstore" and "MB/s" in r}
    table["× tensorstore"] = [r.get("MB/s", np.nan) / ref.get(r.get("shards"), np.nan) for r in rows]
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.round(2).to_string(index=False))
    if not os.environ.get("BIG_PYRAMID_SKIP_B"):
        case_b()


def warm_up(folder: Path) -> int:
    """Read every file under ``folder`` once (into the page cache); return the bytes read."""
    total = 0
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            with open(path, "rb") as f:
                while chunk := f.read(16 * 2**20):
                    total += len(chunk)
    return total


def case_b() -> None:
    import pandas as pd

    spawn("--make-b")  # level 0 on disk, made in a child so this process stays small
    print(f"\ncase B: level 0 {N} x {2 * N} x {2 * N} uint16 = {8 * N**3 / 2**30:.1f} GiB on disk; "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    rows_b = []
    for tool in ("recipe (tensorstore engine)", "tensorstore"):
        # every tool reads level 0 from the page cache: otherwise the first one reads
        # it from disk (case A's files pushed it out) and warms it for the second
        warm_up(WORK / f"caseB-{N}.ome.zarr" / "0")
        rows_b.append(spawn("--child-b", tool))
    table_b = pd.DataFrame(rows_b)
    if all("MB/s" in r for r in rows_b):
        table_b["× tensorstore"] = [r["MB/s"] / rows_b[1]["MB/s"] for r in rows_b]
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table_b.round(2).to_string(index=False))
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child(sys.argv[2], sys.argv[3] == "1")
    elif len(sys.argv) > 1 and sys.argv[1] == "--make-b":
        level0_on_disk()
        print("{}")
    elif len(sys.argv) > 1 and sys.argv[1] == "--child-b":
        child_b(sys.argv[2])
    else:
        main()
