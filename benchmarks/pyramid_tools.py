"""First-call and warm cost of the down-sampling methods of the pyramid tools.

Each method runs in a fresh Python process (so its one-off loading is included) on a
phantom volume of ``PYRAMID_BENCH_SIZE`` voxels per side (default 128, a 4 MB uint16
volume); the process builds a two-level pyramid twice and reports both times. The
table compares every method with ITK's bin shrink measured in the same run.

The ITKWASM methods compile their WebAssembly modules on first use and cache them on
disk, so the very first run of this script on a machine is slower for them than later
runs; ITK's Python modules are loaded anew by every process.

Run:  PYTHONPATH=. python benchmarks/pyramid_tools.py
      PYRAMID_BENCH_SIZE=256 PYTHONPATH=. python benchmarks/pyramid_tools.py
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

SIZE = int(os.environ.get("PYRAMID_BENCH_SIZE", "128"))

CHILD = r"""
import json, sys, time, warnings
warnings.filterwarnings("ignore")
start = time.perf_counter()
import data_helpers as dh
import ngff_zarr as nz
size, method = int(sys.argv[1]), sys.argv[2]
volume, _ = dh.make_phantom((size, size, size), seed=0)
image = nz.to_ngff_image(volume[0], dims=["z", "y", "x"])
ready = time.perf_counter()
times = []
for _ in range(2):
    t = time.perf_counter()
    ms = nz.to_multiscales(image, scale_factors=[2], method=nz.Methods[method],
                           chunks=64)
    for level in ms.images:
        level.data.compute()
    times.append(time.perf_counter() - t)
print(json.dumps({"first call (s)": times[0], "warm call (s)": times[1]}))
"""

METHODS = ["ITK_BIN_SHRINK", "ITK_GAUSSIAN", "ITKWASM_BIN_SHRINK", "ITKWASM_GAUSSIAN"]


def run(method: str) -> dict[str, float]:
    """Time one method in a fresh process; return its first and warm call times."""
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(SIZE), method],
        capture_output=True, text=True, check=True, timeout=600,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    import pandas as pd

    rows = {m: run(m) for m in METHODS}
    table = pd.DataFrame.from_dict(rows, orient="index")
    base = table.loc["ITK_BIN_SHRINK"]
    table["first call / bin shrink"] = table["first call (s)"] / base["first call (s)"]
    table["warm call / bin shrink"] = table["warm call (s)"] / base["warm call (s)"]
    print(f"ngff-zarr to_multiscales, {SIZE}^3 uint16, factor 2, fresh process each")
    print(table.round(2).to_string())


if __name__ == "__main__":
    main()
