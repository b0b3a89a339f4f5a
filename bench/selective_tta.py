"""Choose ``train.tta_below`` (selective TTA) on validation images, never the test set.

Usage: python bench/selective_tta.py RUN_DIR [RUN_DIR ...] [--thresholds 0.5,0.7,...]
                                     [--data-dir DIR] [--write-docs] [--json PATH]
       python bench/selective_tta.py --render-from PATH [--write-docs]

Each RUN_DIR is a finished run trained with a validation split and ``train.tta`` (the
tuning runs of ``bench/tune_fast_recipe.py`` under ``runs/tune94/``). For each run this
loads its model, prepares its validation split again (same seed, so the same images),
and computes every TTA view's logits once; each threshold t is then scored exactly as
``train.tta_below: t`` would score it (the images whose plain top probability is below t
get the views, the others keep their plain logits):

- its validation accuracy minus the full-TTA accuracy, in points (mean ± sd over runs);
- the share of images that get the views;
- the evaluation's forward passes as a share of full TTA's: (1 + share * (V - 1)) / V
  for V views.

The full-TTA accuracy is checked against the run's own ``final_val_accuracy``. The test
split is never read. ``--write-docs`` writes the table into docs/fast-recipe-tuning.md;
``--json`` keeps the per-run scores, from which ``--render-from`` writes the table again
without recomputing (bench/selective-tta.json holds the scores the docs were written from).
A run without its own final validation accuracy (cut off mid-training) is refused, and left
out of a table rendered from an older scores file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import write_doc_section
from tune_fast_recipe import DOC_HEADER

from trainlab.engines.numpy.losses import softmax
from trainlab.engines.torch.tta import tta_mode, tta_views
from trainlab.predict import open_trained_run, prepare_run_data

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs" / "fast-recipe-tuning.md"
THRESHOLDS = (0.4, 0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


def view_logits(run_dir: Path, data_dir: str | None) -> dict[str, Any]:
    """Each TTA view's logits (V, N, K) of a run's validation images, the views' weights,
    the labels, and the run's own final validation accuracy."""
    run = open_trained_run(run_dir)
    config = run.config
    mode = tta_mode(config.train.tta)
    if mode == "none":
        raise SystemExit(f"{run_dir}: trained without train.tta; nothing to select")
    data = prepare_run_data(config, data_dir)
    if len(data.y_val) == 0:
        raise SystemExit(f"{run_dir}: no validation split (choose on held-out training images, not the test set)")
    loader = run.loader
    per_view: list[list[torch.Tensor]] = []
    weights: list[float] = []
    with torch.no_grad():
        for start in range(0, len(data.x_val), 1000):
            xb = torch.from_numpy(np.ascontiguousarray(data.x_val[start : start + 1000])).to(loader.dtype)
            views = tta_views(xb, mode)
            weights = [w for _, w in views]
            for i, (view, _) in enumerate(views):
                logits = loader.logits(view.numpy(), False)  # (n, K): the run's precision and layout
                if len(per_view) <= i:
                    per_view.append([])
                per_view[i].append(logits)
    return {"run": str(run_dir), "mode": mode, "weights": weights, "labels": np.asarray(data.y_val),
            "views": np.stack([torch.cat(chunks).numpy() for chunks in per_view]),  # (V, N, K)
            "summary_val_accuracy": run.summary.get("final_val_accuracy")}


def score(logits: dict[str, Any], thresholds: list[float]) -> dict[str, Any]:
    """Full-TTA accuracy, and for each threshold the selective accuracy and the share of
    images that get the views."""
    views, labels = logits["views"], logits["labels"]
    weights = np.asarray(logits["weights"]).reshape(-1, 1, 1)
    full = (views * weights).sum(axis=0)  # (N, K)
    plain = views[0]
    confidence = softmax(plain).max(axis=1)  # (N,)
    full_accuracy = float((full.argmax(1) == labels).mean())
    rows = []
    for t in thresholds:
        unsure = confidence < t
        chosen = np.where(unsure[:, None], full, plain)
        rows.append({"threshold": t, "share": float(unsure.mean()),
                     "accuracy": float((chosen.argmax(1) == labels).mean())})
    return {"run": logits["run"], "views": len(weights), "full_accuracy": full_accuracy,
            "plain_accuracy": float((plain.argmax(1) == labels).mean()),
            "summary_val_accuracy": logits["summary_val_accuracy"], "rows": rows}


def table(results: list[dict[str, Any]], thresholds: list[float]) -> str:
    """Markdown: one row per threshold, means over the runs."""
    views = results[0]["views"]
    lines = ["| train.tta_below | accuracy minus full TTA (points, mean ± sd) | worst run | images viewed "
             "| forward passes vs full TTA |", "|---:|---:|---:|---:|---:|"]
    plain = [100 * (r["plain_accuracy"] - r["full_accuracy"]) for r in results]
    lines.append(f"| none viewed (plain) | {_mean_sd(plain)} | {min(plain):+.2f} | 0 % | {1 / views:.2f} |")
    for i, t in enumerate(thresholds):
        diffs = [100 * (r["rows"][i]["accuracy"] - r["full_accuracy"]) for r in results]
        share = statistics.fmean(r["rows"][i]["share"] for r in results)
        cost = (1 + share * (views - 1)) / views
        lines.append(f"| {t:g} | {_mean_sd(diffs)} | {min(diffs):+.2f} | {100 * share:.0f} % | {cost:.2f} |")
    return "\n".join(lines)


def _mean_sd(values: list[float]) -> str:
    mean = statistics.fmean(values)
    return f"{mean:+.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{mean:+.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="*", type=Path, help="finished run directories with a validation split")
    parser.add_argument("--thresholds", default=",".join(f"{t:g}" for t in THRESHOLDS),
                        help="comma-separated train.tta_below values to score")
    parser.add_argument("--data-dir", help="dataset root (default the runs' config, then $TRAINLAB_DATA)")
    parser.add_argument("--write-docs", action="store_true", help="write the table into docs/fast-recipe-tuning.md")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write the per-run scores as JSON")
    parser.add_argument("--render-from", type=Path, metavar="PATH",
                        help="the scores a --json run wrote: tabulate them, compute nothing")
    args = parser.parse_args(argv)
    if bool(args.runs) == bool(args.render_from):
        parser.error("give run directories, or --render-from PATH")
    if args.render_from:
        results = json.loads(args.render_from.read_text())
        report(results, [row["threshold"] for row in results[0]["rows"]], args.write_docs)
        return 0
    thresholds = [float(t) for t in args.thresholds.split(",") if t.strip()]
    if not thresholds or not all(0 < t <= 1 for t in thresholds):
        parser.error("--thresholds: values in (0, 1]")
    results = []
    for run_dir in args.runs:
        result = score(view_logits(run_dir, args.data_dir), thresholds)
        recorded = result["summary_val_accuracy"]
        if recorded is None:
            print(f"{run_dir}: no final_val_accuracy in its summary.json: not a finished run (cut off before "
                  "its final evaluation?); give finished runs only", file=sys.stderr)
            return 1
        check = f" (the run recorded {100 * recorded:.2f})"
        if abs(recorded - result["full_accuracy"]) > 2e-4:
            print(f"{run_dir}: full TTA gives {100 * result['full_accuracy']:.2f} here{check}: "
                  "not the run's evaluation", file=sys.stderr)
            return 1
        print(f"{run_dir}: full TTA {100 * result['full_accuracy']:.2f} %{check}, plain "
              f"{100 * result['plain_accuracy']:.2f} %", flush=True)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    report(results, thresholds, args.write_docs)
    return 0


def report(results: list[dict[str, Any]], thresholds: list[float], docs: bool) -> None:
    """Print the table; with ``docs``, write it into docs/fast-recipe-tuning.md.

    A result without the run's own final validation accuracy (a run cut off before its final
    evaluation, kept in an older scores file) is left out and named: its model is a checkpoint
    from mid-training, not a recipe's outcome.
    """
    unfinished = [Path(r["run"]).name for r in results if r.get("summary_val_accuracy") is None]
    results = [r for r in results if r.get("summary_val_accuracy") is not None]
    if not results:
        raise SystemExit("no finished run among the scores: nothing to tabulate")
    text = table(results, thresholds)
    runs = ", ".join(f"`{Path(r['run']).name}`" for r in results)
    left_out = (f" Left out, cut off before their final evaluation (mid-training checkpoints): "
                f"{', '.join(f'`{name}`' for name in unfinished)}." if unfinished else "")
    body = (f"## Selective TTA (`train.tta_below`)\n\nWritten by `python bench/selective_tta.py RUN_DIR ... "
            f"--json bench/selective-tta.json` and `--render-from bench/selective-tta.json --write-docs` on "
            f"{len(results)} finished tuning runs ({runs}); their 5,000 held-out training images, never the test "
            f"set. Each threshold is scored exactly as the engine applies it: the images whose plain top "
            f"probability is below it get all {results[0]['views']} views, the others keep their plain "
            f"logits. Forward passes count the plain pass plus the views of the images viewed.{left_out}\n\n{text}")
    print(text)
    if docs:
        write_doc_section(DOCS, "selective-tta", body, DOC_HEADER)
        print(f"wrote {DOCS}")


if __name__ == "__main__":
    sys.exit(main())
