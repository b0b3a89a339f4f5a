"""Time to accuracy's runs (issue 28): what is compared, what one run holds, the runs file.

``bench/_tta_protocol.py`` judges these runs and re-exports every name here, so that the bench
scripts and the tests import them from there as before.

- :data:`RECIPES`: each recipe's target, time limit, peers and ratio goals; :data:`SIDES`.
- :class:`Trial` (one run's test evaluations) and :class:`Run` (a trial with what identifies
  it: side, recipe, seed, machine, threads).
- :func:`machine_key`: what makes two runs' times comparable (CPU model and flags, cores; for a
  GPU run the GPU and its host), and the machine line recorded beside it.
- :func:`recipe_digest`: which version of a recipe file a trainlab run was trained from.
- :class:`TrialStore`: the ``--trials-json`` file, written atomically after each run and
  resumed from.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _common import machine_info, machine_line

from trainlab.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
#: Accuracies arrive as float32 (94 % reads 0.9399999976): targets are compared with this slack,
#: far below one test image (1e-4 of CIFAR-10's test split).
TOL = 1e-6
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
    "cifar10-94-muon-lowres": {"target": 0.94, "peers": list(PEERS), "dataset": "CIFAR-10", "limit_s": 600.0,
                               "ratio_goals": RATIO_GOALS_94},
    "cifar10-90": {"target": 0.90, "peers": ["airbench94"], "dataset": "CIFAR-10", "limit_s": 180.0,
                   "ratio_goals": {}},
    "mnist-99": {"target": 0.99, "peers": [], "dataset": "MNIST", "limit_s": 30.0, "ratio_goals": {}},
}
SIDES = ("trainlab", *PEERS)
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
