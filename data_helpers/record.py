"""Record the numbers a chapter's prose quotes, for the book and for notebook readers.

``record(name=value, ...)`` glues each value for MyST's ``{glue:text}`name``` role, so
the rendered book prints the number measured in that run. Outside the book build (in
Colab or Jupyter, where the roles cannot render) it also prints each value, so the
number the text refers to is visible next to it.

>>> record(example_speed=123.456, example_count=7)  # doctest: +SKIP
example_speed = 123.5
example_count = 7
>>> format_value(0.000123456), format_value(1234567), format_value("slab")
('0.0001235', '1,234,567', 'slab')
"""

from __future__ import annotations

import numbers
import os

#: Set by ``data_helpers.build`` in every chapter kernel it starts.
BUILD_ENV = "ZARR_BOOK_BUILD"


def format_value(value: object) -> str:
    """A short, readable form of a recorded value (4 significant digits for floats)."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, numbers.Integral):
        return f"{int(value):,}"
    if isinstance(value, numbers.Real):
        v = float(value)
        return f"{v:,.1f}" if abs(v) >= 1000 else f"{v:.4g}"
    return str(value)


def record(**values: object) -> None:
    """Glue each keyword's value under its name; print them when not building the book.

    Values must be plain Python or numpy scalars, or strings.
    """
    if not values:
        raise TypeError("record() needs at least one name=value pair, e.g. record(speed=12.5)")
    for name, value in values.items():
        if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
            value = value.item()  # numpy scalar -> Python scalar
        if not isinstance(value, (str, numbers.Number)):
            raise TypeError(f"record({name}=...): got {type(value).__name__}; pass a number or a string")
        _glue(name, value)
    if os.environ.get(BUILD_ENV) != "1":
        print("\n".join(f"{name} = {format_value(v)}" for name, v in values.items()))


#: The MIME prefix of myst-nb's glue protocol (``myst_nb.ext.glue.GLUE_PREFIX``).
GLUE_PREFIX = "application/papermill.record/"


def _glue(name: str, value: object) -> None:
    """What ``myst_nb.glue(name, value, display=False)`` emits, without importing myst-nb
    (and Sphinx with it, seconds per chapter): a hidden display output that myst-nb reads
    back by name when it renders the executed notebook."""
    try:
        from IPython import get_ipython
        from IPython.core.formatters import format_display_data
        from IPython.display import display
    except ImportError:
        return
    if get_ipython() is None:  # plain Python: nothing to glue into
        return
    bundle, metadata = format_display_data(value)
    metadata["scrapbook"] = {"name": name, "mime_prefix": GLUE_PREFIX}
    display({GLUE_PREFIX + k: v for k, v in bundle.items()}, raw=True, metadata=metadata)


def glue(name: str, value: object, display: bool = False) -> None:
    """``myst_nb.glue``'s signature for one value, printing it too (see :func:`record`)."""
    if display:
        raise ValueError("glue(display=True) is not supported here: use myst_nb.glue, or record() and print")
    record(**{name: value})
