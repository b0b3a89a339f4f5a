"""The report section "Where each setting comes from": a config's ``source:`` entries as a table.

One row per source key: the setting, its value in the run, whether it is published (a quote
of a source report or of the authors' code) or our reading, the quote or the reasons, and
where the quote is. Run reports show it for the run's config, study reports for the study's
base config. Every cell is plain text; the HTML template escapes it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from trainlab.config.source import SourceEntry, as_entries, covering_key, value_at
from trainlab.errors import TrainlabError
from trainlab.report.html import Section, note, table, text
from trainlab.run_files import CONFIG_FILE

if TYPE_CHECKING:
    from trainlab.report.study_data import StudyData

ANCHOR = "sources"
TITLE = "Where each setting comes from"
COLUMNS = ["setting", "value", "origin", "quote or why", "where"]
VALUE_CHARS = 80


def source_rows(config: Mapping[str, Any], searched: Sequence[str] = ()) -> list[list[str]]:
    """One row per source entry of a resolved config: setting, value, origin, quote or why, where.

    Args:
        config: a resolved config as plain data (a run directory's config.yaml).
        searched: fields a study searches; an entry covering one (or inside one) says so in
            its value, since the value differs between trials. Default ().

    Raises:
        ConfigError: the source section breaks the entry rules.
    """
    rows = []
    for key, entry in as_entries(config.get("source") or {}).items():
        value = _shown(value_at(config, key, None))
        hits = [p for p in searched if covering_key(p, [key]) or covering_key(key, [p])]
        if hits:
            value = f"searched ({', '.join(hits)}); base {value}"
        rows.append([key, value, entry.kind, _why(entry), entry.reference])
    return rows


def _why(entry: SourceEntry) -> str:
    parts = [entry.text]
    if entry.tried:
        parts.append(f"Tried: {entry.tried}")
    if entry.note:
        parts.append(f"Note: {entry.note}")
    return " ".join(" ".join(p.split()) for p in parts)


def _shown(value: Any) -> str:
    """A value as short YAML flow text (``[32, 64]``, ``{scheme: he_normal}``, ``null``)."""
    try:
        shown = yaml.safe_dump(value, default_flow_style=True, sort_keys=False, width=10**6).strip()
    except yaml.YAMLError:
        shown = json.dumps(value, default=str)
    shown = shown.removesuffix("\n...").removesuffix(" ...").strip()
    return shown if len(shown) <= VALUE_CHARS else shown[: VALUE_CHARS - 3] + "..."


def source_sections(
    config: Mapping[str, Any], searched: Sequence[str] = (), lead: str = ""
) -> list[Section]:
    """The section for ``config``'s source entries; [] when it has none.

    Args:
        config: a resolved config as plain data.
        searched: fields a study searches (see :func:`source_rows`). Default ().
        lead: a sentence put before the counts (which config this is). Default "".
    """
    if not config.get("source"):
        return []
    section = Section(ANCHOR, TITLE)
    try:
        rows = source_rows(config, searched)
    except TrainlabError as exc:
        return [section.add(note(f"the config's source section is invalid: {exc}", "error"))]
    published = sum(row[2] == "published" for row in rows)
    counts = (f"{published} of {len(rows)} entries are published (a quote of a source report, at FILE:LINE, "
              f"or of the authors' code); {len(rows) - published} are readings: our choice where the "
              "report is silent, with why and what else was tried. A setting covers every field below it.")
    return [section.add(text(f"{lead} {counts}".strip()), table(COLUMNS, rows))]




def study_source_sections(study: StudyData) -> list[Section]:
    """The section for a study's base config: [] when it has no source entries.

    The base config is read from the study file recorded in the storage (with the study's
    ``--set`` overrides); where that file is gone or no longer loads, from the first trial's
    run directory, whose config.yaml holds the same source section.
    """
    # Imported here so that a run report does not load the study machinery (Optuna).
    from trainlab.report.study_data import trial_key
    from trainlab.studies.spec import load_study

    searched = list(dict.fromkeys(p.name for stage in study.stages for p in stage.params))
    attrs = study.stages[0].attrs if study.stages else {}
    path = attrs.get("source")
    if path and Path(path).is_file():
        try:
            base = load_study(path, dir_override=study.path, overrides=attrs.get("overrides") or ())
        except TrainlabError:
            pass
        else:
            lead = f"The study's base config ({path})."
            return source_sections(base.base.model_dump(mode="json"), searched, lead)
    for _, trial in study.trials:
        run_dir = study.run_dir(trial)
        if run_dir is None:
            continue
        config = yaml.safe_load((run_dir / CONFIG_FILE).read_text(encoding="utf-8"))
        if isinstance(config, dict):
            lead = f"The study's base config, as trial {trial_key(trial)} ran it ({run_dir / CONFIG_FILE})."
            return source_sections(config, searched, lead)
    return []


__all__ = ["ANCHOR", "COLUMNS", "TITLE", "source_rows", "source_sections", "study_source_sections"]
