"""Choose a fast recipe's settings on a validation split: train named candidates, tabulate.

Issue 28 asks that every hyperparameter of a fast recipe be chosen on training images held
out for validation, never on the test set. A tuning file (``configs/fast/tuning/*.yaml``)
names the recipe, the overrides every candidate shares (the validation split) and the
candidates (each a list of ``--set`` overrides). Each candidate trains once per seed as an
ordinary run directory ``<output_dir>/<recipe name>/<candidate>-s<seed>``: finished runs are read, not
trained again, and a run cut off (end of a session) continues from its checkpoint, so the
tuning spreads over sessions. The table (docs/fast-recipe-tuning.md) gives each candidate's
final validation accuracy (mean ± sd over seeds), its cost in full-size epochs (an epoch of
``low_res`` crops of side s counts (s / side)^2 of one) and its measured training time.

Usage:
    TRAINLAB_DATA=../shared/datasets python bench/tune_fast_recipe.py configs/fast/tuning/cifar10-94-muon.yaml
    ... --only muon-b2000-e8 --seeds 2      # some candidates, more seeds
    ... --only-table                        # train nothing, rewrite the table
"""

from __future__ import annotations

import argparse
import json
import math
import re
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "fast-recipe-tuning.md"


@dataclass(frozen=True)
class Tuning:
    """A tuning file: the recipe, the shared overrides, the candidates' overrides."""

    path: Path
    recipe: Path
    recipe_name: str  # the run name of the recipe (its ``name``, through its ``base`` chain)
    output_dir: Path
    common: list[str]
    candidates: dict[str, list[str]]


@dataclass(frozen=True)
class Outcome:
    """One finished run of a candidate."""

    seed: int
    val_accuracy: float
    epochs: float
    full_size_epochs: float
    train_seconds: float


def read_tuning(path: Path) -> Tuning:
    """Parse and check a tuning file (a clear error names what is missing)."""
    raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    missing = [key for key in ("recipe", "output_dir", "candidates") if key not in raw]
    if missing:
        raise SystemExit(f"{path}: missing {', '.join(missing)}")
    candidates = raw["candidates"]
    if not isinstance(candidates, dict) or not candidates:
        raise SystemExit(f"{path}: candidates must map names to lists of overrides")
    from trainlab.config.loading import load_config_dict

    recipe = ROOT / raw["recipe"]
    return Tuning(path=path, recipe=recipe, recipe_name=str(load_config_dict(recipe)["name"]),
                  output_dir=ROOT / raw["output_dir"],
                  common=[str(o) for o in raw.get("common") or []],
                  candidates={str(k): [str(o) for o in v or []] for k, v in candidates.items()})


def shown(path: Path) -> Path:
    """``path`` relative to the repository when it is inside it."""
    try:
        return path.relative_to(ROOT)
    except ValueError:
        return path


def run_path(tuning: Tuning, name: str, seed: int) -> Path:
    """The run directory of ``name`` with ``seed``: ``<output_dir>/<the recipe's run name>/<name>-s<seed>``,
    where ``trainlab run`` puts a run of the recipe with that run id."""
    return tuning.output_dir / tuning.recipe_name / f"{name}-s{seed}"


def overrides_of(tuning: Tuning, name: str, seed: int) -> list[str]:
    """Every override of one run: shared, the candidate's, the output folder and the seed."""
    return [*tuning.common, *tuning.candidates[name], f"output.dir={shown(tuning.output_dir)}",
            f"seed={seed}"]


def finished(path: Path) -> bool:
    """Whether ``path`` holds a run that ran to its end (an interrupted run writes a summary too)."""
    try:
        summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return summary.get("status") in ("completed", "stopped_early")


def train(tuning: Tuning, names: Sequence[str], seeds: int) -> None:
    """Train every missing (candidate, seed), continuing runs that were cut off."""
    import trainlab.api as tl

    for name in names:
        for seed in range(seeds):
            path = run_path(tuning, name, seed)
            if finished(path):
                print(f"{name} seed {seed}: done already ({shown(path)})", flush=True)
                continue
            if (path / "config.yaml").exists() and any(path.glob("checkpoint.*")):
                print(f"{name} seed {seed}: resuming -> {shown(path)}", flush=True)
                tl.run(resume=path, progress=False, echo=False)
            else:
                print(f"{name} seed {seed}: training -> {shown(path)}", flush=True)
                tl.run(tuning.recipe, overrides=overrides_of(tuning, name, seed), run_id=path.name,
                       overwrite=True, progress=False, echo=False)
            print(f"{name} seed {seed}: val accuracy {read_outcome(path, seed).val_accuracy:.4f}", flush=True)


def full_size_epochs(config: dict[str, Any], epochs: float, side: int) -> float:
    """Epochs weighted by their image area: a low_res epoch of side s counts (s / side)^2."""
    low_res = (config.get("augment") or {}).get("low_res")
    if not low_res:
        return epochs
    small = min(float(low_res["epochs"]), epochs)
    return small * (low_res["size"] / side) ** 2 + (epochs - small)


def read_outcome(path: Path, seed: int, side: int = 32) -> Outcome:
    """The outcome of a finished run directory."""
    summary = json.loads((path / "summary.json").read_text(encoding="utf-8"))
    config = yaml.safe_load((path / "config.yaml").read_text(encoding="utf-8"))
    epochs = float(summary["epochs"])
    return Outcome(seed=seed, val_accuracy=float(summary["final_val_accuracy"]), epochs=epochs,
                   full_size_epochs=full_size_epochs(config, epochs, side),
                   train_seconds=float(summary["train_seconds"]))


def outcomes(tuning: Tuning, name: str) -> list[Outcome]:
    """Every finished run of ``name`` on disk (whatever ``--seeds`` this call was given), by seed."""
    folder = run_path(tuning, name, 0).parent
    seeds = sorted(int(match.group(1)) for path in folder.glob(f"{name}-s*")
                   if (match := re.fullmatch(rf"{re.escape(name)}-s(\d+)", path.name)))
    return [read_outcome(run_path(tuning, name, s), s) for s in seeds if finished(run_path(tuning, name, s))]


def paired_difference(done: Sequence[Outcome], reference: Sequence[Outcome]) -> str:
    """The candidate's val accuracy minus the reference's, in points, over the seeds both ran:
    a seed fixes the held-out images, so the pairs cancel how hard each seed's split is."""
    theirs = {o.seed: o.val_accuracy for o in reference}
    deltas = [100 * (o.val_accuracy - theirs[o.seed]) for o in done if o.seed in theirs]
    if not deltas:
        return "no shared seed"
    count = f"{len(deltas)} seed{'s' if len(deltas) > 1 else ''}"
    if len(deltas) < 2:
        return f"{deltas[0]:+.2f} ({count})"
    return f"{statistics.fmean(deltas):+.2f} ± {statistics.stdev(deltas):.2f} ({count})"


def mean_sd(values: Sequence[float]) -> str:
    """'mean ± sd' in percent (sd only over 2+ values)."""
    mean = 100 * statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {100 * statistics.stdev(values):.2f}"


#: Images held out by ``data.val_fraction=0.1`` of CIFAR-10's 50,000 training images.
VAL_IMAGES = 5000


def _noise_text(done: Sequence[float]) -> str:
    """What one seed's validation accuracy can be trusted to: its binomial sd at the accuracies ``done``."""
    if not done:
        return ""
    p = statistics.fmean(done)
    sd = 100 * math.sqrt(p * (1 - p) / VAL_IMAGES)
    return (f" At {100 * p:.1f} % on {VAL_IMAGES:,} images, one run's accuracy has a binomial sd of {sd:.2f} "
            "points from the finite split alone (the held-out images also change with the seed), so "
            "single-seed differences of that order say nothing.")


def table(tuning: Tuning, seeds: int) -> str:
    """The markdown section for ``tuning``."""
    rel = shown(tuning.path)
    results = {name: outcomes(tuning, name) for name in tuning.candidates}
    accuracies = [o.val_accuracy for done in results.values() for o in done]
    reference = next(iter(tuning.candidates))
    lines = [
        f"## {shown(tuning.recipe)}",
        "",
        f"Written by `python bench/tune_fast_recipe.py {rel}` (rerun it to check; `--only-table` "
        "rewrites this from the run directories). Shared overrides: "
        + ", ".join(f"`{o}`" for o in tuning.common) + ". Validation accuracy is the final one, "
        "with the recipe's TTA, on the 5,000 held-out training images; cost counts a low-resolution "
        "epoch of side s as (s / 32)^2 of a full one; the training seconds were measured on a shared, "
        "loaded machine (1 thread) and only compare runs made side by side." + _noise_text(accuracies)
        + f" The paired column compares each candidate with the first, {reference}, seed by seed (a seed "
        "fixes the held-out images, so the pairs cancel how hard each split is; the training noise stays).",
        "",
        f"| candidate | overrides | val accuracy % (mean ± sd) | seeds | per seed | minus {reference}, paired (points) "
        "| epochs | cost (full-size epochs) | train s (mean) |",
        "|---|---|---:|---:|---|---:|---:|---:|---:|",
    ]
    for name, extra in tuning.candidates.items():
        done = results[name]
        listed = "<br>".join(f"`{o}`" for o in extra) or "(none)"
        planned = max(seeds, len(done))
        if not done:
            lines.append(f"| {name} | {listed} | not run | 0/{planned} | | | | | |")
            continue
        per_seed = ", ".join(f"{100 * o.val_accuracy:.2f}" for o in done)
        paired = "reference" if name == reference else paired_difference(done, results[reference])
        lines.append(
            f"| {name} | {listed} | {mean_sd([o.val_accuracy for o in done])} | {len(done)}/{planned} | {per_seed} "
            f"| {paired} "
            f"| {statistics.fmean(o.epochs for o in done):g} | {statistics.fmean(o.full_size_epochs for o in done):.2f} "
            f"| {statistics.fmean(o.train_seconds for o in done):.0f} |")
    return "\n".join(lines) + "\n"


def write_doc(text: str, tuning: Tuning, doc: Path = DOC) -> None:
    """Replace (or add) this tuning file's section of docs/fast-recipe-tuning.md."""
    begin, end = f"<!-- begin {tuning.path.stem} -->", f"<!-- end {tuning.path.stem} -->"
    header = ("# Choosing the fast recipes on a validation split\n\nGenerated by `bench/tune_fast_recipe.py`; "
              "do not edit by hand. Each section is one tuning file under `configs/fast/tuning/`.\n")
    old = doc.read_text(encoding="utf-8") if doc.exists() else header
    block = f"{begin}\n{text}{end}"
    if begin in old and end in old:
        new = old[: old.index(begin)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip("\n") + "\n\n" + block + "\n"
    doc.write_text(new, encoding="utf-8")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tuning", type=Path, help="a tuning file, e.g. configs/fast/tuning/cifar10-94-muon.yaml")
    parser.add_argument("--seeds", type=int, default=1, help="seeds 0..N-1 of each candidate (default 1)")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="train only these candidates")
    parser.add_argument("--only-table", action="store_true", help="train nothing; rewrite the table")
    args = parser.parse_args(argv)
    tuning = read_tuning(args.tuning.resolve())
    names = args.only or list(tuning.candidates)
    unknown = [n for n in names if n not in tuning.candidates]
    if unknown:
        parser.error(f"unknown candidate(s) {', '.join(unknown)}; the file has {', '.join(tuning.candidates)}")
    if not args.only_table:
        train(tuning, names, args.seeds)
    text = table(tuning, args.seeds)
    write_doc(text, tuning)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
