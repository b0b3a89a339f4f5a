"""The settings table of a study (best first: parameters, the model's parameter count, mean ±
sd and 95 % interval of the objective over repeats, the verdict against the best, time, and,
when the objective is not the test split's, each setting's test accuracy beside it), for the
HTML report and as Markdown or LaTeX ready to paste into a write-up.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from trainlab.report.study_data import StudyData, mean_seconds, shown
from trainlab.studies.results import (
    REPORTED,
    Setting,
    StageData,
    param_count,
    reported_values,
    reports_test_beside,
)
from trainlab.studies.stats import Spread, spread

FORMATS = ("md", "tex")
VERDICT_SHORT = {"best": "best", "tie": "not distinguishable", "worse": "worse", "n/a": "n/a"}


#: the column of the model's parameter count (``params`` of each trial's summary.json)
COUNT_COLUMN = "params"


@dataclass
class SettingsTable:
    """One stage's settings as text cells, best first.

    ``counted`` says whether the ``params`` column (the model's parameter count) is shown:
    it is left out when no trial recorded a count (a study run before summaries had one).
    ``reported`` says whether the test accuracy column (:data:`REPORTED`, mean ± sd over the
    same repeats) is shown: when the objective is another metric and a trial recorded it.
    """

    stage: str
    params: list[str]
    metric: str
    rows: list[dict[str, str]]
    counted: bool = False
    reported: bool = False

    @property
    def columns(self) -> list[str]:
        """Header of the table."""
        count = [COUNT_COLUMN] if self.counted else []
        test = [f"{REPORTED} mean ± sd"] if self.reported else []
        return ["rank", *self.params, *count, "n", f"{self.metric} mean ± sd", "95 % CI", "vs best", *test,
                "time (s)"]

    def cells(self) -> list[list[str]]:
        """Rows in the order of :attr:`columns`."""
        count = ["param_count"] if self.counted else []
        test = ["test_mean_sd"] if self.reported else []
        keys = ["rank", *self.params, *count, "n", "mean_sd", "ci", "verdict", *test, "seconds"]
        return [[row[k] for k in keys] for row in self.rows]


def _num(value: float | None, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if value is not None and math.isfinite(value) else ""


def settings_table(study: StudyData, stage: StageData) -> SettingsTable:
    """The stage's settings table, best mean first."""
    params = [p.name for p in stage.params]
    rows = []
    for rank, setting in enumerate(study.ranked(stage), 1):
        rows.append(_row(rank, setting, params))
    reported = reports_test_beside(study.metric) and any(row["test_mean_sd"] for row in rows)
    return SettingsTable(stage.name, params, study.metric, rows, counted=any(row["param_count"] for row in rows),
                         reported=reported)


def _mean_sd(s: Spread) -> str:
    """'mean ± sd' (the mean alone for one value, '' for none)."""
    return _num(s.mean) + (f" ± {_num(s.sd)}" if s.n > 1 else "")


def _row(rank: int, setting: Setting, params: list[str]) -> dict[str, str]:
    s = setting.spread
    seconds = mean_seconds(setting.trials)
    count = param_count(setting)
    row = {"rank": str(rank), "n": str(s.n), "param_count": str(count) if count is not None else "",
           "mean_sd": _mean_sd(s),
           "ci": f"{_num(s.ci_low)} – {_num(s.ci_high)}" if s.n > 1 else "",
           "verdict": VERDICT_SHORT.get(setting.verdict.verdict, "") if setting.verdict else "",
           "seconds": f"{seconds:.1f}" if seconds is not None else "",
           "test_mean_sd": _mean_sd(spread(reported_values(setting))),
           "mean": _num(s.mean), "sd": _num(s.sd) if s.n > 1 else "",
           "low": _num(s.ci_low) if s.n > 1 else "", "high": _num(s.ci_high) if s.n > 1 else ""}
    row.update({name: shown(setting.params.get(name)) for name in params})
    return row


def to_markdown(table: SettingsTable, title: str = "") -> str:
    """A GitHub-flavoured Markdown table (the best row in bold)."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines = [f"**{title}**", ""] if title else []
    lines.append("| " + " | ".join(cell(c) for c in table.columns) + " |")
    left = {*table.params, "vs best"}  # text columns; numbers (the parameter count too) align right
    lines.append("|" + "|".join("---" if c in left else "---:" for c in table.columns) + "|")
    for index, cells in enumerate(table.cells()):
        shown_cells = [cell(c) for c in cells]
        if index == 0:
            shown_cells = [f"**{c}**" if c else c for c in shown_cells]
        lines.append("| " + " | ".join(shown_cells) + " |")
    return "\n".join(lines) + "\n"


_TEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tex_escape(text: str) -> str:
    """Escape LaTeX's special characters in plain text."""
    return "".join(_TEX_SPECIAL.get(ch, ch) for ch in text)


def _tex_mean_sd(text: str) -> str:
    plus_minus = r" \pm "
    return "$" + text.replace(" ± ", plus_minus) + "$" if text else ""


def to_latex(table: SettingsTable, caption: str = "") -> str:
    """A booktabs ``table`` environment (needs ``\\usepackage{booktabs}``); the best row in bold."""
    count = [COUNT_COLUMN] if table.counted else []
    test = [tex_escape(REPORTED)] if table.reported else []
    header = ["rank", *(tex_escape(p) for p in table.params), *count, "$n$", tex_escape(table.metric),
              r"95\,\% CI", "vs best", *test, "time (s)"]
    align = "r" + "l" * len(table.params) + "r" * len(count) + "rrrl" + "r" * len(test) + "r"
    lines = [r"% needs \usepackage{booktabs}", r"\begin{table}[ht]", r"  \centering"]
    if caption:
        lines.append(f"  \\caption{{{tex_escape(caption)}}}")
    lines += [f"  \\begin{{tabular}}{{{align}}}", r"    \toprule", "    " + " & ".join(header) + r" \\",
              r"    \midrule"]
    for index, row in enumerate(table.rows):
        value = f"${row['mean']} \\pm {row['sd']}$" if row["sd"] else f"${row['mean']}$"
        ci = f"[{row['low']}, {row['high']}]" if row["low"] else ""
        cells = [row["rank"], *(tex_escape(row[p]) for p in table.params), *([row["param_count"]] if table.counted else []),
                 row["n"], value, ci, tex_escape(row["verdict"]),
                 *([_tex_mean_sd(row["test_mean_sd"])] if table.reported else []), row["seconds"]]
        if index == 0:
            cells = [f"\\textbf{{{c}}}" if c and not c.startswith("$") else
                     (f"$\\mathbf{{{c[1:-1]}}}$" if c.startswith("$") else c) for c in cells]
        lines.append("    " + " & ".join(cells) + r" \\")
    lines += [r"    \bottomrule", r"  \end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def export(study: StudyData, fmt: str) -> str:
    """Every stage's settings table as ``md`` or ``tex``."""
    if fmt not in FORMATS:
        raise ValueError(f"format {fmt!r}: use one of {', '.join(FORMATS)}")
    parts = []
    for stage in study.stages:
        table = settings_table(study, stage)
        repeats = stage.attrs.get("repeats", 1)
        title = (f"Study {study.name}" + (f", stage {stage.name}" if len(study.stages) > 1 else "")
                 + f": {study.metric} over {repeats} repeat(s) (seeds), best first; "
                 "vs best: Welch's t-test, Holm-adjusted.")
        parts.append(to_markdown(table, title) if fmt == "md" else to_latex(table, title))
    return "\n".join(parts)


__all__ = [
    "COUNT_COLUMN",
    "FORMATS",
    "SettingsTable",
    "export",
    "settings_table",
    "tex_escape",
    "to_latex",
    "to_markdown",
]
