"""The strict book build: every chapter executes, no warning, and the pages show their figures."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, mirror_path
from tests.test_chapters import CHAPTERS


@pytest.mark.book
def test_strict_book_build(tmp_path, monkeypatch):
    monkeypatch.setenv("ZARR_BOOK_DATA_MIRROR", str(mirror_path()))
    source = tmp_path / "book"
    shutil.copytree(
        REPO, source,
        ignore=shutil.ignore_patterns(".venv", "_build", ".git", "__pycache__", ".pytest_cache"),
    )
    jb = Path(sys.executable).with_name("jupyter-book")
    result = subprocess.run(
        [str(jb), "build", str(source), "-W", "-n", "--keep-going"],
        capture_output=True, text=True, timeout=1800,
    )
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-3000:]
    html = source / "_build" / "html"
    assert (html / "index.html").exists()
    for md in CHAPTERS:
        page = (html / "chapters" / f"{md.stem}.html").read_text()
        assert "Traceback" not in page, f"{md.stem}: an error was rendered"
        images = re.findall(r'<img [^>]*src="(\.\./_images/[^"]+\.png)"', page)
        assert images, f"{md.stem}: the page shows no figure made by a cell"
        for src in images:
            assert (html / "chapters" / src).resolve().is_file(), f"{md.stem}: missing image {src}"
