"""The rendered book works on phones, separates table columns, fits figures to the column,
and gives every figure alt text.

Static checks of the configuration always run. The checks of built pages run when
``_build/html`` holds a build (``make book``), and skip with the reason otherwise.
"""

from __future__ import annotations

import inspect
import re
import struct
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from data_helpers import build
from data_helpers.plot import BOOK_STYLE, COLUMN_INCHES

REPO = Path(__file__).resolve().parents[1]
HTML = REPO / "_build" / "html"
#: Width of the text column in the rendered book (sphinx-book-theme, 1366 px window).
COLUMN_PX = 757
NAV_FIX = "sidebar-toggle-fix.js"
TABLE_CSS = "book.css"


def _config() -> dict:
    return yaml.safe_load((REPO / "_config.yml").read_text())


# -- configuration (always) ------------------------------------------------------------

def test_config_loads_the_nav_fix_and_the_table_css():
    cfg = _config()["sphinx"]["config"]
    assert "_static" in cfg.get("html_static_path", []), "html_static_path must list _static"
    assert NAV_FIX in cfg.get("html_js_files", []), f"html_js_files must load {NAV_FIX}"
    assert TABLE_CSS in cfg.get("html_css_files", []), f"html_css_files must load {TABLE_CSS}"
    assert "_static" in inspect.getsource(build.render), "render() must stage _static"


def test_nav_fix_forwards_both_sidebar_buttons():
    js = (REPO / "_static" / NAV_FIX).read_text()
    for needle in ["primary-toggle", "secondary-toggle", "querySelectorAll", ".click()"]:
        assert needle in js, f"{NAV_FIX} no longer mentions {needle!r}"


def test_css_pads_output_table_cells_and_wraps_inline_code():
    css = (REPO / "_static" / TABLE_CSS).read_text()
    assert ".cell_output table td" in css and "padding" in css
    assert "code.literal" in css and "overflow-wrap" in css


def test_outputs_merge_streams_and_bibliography_labels_are_author_year():
    sphinx = _config()["sphinx"]
    assert sphinx["config"].get("nb_merge_streams") is True
    assert sphinx["config"].get("bibtex_reference_style") == "authoryear_label"
    assert sphinx["config"].get("bibtex_default_style") == "authoryear"
    assert "data_helpers.bibstyle" in sphinx.get("extra_extensions", [])


def test_chapters_with_exercises_are_numbered_per_chapter():
    toc = yaml.safe_load((REPO / "_toc.yml").read_text())
    for part in toc["parts"]:
        for chapter in part["chapters"]:
            md = REPO / (chapter["file"] + ".md")
            if "{exercise-start}" in md.read_text():
                assert part.get("numbered"), (
                    f"part {part['caption']!r} holds {md.name}, which has exercises: set "
                    "`numbered: true` so they are numbered per chapter (3.1, 3.2), not book-wide"
                )


def test_figure_style_fits_the_column():
    assert BOOK_STYLE["figure.figsize"][0] <= COLUMN_INCHES
    # drawn size in CSS px, plus the 0.1 in margin bbox_inches="tight" adds on each side
    assert (COLUMN_INCHES + 0.2) * BOOK_STYLE["figure.dpi"] <= COLUMN_PX
    assert BOOK_STYLE["xtick.labelsize"] / 72 * BOOK_STYLE["figure.dpi"] >= 10  # px


#: A code cell that draws a matplotlib figure: the chapters make every figure with
#: plt.subplots or plt.figure, or by calling icechunk.md's ``three_views``, which does.
#: (The built-page test below checks what was really rendered.)
FIGURE_CALL = re.compile(r"\bplt\.(?:subplots|figure)\(|^three_views\(", re.M)


def test_chapter_cells_that_draw_a_figure_give_it_alt_text():
    """myst-nb writes an output image's alt text from the cell's ``mystnb: image: alt:``.

    Without it, docutils writes the image's own path as its ``alt``, which a screen
    reader reads out as a file name.
    """
    import jupytext

    missing = []
    for md in build.chapters():
        for i, cell in enumerate(jupytext.read(md).cells):
            if cell.cell_type != "code" or not FIGURE_CALL.search(cell.source):
                continue
            alt = ((cell.metadata.get("mystnb") or {}).get("image") or {}).get("alt")
            if not (isinstance(alt, str) and alt.strip()):
                first = next((ln for ln in cell.source.splitlines() if ln.strip()), "")
                missing.append(f"{md.name}, code cell {i}: {first[:70]}")
    assert not missing, (
        "cells that draw a figure without alt text; add front matter to the code cell:\n"
        "  ---\n  mystnb:\n    image:\n      alt: \"What the figure shows and its point.\"\n"
        "  ---\n" + "\n".join(missing)
    )


# -- built pages (when present) -------------------------------------------------------

class _Page(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[str] = []
        self.styles: list[str] = []
        self.images: list[dict] = []  # in cell outputs
        self.content_images: list[dict] = []  # anywhere in the page's <main>
        self._main = 0  # inside <main>
        self._depth = 0  # inside a cell output
        self._stack: list[bool] = []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and a.get("src"):
            self.scripts.append(a["src"])
        if tag == "link" and "stylesheet" in (a.get("rel") or ""):
            self.styles.append(a.get("href", ""))
        if tag == "div":
            opens = "cell_output" in (a.get("class") or "")
            self._stack.append(opens)
            self._depth += opens
        if tag == "main":
            self._main += 1
        if tag == "img" and self._depth:
            self.images.append(a)
        if tag == "img" and self._main:
            self.content_images.append(a)

    def handle_endtag(self, tag):
        if tag == "main" and self._main:
            self._main -= 1
        if tag == "div" and self._stack:
            self._depth -= self._stack.pop()


def _chapter_pages() -> list[Path]:
    if not (HTML / "chapters").is_dir():
        pytest.skip(f"no built book in {HTML}: run `make book` (or data_helpers.build.render()) first")
    names = {md.stem for md in build.chapters()}
    pages = [p for p in sorted((HTML / "chapters").glob("*.html")) if p.stem in names]
    if not pages:
        pytest.skip(f"{HTML} holds no chapter pages")
    return pages


def _parse(page: Path) -> _Page:
    parser = _Page()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def _png_width(path: Path) -> int:
    head = path.read_bytes()[:24]
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path} is not a PNG")
    return struct.unpack(">I", head[16:20])[0]


@pytest.mark.book  # after tests/test_book.py has rendered the book
def test_built_chapter_pages_load_the_nav_fix_and_the_table_css():
    missing = []
    for page in _chapter_pages():
        parsed = _parse(page)
        if not any(s.split("?")[0].endswith("_static/" + NAV_FIX) for s in parsed.scripts):
            missing.append(f"{page.name}: no {NAV_FIX}")
        if not any(s.split("?")[0].endswith("_static/" + TABLE_CSS) for s in parsed.styles):
            missing.append(f"{page.name}: no {TABLE_CSS}")
    for name in (NAV_FIX, TABLE_CSS):
        if not (HTML / "_static" / name).exists():
            missing.append(f"_static/{name} is not in the built book")
    assert not missing, "pages without the fixes:\n" + "\n".join(missing)


@pytest.mark.book  # after tests/test_book.py has rendered the book
def test_built_figures_fit_the_column_at_their_saved_dpi():
    too_wide = []
    for page in _chapter_pages():
        for img in _parse(page).images:
            src = (page.parent / img["src"]).resolve()
            if src.suffix.lower() != ".png" or not src.exists():
                continue
            # A retina PNG carries its display width (half its pixels), which myst-nb
            # writes as an inline style (or a width attribute); a plain PNG is shown
            # one pixel per CSS px.
            style = re.search(r"width:\s*([0-9.]+)px", img.get("style") or "")
            if style:
                shown = int(float(style.group(1)))
            elif img.get("width"):
                shown = int(float(img["width"]))
            else:
                shown = _png_width(src)
            if shown > COLUMN_PX:
                too_wide.append(f"{page.name}: {src.name[:12]}… {shown} px "
                                f"({shown / 100:.1f} in at 100 dpi)")
    assert not too_wide, (
        f"figures wider than the {COLUMN_PX} px column (the browser shrinks them and "
        f"their text); draw them at most {COLUMN_INCHES} in wide:\n" + "\n".join(too_wide)
    )


def _no_alt(img: dict) -> bool:
    """True if ``img`` has no real alt text: none, blank, or its own file name (the
    docutils default when myst-nb was given none)."""
    alt = (img.get("alt") or "").strip()
    src = img.get("src") or ""
    return not alt or alt == src or Path(alt).name == Path(src).name or bool(
        re.fullmatch(r"\S+\.(?:png|jpe?g|gif|svg|webp)", alt, flags=re.I))


@pytest.mark.book  # after tests/test_book.py has rendered the book
def test_built_figures_have_alt_text():
    missing, seen = [], 0
    for page in _chapter_pages():
        parsed = _parse(page)
        assert parsed.content_images or not parsed.images, f"{page.name}: no <main> found"
        for img in parsed.content_images:
            seen += 1
            if _no_alt(img):
                alt = "no alt" if img.get("alt") is None else f"alt={img['alt']!r}"
                missing.append(f"{page.name}: {Path(img.get('src') or '?').name} ({alt})")
    assert seen, f"no images in the chapter pages of {HTML}"
    assert not missing, (
        "images without alt text (give the cell `mystnb: image: alt:` front matter, "
        "see test_chapter_cells_that_draw_a_figure_give_it_alt_text):\n" + "\n".join(missing)
    )
