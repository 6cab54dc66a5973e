"""A Sphinx extension for the book: bibliography labels that match author–year citations.

pybtex's default ``alpha`` style labels the reference list ``[MAB+21]`` or
``[ZarrDevelopers16]``, which a reader cannot match to an author–year citation. This
registers two styles:

- ``authoryear`` (a pybtex formatting style): the reference list is sorted by author
  and year, and each entry is labelled "Moore et al., 2021" (``a``/``b`` added when
  two entries collide, as in "Earthmover PBC, 2025a");
- ``authoryear_label`` (a sphinxcontrib-bibtex referencing style): ``{cite}`` prints
  that same label, "[Moore et al., 2021]", several separated by "; ". So a citation
  and its entry in the list read exactly alike, suffix included.

Enable them in ``_config.yml``::

    sphinx:
      extra_extensions: [data_helpers.bibstyle]
      config:
        bibtex_default_style: authoryear
        bibtex_reference_style: authoryear_label

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

from dataclasses import dataclass, field

from pybtex.plugin import register_plugin
from pybtex.style.formatting.unsrt import Style as UnsrtStyle
from pybtex.style.labels import BaseLabelStyle
from pybtex.style.sorting.author_year_title import SortingStyle
from sphinxcontrib.bibtex.plugin import register_plugin as register_bibtex_plugin
from sphinxcontrib.bibtex.style.referencing import BracketStyle
from sphinxcontrib.bibtex.style.referencing.label import LabelReferenceStyle

__all__ = ["AuthorYearLabels", "AuthorYearStyle", "AuthorYearLabelReferences", "setup"]


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


class _SortByAuthorYear(SortingStyle):
    """pybtex's author-year-title order, ignoring the braces of corporate authors
    (``{{Zarr Developers}}`` would otherwise sort after every personal name)."""

    def sorting_key(self, entry: Any) -> tuple:
        author, year, title = super().sorting_key(entry)
        return (author.replace("{", "").replace("}", "").lower(), year, title)


class AuthorYearStyle(UnsrtStyle):
    """pybtex's ``unsrt`` entries, sorted by author and year, with author–year labels."""

    default_label_style = AuthorYearLabels
    default_sorting_style = _SortByAuthorYear


def _brackets() -> BracketStyle:
    return BracketStyle(sep="; ")


@dataclass
class AuthorYearLabelReferences(LabelReferenceStyle):
    """``{cite}`` prints the entry's author–year label; several are separated by "; "."""

    bracket_parenthetical: BracketStyle = field(default_factory=_brackets)
    bracket_textual: BracketStyle = field(default_factory=_brackets)
    bracket_label: BracketStyle = field(default_factory=_brackets)


def setup(app: Any) -> dict:
    """Sphinx entry point: register the ``authoryear`` style with pybtex."""
    register_plugin("pybtex.style.formatting", "authoryear", AuthorYearStyle, force=True)
    register_bibtex_plugin("sphinxcontrib.bibtex.style.referencing", "authoryear_label",
                           AuthorYearLabelReferences, force=True)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
