"""The self-contained HTML report: sections of blocks rendered through a jinja2 template.

A report is a title, an optional status banner and a list of :class:`Section`; each
section holds blocks (text, notes, tables, figures, preformatted text). Figures are
embedded as base64 PNG data URIs, the CSS is inline, and there is no script, font or any
other external resource, so the file opens offline, anywhere. Autoescaping is on: every
string that comes from a config, a log or a file name is escaped.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from matplotlib.figure import Figure

from trainlab.io import atomic_write_text
from trainlab.report import figures as figs
from trainlab.report.figures import SavedFigure


@dataclass
class Block:
    """One piece of a section.

    ``kind`` is ``text`` (a paragraph), ``note`` (a highlighted notice; ``level`` is info,
    warning or error), ``list`` (``items``), ``table`` (``columns`` and ``rows``),
    ``figure`` (``figure``) or ``pre`` (preformatted ``text``).
    """

    kind: str
    text: str = ""
    level: str = "info"
    items: list[str] = field(default_factory=list)
    columns: list[str] = field(default_factory=list)
    rows: list[list[Any]] = field(default_factory=list)
    figure: SavedFigure | None = None
    numeric: list[bool] = field(default_factory=list)

    @property
    def data_uri(self) -> str:
        """The figure's PNG as a ``data:`` URI."""
        assert self.figure is not None
        return "data:image/png;base64," + base64.b64encode(self.figure.png_bytes).decode("ascii")

    @property
    def svg_name(self) -> str:
        """Path of the SVG next to the report (``figures/<name>.svg``)."""
        assert self.figure is not None
        return f"{self.figure.svg.parent.name}/{self.figure.svg.name}"


def fmt(value: Any, digits: int = 4) -> str:
    """A number for a table: ints with separators, floats with ``digits`` significant digits
    (a nonzero float under 1e-3 in magnitude as ``1.23e-04``: 3 significant digits)."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:,.{digits}g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    return str(value)


def text(value: str) -> Block:
    """A paragraph."""
    return Block("text", text=value)


def note(value: str, level: str = "info") -> Block:
    """A highlighted notice: info, warning or error."""
    return Block("note", text=value, level=level)


def bullet_list(items: Sequence[str]) -> Block:
    """A bulleted list."""
    return Block("list", items=list(items))


def table(columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> Block:
    """A table; columns whose cells are all numbers are right-aligned."""
    numeric = [
        all(isinstance(row[i], int | float) or _looks_numeric(row[i]) for row in rows) if rows else False
        for i in range(len(columns))
    ]
    return Block("table", columns=list(columns), rows=[list(r) for r in rows], numeric=numeric)


def _looks_numeric(value: Any) -> bool:
    text_value = str(value).replace(",", "").replace("%", "").replace("±", "").strip()
    try:
        float(text_value.split()[0] if text_value else "x")
    except ValueError:
        return False
    return True


def figure(saved: SavedFigure) -> Block:
    """An embedded figure with its caption and a link to its SVG."""
    return Block("figure", figure=saved)


def draw_figure(
    directory: Path,
    name: str,
    caption: str,
    make: Callable[[], Figure | None],
    saved: list[figs.SavedFigure] | None = None,
) -> Block | None:
    """Draw a figure with ``make`` and save it (PNG and SVG) under ``directory``.

    Returns the report block, a warning note when drawing failed (one broken figure must
    not cost the whole report), or None when there is nothing to draw. The saved figure is
    appended to ``saved`` when given.
    """
    try:
        fig = make()
        if fig is None:
            return None
        result = figs.save_figure(fig, directory, name, caption)
    except Exception as exc:
        return note(f"the figure {name!r} could not be drawn: {type(exc).__name__}: {exc}", "warning")
    if saved is not None:
        saved.append(result)
    return figure(result)


def pre(value: str) -> Block:
    """Preformatted text (config, model summary, log lines)."""
    return Block("pre", text=value)


@dataclass
class Section:
    """A titled part of the report; ``anchor`` is its id in the table of contents."""

    anchor: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block | None) -> Section:
        """Append blocks (None is skipped: a figure with nothing to draw); returns the section."""
        self.blocks.extend(b for b in blocks if b is not None)
        return self


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("trainlab.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(
    title: str,
    sections: Sequence[Section],
    *,
    subtitle: str = "",
    banner: Block | None = None,
    template: str = "report.html.j2",
) -> str:
    """The HTML text of a report."""
    return _environment().get_template(template).render(
        title=title,
        subtitle=subtitle,
        banner=banner,
        sections=list(sections),
        generated=dt.datetime.now().isoformat(timespec="seconds"),
    )


def write_report(path: Path, title: str, sections: Sequence[Section], **options: Any) -> Path:
    """Render and write ``path`` atomically; returns the path."""
    atomic_write_text(path, render_report(title, sections, **options))
    return path


__all__ = [
    "Block",
    "Section",
    "bullet_list",
    "draw_figure",
    "figure",
    "fmt",
    "note",
    "pre",
    "render_report",
    "table",
    "text",
    "write_report",
]
