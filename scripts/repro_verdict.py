"""The two-sided verdict of a reproduction row, and the summary count of a table.

A numeric row is **reproduced** when the published figure is consistent with our seeds:
the mean is within ``TOLERANCE`` points of it, or, for a row whose seeds spread, the
published figure lies within mean ± 2 sd over at least 3 seeds. Beyond that the row is
**above** or **below** the published figure. Landing above is not a success: it means our
config is probably not the report's experiment, and the row's note says what was tried.
Qualitative rows ("chance", "learns", "fails") carry their threshold in the manifest,
fixed before running, and every seed must meet it.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

TOLERANCE = 1.0  # points of accuracy between the mean and the published figure
SPREAD_SDS = 2.0  # a spread row reproduces when the figure lies within mean ± 2 sd ...
SPREAD_MIN_SEEDS = 3  # ... over at least this many seeds

# The first word of every verdict, which the summary counts.
REPRODUCED, ABOVE, BELOW = "reproduced", "above", "below"
QUALITATIVE_MET, QUALITATIVE_MISSED = "qualitative met", "qualitative missed"
DIVERGED, NOT_RUN, NO_TARGET = "diverged", "not run", "no target"


@dataclass(frozen=True)
class Verdict:
    """A row's outcome: ``kind`` (one of the constants above) and its words for the table."""

    kind: str
    text: str


def numeric_verdict(published: float, values: Sequence[float]) -> Verdict:
    """Reproduced, above or below, for the finished seeds' ``values`` (percent)."""
    mean = statistics.fmean(values)
    gap = mean - published
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    if abs(gap) <= TOLERANCE:
        return Verdict(REPRODUCED, f"reproduced (mean {gap:+.2f} from the published figure)")
    if len(values) >= SPREAD_MIN_SEEDS and abs(gap) <= SPREAD_SDS * sd:
        return Verdict(
            REPRODUCED,
            f"reproduced (mean {gap:+.2f}, within 2 sd = {SPREAD_SDS * sd:.2f} over {len(values)} seeds)",
        )
    kind = ABOVE if gap > 0 else BELOW
    # the 2-sd rule applies from SPREAD_MIN_SEEDS seeds on: say so only where it was applied
    beyond = "1 point and 2 sd" if len(values) >= SPREAD_MIN_SEEDS else f"1 point; 2 sd needs {SPREAD_MIN_SEEDS} seeds"
    return Verdict(kind, f"**{kind}** by {abs(gap):.2f} points (beyond {beyond})")


def qualitative_verdict(expect: Mapping[str, float], values: Sequence[float | None]) -> Verdict:
    """Whether every seed meets the row's threshold ``{min|max: percent}``."""
    low, high = expect.get("min", -math.inf), expect.get("max", math.inf)
    bound = " and ".join(f"{op} {v:g}" for op, v in (("≥", low), ("≤", high)) if math.isfinite(v))
    bad = [v for v in values if v is None or not low <= v <= high]
    if bad:
        return Verdict(QUALITATIVE_MISSED, f"**qualitative missed** ({len(bad)} of {len(values)} seeds not {bound})")
    return Verdict(QUALITATIVE_MET, f"qualitative met (every seed {bound})")


def verdict(published: float | None, expect: Mapping[str, float], values: Sequence[float | None]) -> Verdict:
    """The verdict of a row with ``published`` (or a qualitative ``expect``) and its seeds' values.

    ``values`` holds one entry per finished seed, None for a diverged run.
    """
    if not values:
        return Verdict(NOT_RUN, "not run")
    if published is None:
        if not expect:
            return Verdict(NO_TARGET, "no target")
        return qualitative_verdict(expect, values)
    finished = [v for v in values if v is not None]
    if len(finished) < len(values):
        return Verdict(DIVERGED, f"**diverged** ({len(values) - len(finished)} of {len(values)} runs)")
    return numeric_verdict(published, finished)


def summary_line(kinds: Iterable[str]) -> str:
    """One line counting the rows per verdict, e.g. ``12 reproduced · 3 above · ...``."""
    counts = Counter(kinds)
    order = [REPRODUCED, ABOVE, BELOW, QUALITATIVE_MET, QUALITATIVE_MISSED, DIVERGED, NOT_RUN, NO_TARGET]
    return " · ".join(f"{counts[k]} {k}" for k in order if counts[k])


def describe(values: Sequence[float]) -> tuple[str, str]:
    """``("mean ± sd", "[min, max]")`` of percentages; sd over seeds (n - 1).

    A single seed has no spread: it is shown as ``"98.75 (1 seed, no sd)"``.
    """
    if not values:
        return "—", "—"
    if len(values) == 1:
        return f"{values[0]:.2f} (1 seed, no sd)", f"[{values[0]:.2f}, {values[0]:.2f}]"
    sd = statistics.stdev(values)
    return f"{statistics.fmean(values):.2f} ± {sd:.2f}", f"[{min(values):.2f}, {max(values):.2f}]"
