"""The chapters: each .md has a committed, output-free .ipynb generated from it, and is in the book."""

from __future__ import annotations

import functools
import json
import re
import tomllib
from pathlib import Path

import jupytext
import pytest
import yaml

from data_helpers import notebooks
from tests.conftest import REPO

CHAPTERS = sorted(
    p for p in (REPO / "chapters").glob("*.md") if "format_name: myst" in p.read_text()
)


def test_there_are_chapters():
    assert CHAPTERS, "no MyST notebook chapters found in chapters/"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_ipynb_in_sync_with_md(md: Path):
    """The committed .ipynb is the chapter rendered for Colab/Jupyter, with no outputs."""
    nb_path = md.with_suffix(".ipynb")
    assert nb_path.exists(), f"{nb_path.name} is missing: run `make notebooks` and commit it"
    want = [(c.cell_type, c.source.strip()) for c in notebooks.colab_notebook(md).cells]
    data = json.loads(nb_path.read_text())
    have = [(c["cell_type"], "".join(c["source"]).strip()) for c in data["cells"]]
    assert have == want, f"{nb_path.name} is out of sync with {md.name}: run `make notebooks`"
    outputs = sum(len(c.get("outputs", [])) for c in data["cells"] if c["cell_type"] == "code")
    assert outputs == 0, f"{nb_path.name} carries outputs: commit it without outputs"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_notebook_shows_no_raw_myst(md: Path):
    """Colab and Jupyter cannot render MyST roles or directives: none may be left."""
    data = json.loads(md.with_suffix(".ipynb").read_text())
    for cell in data["cells"]:
        if cell["cell_type"] == "markdown":
            text = "".join(cell["source"])
            raw = re.findall(r"\{[a-z:-]+\}`|^(?:`{3,}|:{3,})\{", text, flags=re.M)
            assert not raw, f"{md.stem}.ipynb shows raw MyST {raw} in: {text[:200]!r}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_install_cell_from_the_one_template(md: Path):
    """Every chapter installs from the repository and ref in _config.yml / pyproject.toml."""
    url, ref = notebooks.repository()
    config = yaml.safe_load((REPO / "_config.yml").read_text())
    assert url == config["repository"]["url"]
    assert notebooks.install_cell(md.stem) in md.read_text(), (
        f"{md.name}: the Colab install cell differs from the template: run `make notebooks`"
    )
    assert f"git+{url}@{ref}" in md.read_text()
    assert md.stem in notebooks.CHAPTER_EXTRAS, f"{md.stem}: list its extras in CHAPTER_EXTRAS"


def _lock_closure(extras: list[str]) -> set[str]:
    """Every distribution the book's package with ``extras`` pulls in, from uv.lock."""
    lock = tomllib.loads((REPO / "uv.lock").read_text())
    pkgs = {p["name"]: p for p in lock["package"]}
    seen: set[str] = set()
    todo = [(ROOT, tuple(extras))]
    while todo:
        name, want = todo.pop()
        pkg = pkgs[name]
        deps = list(pkg.get("dependencies", []))
        for extra in want:
            deps += pkg.get("optional-dependencies", {}).get(extra, [])
        if name in seen and not want:
            continue
        seen.add(name)
        for dep in deps:
            todo.append((dep["name"], tuple(dep.get("extra", []))))
    return seen


ROOT = "zarr-bioimaging-book"


@functools.cache
def _owners() -> dict[str, list[str]]:
    import importlib.metadata as im

    return im.packages_distributions()


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.stem)
def test_chapter_extras_cover_its_imports(md: Path):
    """What a chapter imports is installed by its Colab cell's extras (nothing more is there)."""
    owners = _owners()
    closure = _lock_closure(notebooks.CHAPTER_EXTRAS.get(md.stem, ["all"]))
    modules = set(re.findall(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", md.read_text(), flags=re.M))
    missing = []
    for module in sorted(modules - {"IPython"}):  # every Jupyter kernel has IPython
        dists = {d.lower().replace("_", "-") for d in owners.get(module, [])}
        if dists and not dists & closure:
            missing.append(f"{module} ({', '.join(sorted(dists))})")
    assert not missing, f"{md.stem} imports {missing}, not installed by its extras"


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
