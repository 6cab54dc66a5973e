"""Every chapter executes once (two at a time); then the strict HTML build renders them.

The execution is shared with ``make book``: ``data_helpers.build`` keeps the executed
notebooks and a report in ``_build/executed/``. A chapter whose source, the package or
the lock changed is executed again; ``ZARR_BOOK_FORCE=1`` executes all of them.
"""

from __future__ import annotations

import os
import re

import pytest

from data_helpers import build
from tests.conftest import mirror_path
from tests.test_chapters import CHAPTERS


@pytest.fixture(scope="session")
def report(pytestconfig):
    """The chapters' execution report (started at collection time by conftest.py)."""
    future = getattr(pytestconfig, "_chapter_execution", None)
    if future is not None:
        return future.result()
    os.environ.setdefault("ZARR_BOOK_DATA_MIRROR", str(mirror_path()))
    return build.execute(force=os.environ.get("ZARR_BOOK_FORCE") == "1")


@pytest.mark.book
@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_executes(report, md):
    entry = report.get(md.stem)
    assert entry is not None, f"{md.stem} was not executed"
    assert entry["ok"], f"chapter {md.stem} failed:\n{entry['error']}"
    assert entry["fingerprint"] == build.fingerprint(md), f"{md.stem}: stale execution"


@pytest.mark.book
def test_strict_book_build(report):
    failed = [md.stem for md in CHAPTERS if not report.get(md.stem, {}).get("ok")]
    if failed:
        pytest.skip(f"not rendered: chapters failed ({', '.join(failed)}), see their tests")
    html = build.render()
    assert (html / "index.html").exists()
    for md in CHAPTERS:
        page = (html / "chapters" / f"{md.stem}.html").read_text()
        # an error output (myst-nb renders it with the classes "output traceback")
        assert not re.search(r'class="[^"]*\boutput traceback\b', page), f"{md.stem}: an error was rendered"
        images = re.findall(r'<img [^>]*src="(\.\./_images/[^"]+\.png)"', page)
        assert images, f"{md.stem}: the page shows no figure made by a cell"
        for src in images:
            assert (html / "chapters" / src).resolve().is_file(), f"{md.stem}: missing image {src}"
