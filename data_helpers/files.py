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

import numbers
import os
import re
from pathlib import Path


def _as_path(path: object, what: str = "path") -> Path:
    if not isinstance(path, (str, os.PathLike)) or str(path) == "":
        raise TypeError(
            f"{what} must be the path of a Zarr store on disk (str or pathlib.Path), e.g. "
            f"'data/image.zarr'; got {path!r}."
        )
    root = Path(path)
    if root.is_symlink() and not root.exists():
        try:
            target = os.readlink(root)
        except OSError:
            target = "?"
        raise FileNotFoundError(
            f"{root} is a symbolic link to {target}, which does not exist (or links back to "
            "itself); pass the path of the store itself."
        )
    if not root.exists():
        raise FileNotFoundError(f"{root} does not exist; pass the path of a Zarr store on disk.")
    return root


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
    first entries plus a count of the rest, so big arrays stay readable. Symbolic
    links are shown as ``name -> target`` and never followed (so a link loop cannot
    run away); folders that cannot be read say so.
    """
    root = _as_path(path)
    if isinstance(max_entries, bool) or not isinstance(max_entries, numbers.Integral):
        raise TypeError(f"max_entries must be an integer of at least 1, e.g. 12; got {max_entries!r}.")
    if max_entries < 1:
        raise ValueError(f"max_entries must be at least 1, e.g. 12; got {max_entries}.")
    if not isinstance(sizes, bool):
        raise TypeError(f"sizes must be True or False; got {sizes!r}.")
    lines = [root.name + ("/" if root.is_dir() else "")]

    def walk(folder: Path, prefix: str) -> None:
        try:
            entries = sorted(folder.iterdir(), key=lambda p: _natural(p.name))
        except OSError as err:
            lines.append(f"{prefix}└── (cannot list: {err.strerror})")
            return
        shown = entries[:max_entries]
        hidden = len(entries) - len(shown)
        for i, entry in enumerate(shown):
            last = i == len(shown) - 1 and not hidden
            branch = "└── " if last else "├── "
            if entry.is_symlink():
                try:
                    target = os.readlink(entry)
                except OSError:
                    target = "?"
                broken = "" if entry.exists() else "  (broken link)"
                lines.append(f"{prefix}{branch}{entry.name} -> {target}{broken}")
            elif entry.is_dir():
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
    """``(number of files, total bytes)`` under ``path`` (symbolic links not followed).

    Example
    -------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp()); _ = (d / "x").write_bytes(b"abc")
    >>> disk_usage(d)
    (1, 3)
    """
    root = _as_path(path)
    if not root.is_dir():
        return 1, root.stat().st_size
    count = total = 0
    # os.walk does not follow symbolic links to folders; links to files are not
    # counted either: the bytes live elsewhere.
    for folder, _dirs, names in os.walk(root):
        for name in names:
            p = Path(folder) / name
            if p.is_symlink():
                continue
            try:
                st = p.lstat()
            except OSError:
                continue
            count += 1
            total += st.st_size
    return count, total
