"""Read an OME-Zarr image with a second, independent implementation and compare.

The book promises that every OME-Zarr it writes is readable by more than zarr-python.
:func:`compare_readers` opens every level of an image (and of its label images) with
zarr-python and with tensorstore (Google's C++ Zarr implementation, format 2 and 3,
sharding included), and checks that both return the same voxels.

Example
-------
>>> import tempfile, pathlib, numpy as np, zarr
>>> root = pathlib.Path(tempfile.mkdtemp()) / "img.ome.zarr"
>>> g = zarr.open_group(root, mode="w", attributes={"ome": {"version": "0.5",
...     "multiscales": [{"axes": [{"name": "y", "type": "space"}, {"name": "x", "type": "space"}],
...     "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": [1, 1]}]}]}]}})
>>> g.create_array("0", data=np.arange(12, dtype="uint16").reshape(3, 4), chunks=(2, 2)) is not None
True
>>> compare_readers(root)[["path", "shape", "same voxels"]].values.tolist()
[['0', (3, 4), True]]
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _multiscale_paths(root: Path, prefix: str = "") -> list[str]:
    """Dataset paths of the image at ``root/prefix`` and of its listed label images."""
    base = root / prefix
    if (base / "zarr.json").exists():
        attrs = json.loads((base / "zarr.json").read_text()).get("attributes", {}).get("ome", {})
        labels_meta = root / prefix / "labels" / "zarr.json"
        labels = (json.loads(labels_meta.read_text()).get("attributes", {}).get("ome", {})
                  .get("labels", []) if labels_meta.exists() else [])
    elif (base / ".zattrs").exists():
        attrs = json.loads((base / ".zattrs").read_text())
        labels_meta = root / prefix / "labels" / ".zattrs"
        labels = json.loads(labels_meta.read_text()).get("labels", []) if labels_meta.exists() else []
    else:
        raise FileNotFoundError(
            f"{base} has no zarr.json or .zattrs: pass the folder of an OME-Zarr image group."
        )
    if "multiscales" not in attrs:
        raise ValueError(f"{base} has no 'multiscales' metadata: is it an OME-Zarr image?")
    join = (lambda p: f"{prefix}/{p}") if prefix else (lambda p: p)
    paths = [join(d["path"]) for d in attrs["multiscales"][0]["datasets"]]
    for name in labels:
        paths += _multiscale_paths(root, join(f"labels/{name}"))
    return paths


def compare_readers(path: str | Path):
    """Read every level of a local OME-Zarr image with zarr-python and tensorstore.

    Returns a table (one row per array: path, shape, Zarr format, whether both readers
    returned the same voxels). Raises ``AssertionError`` naming the first array where
    they differ, so a chapter cell or test fails loudly.
    """
    import pandas as pd
    import tensorstore as ts
    import zarr

    root = Path(path).resolve()
    rows = []
    for p in _multiscale_paths(root):
        arr = zarr.open_array(root / p, mode="r")
        fmt = arr.metadata.zarr_format
        spec = {"driver": "zarr3" if fmt == 3 else "zarr",
                "kvstore": {"driver": "file", "path": str(root / p)}}
        other = ts.open(spec, read=True).result().read().result()
        same = bool(np.array_equal(arr[...], other))
        if not same:
            raise AssertionError(f"{root / p}: tensorstore and zarr-python read different voxels.")
        rows.append({"path": p, "shape": tuple(arr.shape), "format": fmt,
                     "sharded": arr.shards is not None, "same voxels": same})
    return pd.DataFrame(rows)
