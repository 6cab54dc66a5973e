"""What a Zarr hierarchy looks like on disk: file trees and sizes.

Example
-------
>>> import zarr, tempfile
>>> root = tempfile.mkdtemp()
>>> _ = zarr.create_array(f"{root}/a.zarr", shape=(4,), chunks=(2,), dtype="u1", fill_value=0)
>>> print(tree(f"{root}/a.zarr"))
a.zarr/
└── zarr.json  (... B)
"""

from __future__ import annotations

import os
import re
from pathlib import Path


def _natural(name: str) -> list[tuple[int, int | str]]:
    """Sort key: names before numbers, and chunk 2 before chunk 10."""
    return [(1, int(p)) if p.isdigit() else (0, p) for p in re.split(r"(\d+)", name) if p]


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    raise AssertionError  # pragma: no cover


def tree(path: str | os.PathLike, *, max_entries: int = 12, sizes: bool = True) -> str:
    """A ``tree``-like listing of ``path`` with file sizes, in natural name order.

    Directories with more than ``max_entries`` entries are shortened to their
    first entries plus a count of the rest, so big arrays stay readable.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist; pass the path of a Zarr store on disk.")
    lines = [root.name + ("/" if root.is_dir() else "")]

    def walk(folder: Path, prefix: str) -> None:
        entries = sorted(folder.iterdir(), key=lambda p: _natural(p.name))
        shown = entries[:max_entries]
        hidden = len(entries) - len(shown)
        for i, entry in enumerate(shown):
            last = i == len(shown) - 1 and not hidden
            branch = "└── " if last else "├── "
            if entry.is_dir():
                lines.append(f"{prefix}{branch}{entry.name}/")
                walk(entry, prefix + ("    " if last else "│   "))
            else:
                size = f"  ({_human(entry.stat().st_size)})" if sizes else ""
                lines.append(f"{prefix}{branch}{entry.name}{size}")
        if hidden:
            lines.append(f"{prefix}└── … {hidden} more")

    if root.is_dir():
        walk(root, "")
    return "\n".join(lines)


def disk_usage(path: str | os.PathLike) -> tuple[int, int]:
    """``(number of files, total bytes)`` under ``path``.

    Example
    -------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "x").write_bytes(b"abc")
    >>> disk_usage(d)
    (1, 3)
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist.")
    files = [p for p in root.rglob("*") if p.is_file()] if root.is_dir() else [root]
    return len(files), sum(p.stat().st_size for p in files)
