"""The chapters: each .md has a committed, output-free .ipynb generated from it, and is in the book."""

from __future__ import annotations

import json
from pathlib import Path

import jupytext
import pytest
import yaml

from tests.conftest import REPO

CHAPTERS = sorted(
    p for p in (REPO / "chapters").glob("*.md") if "format_name: myst" in p.read_text()
)


def test_there_are_chapters():
    assert CHAPTERS, "no MyST notebook chapters found in chapters/"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_ipynb_in_sync_with_md(md: Path):
    nb_path = md.with_suffix(".ipynb")
    assert nb_path.exists(), f"{nb_path.name} is missing: run `make notebooks` and commit it"
    want = [(c.cell_type, c.source.strip()) for c in jupytext.read(md).cells]
    data = json.loads(nb_path.read_text())
    have = [(c["cell_type"], "".join(c["source"]).strip()) for c in data["cells"]]
    assert have == want, f"{nb_path.name} is out of sync with {md.name}: run `make notebooks`"
    outputs = sum(len(c.get("outputs", [])) for c in data["cells"] if c["cell_type"] == "code")
    assert outputs == 0, f"{nb_path.name} carries outputs: commit it without outputs"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_front_matter_and_skeleton(md: Path):
    text = md.read_text()
    front = yaml.safe_load(text.split("---")[1])
    assert front["kernelspec"]["name"] == "python3"
    assert front["jupytext"]["text_representation"]["format_name"] == "myst"
    for heading in ("## Overview", "## Prerequisites", "## Summary", "## What's next", "## Resources"):
        assert heading in text, f"{md.name} lacks the skeleton section {heading!r}"
    assert "google.colab" in text, f"{md.name} lacks the Colab install cell"
    assert "{solution-start}" in text, f"{md.name} has no exercise with a solution"


def _toc_files(node) -> list[str]:
    found = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key in ("file", "root"):
                found.append(value)
            else:
                found += _toc_files(value)
    elif isinstance(node, list):
        for item in node:
            found += _toc_files(item)
    return found


def test_every_chapter_is_in_the_toc():
    toc = _toc_files(yaml.safe_load((REPO / "_toc.yml").read_text()))
    for md in CHAPTERS:
        assert f"chapters/{md.stem}" in toc, f"{md.name} is not listed in _toc.yml"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_cite_into_the_one_bibliography(md: Path):
    """A per-chapter bibliography breaks the strict build as soon as two chapters cite one work."""
    assert "{bibliography}" not in md.read_text(), (
        f"{md.name}: cite with {{cite}} and leave the list to chapters/references.md"
    )
    assert "{bibliography}" in (REPO / "chapters" / "references.md").read_text()
