"""bench/bench_time_to_accuracy.py's protocol (issue 28) on made-up runs: statistics, ratios,
rows at a short peer's mean, the goal, the runs file and resuming. Nothing trains here."""

from __future__ import annotations

import importlib
import json
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.test_bench import check_rows

BENCH_DIR = Path(__file__).resolve().parents[1] / "bench"
MACHINE = "Test CPU (avx2), 2 cores"


@pytest.fixture
def proto(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/_tta_protocol.py, imported as the bench scripts import it."""
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    return importlib.import_module("_tta_protocol")


@pytest.fixture
def tta(proto: ModuleType) -> ModuleType:
    """bench/bench_time_to_accuracy.py."""
    return importlib.import_module("bench_time_to_accuracy")


def trial(proto: ModuleType, *evals: tuple[float, float]) -> Any:
    """A trial from (seconds, accuracy) pairs; the last one is the final (TTA) evaluation."""
    labelled = [(t, acc, f"epoch {i + 1}") for i, (t, acc) in enumerate(evals[:-1])]
    t, acc = evals[-1]
    return proto.Trial([*labelled, (t, acc, "final, TTA")], t)


def runs_at(proto: ModuleType, n: int, first_s: float, total_s: float, final: float) -> list[Any]:
    """``n`` trials that reach ``final`` at ``first_s`` (seed i: i seconds later) and end at ``total_s``."""
    return [trial(proto, (first_s + i, final), (total_s + i, final)) for i in range(n)]


# -- statistics ---------------------------------------------------------------------------------
def test_time_to_reads_float32_accuracies_as_the_test_counts(proto: ModuleType) -> None:
    """9400 of 10000 right arrives as float32 0.9399999976: that is 94 %."""
    t = trial(proto, (10.0, 0.9399999976158142), (20.0, 0.95))
    assert t.time_to(0.94) == 10.0
    assert t.time_to(0.9401) == 20.0 and t.time_to(0.96) is None


def test_side_stats_median_of_seed_times_and_the_never_reached_seed(proto: ModuleType) -> None:
    """Each seed's first time at the target; a seed that never gets there counts with its whole run."""
    trials = [trial(proto, (100.0, 0.941), (150.0, 0.945)),
              trial(proto, (110.0, 0.942), (160.0, 0.944)),
              trial(proto, (400.0, 0.90), (500.0, 0.939))]  # never at 94 %: counts at 500 s
    stats = proto.side_stats(trials, 0.94)
    assert stats.reached and stats.n == 3 and stats.seeds_reached == 2
    # seed 0 reaches 94 % at 100 s, seed 1 at 110 s, seed 2 never (its whole run, 500 s): median 110 s
    assert stats.time_s == pytest.approx(110.0)
    assert proto.seed_time(trials[0], 0.94) == (100.0, True)
    assert proto.seed_time(trials[2], 0.94) == (500.0, False)
    assert stats.run_s == pytest.approx(160.0)
    assert stats.mean == pytest.approx((0.945 + 0.944 + 0.939) / 3)
    assert stats.sd == pytest.approx(0.0032145, rel=1e-3)
    assert (stats.low, stats.high) == (0.939, 0.945)


def test_side_stats_even_count_and_mean_under_target(proto: ModuleType) -> None:
    """The median of four is the midpoint (not the mean); a mean under the target has no time."""
    trials = [trial(proto, (t, 0.95), (t + 5, 0.95)) for t in (100.0, 200.0, 300.0, 1000.0)]
    stats = proto.side_stats(trials, 0.94)
    assert stats.time_s == pytest.approx(250.0) and stats.figure == pytest.approx(250.0)
    short = [trial(proto, (100.0, 0.95), (120.0, 0.935)) for _ in range(3)]  # every seed passed 94 % once
    under = proto.side_stats(short, 0.94)
    assert not under.reached and under.time_s is None and under.figure == pytest.approx(120.0)
    one = proto.side_stats(short[:1], 0.94)
    assert one.sd is None and "n/a" in proto.accuracy_text(one) and "n = 1" in proto.accuracy_text(one)
    assert proto.side_stats([], 0.94) is None


def test_accuracy_text_and_floor_target(proto: ModuleType) -> None:
    """mean ± sd (min–max, n) in percent; a peer's mean rounds down to 0.01 % and the peer reaches it."""
    stats = proto.side_stats([trial(proto, (1.0, a)) for a in (0.9404, 0.9406, 0.9408)], 0.94)
    assert proto.accuracy_text(stats) == "94.06 ± 0.02 % (94.04–94.08 %, n = 3)"
    assert proto.floor_target(0.938833) == 0.9388
    assert proto.floor_target(0.94059) == 0.9405
    assert proto.floor_target(0.9399999976158142) == 0.94  # float32's 94 % is not 93.99 %
    peer = [trial(proto, (1.0, a)) for a in (0.9373000144958496, 0.9391999840736389, 0.94)]
    mean = sum(t.final for t in peer) / 3
    assert proto.side_stats(peer, proto.floor_target(mean)).reached


# -- rows ---------------------------------------------------------------------------------------
def test_ratio_is_peer_over_trainlab_and_the_muon_goal_is_1_25(proto: ModuleType) -> None:
    """trainlab at 200 s: a muon rendition at 300 s (1.5x) meets the goal; at 240 s (1.2x) it does not,
    though 1.2x beats airbench94's goal of 1.0x."""
    ours = runs_at(proto, 5, 199.0, 300.0, 0.941)  # seed times 199..203: median 201
    rows = proto.recipe_rows("cifar10-94", ours, {"airbench94": runs_at(proto, 5, 240.0, 260.0, 0.942),
                                                  "airbench94_muon": runs_at(proto, 5, 300.0, 320.0, 0.942)},
                             False)
    assert [r["peer_name"].split(" ")[0] for r in rows] == ["airbench94", "airbench94_muon"]
    assert rows[0]["trainlab"] == pytest.approx(201.0) and rows[0]["peer"] == pytest.approx(242.0)
    assert rows[0]["ratio"] == pytest.approx(242 / 201, rel=1e-3) and rows[0]["met"] is True
    assert rows[1]["ratio"] == pytest.approx(302 / 201, rel=1e-3) and rows[1]["met"] is True
    slower_muon = proto.recipe_rows("cifar10-94", ours, {"airbench94": runs_at(proto, 5, 240.0, 260.0, 0.942),
                                                         "airbench94_muon": runs_at(proto, 5, 240.0, 260.0, 0.942)},
                                    False)
    assert slower_muon[0]["met"] is True and slower_muon[1]["met"] is False
    check_rows(rows + slower_muon, "bench_time_to_accuracy")


def test_fewer_than_five_seeds_meet_no_goal(proto: ModuleType) -> None:
    """The claim needs a mean over >= 5 seeds, on trainlab's side and the peer's."""
    fast, slow = runs_at(proto, 4, 100.0, 150.0, 0.95), runs_at(proto, 5, 400.0, 450.0, 0.95)
    four = proto.recipe_rows("cifar10-94", fast, {"airbench94": slow, "airbench94_muon": slow}, False)
    assert all(r["met"] is False for r in four) and four[1]["ratio"] > 3
    five = runs_at(proto, 5, 100.0, 150.0, 0.95)
    peer_four = proto.recipe_rows("cifar10-94", five, {"airbench94": slow[:4], "airbench94_muon": slow}, False)
    assert [r["met"] for r in peer_four] == [False, True]
    assert proto.recipe_rows("mnist-99", five, {}, False)[0]["met"] is False  # 100 s > 30 s
    assert proto.recipe_rows("mnist-99", runs_at(proto, 5, 10.0, 20.0, 0.991), {}, False)[0]["met"] is True


def test_short_peer_gets_a_row_at_its_final_mean(proto: ModuleType) -> None:
    """A peer whose mean stays under 94 %: no time at 94 %, and a row at its mean (floored to 0.01 %)
    where both sides have a time; the 94 % row's goal is judged by that ratio."""
    # trainlab passes 93.80 % at 300 s (+seed), 94 % at the end (400 s + seed)
    ours = [trial(proto, (300.0 + i, 0.9385), (400.0 + i, 0.9410)) for i in range(5)]
    peer = [trial(proto, (200.0 + i, 0.9380), (260.0 + i, 0.9388)) for i in range(5)]  # mean 93.88 %
    rows = proto.recipe_rows("cifar10-94", ours, {"airbench94_muon": peer, "airbench94": peer}, False)
    assert len(rows) == 4  # per peer: the 94 % row, then the row at its mean
    main, cross = rows[2], rows[3]
    assert main["peer"] is None and main["ratio"] is None and "under 94.00 %" in main["note"]
    assert cross["target"] == 0.9388 and "airbench94_muon's final mean" in cross["workload"]
    # at 93.88 %: trainlab's first times are its finals (0.9385 < 0.9388), the peer's too
    assert cross["trainlab"] == pytest.approx(402.0) and cross["peer"] == pytest.approx(262.0)
    assert cross["ratio"] == pytest.approx(262 / 402, rel=1e-3) and cross["met"] is False
    assert cross["goal"] == ">= 1.25x" and main["met"] is False
    # a faster trainlab (first at 93.88 % after 150 s): the cross ratio meets both goals
    quick = [trial(proto, (150.0 + i, 0.9390), (400.0 + i, 0.9410)) for i in range(5)]
    rows = proto.recipe_rows("cifar10-94", quick, {"airbench94_muon": peer, "airbench94": peer}, False)
    assert rows[3]["ratio"] == pytest.approx(262 / 152, rel=1e-3) and rows[3]["met"] is True
    assert rows[2]["met"] is True and rows[0]["met"] is True
    check_rows(rows, "bench_time_to_accuracy")


def test_trainlab_short_of_the_target_gets_no_ratio(proto: ModuleType) -> None:
    """trainlab's mean under the target: its figure is its run, with no ratio and the goal missed."""
    ours = [trial(proto, (100.0, 0.90), (120.0, 0.935)) for _ in range(5)]
    peer = runs_at(proto, 5, 300.0, 320.0, 0.942)
    rows = proto.recipe_rows("cifar10-94", ours, {"airbench94": peer, "airbench94_muon": peer}, False)
    assert len(rows) == 2 and all(r["ratio"] is None and r["peer"] is None and r["met"] is False for r in rows)
    assert rows[0]["trainlab"] == pytest.approx(120.0) and rows[0]["trainlab_stats"]["reached"] is False
    assert "airbench94: 5/5 seeds reached 94.00 %" in rows[0]["note"]


def test_missing_sides_say_so_and_render(proto: ModuleType, tta: ModuleType, tmp_path: Path,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    """A runs file with only some sides and seeds renders; rows without trainlab runs stay out of --json."""
    store = proto.TrialStore(False, ["cifar10-94", "cifar10-90"], ["cmd"])
    for seed in range(2):
        store.add(proto.Run("airbench94", "airbench94", seed, trial(proto, (300.0, 0.941)), MACHINE, 2))
    store.add(proto.Run("trainlab", "cifar10-90", 0, trial(proto, (100.0, 0.91)), MACHINE, 2))
    rows = proto.store_rows(store)
    assert [r["trainlab"] is None for r in rows] == [True, True, False]
    assert "trainlab: no runs recorded" in rows[0]["note"]
    assert "airbench94_muon: no runs recorded" in rows[1]["note"]
    path, out = tmp_path / "trials.json", tmp_path / "rows.json"
    store.save(path)
    tta.render_from(path, False, out)
    written = json.loads(out.read_text(encoding="utf-8"))
    assert [r["workload"] for r in written] == ["CIFAR-10 to 90.00 %: configs/fast/cifar10-90.yaml"]
    check_rows(written, "bench_time_to_accuracy")
    assert "no runs" in capsys.readouterr().out
    # a machine's table has rows for the recipes trainlab ran there; the peers' runs still show
    text = proto.section(store)
    assert "cifar10-94.yaml" not in text and "| no runs | no runs |" not in text
    assert "94.10 ± 0.00 % (94.10–94.10 %, n = 2)" in text and text.count("| airbench94 (plain PyTorch) |") == 2
    # with no trainlab run at all, every recipe's rows show the peers
    peers_only = proto.TrialStore(False, ["cifar10-94", "cifar10-90"], ["cmd"])
    peers_only.add(proto.Run("airbench94", "airbench94", 0, trial(proto, (300.0, 0.941)), MACHINE, 2))
    text = proto.section(peers_only)
    assert "cifar10-94.yaml" in text and "cifar10-90.yaml" in text and "| no runs | no runs |" in text


def test_machines_are_never_compared(proto: ModuleType) -> None:
    """Runs of two machines: rows per machine, each side's seeds from its own machine only."""
    store = proto.TrialStore(False, ["cifar10-90"])
    for machine, seconds in ((MACHINE, 100.0), ("Other CPU (avx512f), 16 cores", 10.0)):
        store.add(proto.Run("trainlab", "cifar10-90", 0, trial(proto, (seconds, 0.91)), machine, 2))
        store.add(proto.Run("airbench94", "airbench94", 0, trial(proto, (3 * seconds, 0.93)), machine, 2))
    rows = proto.store_rows(store)
    assert [r["ratio"] for r in rows] == [pytest.approx(3.0), pytest.approx(3.0)]
    assert MACHINE in rows[0]["workload"] and "16 cores" in rows[1]["workload"]
    assert proto.section(store).count("| workload | trainlab s |") == 2


# -- the runs file and resuming ------------------------------------------------------------------
def test_store_round_trip_replace_and_first_format(proto: ModuleType, tmp_path: Path) -> None:
    """Saved and loaded equal; a run in a taken slot replaces it; the first format converts."""
    store = proto.TrialStore(False, ["cifar10-94"], ["a"])
    store.add(proto.Run("trainlab", "cifar10-94", 0, trial(proto, (1.0, 0.5), (2.0, 0.6)), MACHINE, 2, "abc"))
    store.add(proto.Run("trainlab", "cifar10-94", 0, trial(proto, (3.0, 0.7)), MACHINE, 2, "def"))
    assert len(store.runs) == 1 and store.runs[0].config == "def"
    path = tmp_path / "sub" / "trials.json"
    store.save(path)
    assert proto.TrialStore.load(path) == store and list(path.parent.iterdir()) == [path]
    old = {"command": "c", "threads": 2, "seeds": [0, 1], "planned": 2, "recipes": ["cifar10-94"], "quick": False,
           "trainlab": {"cifar10-94": [{"evaluations": [[5.0, 0.94, "final"]], "total_s": 5.0}] * 2},
           "peers": {"airbench94": [{"evaluations": [[4.0, 0.93, "final"]], "total_s": 4.0}] * 2}}
    converted = proto.TrialStore.from_json(old)
    assert [(r.side, r.recipe, r.seed) for r in converted.runs] == [
        ("trainlab", "cifar10-94", 0), ("trainlab", "cifar10-94", 1),
        ("airbench94", "airbench94", 0), ("airbench94", "airbench94", 1)]
    assert converted.commands == ["c"] and all(r.threads == 2 for r in converted.runs)


def test_pending_skips_recorded_slots_only(proto: ModuleType, tta: ModuleType) -> None:
    """Recorded (side, recipe, seed) on this machine and thread count: skipped; --seeds 5 after 3
    trains seeds 3 and 4; another machine, thread count or recipe version trains again."""
    store = proto.TrialStore(False, ["cifar10-94"])
    for seed in range(3):
        store.add(proto.Run("trainlab", "cifar10-94", seed, trial(proto, (1.0, 0.9)), MACHINE, 2, "v1"))
        store.add(proto.Run("airbench94_muon", "airbench94_muon", seed, trial(proto, (1.0, 0.9)), MACHINE, 2))
    jobs = tta.plan(list(range(5)), ["cifar10-94"], True, ["airbench94_muon"])
    todo, skipped = tta.pending(store, jobs, MACHINE, 2, {"cifar10-94": "v1"})
    assert sorted(todo) == [(3, "airbench94_muon", "airbench94_muon"), (3, "trainlab", "cifar10-94"),
                            (4, "airbench94_muon", "airbench94_muon"), (4, "trainlab", "cifar10-94")]
    assert len(skipped) == 6 and any(line.startswith("skip trainlab cifar10-94 seed 0: recorded") for line in skipped)
    assert len(tta.pending(store, jobs, MACHINE, 1, {"cifar10-94": "v1"})[0]) == 10  # other threads
    assert len(tta.pending(store, jobs, "Other CPU, 4 cores", 2, {"cifar10-94": "v1"})[0]) == 10
    changed, lines = tta.pending(store, jobs, MACHINE, 2, {"cifar10-94": "v2"})
    assert len(changed) == 7 and sum(line.startswith("retrain trainlab cifar10-94") for line in lines) == 3


def test_sides_and_the_alternating_plan(tta: ModuleType) -> None:
    """--sides picks trainlab and peers; the order of a seed's runs alternates with the seed."""
    assert tta.parse_sides(None, ["cifar10-90"]) == (True, ["airbench94"])
    assert tta.parse_sides("trainlab,airbench94_muon", ["cifar10-94"]) == (True, ["airbench94_muon"])
    assert tta.parse_sides("airbench94", ["cifar10-94"]) == (False, ["airbench94"])
    with pytest.raises(SystemExit, match="unknown side"):
        tta.parse_sides("resnet", ["cifar10-94"])
    with pytest.raises(SystemExit, match="no recipe"):
        tta.parse_sides("airbench94_muon", ["cifar10-90"])
    assert tta.plan([0, 1], ["mnist-99"], True, ["airbench94"]) == [
        (0, "trainlab", "mnist-99"), (0, "airbench94", "airbench94"),
        (1, "airbench94", "airbench94"), (1, "trainlab", "mnist-99")]


def test_main_resumes_a_runs_file(tta: ModuleType, proto: ModuleType, tmp_path: Path,
                                  monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Three seeds, then five: the second command trains seeds 3 and 4 only, prints what it skips,
    and writes the docs section from all five."""
    trained: list[tuple[str, int]] = []

    def fake_trainlab(recipe: str, seed: int, *_: Any) -> Any:
        trained.append((recipe, seed))
        return trial(proto, (50.0 + seed, 0.992), (60.0 + seed, 0.993))

    docs = tmp_path / "performance.md"
    monkeypatch.setattr(tta, "run_trainlab", fake_trainlab)
    monkeypatch.setattr(tta, "retain_freed_memory", lambda: False)  # not in the test process
    monkeypatch.setattr(tta, "DOCS", docs)
    monkeypatch.setenv("TRAINLAB_NUM_THREADS", "1")
    path = tmp_path / "trials.json"
    base = ["bench_time_to_accuracy.py", "--recipes", "mnist-99", "--threads", "1", "--trials-json", str(path)]
    monkeypatch.setattr(sys, "argv", [*base, "--seeds", "3"])
    tta.main()
    assert trained == [("mnist-99", 0), ("mnist-99", 1), ("mnist-99", 2)]
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", [*base, "--seeds", "5", "--write-docs", "--json", str(tmp_path / "r.json")])
    tta.main()
    out = capsys.readouterr().out
    assert trained[3:] == [("mnist-99", 3), ("mnist-99", 4)]
    assert "skip trainlab mnist-99 seed 2: recorded" in out and "2 run(s) to train, 3 already recorded" in out
    store = proto.TrialStore.load(path)
    assert sorted(r.seed for r in store.runs) == [0, 1, 2, 3, 4] and len(store.commands) == 2
    rows = json.loads((tmp_path / "r.json").read_text(encoding="utf-8"))
    assert rows[0]["met"] is False  # 50-54 s to 99 %: over the 30 s limit
    assert rows[0]["trainlab"] == pytest.approx(52.0) and rows[0]["trainlab_stats"]["n"] == 5
    text = docs.read_text(encoding="utf-8")
    assert "99.30 ± 0.00 % (99.30–99.30 %, n = 5)" in text and "Machine: " in text


# -- on a GPU (--device cuda) --------------------------------------------------------------------
def fake_info(gpu: str | None = None) -> dict[str, Any]:
    """A machine_info() dict for a made-up host, with a made-up GPU when ``gpu`` is named."""
    info: dict[str, Any] = {"cpu": "Test CPU", "cpu_flags": ["avx2"], "cores": 16, "load_average": [0.1, 0.1, 0.1],
                            "python": "3.12.3", "torch": "2.11.0", "torch_build": "unknown", "numpy": "2.5.2",
                            "numpy_blas": "unknown", "keras": None}
    if gpu:
        info.update(gpu=gpu, gpu_memory_gib=79.2, gpu_capability="9.0", cuda="13.0", cudnn="9.13.0",
                    cudnn_benchmark=False)
    return info


def test_gpu_machine_key_names_the_gpu_and_differs_from_the_cpu_key(proto: ModuleType) -> None:
    """The same host with and without a GPU: different keys; two GPUs on one host: different keys."""
    cpu, h100, h200 = (proto.machine_key(fake_info(g)) for g in (None, "NVIDIA H100 80GB HBM3", "NVIDIA H200"))
    assert len({cpu, h100, h200}) == 3
    assert h100.startswith("GPU NVIDIA H100 80GB HBM3") and "Test CPU (avx2), 16 cores" in h100
    assert proto.is_gpu_machine(h100) and not proto.is_gpu_machine(cpu)
    line = proto.device_machine_line(fake_info("NVIDIA H100 80GB HBM3"))
    assert line.startswith("machine: GPU NVIDIA H100 80GB HBM3 (79.2 GiB, compute capability 9.0), CUDA 13.0, "
                           "cuDNN 9.13.0 (cudnn.benchmark off); host Test CPU")
    assert proto.device_machine_line(fake_info()) == proto.machine_line(fake_info())
    assert [proto._cudnn_text(v) for v in (91300, 8902, None)] == ["9.13.0", "8.9.2", "none"]


def test_gpu_tables_show_the_published_a100_times_beside_never_as_a_ratio(
        proto: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    """A GPU group's rows carry airbench's published A100 time (3.83 s, 2.59 s) in a column of their own;
    the ratio stays the measured one; a CPU group's rows and the rows at a peer's mean have none."""
    gpu = proto.machine_key(fake_info("NVIDIA H100 80GB HBM3"))
    store = proto.TrialStore(False, ["cifar10-94"])
    for machine in (MACHINE, gpu):
        for seed in range(5):
            store.add(proto.Run("trainlab", "cifar10-94", seed, trial(proto, (8.0, 0.941)), machine, 2))
            store.add(proto.Run("airbench94", "airbench94", seed, trial(proto, (10.0, 0.942)), machine, 2))
            store.add(proto.Run("airbench94_muon", "airbench94_muon", seed, trial(proto, (6.0, 0.9388)), machine, 2))
    rows = proto.store_rows(store)
    assert len(rows) == 6  # per machine: airbench94, airbench94_muon at 94 %, airbench94_muon at its mean
    assert [r["published_s"] for r in rows] == [None, None, None, 3.83, 2.59, None]
    assert rows[3]["ratio"] == pytest.approx(10 / 8) and rows[3]["peer"] == pytest.approx(10.0)
    check_rows(rows, "bench_time_to_accuracy")
    text = proto.section(store)
    assert text.count("published A100 s (airbench README)") == 1 and text.count(proto.PUBLISHED_NOTE) == 1
    gpu_table = text.split(f"### {gpu}")[1]
    assert "| 10 | 3.83 |" in gpu_table and "| 6 | 2.59 |" not in gpu_table  # muon's 94 % row: no time
    assert "| - | 2.59 |" in gpu_table
    proto.print_table(rows)
    out = capsys.readouterr().out
    assert out.count("published: airbench94 3.83 s") == 1 and out.count("published: airbench94_muon 2.59 s") == 1


def test_trainlab_names_the_device_and_only_a_gpu_warms_up(tta: ModuleType, tmp_path: Path) -> None:
    """The recipes say device auto: the benchmark sets it; warm-ups: one per (side, recipe), on a GPU only."""
    assert "train.device=cpu" in tta.trainlab_overrides("cifar10-94", 0, tmp_path, False)
    cuda = tta.trainlab_overrides("cifar10-94", 3, tmp_path, True, "cuda")
    assert "train.device=cuda" in cuda and "seed=3" in cuda and cuda[-len(tta.quick_overrides("cifar10-94")):] == \
        tta.quick_overrides("cifar10-94")
    jobs = tta.plan([3, 4], ["cifar10-94", "cifar10-94-muon"], True, ["airbench94_muon"])
    assert tta.warmups(jobs, "cpu") == []
    # seed 3 runs the peer first (the order alternates with the seed): the warm-ups follow it
    assert tta.warmups(jobs, "cuda") == [("airbench94_muon", "airbench94_muon"), ("trainlab", "cifar10-94-muon"),
                                         ("trainlab", "cifar10-94")]


def test_peer_batch_crops_the_flipped_padded_images_at_the_drawn_offsets(tta: ModuleType) -> None:
    """Each image of peer_batch is its (flipped where asked) reflect-padded image cropped at offsets
    drawn from the CPU generator, whatever the device (here the CPU)."""
    import torch
    import torch.nn.functional as F

    x = torch.randn(6, 3, 8, 8)
    flip = torch.tensor([True, False, True, False, False, True])
    out = tta.peer_batch(x, flip, 2, torch.Generator().manual_seed(5))
    dy, dx = torch.randint(0, 5, (2, 6), generator=torch.Generator().manual_seed(5))
    for i in range(6):
        image = x[i].flip(2) if flip[i] else x[i]
        padded = F.pad(image[None], (2,) * 4, mode="reflect")[0]
        assert torch.equal(out[i], padded[:, dy[i] : dy[i] + 8, dx[i] : dx[i] + 8])


def test_cuda_without_a_gpu_is_a_clear_error_before_anything_runs(
        tta: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """--device cuda where torch sees no GPU: SystemExit naming the device; nothing trained or written."""
    monkeypatch.setattr(tta.torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(tta, "run_trainlab", lambda *a: pytest.fail("trained"))
    monkeypatch.setattr(tta, "retain_freed_memory", lambda: False)
    path = tmp_path / "trials.json"
    monkeypatch.setattr(sys, "argv", ["bench_time_to_accuracy.py", "--device", "cuda", "--recipes", "mnist-99",
                                      "--threads", "1", "--trials-json", str(path)])
    with pytest.raises(SystemExit, match=r"--device cuda: PyTorch .* (built without CUDA|sees no CUDA device)"):
        tta.main()
    assert not path.exists()


def test_main_on_a_gpu_warms_each_side_up_untimed_and_keys_runs_by_the_gpu(
        tta: ModuleType, proto: ModuleType, monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    """--device cuda (a GPU faked): each side trains once first and that run is not recorded; the
    recorded runs carry the GPU's key and line, and every run is asked for on cuda."""
    calls: list[tuple[str, int, str]] = []

    def fake_trainlab(recipe: str, seed: int, data_dir: Any, quick: bool, workdir: Path, device: str) -> Any:
        calls.append((recipe, seed, device))
        return trial(proto, (5.0 + seed, 0.94), (6.0 + seed, 0.941))

    def fake_peer(kind: str, seed: int, data_dir: Any, budget: Any, device: str) -> Any:
        calls.append((kind, seed, device))
        return trial(proto, (3.0 + seed, 0.94), (4.0 + seed, 0.942))

    gpu_info = fake_info("Fake GPU")
    monkeypatch.setattr(tta.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(tta, "device_machine_info", lambda device: gpu_info if device == "cuda" else fake_info())
    monkeypatch.setattr(tta, "run_trainlab", fake_trainlab)
    monkeypatch.setattr(tta, "run_peer", fake_peer)
    monkeypatch.setattr(tta, "retain_freed_memory", lambda: False)
    path = tmp_path / "trials.json"
    monkeypatch.setattr(sys, "argv", ["bench_time_to_accuracy.py", "--device", "cuda", "--seeds", "2",
                                      "--recipes", "cifar10-94-muon", "--sides", "trainlab,airbench94_muon",
                                      "--threads", "1", "--trials-json", str(path)])
    tta.main()
    assert calls == [("cifar10-94-muon", 0, "cuda"), ("airbench94_muon", 0, "cuda"),  # the warm-ups
                     ("cifar10-94-muon", 0, "cuda"), ("airbench94_muon", 0, "cuda"),
                     ("airbench94_muon", 1, "cuda"), ("cifar10-94-muon", 1, "cuda")]
    out = capsys.readouterr().out
    assert "warm-up trainlab cifar10-94-muon (not timed, not recorded)" in out
    assert "published: airbench94_muon 2.59 s" in out
    store = proto.TrialStore.load(path)
    assert len(store.runs) == 4 and {r.machine for r in store.runs} == {proto.machine_key(gpu_info)}
    assert all(r.machine_line.startswith("machine: GPU Fake GPU") for r in store.runs)


# -- carrying the data to the GPU machine (bench/gpu_time_to_accuracy.py/.sh) --------------------
@pytest.fixture
def gpu(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/gpu_time_to_accuracy.py."""
    monkeypatch.syspath_prepend(str(BENCH_DIR))
    return importlib.import_module("gpu_time_to_accuracy")


def fake_cifar(folder: Path, per_batch: int = 130) -> dict[str, tuple[Any, Any]]:
    """A cifar-10-batches-py folder of random images (``per_batch`` each): its batches by name."""
    import pickle

    import numpy as np

    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    batches = {}
    for name in ("data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4", "data_batch_5", "test_batch"):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        labels = rng.integers(0, 10, per_batch).tolist()
        (folder / name).write_bytes(pickle.dumps({b"data": data, b"labels": labels}, protocol=2))
        batches[name] = (data, labels)
    names = [n.encode() for n in ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")]
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": names}, protocol=2))
    return batches


def test_pack_and_unpack_give_back_the_same_batches(gpu: ModuleType, tmp_path: Path) -> None:
    """Packed into two parts and unpacked, trainlab's reader reads the same pixels and labels;
    a damaged file or a part that did not arrive stops the unpacking, saying which and why."""
    import numpy as np

    from trainlab.data.cifar import read_cifar_folder

    batches = fake_cifar(tmp_path / "data" / "cifar-10-batches-py")
    pack = tmp_path / "pack"
    manifest = gpu.pack(tmp_path / "data", pack, wheels=False)
    assert {e["part"] for e in manifest["batches"].values()} == {"part1", "part2"}
    assert sorted(p.name for p in (pack / "part2").iterdir()) == [
        "data_batch_4.labels", "data_batch_4.webp", "data_batch_5.labels", "data_batch_5.webp", "manifest.json",
        "test_batch.labels", "test_batch.webp"]
    gpu.verify(pack, "part1")
    folder = gpu.unpack(pack, tmp_path / "out")
    got = read_cifar_folder(folder, strict_counts=False)
    want = read_cifar_folder(tmp_path / "data" / "cifar-10-batches-py", strict_counts=False)
    for key in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(got[key], want[key]), key
    assert got["class_names"][1] == "car"
    assert np.array_equal(got["x_test"].transpose(0, 3, 1, 2).reshape(-1, 3072), batches["test_batch"][0])
    blob = bytearray((pack / "part2" / "test_batch.webp").read_bytes())
    blob[100] ^= 1
    (pack / "part2" / "test_batch.webp").write_bytes(bytes(blob))
    with pytest.raises(SystemExit, match=r"part2/test_batch.webp \(damaged\)"):
        gpu.unpack(pack, tmp_path / "again")
    (pack / "part1" / "data_batch_2.webp").unlink()
    with pytest.raises(SystemExit, match=r"part1/data_batch_2.webp \(absent\).*at once after the first"):
        gpu.verify(pack, "part1")


def test_mosaic_round_trip_of_a_partial_row(gpu: ModuleType) -> None:
    """A count that does not fill the last mosaic row comes back exactly, in order."""
    import numpy as np

    data = np.random.default_rng(1).integers(0, 256, (257, 3072), dtype=np.uint8)
    pixels = gpu.to_mosaic(data)
    assert pixels.shape == (3 * 32, 100 * 32, 3)
    assert np.array_equal(pixels[:32, 32:64], data[1].reshape(3, 32, 32).transpose(1, 2, 0))
    assert np.array_equal(gpu.from_mosaic(pixels, 257), data)
    assert np.array_equal(gpu.decode(gpu.encode(data), 257), data)


def test_merge_adds_the_gpu_runs_beside_the_cpu_runs(gpu: ModuleType, proto: ModuleType, tmp_path: Path) -> None:
    """The returned GPU runs join the CPU runs file as a group of their own; quick and full never mix."""
    cpu_store = proto.TrialStore(False, ["cifar10-90"], ["cpu command"])
    cpu_store.add(proto.Run("trainlab", "cifar10-90", 0, trial(proto, (100.0, 0.91)), MACHINE, 2))
    gpu_key = proto.machine_key(fake_info("Fake GPU"))
    gpu_store = proto.TrialStore(False, ["cifar10-94"], ["gpu command"])
    gpu_store.add(proto.Run("trainlab", "cifar10-94", 0, trial(proto, (5.0, 0.94)), gpu_key, 16))
    into, source = tmp_path / "trials.json", tmp_path / "gpu.json"
    cpu_store.save(into)
    gpu_store.save(source)
    assert gpu.merge(source, into) == 1
    merged = proto.TrialStore.load(into)
    assert [g[0] for g in merged.groups()] == [MACHINE, gpu_key]
    assert merged.commands == ["cpu command", "gpu command"] and merged.recipes == ["cifar10-94", "cifar10-90"]
    proto.TrialStore(True).save(source)
    with pytest.raises(SystemExit, match="--quick"):
        gpu.merge(source, into)


def test_the_device_script_parses() -> None:
    """bench/gpu_time_to_accuracy.sh is valid bash, and refuses an unknown mode."""
    import subprocess

    script = BENCH_DIR / "gpu_time_to_accuracy.sh"
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
    done = subprocess.run(["bash", str(script), "nonsense"], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "OUT": "/tmp/gpu-tta-test-out", "GPU_TTA_WORK": "/tmp/gpu-tta-test"})
    assert done.returncode == 2 and "usage" in done.stderr


def test_keep_going_skips_a_failing_side_and_still_fails(tta: ModuleType, proto: ModuleType,
                                                        monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """--keep-going: a side that fails is tried once and skipped after, the others train and are kept,
    and the command still exits with an error naming it; without it the failure ends the benchmark."""
    tried: list[tuple[str, int]] = []

    def fake_trainlab(recipe: str, seed: int, *_: Any) -> Any:
        tried.append((recipe, seed))
        return trial(proto, (5.0, 0.94), (6.0, 0.941))

    def broken_peer(kind: str, seed: int, *_: Any) -> Any:
        tried.append((kind, seed))
        raise RuntimeError("no kernel image is available")

    monkeypatch.setattr(tta, "run_trainlab", fake_trainlab)
    monkeypatch.setattr(tta, "run_peer", broken_peer)
    monkeypatch.setattr(tta, "retain_freed_memory", lambda: False)
    path = tmp_path / "trials.json"
    base = ["bench_time_to_accuracy.py", "--seeds", "3", "--recipes", "cifar10-94-muon", "--threads", "1",
            "--sides", "trainlab,airbench94_muon", "--trials-json", str(path)]
    monkeypatch.setattr(sys, "argv", [*base, "--keep-going"])
    with pytest.raises(SystemExit, match=r"failed .*: airbench94_muon"):
        tta.main()
    assert tried == [("cifar10-94-muon", 0), ("airbench94_muon", 0), ("cifar10-94-muon", 1), ("cifar10-94-muon", 2)]
    assert "no kernel image is available" in capsys.readouterr().err
    assert sorted(r.seed for r in proto.TrialStore.load(path).runs if r.side == "trainlab") == [0, 1, 2]
    monkeypatch.setattr(sys, "argv", [*base[:-1], str(tmp_path / "other.json")])
    with pytest.raises(RuntimeError, match="no kernel image"):
        tta.main()


def test_quick_overrides_shorten_only_what_the_recipe_has(tta: ModuleType) -> None:
    """--quick reads the recipe: a lookahead or warm-up is shortened only where there is one, and a
    recipe in epochs with low-res epochs is cut to steps (one epoch would be shorter than them)."""
    lookahead = ["train.lookahead.start_epoch=0", "train.lookahead.every=1"]
    cifar = tta.quick_overrides("cifar10-94")
    assert set(lookahead) <= set(cifar) and "schedule.warmup_steps=1" in cifar and "train.steps=4" in cifar
    for recipe in ("cifar10-94-muon", "cifar10-94-muon-lowres"):
        quick = tta.quick_overrides(recipe)
        assert not set(lookahead) & set(quick) and "schedule.warmup_steps=1" not in quick
        assert "train.epochs=null" in quick and "model.whiten.bias_epochs=1" in quick
    mnist = tta.quick_overrides("mnist-99")
    assert "train.epochs=1" in mnist and "model.whiten.bias_epochs=1" not in mnist
