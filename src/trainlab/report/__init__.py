"""Reports: figures (matplotlib, Agg) and self-contained HTML reports of runs, of studies
and of comparisons of runs.

``build_run_report(RUN_DIR)`` draws a run's figures into ``RUN_DIR/figures`` (PNG and SVG)
and writes ``RUN_DIR/report.html``; ``dataset_figure`` draws a dataset's samples per class.
The modules: :mod:`.artifacts` (reading a run directory), :mod:`.samples` and :mod:`.images`
(a run's images, saved with it or read again from its dataset, and the augmentation
preview), :mod:`.figures`, :mod:`.curves`, :mod:`.grids` and :mod:`.kernels` (drawing),
:mod:`.interpretation` and :mod:`.sources` (sections), :mod:`.html` (sections, blocks and
the jinja2 template), :mod:`.run_report` (the run report), :mod:`.compare` (``trainlab
compare``), the ``study_*`` modules (the study report), :mod:`.dataset` (``trainlab data
show``) and :mod:`.gradcheck_sweep` (``trainlab gradcheck --n-sweep``).
Matplotlib is imported by the drawing modules only, so importing this package is cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def build_run_report(run_path: str | Path) -> Path:
    """Write ``RUN_DIR/report.html`` and ``RUN_DIR/figures/*``; see :mod:`.run_report`."""
    from trainlab.report.run_report import build_run_report as build

    return build(run_path)


def dataset_figure(name: str, out: str | Path, data_dir: str | Path | None = None, **options: Any) -> Path:
    """Write a grid of sample images per class, with class counts, of a dataset; see :mod:`.dataset`."""
    from trainlab.report.dataset import dataset_figure as draw

    return draw(name, out, data_dir, **options)


__all__ = ["build_run_report", "dataset_figure"]
