"""The figure and table of a finite-difference N sweep (``trainlab gradcheck --n-sweep``).

Seed B's report (its section 1.c, figures 5 and 6) plots the largest difference between
the true gradient and its centred finite difference, over the first 10 weights of the
second layer, against N and against eps = 1/N. :func:`write_n_sweep` writes that figure,
both panels on log-log axes, and the numbers behind it as CSV.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from trainlab.io import atomic_write_text
from trainlab.report.figures import MARK_COLOR, PALETTE, new_figure, save_figure, styled

N_SWEEP_NAME = "n_sweep"
CSV_COLUMNS = ("n", "eps", "max_abs_diff", "max_rel_error", "zeros")


@styled
def n_sweep_figure(rows: Sequence[Mapping[str, Any]], title: str = "") -> Figure:
    """Max |grad - approx| against N and against eps (log-log), one marker per step.

    A difference of exactly 0 (or NaN) has no place on a log axis: such steps are listed under
    the panels instead of being dropped silently.
    """
    n = np.array([float(r["n"]) for r in rows])
    eps = np.array([float(r["eps"]) for r in rows])
    diff = np.array([float(r["max_abs_diff"]) for r in rows])
    shown = diff > 0  # false for 0 and for NaN
    fig = new_figure(8.0, 3.4)
    axes = fig.subplots(1, 2)
    for ax, xs, label in ((axes[0], n, "N"), (axes[1], eps, "eps = 1/N")):
        ax.plot(xs[shown], diff[shown], marker="o", markersize=3.5, color=PALETTE[0])
        ax.set_xscale("log")
        if shown.any():
            ax.set_yscale("log")
            best = int(np.argmin(np.where(shown, diff, np.inf)))
            ax.plot([xs[best]], [diff[best]], marker="*", markersize=10, color=MARK_COLOR, linestyle="none",
                    label=f"smallest: {diff[best]:.1e} at N = {n[best]:g}")
            ax.legend(loc="best")
        ax.set_xlabel(label)
        ax.set_ylabel("max |grad - approx|")
    if title:
        fig.suptitle(title)
    if not shown.all():
        left_out = ", ".join(f"{v:g}" for v in n[~shown])
        fig.supxlabel(f"difference 0 or NaN (not drawn) at N = {left_out}", fontsize=8)
    return fig


def n_sweep_csv(rows: Sequence[Mapping[str, Any]]) -> str:
    """The sweep as CSV text, one line per N (floats written in full, with repr)."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: repr(v) if isinstance(v, float) else v for k, v in row.items()})
    return buffer.getvalue()


def write_n_sweep(rows: Sequence[Mapping[str, Any]], out_dir: str | Path, title: str = "") -> dict[str, Path]:
    """Write ``n_sweep.csv``, ``n_sweep.png`` and ``n_sweep.svg`` into ``out_dir`` (created).

    Args:
        rows: the sweep, as ``trainlab.api.gradcheck(...)["n_sweep"]`` gives it: mappings with
            ``n``, ``eps``, ``max_abs_diff``, ``max_rel_error`` and ``zeros``.
        out_dir: the folder written into.
        title: the figure's title. Default "" (none).

    Returns:
        The paths written, by kind: ``{"csv": ..., "png": ..., "svg": ...}``.

    Raises:
        ValueError: ``rows`` is empty (there is nothing to draw).
    """
    if not rows:
        raise ValueError("an N sweep needs at least one step to draw")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    csv_path = out / f"{N_SWEEP_NAME}.csv"
    atomic_write_text(csv_path, n_sweep_csv(rows))
    saved = save_figure(n_sweep_figure(rows, title), out, N_SWEEP_NAME)
    return {"csv": csv_path, "png": saved.png, "svg": saved.svg}


__all__ = ["CSV_COLUMNS", "N_SWEEP_NAME", "n_sweep_csv", "n_sweep_figure", "write_n_sweep"]
