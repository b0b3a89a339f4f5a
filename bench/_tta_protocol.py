"""Time to accuracy's protocol (issue 28): the statistics, the rows, the docs section.

``bench/bench_time_to_accuracy.py`` trains; this module judges what it trained, so that the
judgement can be tested on made-up runs and redone from a saved runs file (``--render-from``).
What a run is and the runs file are in ``bench/_tta_runs.py``; its names (and, for the tests,
``machine_line`` and ``_cudnn_text``) are re-exported here, so that the bench scripts and the
tests import the whole protocol from this module.

- A *run* is one side (``trainlab`` with a recipe, or a plain-PyTorch rendition) trained
  with one seed on one machine: its test evaluations (seconds since the start, accuracy).
- A run's time to a target: its first evaluation at or above the target. A side *reaches* a
  target when the mean of its seeds' final accuracies does; its time is then the median over
  its seeds of each seed's time, where a seed that never reaches the target by itself counts
  with its whole run (see :func:`seed_time` for why).
- Ratio = the peer's time / trainlab's (> 1: trainlab is faster), only where both sides reach
  the row's target. Where a peer's mean stays under the target, a second row compares both
  sides at the peer's final mean (rounded down to 0.01 %), so that a ratio exists.
- Runs on different machines (CPU model and flags, cores; for a GPU run the GPU and its host)
  or thread counts are never compared: each gets its own rows and table. A GPU's table also
  shows the airbench README's published A100 times (:data:`PUBLISHED_A100_S`), for scale only.
"""

from __future__ import annotations

import datetime
import math
import statistics
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from _common import PERFORMANCE_TITLE, fmt, make_row, write_doc_section
from _common import machine_line as machine_line
from _tta_runs import (
    FORMAT,
    GPU_KEY_PREFIX,
    PEERS,
    RATIO_GOALS_94,
    RECIPES,
    ROOT,
    SIDES,
    TOL,
    TRIALS_JSON,
    Run,
    Trial,
    TrialStore,
    device_machine_info,
    device_machine_line,
    gpu_info,
    is_gpu_machine,
    machine_key,
    recipe_digest,
)
from _tta_runs import _cudnn_text as _cudnn_text

BENCH = "bench_time_to_accuracy"
#: The issue's "mean over at least 5 seeds": fewer on either side and no goal is met.
MIN_SEEDS = 5
#: The times the airbench README publishes for the original scripts, on one NVIDIA A100 (airbench94.py
#: and airbench94_muon.py, 94.01 % mean accuracy). Another GPU and airbench's own timing (CUDA events
#: around the whitening init, the training epochs and the final TTA evaluation; loading the data and
#: the per-epoch evaluations untimed): shown beside GPU tables for scale, never turned into a ratio.
PUBLISHED_A100_S = {"airbench94": 3.83, "airbench94_muon": 2.59}


# -- statistics ---------------------------------------------------------------------------------
def seed_time(trial: Trial, target: float) -> tuple[float, bool]:
    """One seed's time to ``target``, and whether the seed itself got there.

    A seed that never reaches the target counts with its whole run (the time of its final
    evaluation). Its final accuracy is part of the side's mean, which is known only when the
    run ends; leaving the seed out would time the side by its lucky seeds only, and counting
    it as never would deny a time to a side whose mean does reach the target.
    """
    first = trial.time_to(target)
    return (first, True) if first is not None else (trial.total_s, False)


@dataclass(frozen=True)
class SideStats:
    """One side's seeds at one target: final accuracies (mean, sd, range, n) and times."""

    target: float
    n: int
    mean: float
    sd: float | None  # the sample sd; None for one seed
    low: float
    high: float
    reached: bool  # the mean of the final accuracies is at the target
    time_s: float | None  # median over seeds of seed_time; None when the mean is under the target
    run_s: float  # median run length
    seeds_reached: int  # seeds that got to the target by themselves

    @property
    def figure(self) -> float:
        """The time to show: the median time when reached, else the median run length."""
        return self.time_s if self.time_s is not None else self.run_s


def side_stats(trials: list[Trial], target: float) -> SideStats | None:
    """The statistics of ``trials`` (one per seed) at ``target``; None without trials."""
    if not trials:
        return None
    finals = [t.final for t in trials]
    mean = statistics.fmean(finals)
    times = [seed_time(t, target) for t in trials]
    reached = mean >= target - TOL
    return SideStats(target, len(trials), mean, statistics.stdev(finals) if len(finals) > 1 else None,
                     min(finals), max(finals), reached,
                     statistics.median(t for t, _ in times) if reached else None,
                     statistics.median(t.total_s for t in trials), sum(own for _, own in times))


def floor_target(mean: float) -> float:
    """A peer's final mean rounded down to 0.01 % (so that the peer's own mean reaches it)."""
    return math.floor((mean + TOL) * 10_000) / 10_000


def accuracy_text(stats: SideStats | None) -> str:
    """``94.06 ± 0.02 % (94.04–94.08 %, n = 3)``: the final accuracies over the seeds."""
    if stats is None:
        return "no runs"
    sd = f"{100 * stats.sd:.2f}" if stats.sd is not None else "n/a"
    return f"{100 * stats.mean:.2f} ± {sd} % ({100 * stats.low:.2f}–{100 * stats.high:.2f} %, n = {stats.n})"


def _time_note(name: str, stats: SideStats | None) -> str:
    if stats is None:
        return f"{name}: no runs recorded"
    target = f"{100 * stats.target:.2f} %"
    if not stats.reached:
        return (f"{name}: mean final {100 * stats.mean:.2f} % is under {target}: no time "
                f"(median run {stats.run_s:.1f} s)")
    text = f"{name}: {stats.seeds_reached}/{stats.n} seeds reached {target}"
    if stats.seeds_reached < stats.n:
        text += f", {stats.n - stats.seeds_reached} more counted with their whole run"
    return text + f"; median {stats.figure:.1f} s"


# -- rows ---------------------------------------------------------------------------------------
def _workload(recipe: str, target: float, quick: bool, cross: str | None, machine: str | None) -> str:
    info = RECIPES[recipe]
    if quick:
        text = f"{info['dataset']} quick check (first evaluation): configs/fast/{recipe}.yaml"
    else:
        text = f"{info['dataset']} to {100 * target:.2f} %{cross or ''}: configs/fast/{recipe}.yaml"
    return f"{text} [{machine}]" if machine else text


def _row(recipe: str, target: float, ours: SideStats | None, peer: str | None, theirs: SideStats | None,
         quick: bool, cross: str | None, machine: str | None, gpu: bool = False) -> dict[str, Any]:
    """A row at one target; ratio only where both sides reach it; goal and met filled in by the caller.

    ``gpu``: the runs are a GPU's; the row's ``published_s`` is then the peer's published A100 time.
    """
    workload = _workload(recipe, target, quick, cross, machine)
    published = PUBLISHED_A100_S.get(peer) if gpu and peer and not cross else None
    peer_name = f"{peer} (plain PyTorch, bf16, channels_last)" if peer else "none (goal: a time limit)"
    notes = [_time_note("trainlab", ours)] + ([_time_note(peer, theirs)] if peer else [])
    if ours is None:  # no row figure to give: kept for the tables, left out of --json
        return {"benchmark": BENCH, "workload": workload, "trainlab": None, "peer": None, "peer_name": peer_name,
                "unit": "s", "ratio": None, "higher_is_better": False, "goal": "", "met": None,
                "note": "; ".join(notes), "target": target, "trainlab_stats": None,
                "peer_stats": asdict(theirs) if theirs else None, "machine": machine, "published_s": published}
    both = ours.reached and theirs is not None and theirs.reached
    peer_time = theirs.figure if both and theirs is not None else None
    row = make_row(BENCH, workload, ours.figure, peer_time, peer_name=peer_name, unit="s",
                   higher_is_better=False, note="; ".join(notes))
    row.update(target=target, trainlab_stats=asdict(ours), peer_stats=asdict(theirs) if theirs else None,
               machine=machine, published_s=published)
    return row


def recipe_rows(recipe: str, trainlab: list[Trial], peers: dict[str, list[Trial]], quick: bool,
                machine: str | None = None, gpu: bool = False) -> list[dict[str, Any]]:
    """The rows of one recipe: one per peer (or one with no peer), and one at each short peer's mean.

    ``peers``: each peer's trials (a missing or empty list: no runs recorded). ``machine``: shown
    in the workloads when the runs file holds more than one machine. ``gpu``: the runs are a
    GPU's (each peer's row at the target gets its published A100 time, ``published_s``).
    """
    info = RECIPES[recipe]
    target = 0.0 if quick else float(info["target"])
    ours = side_stats(trainlab, target)
    limit = float(info["limit_s"])
    ours_ok = (ours is not None and ours.reached and ours.n >= MIN_SEEDS and ours.time_s is not None
               and ours.time_s <= limit)
    base_goal = f"{100 * target:.0f} % mean over >= {MIN_SEEDS} seeds in <= {limit:.0f} s"
    if not info["peers"]:
        row = _row(recipe, target, ours, None, None, quick, None, machine, gpu)
        if not quick and ours is not None:
            row["goal"], row["met"] = base_goal, ours_ok
        return [row]
    rows = []
    for peer in info["peers"]:
        theirs = side_stats(peers.get(peer, []), target)
        row = _row(recipe, target, ours, peer, theirs, quick, None, machine, gpu)
        rows.append(row)
        if quick or ours is None:
            continue
        cross_row = None
        if theirs is not None and not theirs.reached:  # so that a ratio exists
            cross = floor_target(theirs.mean)
            cross_row = _row(recipe, cross, side_stats(trainlab, cross), peer, side_stats(peers[peer], cross),
                             quick, f" ({peer}'s final mean)", machine, gpu)
            rows.append(cross_row)
        goal = info["ratio_goals"].get(peer)
        if goal is None:
            row["goal"], row["met"] = base_goal, ours_ok
            continue
        if cross_row is not None:
            cross_row["goal"] = f">= {goal}x"
            cross_row["met"] = cross_row["ratio"] is not None and cross_row["ratio"] >= goal * (1 - 1e-9)
        # The goal's ratio: at the target where the peer gets there, else at the peer's final mean.
        ratio = (cross_row or row)["ratio"]
        enough = theirs is not None and theirs.n >= MIN_SEEDS
        where = f" (at {peer}'s final mean when its mean stays under {100 * target:.0f} %)"
        row["goal"] = f"{base_goal}, ratio >= {goal}x{where}, >= {MIN_SEEDS} {peer} seeds"
        row["met"] = bool(ours_ok and enough and ratio is not None and ratio >= goal * (1 - 1e-9))
    return rows


def trials_of(runs: list[Run]) -> tuple[dict[str, list[Trial]], dict[str, list[Trial]]]:
    """trainlab's trials per recipe and each peer's trials, each in seed order."""
    ordered = sorted(runs, key=lambda r: r.seed)
    ours: dict[str, list[Trial]] = {}
    peers: dict[str, list[Trial]] = {}
    for run in ordered:
        (ours if run.side == "trainlab" else peers).setdefault(run.recipe, []).append(run.trial)
    return ours, peers


def store_rows(store: TrialStore) -> list[dict[str, Any]]:
    """Every recipe's rows for every (machine, threads) group of the store."""
    groups = store.groups() or [("", 0, [])]
    rows = []
    for machine, threads, runs in groups:
        ours, peers = trials_of(runs)
        label = f"{machine}, {threads} threads" if len(groups) > 1 else None
        for recipe in store.recipes:
            rows += recipe_rows(recipe, ours.get(recipe, []), peers, store.quick, label, is_gpu_machine(machine))
    return rows


def json_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows with a trainlab figure (the ``--json`` protocol needs one)."""
    return [row for row in rows if row["trainlab"] is not None]


# -- output -------------------------------------------------------------------------------------
def _trainlab_cell(row: dict[str, Any]) -> str:
    """trainlab's figure; marked where its mean stays under the row's target (the figure is its run)."""
    if row["trainlab"] is None:
        return "no runs"
    return fmt(row["trainlab"]) + ("" if row["trainlab_stats"]["reached"] else " (mean under target: median run)")


def _stats_cell(stats: dict[str, Any] | None) -> str:
    return accuracy_text(SideStats(**stats) if stats else None)


def print_table(rows: list[dict[str, Any]]) -> None:
    """One line per row (``*``: trainlab's mean under the target, its figure is its run), then the
    final accuracies and the notes of each row."""
    header = f"{'workload':<72}{'trainlab s':>11}{'peer s':>9}{'ratio':>8}  met"
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        ours = "no runs" if row["trainlab"] is None else \
            fmt(row["trainlab"]) + ("" if row["trainlab_stats"]["reached"] else "*")
        print(f"{row['workload'][:71]:<72}{ours:>11}{fmt(row['peer']):>9}{ratio:>8}  {row['met']}")
    for row in rows:
        accuracies = f"trainlab {_stats_cell(row['trainlab_stats'])}"
        if not row["peer_name"].startswith("none"):
            accuracies += f"; {row['peer_name'].split(' ')[0]} {_stats_cell(row['peer_stats'])}"
        print(f"  {row['workload']}: final {accuracies}; {row['note']}{_published_note(row)}")


def _published_note(row: dict[str, Any]) -> str:
    """``; published: airbench94 3.83 s (...)`` for a GPU row, else empty."""
    if row.get("published_s") is None:
        return ""
    return (f"; published: {row['peer_name'].split(' ')[0]} {row['published_s']} s (the airbench README's "
            "figure: an A100, another GPU, airbench's own timing; not compared)")


PROTOCOL = (
    "Protocol (issue 28). Each side (a trainlab recipe, or a plain-PyTorch rendition) trains seeds "
    "0, 1, ...; a run's time to a target is the wall clock from its start (before the data is loaded) to the "
    "end of its first test evaluation at or above the target (after every epoch without TTA, then the final "
    "one with TTA; trainlab's final one counts when `api.run` returns). A side reaches a target when the mean "
    "of its seeds' final accuracies does; its time is then the median over its seeds of each seed's time, "
    "where a seed that never reaches the target by itself counts with its whole run (its final evaluation, "
    "when its share of the mean is known): leaving it out would time a side by its lucky seeds only, and "
    "counting it as never would deny a time to a side whose mean is there. A side whose mean stays under "
    "the target has no time (trainlab's cell then shows its median run, marked). Ratio = the peer's time / "
    "trainlab's, > 1 when trainlab is faster, only where both sides reach the target. Where a rendition's "
    "mean stays under the target, a second row compares both sides at that rendition's final mean (rounded "
    "down to 0.01 %), so that a ratio exists. Accuracies: mean ± sample sd (min–max, n) of the final ones. "
    f"Goal for the 94 % recipes: a mean of at least 94 % over at least {MIN_SEEDS} seeds (on both sides) "
    "within 10 min, in at most 0.8x the airbench94_muon rendition's median time (ratio >= 1.25) and faster "
    "than airbench94 (ratio >= 1.0), each ratio taken at the rendition's final mean where the rendition's "
    "mean stays under 94 %. Runs on different machines (CPU model, flags, cores) or thread counts are "
    "never compared: each has its own table. Both sides: bf16 autocast, channels_last, malloc reusing "
    "freed memory (`trainlab.engines.cpu_memory`), the same threads, back to back per seed (the order "
    "alternates with the seed) when they run in one command. On a GPU (`--device cuda`; runs keyed by the "
    "GPU and its host, never compared with CPU runs) both sides keep the model, the data and the "
    "augmentation on the GPU, the clock is read after `torch.cuda.synchronize()`, cudnn.benchmark stays "
    "as torch leaves it (off, as trainlab's engine keeps it), and each side first trains once untimed "
    "(seed 0, the same budget) so that no timed run pays for the CUDA context, the libraries' kernels or "
    "the data cache."
)

PUBLISHED_NOTE = (
    "Published: the airbench README's times for the original scripts on one NVIDIA A100 (airbench94.py "
    f"{PUBLISHED_A100_S['airbench94']} s, airbench94_muon.py {PUBLISHED_A100_S['airbench94_muon']} s, each "
    "94.01 % mean accuracy), shown for scale only: another GPU, the original code (fp16 weights, "
    "cudnn.benchmark on; airbench94_muon compiled with max-autotune, after a warm-up run) and airbench's own "
    "timing, which counts the whitening init, the training epochs and the final TTA evaluation (CUDA events) "
    "but not loading the data or the per-epoch evaluations that the times here include. No ratio or goal is "
    "taken from them."
)


def _table(rows: list[dict[str, Any]], published: bool = False) -> list[str]:
    """The rows as a markdown table; ``published`` (a GPU's table) adds the published A100 times."""
    extra = " published A100 s (airbench README) |" if published else ""
    lines = ["| workload | trainlab s | trainlab final accuracy | peer | peer s |" + extra + " peer final accuracy | "
             "ratio (peer / trainlab) | goal | met | note |",
             "|---|---:|---|---|---:|" + ("---:|" if published else "") + "---|---:|---|---|---|"]
    for row in rows:
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        peer_acc = "-" if row["peer_name"].startswith("none") else _stats_cell(row["peer_stats"])
        met = "-" if row["met"] is None else str(row["met"])
        cell = f" {fmt(row.get('published_s'))} |" if published else ""
        lines.append(f"| {row['workload']} | {_trainlab_cell(row)} | {_stats_cell(row['trainlab_stats'])} | "
                     f"{row['peer_name']} | {fmt(row['peer'])} |{cell} {peer_acc} | {ratio} | "
                     f"{row['goal'] or '-'} | {met} | {row['note']} |")
    return lines


def _listing(runs: list[Run]) -> list[str]:
    order = {name: i for i, name in enumerate([*RECIPES, *PEERS])}
    lines = ["| run | seed | evaluations (s: accuracy) | total s |", "|---|---:|---|---:|"]
    for run in sorted(runs, key=lambda r: (order.get(r.recipe, len(order)), r.side, r.seed)):
        evals = "; ".join(f"{t:.1f}: {acc:.4f} ({what})" for t, acc, what in run.trial.evaluations)
        name = f"{run.recipe} (trainlab)" if run.side == "trainlab" else f"{run.side} (plain PyTorch)"
        lines.append(f"| {name} | {run.seed} | {evals} | {run.trial.total_s:.1f} |")
    return lines


def section(store: TrialStore) -> str:
    """docs/performance.md's time-to-accuracy section: per machine the rows, the accuracies, every run."""
    lines = ["## Time to accuracy", "",
             "Written by `bench/bench_time_to_accuracy.py --write-docs` from the runs in its `--trials-json` "
             "file (`bench/tta-trials.json` by default; `--render-from` rewrites it from them, and a rerun "
             "resumes, training only the runs the file lacks). " + PROTOCOL, "",
             "Commands: " + "; ".join(f"`{c}`" for c in store.commands), "",
             f"Date: {datetime.date.today().isoformat()}", ""]
    groups = store.groups()
    if not groups:
        lines += ["No runs recorded yet.", ""]
    for machine, threads, runs in groups:
        ours, peers = trials_of(runs)
        line = next((r.machine_line for r in runs if r.machine_line), machine).removeprefix("machine: ")
        if len(groups) > 1:
            lines += [f"### {machine}, {threads} threads", ""]
        lines += [f"Machine: {line}", "", f"Threads: {threads}", ""]
        gpu = is_gpu_machine(machine)
        # A recipe with no trainlab run on this machine has no row here (its peers' runs are in the
        # listing below), unless no recipe has one: then every recipe's row shows the peers.
        here = [recipe for recipe in store.recipes if ours.get(recipe)] or store.recipes
        rows = [row for recipe in here for row in recipe_rows(recipe, ours.get(recipe, []), peers,
                                                              store.quick, gpu=gpu)]
        stale = [r for r in runs if r.side == "trainlab" and r.config and r.config != recipe_digest(r.recipe)]
        if stale:
            lines += [f"**{len(stale)} trainlab run(s) here were trained from an earlier version of their recipe "
                      "file; rerun with the same --trials-json to retrain them.**", ""]
        lines += [*_table(rows, published=gpu), ""]
        if gpu:
            lines += [PUBLISHED_NOTE, ""]
        lines += ["Every run:", "", *_listing(runs), ""]
    lines += ["Where the two sides differ (the net, data order and augmentation are the same kind, not the "
              "same draws): trainlab's Nesterov SGD keeps the velocity in the lr-scaled form "
              "(v = mu v - lr g), PyTorch's SGD unscaled (the same at a constant lr); trainlab's "
              "`bias_lr_scale` also speeds up the whitening bias, airbench94 only the BN shifts; trainlab "
              "freezes the whitening bias after 3 epochs where airbench94_muon decays its lr to 0 over them; "
              "trainlab's whitening uses the centred patch covariance, airbench the uncentred one. trainlab's "
              "runs also compute layer monitors at every evaluation (no final train-split pass: "
              "`train.final_train_eval: false` in the fast recipes).", "",
              "Recipes: `trainlab run configs/fast/<recipe>.yaml` (see each file's first comment).", ""]
    return "\n".join(lines)


def write_docs(path: Path, store: TrialStore) -> None:
    """Write :func:`section` into the generated document ``path`` (docs/performance.md)."""
    write_doc_section(path, "time-to-accuracy", section(store), PERFORMANCE_TITLE)


__all__ = ["BENCH", "FORMAT", "GPU_KEY_PREFIX", "MIN_SEEDS", "PEERS", "PROTOCOL", "PUBLISHED_A100_S",
           "PUBLISHED_NOTE", "RATIO_GOALS_94", "RECIPES", "ROOT", "SIDES", "TOL", "TRIALS_JSON", "Run",
           "SideStats", "Trial", "TrialStore", "accuracy_text", "device_machine_info",
           "device_machine_line", "floor_target", "gpu_info", "is_gpu_machine", "json_rows", "machine_key",
           "print_table", "recipe_digest", "recipe_rows", "section", "seed_time", "side_stats",
           "store_rows", "trials_of", "write_docs"]
