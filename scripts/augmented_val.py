"""Validation accuracy of trained torch runs under their own training augmentation.

Some published figures were measured on augmented validation images: seed B's Cats vs Dogs
notebook draws its validation images from the same ImageFolder as its training images, with
the training transforms, so its 0.93 (001:216) is an accuracy on randomly rotated, flipped,
cropped and greyed images. trainlab validates on the images as they are; this script gives
the figure the notebook's way, from a finished run, without training again::

    .venv/bin/python scripts/augmented_val.py runs/b-cats-vs-dogs/B11-s0-154dd72a [--draws 5] [--json OUT]

For each run: its model (as ``trainlab evaluate`` loads it), its validation split (prepared
again: same seed, same images), and ``--draws`` passes over it, each with the run's
``augment`` section applied by the engine's own batch augmentation (seeded by the draw, so
the figures repeat). It prints the clean accuracy (checked against the run's
``final_val_accuracy`` when it holds one) and the augmented one, mean ± sd over the draws.
Flips that alternate by epoch are drawn at random here; ``low_res`` is left out (it applies
to early epochs only).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

BATCH = 500  # images augmented at once: the augmentation draws per batch, as in training


def augmented_accuracy(run_dir: Path, draws: int, data_dir: str | None = None) -> dict[str, Any]:
    """Clean and augmented validation accuracy of the torch run at ``run_dir`` (fractions)."""
    import torch

    from trainlab.engines.torch.augment import BatchAugment
    from trainlab.engines.torch.pixels import PixelSpace
    from trainlab.predict import open_trained_run, prepare_run_data

    run = open_trained_run(run_dir)
    if run.config.engine != "torch":
        raise SystemExit(f"{run_dir}: a {run.config.engine} run; the training augmentation is the torch engine's")
    data = prepare_run_data(run.config, data_dir)
    if len(data.y_val) == 0:
        raise SystemExit(f"{run_dir}: the run has no validation split")
    labels = np.asarray(data.y_val)
    clean = float((run.loader.logits(data.x_val, False).argmax(1).numpy() == labels).mean())
    augment = run.config.augment.model_copy(update={"low_res": None})
    if not augment.active():
        raise SystemExit(f"{run_dir}: the run trained without augmentation")
    pixels = PixelSpace(data.normalizer, data.input_shape[0])
    accuracies = []
    for draw in range(draws):
        batch_augment = BatchAugment(augment, data.num_classes, pixels, "cpu", seed=draw)
        correct = 0
        for start in range(0, len(labels), BATCH):
            x = torch.from_numpy(np.ascontiguousarray(data.x_val[start : start + BATCH])).float()
            y = torch.from_numpy(labels[start : start + BATCH])
            with torch.no_grad():
                views, _ = batch_augment(x, y)
            predicted = run.loader.logits(views.numpy(), False).argmax(1).numpy()
            correct += int((predicted == labels[start : start + BATCH]).sum())
        accuracies.append(correct / len(labels))
    recorded = run.summary.get("final_val_accuracy")
    return {"run": str(run_dir), "images": len(labels), "clean": clean,
            "recorded": float(recorded) if isinstance(recorded, int | float) else None,
            "augmented": accuracies, "draws": draws}


def _line(result: dict[str, Any]) -> str:
    augmented = result["augmented"]
    spread = f" ± {100 * statistics.stdev(augmented):.2f}" if len(augmented) > 1 else ""
    return (f"{result['run']}: clean {100 * result['clean']:.2f} % of {result['images']} validation images; "
            f"under the training augmentation {100 * statistics.fmean(augmented):.2f}{spread} % "
            f"({result['draws']} draws: {', '.join(f'{100 * a:.2f}' for a in augmented)})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="finished torch run directories with a validation split")
    parser.add_argument("--draws", type=int, default=5, help="augmented passes over the validation split (default 5)")
    parser.add_argument("--data-dir", help="dataset root (default the run's config, then $TRAINLAB_DATA)")
    parser.add_argument("--json", type=Path, metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.draws < 1:
        parser.error("--draws: at least 1")
    results = []
    for run_dir in args.runs:
        result = augmented_accuracy(run_dir, args.draws, args.data_dir)
        if result["recorded"] is not None and abs(result["recorded"] - result["clean"]) > 2e-3:
            print(f"{run_dir}: the clean accuracy here, {100 * result['clean']:.2f} %, is not the run's "
                  f"final_val_accuracy {100 * result['recorded']:.2f} %: not the run's model or split", file=sys.stderr)
            return 1
        print(_line(result), flush=True)
        results.append(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
