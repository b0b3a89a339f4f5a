"""Time to accuracy's protocol (issue 28): the runs file, the statistics, the rows, the docs section.

``bench/bench_time_to_accuracy.py`` trains; this module judges what it trained, so that the
judgement can be tested on made-up runs and redone from a saved runs file (``--render-from``).

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
import hashlib
import json
import math
import statistics
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import PERFORMANCE_TITLE, fmt, machine_info, machine_line, make_row, write_doc_section

from trainlab.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
BENCH = "bench_time_to_accuracy"
#: Accuracies arrive as float32 (94 % reads 0.9399999976): targets are compared with this slack,
#: far below one test image (1e-4 of CIFAR-10's test split).
TOL = 1e-6
#: The issue's "mean over at least 5 seeds": fewer on either side and no goal is met.
MIN_SEEDS = 5
#: The renditions trainlab is compared with; for the 94 % recipes the ratio each must reach:
#: at most 0.8x airbench94_muon's median time (ratio >= 1.25) and faster than airbench94.
PEERS = ("airbench94", "airbench94_muon")
RATIO_GOALS_94 = {"airbench94": 1.0, "airbench94_muon": 1.25}
# limit_s: the time limit on the 2-core machine; ratio_goals: peer -> the ratio that
# row needs (no entry: the peer's time is shown, the goal is the time limit).
RECIPES: dict[str, dict[str, Any]] = {
    "cifar10-94": {"target": 0.94, "peers": list(PEERS), "dataset": "CIFAR-10", "limit_s": 600.0,
                   "ratio_goals": RATIO_GOALS_94},
    "cifar10-94-muon": {"target": 0.94, "peers": list(PEERS), "dataset": "CIFAR-10", "limit_s": 600.0,
                        "ratio_goals": RATIO_GOALS_94},
    "cifar10-90": {"target": 0.90, "peers": ["airbench94"], "dataset": "CIFAR-10", "limit_s": 180.0,
                   "ratio_goals": {}},
    "mnist-99": {"target": 0.99, "peers": [], "dataset": "MNIST", "limit_s": 30.0, "ratio_goals": {}},
}
SIDES = ("trainlab", *PEERS)
#: The times the airbench README publishes for the original scripts, on one NVIDIA A100 (airbench94.py
#: and airbench94_muon.py, 94.01 % mean accuracy). Another GPU and airbench's own timing (CUDA events
#: around the whitening init, the training epochs and the final TTA evaluation; loading the data and
#: the per-epoch evaluations untimed): shown beside GPU tables for scale, never turned into a ratio.
PUBLISHED_A100_S = {"airbench94": 3.83, "airbench94_muon": 2.59}
#: How a GPU run's machine key starts (a CPU model name never does).
GPU_KEY_PREFIX = "GPU "
#: Where --write-docs keeps the runs docs/performance.md is written from (for --render-from).
TRIALS_JSON = ROOT / "bench" / "tta-trials.json"
FORMAT = 2


@dataclass
class Trial:
    """One training run: (seconds since start, test accuracy, what was evaluated) per evaluation."""

    evaluations: list[tuple[float, float, str]] = field(default_factory=list)
    total_s: float = 0.0

    def time_to(self, target: float) -> float | None:
        """Seconds to the first evaluation at ``target`` or better (within :data:`TOL`); None if none was."""
        return next((t for t, acc, _ in self.evaluations if acc >= target - TOL), None)

    @property
    def final(self) -> float:
        """The last evaluation's accuracy (the TTA one)."""
        return self.evaluations[-1][1] if self.evaluations else float("nan")


@dataclass
class Run:
    """A trial with what identifies it: side, recipe (a peer's own name for a peer), seed, machine, threads.

    ``config`` is the digest of the trainlab recipe it was trained from (None for a peer or when
    not recorded); ``machine_line`` the full machine and software line at the time.
    """

    side: str
    recipe: str
    seed: int
    trial: Trial
    machine: str
    threads: int
    config: str | None = None
    machine_line: str = ""
    date: str = ""

    @property
    def slot(self) -> tuple[str, str, int, str, int]:
        """What a resumed benchmark matches on: one run per slot."""
        return self.side, self.recipe, self.seed, self.machine, self.threads

    def to_json(self) -> dict[str, Any]:
        """The run as plain JSON data."""
        data = asdict(self)
        data.pop("trial")
        return {**data, "evaluations": [list(e) for e in self.trial.evaluations], "total_s": self.trial.total_s}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Run:
        """The inverse of :meth:`to_json`."""
        trial = Trial([(float(t), float(a), str(w)) for t, a, w in data["evaluations"]], float(data["total_s"]))
        return cls(str(data["side"]), str(data["recipe"]), int(data["seed"]), trial, str(data["machine"]),
                   int(data["threads"]), data.get("config"), str(data.get("machine_line", "")),
                   str(data.get("date", "")))


def machine_key(info: dict[str, Any]) -> str:
    """What makes two runs' times comparable: CPU model, the flags that pick kernels, cores; for a
    run on a GPU (``info["gpu"]``, see :func:`device_machine_info`) the GPU's name, then its host's."""
    cpu = f"{info['cpu']} ({' '.join(info['cpu_flags']) or 'no AVX flags'}), {info['cores']} cores"
    return f"{GPU_KEY_PREFIX}{info['gpu']}, host {cpu}" if info.get("gpu") else cpu


def is_gpu_machine(key: str) -> bool:
    """Whether ``key`` (a :func:`machine_key`) is a GPU run's."""
    return key.startswith(GPU_KEY_PREFIX)


def _cudnn_text(version: int | None) -> str:
    """cuDNN's version number as x.y.z (9.x numbers it major * 10000, earlier major * 1000)."""
    if not version:
        return "none"
    if version >= 90000:
        return f"{version // 10000}.{version // 100 % 100}.{version % 100}"
    return f"{version // 1000}.{version // 100 % 10}.{version % 100}"


def gpu_info() -> dict[str, Any]:
    """The GPU torch trains on (device 0): name, memory, compute capability, CUDA and cuDNN versions."""
    import torch

    props = torch.cuda.get_device_properties(0)
    return {"gpu": torch.cuda.get_device_name(0), "gpu_memory_gib": round(props.total_memory / 2**30, 1),
            "gpu_capability": f"{props.major}.{props.minor}", "cuda": torch.version.cuda,
            "cudnn": _cudnn_text(torch.backends.cudnn.version()),
            "cudnn_benchmark": bool(torch.backends.cudnn.benchmark)}


def device_machine_info(device: str) -> dict[str, Any]:
    """``_common.machine_info()``, with :func:`gpu_info` added for ``device`` ``cuda``."""
    info = machine_info()
    return {**info, **gpu_info()} if device == "cuda" else info


def device_machine_line(info: dict[str, Any]) -> str:
    """``_common.machine_line``, led by the GPU (name, memory, capability, CUDA, cuDNN) for a GPU run."""
    line = machine_line(info)
    if not info.get("gpu"):
        return line
    return (f"machine: GPU {info['gpu']} ({info['gpu_memory_gib']} GiB, compute capability "
            f"{info['gpu_capability']}), CUDA {info['cuda']}, cuDNN {info['cudnn']} "
            f"(cudnn.benchmark {'on' if info.get('cudnn_benchmark') else 'off'}); host "
            + line.removeprefix("machine: "))


def recipe_digest(recipe: str) -> str:
    """A digest of ``configs/fast/<recipe>.yaml`` with its ``base`` chain (comments do not count)."""
    from trainlab.config import load_config_dict

    data = load_config_dict(ROOT / "configs" / "fast" / f"{recipe}.yaml")
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class TrialStore:
    """Every run of a benchmark (``--trials-json``): written after each run, resumed from.

    ``recipes``: every recipe ever asked for (the rows to render, with or without runs);
    ``commands``: the commands that added runs.
    """

    quick: bool
    recipes: list[str] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    runs: list[Run] = field(default_factory=list)

    def find(self, slot: tuple[str, str, int, str, int]) -> Run | None:
        """The run recorded in ``slot``, if any."""
        return next((run for run in self.runs if run.slot == slot), None)

    def add(self, run: Run) -> None:
        """Record ``run``, replacing any earlier run in its slot (one trained from an older recipe)."""
        self.runs = [r for r in self.runs if r.slot != run.slot] + [run]

    def note_request(self, recipes: Iterable[str], command: str) -> None:
        """Remember the recipes asked for (in :data:`RECIPES`' order) and the command."""
        wanted = set(self.recipes) | set(recipes)
        self.recipes = [r for r in RECIPES if r in wanted]
        if command not in self.commands:
            self.commands.append(command)

    def to_json(self) -> dict[str, Any]:
        """The store as plain JSON data."""
        return {"format": FORMAT, "quick": self.quick, "recipes": self.recipes, "commands": self.commands,
                "runs": [run.to_json() for run in self.runs]}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrialStore:
        """Read a store; files written before the format had runs per slot are converted."""
        if data.get("format") == FORMAT:
            return cls(bool(data["quick"]), list(data["recipes"]), list(data["commands"]),
                       [Run.from_json(r) for r in data["runs"]])
        # The first format: trials per recipe and per peer, aligned with "seeds", one machine
        # that was not recorded (so these runs are never compared with new ones).
        threads, seeds = int(data["threads"]), [int(s) for s in data["seeds"]]
        machine = "not recorded (a trials file of the first format)"
        runs = []
        for side, by_name in (("trainlab", data["trainlab"]), ("peer", data["peers"])):
            for name, trials in by_name.items():
                for seed, t in zip(seeds, trials, strict=False):
                    runs.append(Run.from_json({**t, "side": name if side == "peer" else "trainlab", "recipe": name,
                                               "seed": seed, "machine": machine, "threads": threads}))
        return cls(bool(data["quick"]), list(data["recipes"]), [str(data["command"])], runs)

    @classmethod
    def load(cls, path: Path) -> TrialStore:
        """Read the store at ``path``."""
        return cls.from_json(json.loads(path.read_text(encoding="utf-8")))

    def save(self, path: Path) -> None:
        """Write the store to ``path`` atomically (an interrupted benchmark never leaves half a file)."""
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(self.to_json(), indent=1) + "\n")

    def groups(self) -> list[tuple[str, int, list[Run]]]:
        """The runs per (machine, threads), in the order the groups first appear."""
        found: dict[tuple[str, int], list[Run]] = {}
        for run in self.runs:
            found.setdefault((run.machine, run.threads), []).append(run)
        return [(machine, threads, runs) for (machine, threads), runs in found.items()]


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
        rows = [row for recipe in store.recipes for row in recipe_rows(recipe, ours.get(recipe, []), peers,
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
