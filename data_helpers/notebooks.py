"""Make each chapter's ``.ipynb`` (for Colab and Jupyter) from its MyST ``.md`` source.

The ``.md`` is what authors edit and what the HTML book is built from. The ``.ipynb``
beside it is what Colab's launch button opens: there, MyST roles and directives would
show raw (``{glue:text}`speed:.1f```), so the notebook is *rendered* for people:

- ``{glue:text}`name:fmt``` becomes **name** (the cell that measures it prints
  ``name = value``, see :mod:`data_helpers.record`);
- ``{cite}`key``` becomes (Author Year), from ``references.bib``;
- exercise/solution and admonition directives become plain headings and quotes;
- the Colab install cell is written from one template with the repository URL and
  the pinned git ref taken from ``_config.yml`` and ``pyproject.toml`` (one place).

Code cells are unchanged, and so are the cell ids (``jupytext --update`` semantics).

Command line: ``python -m data_helpers.notebooks`` (``make notebooks``) rewrites the
install cells in the ``.md`` files, then regenerates every ``.ipynb``.

>>> plain_markdown("Took {glue:text}`t_ms:.1f` ms {cite}`zarr-spec`.", {"zarr-spec": "(Miles 2023)"})
'Took **t_ms** ms (Miles 2023).'
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
INSTALL_MARK = '"google.colab" in sys.modules'

#: The extras each chapter's Colab cell installs (see pyproject.toml); default "all".
CHAPTER_EXTRAS: dict[str, list[str]] = {
    "arrays_and_groups": [],
    "chunking": [],
    "compression": [],
    "stores": ["s3", "virtual"],
    "content_addressed": ["ome", "ipfs", "icechunk"],
    "ome_zarr": ["ome"],
    "pyramids": ["msi"],
    "remote_ome_zarr": ["ome", "s3"],
    "big_data": ["ome", "big"],
    "speed": ["big", "speed"],
    "icechunk": ["icechunk", "s3"],
    "catalogue": ["catalogue"],
    "export": ["export"],
}

INSTALL_TEMPLATE = '''\
# Colab only: install what this chapter needs (shown as it goes). If pip replaces a
# package the session already imported, the cell stops and asks for a restart.
import sys

if "google.colab" in sys.modules:
    import os
    import subprocess

    BOOK = os.environ.get("ZARR_BOOK_SOURCE", "git+{url}@{ref}")
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", BOOK],
                         capture_output=True, text=True)
    if pip.returncode:
        raise RuntimeError(pip.stdout + pip.stderr)
    from data_helpers.colab import install

    install(BOOK, extras={extras})'''


def chapter_sources() -> list[Path]:
    """The MyST chapter sources that have a paired notebook."""
    return sorted(p for p in (REPO / "chapters").glob("*.md") if "format_name: myst" in p.read_text())


def repository() -> tuple[str, str]:
    """The book's repository URL (``_config.yml``) and the git ref chapters install (``v`` + version)."""
    import yaml

    url = yaml.safe_load((REPO / "_config.yml").read_text())["repository"]["url"]
    version = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
    return url, f"v{version}"


def install_cell(chapter: str) -> str:
    """The source of a chapter's Colab install cell."""
    url, ref = repository()
    return INSTALL_TEMPLATE.format(url=url, ref=ref, extras=CHAPTER_EXTRAS.get(chapter, ["all"]))


def rewrite_install_cell(md: Path) -> bool:
    """Replace the chapter's Colab install cell with the template; True if it changed."""
    text = md.read_text()
    cells = list(re.finditer(r"```\{code-cell\}[^\n]*\n(.*?)```", text, flags=re.S))
    for m in cells:
        if INSTALL_MARK in m.group(1):
            body = m.group(1)
            header = ""
            if body.startswith(":tags:"):
                header, body = body.split("\n", 1)
                header += "\n"
                if body.startswith("\n"):
                    header += "\n"
            new = f"{header}{install_cell(md.stem)}\n"
            if m.group(1) == new:
                return False
            md.write_text(text[: m.start(1)] + new + text[m.end(1):])
            return True
    raise ValueError(f"{md.name} has no Colab install cell (a code cell testing {INSTALL_MARK})")


def citations() -> dict[str, str]:
    """Citation key -> '(Author Year)' from references.bib (first author's family name)."""
    from pybtex.database import parse_file

    bib = parse_file(str(REPO / "references.bib"))
    out = {}
    for key, entry in bib.entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        if people:
            name = " ".join(people[0].last_names) or str(people[0])
            name = re.sub(r"[{}]", "", name)
            if len(people) > 1:
                name += " et al."
        else:
            name = re.sub(r"[{}]", "", entry.fields.get("organization", entry.fields.get("title", key)))
        out[key] = f"({name} {entry.fields.get('year', 'n.d.')})"
    return out


_DIRECTIVE = re.compile(r"^(`{3,}|:{3,})\{([\w:-]+)\}[ \t]*(.*)$")


def plain_markdown(text: str, cites: dict[str, str]) -> str:
    """MyST roles and directives turned into plain Markdown that Colab and Jupyter show."""
    text = re.sub(r"\{glue:text\}`([^`:]+)(:[^`]*)?`", r"**\1**", text)
    text = re.sub(r"\{glue(:any)?\}`([^`]+)`", r"**\2** (printed above)", text)

    def cite(m: re.Match) -> str:
        keys = [k.strip() for k in m.group(2).split(",")]
        refs = [cites.get(k, f"({k})")[1:-1] for k in keys]
        return "(" + "; ".join(refs) + ")"

    text = re.sub(r"\{cite(:\w+)?\}`([^`]+)`", cite, text)
    text = re.sub(r"\{(?:doc|ref|numref|term|abbr)\}`([^`<]*?)\s*(?:<[^>]*>)?`", r"\1", text)
    out: list[str] = []
    for line in text.split("\n"):
        m = _DIRECTIVE.match(line)
        if m:
            name, arg = m.group(2), m.group(3).strip()
            heading = {
                "exercise-start": "**Exercise**", "solution-start": "**Solution**",
                "exercise-end": None, "solution-end": None,
            }.get(name, f"**{arg or name.capitalize()}**" if name not in ("bibliography",) else None)
            if heading:
                out.append(heading)
            continue
        if re.match(r"^(`{3,}|:{3,})\s*$", line) or re.match(r"^:(label|class|name|tags|nonumber|hidden):", line):
            continue
        out.append(line)
    return re.sub(r"\n{3,}", "\n\n", "\n".join(out)).strip("\n")


def colab_notebook(md: Path):
    """The rendered notebook for one chapter (an nbformat NotebookNode)."""
    import jupytext

    nb = jupytext.read(md)
    cites = citations()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            cell.source = plain_markdown(cell.source, cites)
    return nb


def write_notebook(md: Path) -> Path:
    """Write ``md``'s rendered ``.ipynb``, keeping the cell ids of the existing file."""
    import nbformat

    nb = colab_notebook(md)
    path = md.with_suffix(".ipynb")
    if path.exists():
        old = json.loads(path.read_text())
        old_ids = [c.get("id") for c in old["cells"]]
        old_src = ["".join(c["source"]) for c in old["cells"]]
        for cell in nb.cells:  # keep the id of an unchanged cell, wherever it moved
            if cell.source in old_src:
                i = old_src.index(cell.source)
                if old_ids[i]:
                    cell.id = old_ids[i]
                    old_src[i] = None  # type: ignore[call-overload]
    nb.metadata.pop("jupytext", None)
    nb.metadata["colab"] = {"provenance": []}
    nbformat.validate(nb)
    path.write_text(nbformat.writes(nb) + "\n")
    return path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    for md in [Path(a) for a in argv] or chapter_sources():
        if rewrite_install_cell(md):
            print(f"{md.name}: install cell rewritten")
        write_notebook(md)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
