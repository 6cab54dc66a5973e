"""Regenerate each chapter's paired ``.ipynb`` (for Colab and Jupyter) from its ``.md``.

``python -m data_helpers.notebooks`` runs ``jupytext --to ipynb --update`` on every
chapter (deterministic cell ids; never ``--sync``, which trusts file times).

>>> from data_helpers.notebooks import chapter_sources
>>> all(p.suffix == ".md" for p in chapter_sources())
True
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def chapter_sources() -> list[Path]:
    """The MyST chapter sources that have a paired notebook."""
    return sorted(p for p in (REPO / "chapters").glob("*.md") if "format_name: myst" in p.read_text())


def main() -> int:
    jupytext = Path(sys.executable).with_name("jupytext")
    cmd = [str(jupytext), "--to", "ipynb", "--update", *map(str, chapter_sources())]
    return subprocess.run(cmd, check=False).returncode


if __name__ == "__main__":
    raise SystemExit(main())
