"""A Sphinx extension for the book: bibliography labels that match author–year citations.

The book cites with ``bibtex_reference_style: author_year`` ("Moore et al. [2021]"),
but pybtex's default ``alpha`` labels the reference list ``[MAB+21]`` or
``[ZarrDevelopers16]``, which a reader cannot match to the citation. This registers a
pybtex style ``authoryear``: the reference list is sorted by author and year, and each
entry is labelled "Moore et al., 2021" (``a``/``b`` added when two entries collide).

Enable it in ``_config.yml``::

    sphinx:
      extra_extensions: [data_helpers.bibstyle]
      config:
        bibtex_default_style: authoryear

Example
-------
>>> from pybtex.database import parse_string
>>> bib = parse_string('''
... @misc{a, author = {Moore, Josh and Allan, Chris and Besson, S.}, year = {2021}, title = {T}}
... @misc{b, author = {{Zarr Developers}}, year = {2024}, title = {U}}
... @misc{c, author = {{Zarr Developers}}, year = {2024}, title = {V}}
... @misc{d, author = {Abernathey, Ryan and others}, year = {2024}, title = {W}}
... ''', "bibtex")
>>> list(AuthorYearLabels().format_labels(bib.entries.values()))
['Moore et al., 2021', 'Zarr Developers, 2024a', 'Zarr Developers, 2024b', 'Abernathey et al., 2024']
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Iterator

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle

__all__ = ["AuthorYearLabels", "AuthorYearStyle", "setup"]


def _surname(person: Any) -> str:
    name = " ".join(person.last_names) or " ".join(person.first_names)
    return name.replace("{", "").replace("}", "")


def _authors(entry: Any) -> str:
    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [_surname(p) for p in people]
    if not names:
        return entry.fields.get("organization", entry.key)
    if names[-1] == "others":  # BibTeX's "and others"
        return f"{names[0]} et al."
    if len(names) == 1:
        return names[0]
    if len(names) == 2:
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al."


class AuthorYearLabels(BaseLabelStyle):
    """Labels "Author, Year", "A and B, Year" or "A et al., Year"."""

    def format_labels(self, sorted_entries: Iterable[Any]) -> Iterator[str]:
        entries = list(sorted_entries)
        base = [f"{_authors(e)}, {e.fields.get('year', 'n.d.')}" for e in entries]
        total = Counter(base)
        seen: Counter[str] = Counter()
        for label in base:
            if total[label] > 1:
                seen[label] += 1
                yield label + "abcdefghijklmnopqrstuvwxyz"[seen[label] - 1]
            else:
                yield label


class AuthorYearStyle(UnsrtStyle):
    """pybtex's ``unsrt`` entries, sorted by author and year, with author–year labels."""

    default_label_style = AuthorYearLabels
    default_sorting_style = "author_year_title"


def setup(app: Any) -> dict:
    """Sphinx entry point: register the ``authoryear`` style with pybtex."""
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle, force=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
