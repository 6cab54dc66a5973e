"""Install a chapter's packages in Google Colab, visibly and safely.

Each chapter's first cell installs this package without dependencies (seconds), then
calls :func:`install` with the chapter's extras. :func:`install`

- runs pip where the reader sees it: progress lines and pip's own errors, not ``-q``;
- installs only what the chapter needs (its extras), and leaves Colab's preinstalled
  packages alone wherever they satisfy the book's lower bounds;
- installs ``multiscale-spatial-image`` without its dependencies when asked for (its caps
  ``ngff-zarr<0.19``, ``dask<2026``, ``xarray<2026`` would pull the stack a year back);
- stops "Run all" with :class:`RestartRequired` when pip replaced a package the session
  had already imported (Colab's kernel imports numpy, matplotlib and Pillow at start;
  a replaced module half-loaded crashes later cells with obscure errors). After the
  restart the cell runs again in seconds and the chapter continues.

``ZARR_BOOK_SOURCE`` overrides where the book is installed from (the Colab-like CI
check points it at the local checkout).

>>> changed_modules({"numpy": "2.1.3", "pandas": "2.2.3"}, {"numpy": "2.5.5", "pandas": "2.2.3"})
['numpy 2.1.3 -> 2.5.5']
>>> pip_requirement("git+https://example.org/book@v1", ["ome", "s3"])
'zarr-bioimaging-book[ome,s3] @ git+https://example.org/book@v1'
"""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import time

DIST = "zarr-bioimaging-book"
SOURCE_ENV = "ZARR_BOOK_SOURCE"
#: Installed without dependencies: its caps are overridden by the book (see pyproject.toml).
NO_DEPS = {"msi": ["multiscale-spatial-image==2.1.0"]}
#: pip cannot override a dependency's caps, so an extra in NO_DEPS is installed as the
#: extra that holds everything it needs except the capped package itself.
PIP_EXTRA = {"msi": "pyramids"}
#: pip lines worth showing (the rest is "Requirement already satisfied" noise).
_SHOW = ("Collecting", "Downloading", "Installing", "Successfully", "ERROR", "error",
         "WARNING", "  Attempting uninstall", "pip's dependency resolver", "Building")


class RestartRequired(RuntimeError):
    """pip replaced a package this session had already imported: restart and run again."""


def pip_requirement(source: str, extras: list[str]) -> str:
    """The pip requirement for the book's package with ``extras`` from ``source``.

    ``source`` is a pip URL (``git+https://...@ref``) or a local checkout's path.
    """
    names = f"[{','.join(extras)}]" if extras else ""
    if "://" in source:
        return f"{DIST}{names} @ {source}"
    return f"{source}{names}"


def loaded_distributions() -> dict[str, str]:
    """Distribution name -> version, for every distribution with a module already imported."""
    top = {name.split(".")[0] for name in list(sys.modules)}
    owners = md.packages_distributions()
    found: dict[str, str] = {}
    for module in top:
        for dist in owners.get(module, []):
            try:
                found[dist] = md.version(dist)
            except md.PackageNotFoundError:
                pass
    return found


def changed_modules(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """The distributions whose version changed between two snapshots, as 'name old -> new'."""
    return [f"{d} {v} -> {after[d]}" for d, v in sorted(before.items()) if after.get(d, v) != v]


def _run_pip(args: list[str]) -> None:
    import fcntl
    import tempfile

    # One pip at a time per machine (two notebooks of one session may install at once).
    with open(os.path.join(tempfile.gettempdir(), "zarr-book-pip.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _run_pip_locked(args)


def _run_pip_locked(args: list[str]) -> None:
    cmd = [sys.executable, "-m", "pip", "install", "--progress-bar", "off", *args]
    print("$ pip install", " ".join(args), flush=True)
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        tail = (tail + [line.rstrip()])[-40:]
        if line.lstrip().startswith(_SHOW) or line.startswith(_SHOW):
            print("  " + line.rstrip()[:160], flush=True)
    if proc.wait() != 0:
        raise RuntimeError(
            f"pip failed (exit {proc.returncode}); its last lines:\n" + "\n".join(tail)
            + "\nFix: run this cell again; if it fails the same way, restart the session "
            "(Runtime > Restart session) and run all."
        )
    print(f"  done in {time.perf_counter() - start:.0f} s", flush=True)


def install(source: str, extras: list[str] | tuple[str, ...] = ()) -> None:
    """Install the book's package with ``extras`` from ``source`` (a pip URL or path)."""
    source = os.environ.get(SOURCE_ENV, source)
    extras = list(extras)
    unknown = [e for e in extras if e not in _known_extras()]
    if unknown:
        raise ValueError(f"unknown extras {unknown}; the book defines {sorted(_known_extras())}")
    before = loaded_distributions()
    _run_pip([pip_requirement(source, [PIP_EXTRA.get(e, e) for e in extras])])
    for extra in extras:
        if extra in NO_DEPS:
            _run_pip(["--no-deps", *NO_DEPS[extra]])
    md_cache_clear = getattr(md, "_cache_clear", None)  # metadata is re-read below
    if md_cache_clear:
        md_cache_clear()
    after = {d: _version(d) for d in before}
    changed = changed_modules(before, after)
    if changed:
        raise RestartRequired(
            "pip replaced packages this session had already imported: "
            + ", ".join(changed)
            + ".\nRestart the session (Runtime > Restart session), then run all cells "
            "again: this cell will then take seconds and the chapter will run."
        )
    print("Ready: every package this chapter needs is installed.")


def _version(dist: str) -> str:
    try:
        return md.version(dist)
    except md.PackageNotFoundError:
        return "(removed)"


def _known_extras() -> set[str]:
    try:
        meta = md.metadata(DIST)
    except md.PackageNotFoundError:  # running from a checkout without the package installed
        return {"ome", "s3", "virtual", "pyramids", "msi", "icechunk", "big", "all"}
    return set(meta.get_all("Provides-Extra") or [])
