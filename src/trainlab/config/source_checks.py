"""The on-demand checks of a ``source:`` section against the reports and the values it explains.

:func:`quote_problems` finds each published quote at its ``FILE:LINE`` in the reports'
folder; :func:`number_problems` asks that a quote stating numbers holds the field's value.
Both return one line per problem (empty when all is well). ``trainlab config show
--provenance --check-quotes DIR`` runs :func:`quote_problems`; tests/test_seed_provenance.py
runs both on every shipped config.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from trainlab.errors import ConfigError

from ._quote_numbers import quote_numbers, same_number, value_numbers
from .source import MISSING, Source, as_entries, value_at


# -- quotes -----------------------------------------------------------------------------------
def normalize_space(text: str) -> str:
    """Runs of whitespace collapsed to one space, ends stripped."""
    return " ".join(text.split())


def seed_file(name: str, folder: Path) -> Path:
    """The file of ``folder`` named ``name``, or the one whose name starts with it.

    Raises:
        ConfigError: no such file, or a prefix that several files share.
    """
    exact = folder / name
    if exact.is_file():
        return exact
    matches = sorted(p for p in folder.iterdir() if p.is_file() and p.name.startswith(name))
    if len(matches) == 1:
        return matches[0]
    if not matches:
        raise ConfigError(f"no file {name!r} (or starting with it) in {folder}")
    raise ConfigError(f"{name!r} starts {len(matches)} files in {folder} "
                      f"({', '.join(p.name for p in matches)}); give more of the name")


def quote_problems(source: Source | None, seeds_dir: str | Path) -> list[str]:
    """Each ``at`` quote that is not at its file and line(s), one line per problem.

    Lines are joined with a space and whitespace is normalised on both sides before the
    quote is looked for. A problem names the key, the place and what is there; where the
    quote is elsewhere in the file, it says where.
    """
    folder = Path(seeds_dir)
    problems: list[str] = []
    texts: dict[Path, list[str]] = {}
    for key, entry in as_entries(source).items():
        at = entry.location()
        if entry.published is None or at is None:
            continue
        try:
            path = seed_file(at.file, folder)
        except ConfigError as error:
            problems.append(f"source.{key}: at {entry.at}: {error}")
            continue
        if path not in texts:
            texts[path] = path.read_text(encoding="utf-8").splitlines()
        lines = texts[path]
        if at.end > len(lines):
            problems.append(f"source.{key}: at {entry.at}: {path.name} has only {len(lines)} lines")
            continue
        found = normalize_space(" ".join(lines[at.start - 1: at.end]))
        quote = normalize_space(entry.published)
        if quote in found:
            continue
        message = (f"source.{key}: the quote is not at {path.name}:{at.lines} (quote: {_cut(quote)!r}; "
                   f"there: {_cut(found) or '(an empty line)'!r})")
        elsewhere = _find_lines(quote, lines)
        problems.append(message + (f"; it is at {path.name}:{elsewhere}" if elsewhere else ""))
    return problems


def _find_lines(quote: str, lines: list[str]) -> str:
    """Where ``quote`` is in ``lines``: ``N`` or ``N-M`` (one to three lines), "" if nowhere."""
    for width in (1, 2, 3):
        for start in range(len(lines) - width + 1):
            if quote in normalize_space(" ".join(lines[start: start + width])):
                return str(start + 1) if width == 1 else f"{start + 1}-{start + width}"
    return ""


def _cut(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def number_problems(raw: Mapping[str, Any], source: Source | None) -> list[str]:
    """Published entries whose quote states numbers none of which the field's value holds.

    The value is the raw subtree under the key; a field the file leaves at its default is
    compared with the default (validated from ``raw``). What a value holds is
    :func:`~trainlab.config._quote_numbers.value_numbers` (booleans are not numbers). A value
    that holds no number at all (``cnn``, ``true``) is not checked: a quote that explains a
    name or a switch states numbers about something else ("Baseline-2"); a null value is
    checked, and fails.
    """
    problems: list[str] = []
    resolved: dict[str, Any] | None = None
    for key, entry in as_entries(source).items():
        if entry.published is None:
            continue
        stated = quote_numbers(entry.published)
        if not stated:
            continue
        value = value_at(raw, key)
        if value is MISSING:
            if resolved is None:
                resolved = _resolved(raw)
            value = value_at(resolved, key)
        held = list(value_numbers(value)) if value is not MISSING else []
        if not held and value is not MISSING and value is not None:
            continue  # a name or a switch (cnn, true): the quote's numbers are about something else
        if any(same_number(s, h) for s in stated for h in held):
            continue
        shown = ", ".join(f"{s:g}" for s in stated)
        problems.append(f"source.{key}: the quote ({entry.reference}) states {shown}, but {key} is "
                        f"{_cut(repr(value) if value is not MISSING else 'not set', 80)}: it holds none "
                        "of them (quote a line with the value, or make this entry a reading)")
    return problems


def _resolved(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw`` validated (defaults filled in), as plain data; {} when it does not validate."""
    from .run import RunConfig  # late: only the defaults of number_problems need it

    data = {k: v for k, v in raw.items() if k not in ("base", "study")}
    try:
        return RunConfig.from_dict(data).model_dump(mode="json")
    except ConfigError:
        return {}


__all__ = ["normalize_space", "number_problems", "quote_problems", "seed_file"]
