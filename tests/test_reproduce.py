"""The table logic of scripts/reproduce.py, on fake run results (no training)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.helpers import import_script, timeless, write_config
from trainlab.callbacks.base import Callback, TrainState

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "reproduce.py"


@pytest.fixture(scope="module")
def rep() -> ModuleType:
    """scripts/reproduce.py imported as a module."""
    return import_script("reproduce")


def results(rep: ModuleType, *values: float | None) -> list:
    """Fake finished results with these percentages (None: a diverged run)."""
    return [
        rep.Result(seed=i, status="completed" if v is not None else "failed", value=v, seconds=10.0)
        for i, v in enumerate(values)
    ]


def kind_and_text(rep: ModuleType, row: object, found: list) -> tuple[str, str]:
    """The verdict of ``row`` over ``found`` as (kind, words)."""
    v = rep.row_verdict(row, found)
    return v.kind, v.text


def test_reproduced_when_the_mean_is_within_a_point_either_side(rep: ModuleType) -> None:
    row = rep.Row(id="X", table="D", description="d", config="c.yaml", published=52.74)
    assert kind_and_text(rep, row, results(rep, 52.0, 52.5, 53.1))[0] == "reproduced"
    assert kind_and_text(rep, row, results(rep, 53.5, 53.7, 53.6))[0] == "reproduced"


def test_below_names_the_gap(rep: ModuleType) -> None:
    row = rep.Row(id="X", table="D", description="d", config="c.yaml", published=50.0)
    kind, text = kind_and_text(rep, row, results(rep, 47.0, 48.0, 48.5))
    assert kind == "below" and "by 2.17 points" in text


def test_above_is_not_a_success(rep: ModuleType) -> None:
    # E4 before issue 24: 10.8 points above the published figure was counted as "met".
    row = rep.Row(id="X", table="E", description="d", config="c.yaml", published=50.71)
    kind, text = kind_and_text(rep, row, results(rep, 60.7, 61.9, 61.9))
    assert kind == "above" and "**above** by 10.79 points" in text


def test_spread_seeds_reproduce_within_two_sd_only_with_three_seeds(rep: ModuleType) -> None:
    row = rep.Row(id="X", table="C", description="d", config="c.yaml", published=80.0)
    spread = results(rep, 76.0, 78.0, 80.5)  # mean 78.17, sd 2.25: 1.83 below, inside 2 sd
    kind, text = kind_and_text(rep, row, spread)
    assert kind == "reproduced" and "within 2 sd" in text
    assert kind_and_text(rep, row, results(rep, 76.0, 80.3))[0] == "below"  # 2 seeds: no spread rule


SPREAD = (77.0, 78.0, 79.0)  # mean 78, sample sd 1.0 (population sd 0.82: 2 of those = 1.63)
AGREE = (50.0, 50.0, 50.0)  # sd 0: only the 1-point tolerance applies


@pytest.mark.parametrize(
    ("seeds", "published", "kind", "text"),
    [
        (SPREAD, 79.9, "reproduced", "reproduced (mean -1.90, within 2 sd = 2.00 over 3 seeds)"),
        (SPREAD, 76.1, "reproduced", "reproduced (mean +1.90, within 2 sd = 2.00 over 3 seeds)"),
        (SPREAD, 80.2, "below", "**below** by 2.20 points (beyond 1 point and 2 sd)"),
        (SPREAD, 75.8, "above", "**above** by 2.20 points (beyond 1 point and 2 sd)"),
        # mean 50, sd 2.0, gap exactly 2 sd: the edge is inside
        ((48.0, 50.0, 52.0), 54.0, "reproduced", "reproduced (mean -4.00, within 2 sd = 4.00 over 3 seeds)"),
        (AGREE, 48.9, "above", "**above** by 1.10 points (beyond 1 point and 2 sd)"),
        (AGREE, 49.01, "reproduced", "reproduced (mean +0.99 from the published figure)"),
        (AGREE, 49.0, "reproduced", "reproduced (mean +1.00 from the published figure)"),  # the edge is inside
        (AGREE, 51.1, "below", "**below** by 1.10 points (beyond 1 point and 2 sd)"),
        # 2 seeds: the 2-sd rule is not applied, and the words do not claim it
        ((76.0, 80.0), 75.0, "above", "**above** by 3.00 points (beyond 1 point; 2 sd needs 3 seeds)"),
    ],
)
def test_verdict_boundaries_pin_the_rule(rep: ModuleType, seeds: tuple[float, ...], published: float,
                                         kind: str, text: str) -> None:
    """|mean - published| <= 1 point, or the figure within mean ± 2 sd (over n - 1) with n >= 3:
    numbers on each side of each constant, so a changed TOLERANCE, SPREAD_SDS or sd shows."""
    row = rep.Row(id="X", table="C", description="d", config="c.yaml", published=published)
    assert kind_and_text(rep, row, results(rep, *seeds)) == (kind, text)


def test_diverged_runs_are_their_own_verdict(rep: ModuleType) -> None:
    row = rep.Row(id="X", table="E", description="d", config="c.yaml", published=40.0)
    assert kind_and_text(rep, row, results(rep, 40.0, None)) == ("diverged", "**diverged** (1 of 2 runs)")


def test_qualitative_rows(rep: ModuleType) -> None:
    chance = rep.Row(id="Z", table="B", description="d", config="c.yaml", expect={"max": 20})
    assert kind_and_text(rep, chance, results(rep, 11.35, 9.8)) == ("qualitative met", "qualitative met (every seed ≤ 20)")
    kind, text = kind_and_text(rep, chance, results(rep, 11.35, 90.0))
    assert kind == "qualitative missed" and "1 of 2 seeds" in text
    learns = rep.Row(id="G", table="B", description="d", config="c.yaml", expect={"min": 90})
    assert kind_and_text(rep, learns, results(rep, 95.0))[0] == "qualitative met"
    assert kind_and_text(rep, learns, []) == ("not run", "not run")


def test_summary_counts_each_kind(rep: ModuleType) -> None:
    from repro_verdict import summary_line

    line = summary_line(["reproduced", "above", "reproduced", "qualitative met", "not run"])
    assert line == "2 reproduced · 1 above · 1 qualitative met · 1 not run"


def test_describe(rep: ModuleType) -> None:
    assert rep.describe([50.0, 52.0]) == ("51.00 ± 1.41", "[50.00, 52.00]")
    assert rep.describe([44.7]) == ("44.70 (1 seed, no sd)", "[44.70, 44.70]")
    assert rep.describe([]) == ("—", "—")


def test_read_result(rep: ModuleType, tmp_path: Path) -> None:
    assert rep.read_result(tmp_path, 0, "test_accuracy") is None  # not started
    summary = {"status": "running", "test_accuracy": None, "train_seconds": 1.0}
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert rep.read_result(tmp_path, 0, "test_accuracy") is None  # killed mid-run
    summary.update(status="completed", test_accuracy=0.4471, train_seconds=12.5)
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    result = rep.read_result(tmp_path, 3, "test_accuracy")
    assert (result.seed, result.status, result.seconds) == (3, "completed", 12.5)
    assert result.value == pytest.approx(44.71)
    (tmp_path / "reproduce.json").write_text(json.dumps({"wall_seconds": 20.0}))
    assert rep.read_result(tmp_path, 3, "test_accuracy").seconds == 20.0
    summary.update(status="failed", error="the loss became inf")
    (tmp_path / "summary.json").write_text(json.dumps(summary))
    assert rep.read_result(tmp_path, 3, "test_accuracy").value is None


def test_render_marks_rows_with_fewer_seeds(rep: ModuleType) -> None:
    rows = [
        rep.Row(id="D1", table="D, row 1", description="2x50", config="configs/seed-d/2x50.yaml",
                published=52.74, reading="He init | l2 0.01"),
        rep.Row(id="B1", table="B, row 3", description="zero init", config="b.yaml",
                expect={"max": 20}, published_text="chance", seeds=2, overrides=["train.epochs=1"],
                notes="a few epochs suffice"),
    ]
    found = {"D1": results(rep, 52.5, 53.0, 52.9, 52.1, 53.3), "B1": results(rep, 11.35)}
    text = rep.render(rows, found, {"D1": "numpy/float32", "B1": "numpy/float32"}, "HEADER",
                      settings={"D1": "3 published, 1 readings: `a|b`"})
    lines = text.splitlines()
    d1 = next(line for line in lines if line.startswith("| D1 "))
    b1 = next(line for line in lines if line.startswith("| B1 "))
    assert "| 52.74 | 52.76 ± 0.47 | [52.10, 53.30] | 5/5 | reproduced (mean +0.02" in d1
    assert "`a\\|b`" in d1  # a | in a cell is escaped
    assert "Reading: He init | l2 0.01" in text
    assert "1/2 (partial)" in b1 and "| chance |" in b1
    assert "**Summary: 1 reproduced · 1 qualitative met**" in text
    assert "--set train.epochs=1 --set seed=0" in text
    assert "a few epochs suffice" in text and "HEADER" in text
    assert "Rows ask for 5 seeds; B1 asks for 2 (issue 24 asks" in text  # the rows with fewer, named


def test_seeds_sentence_names_each_count(rep: ModuleType) -> None:
    def row(ident: str, seeds: int):
        return rep.Row(id=ident, table="t", description="d", config="c.yaml", published=1.0, seeds=seeds)

    assert rep.seeds_sentence([row("A", 5), row("B", 5)]) == "Rows ask for 5 seeds."
    text = rep.seeds_sentence([row("A", 5), row("C1", 3), row("C2", 3), row("X", 4)])
    assert text.startswith("Rows ask for 5 seeds; X asks for 4; C1, C2 ask for 3 (")


def test_load_manifest_merges_defaults_and_refuses_duplicates(rep: ModuleType, tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "defaults: {seeds: 3}\n"
        "rows:\n"
        "  - {id: A1, table: A, description: d, config: c.yaml, published: 44.7}\n"
        "  - {id: B1, table: B, description: d, config: c.yaml, seeds: 1, expect: {max: 20}}\n"
    )
    a1, b1 = rep.load_manifest(manifest)
    assert (a1.seeds, a1.metric, b1.seeds, b1.expect) == (3, "test_accuracy", 1, {"max": 20})
    manifest.write_text(
        "rows:\n"
        "  - {id: A1, table: A, description: d, config: c.yaml}\n"
        "  - {id: A1, table: A, description: d, config: c.yaml}\n"
    )
    with pytest.raises(ValueError, match="duplicate row ids"):
        rep.load_manifest(manifest)


def test_config_hash_ignores_seed_and_output(rep: ModuleType) -> None:
    a = {"seed": 0, "output": {"dir": "runs"}, "name": "x", "model": {"hidden": [50]}}
    b = {"seed": 4, "output": {"dir": "elsewhere"}, "name": "x", "model": {"hidden": [50]}}
    c = {**a, "model": {"hidden": [51]}}
    assert rep.config_hash(a) == rep.config_hash(b) != rep.config_hash(c)
    assert rep.config_hash(a, ["seed=3"]) == rep.config_hash(a)
    assert rep.config_hash(a, ["train.epochs=20"]) != rep.config_hash(a)


def test_engine_and_run_dir_come_from_the_config(rep: ModuleType) -> None:
    row = rep.Row(id="D1", table="D", description="d", config="configs/seed-d/2x50.yaml")
    assert rep.engine_of(row) == "numpy/float32"
    path = rep.run_dir(row, 3)
    assert path.parent.name == "d-2x50" and path.name.startswith("D1-s3-")
    shorter = rep.Row(id="D1", table="D", description="d", config=row.config, overrides=["regularization.l2=0.02"])
    assert rep.run_dir(shorter, 3) != path  # an override is part of the run's identity
    broken = rep.Row(id="X", table="D", description="d", config=row.config, overrides=["train.steps=x"])
    assert rep.engine_of(broken) == "invalid config"
    assert rep.collect(broken, 2, rep.Ledger(Path("/nonexistent/ledger.json"))) == []


def test_every_manifest_row_has_a_valid_config(rep: ModuleType) -> None:
    rows = rep.load_manifest(rep.DEFAULT_MANIFEST)
    assert rows and all(rep.engine_of(row) != "invalid config" for row in rows)
    assert all((row.published is None) != (not row.expect) for row in rows)


class _CutOff(Callback):
    """Stands in for the end of a session: the process dies at the second evaluation."""

    def on_evaluate(self, state: TrainState, rows: list[dict[str, Any]]) -> None:
        if state.epoch >= 2:
            raise KeyboardInterrupt


@pytest.mark.usefixtures("real_data")
def test_train_row_resumes_a_cut_off_run_instead_of_starting_over(
        rep: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import trainlab.api as tl

    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 3, "batch_size": 50})
    row = rep.Row(id="R", table="D", description="d", config=str(cfg))
    path = rep.run_dir(row, 0)
    reference = tl.run(cfg, overrides=["seed=0"], run_id="reference", progress=False, echo=False)
    with pytest.raises(KeyboardInterrupt):
        tl.run(cfg, overrides=["seed=0"], run_id=path.name, progress=False, echo=False, callbacks=[_CutOff()])
    assert rep.read_result(path, 0, "test_accuracy") is None and rep.can_resume(path)
    (progress,) = rep.collect_progress(row, 1)  # the table says how far it got
    assert (progress.seed, progress.epoch, progress.split) == (0, 1, "val") and progress.seconds > 0
    val_accuracy = next(r["accuracy"] for r in reference.metrics if r["split"] == "val")
    assert progress.value == pytest.approx(100 * float(val_accuracy))
    table = rep.render([row], {"R": []}, {"R": "numpy/float32"}, "header", {"R": [progress]})
    assert "unfinished: seed 0 cut off at epoch 1 of 3 after" in table and "--rows R` continues" in table
    ledger = rep.Ledger(tmp_path / "ledger.json")
    rep.train_row(row, 1, ledger)
    assert "resuming from its last checkpoint" in capsys.readouterr().out
    resumed = tl.open_run(path)
    assert timeless(resumed.metrics) == timeless(reference.metrics)  # continued, not restarted with different draws
    assert resumed.summary["test_accuracy"] == reference.summary["test_accuracy"]
    result = rep.read_result(path, 0, "test_accuracy")
    assert "resumed_seconds" in json.loads((path / "reproduce.json").read_text())
    assert result is not None and result.seconds == resumed.summary["train_seconds"]
    assert not rep.can_resume(tmp_path / "runs" / "t" / "never-started")
    assert rep.collect_progress(row, 1) == []  # finished: no longer "unfinished"
    # The ledger keeps the result once runs/ is gone (a new session's checkout), under this config only.
    import shutil

    shutil.rmtree(path)
    (kept,) = rep.collect(row, 1, rep.Ledger(tmp_path / "ledger.json"))
    assert kept.value == result.value and kept.seed == 0
    changed = rep.Row(id="R", table="D", description="d", config=str(cfg), overrides=["train.epochs=2"])
    assert rep.collect(changed, 1, rep.Ledger(tmp_path / "ledger.json")) == []


def test_config_hash_ignores_the_source_section(rep: ModuleType) -> None:
    a = {"model": {"hidden": [50]}}
    assert rep.config_hash(a) == rep.config_hash({**a, "source": {"model.hidden": {"reading": "why"}}})


def test_a_seed_another_live_process_trains_is_skipped_until_it_ends(
        rep: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import subprocess

    cfg = write_config(tmp_path / "c.yaml", tmp_path / "runs", train={"epochs": 1})
    row = rep.Row(id="R", table="D", description="d", config=str(cfg))
    path = rep.run_dir(row, 0)
    assert rep.lock_path(path).name.startswith(".")  # hidden from globs over the run directories
    rep.lock_path(path).parent.mkdir(parents=True)
    holder = subprocess.Popen(  # another copy of the script, as run_lock() locks: flock, then its pid
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         "fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX)\n"
         "os.write(fd, str(os.getpid()).encode()); print('held', flush=True); time.sleep(60)",
         str(rep.lock_path(path))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with rep.run_lock(path) as held:
            assert held == holder.pid
        rep.train_row(row, 1, rep.Ledger(tmp_path / "ledger.json"))  # would train for real if it ignored the lock
        assert f"R seed 0: being trained by another process (pid {holder.pid}); skipped" in capsys.readouterr().out
        assert not path.exists()
    finally:
        holder.kill()
        holder.wait()
    # its process is gone, and the system dropped its lock with it: no stale lock to clear
    with rep.run_lock(path) as held:
        assert held is None
        assert rep.lock_path(path).read_text() == str(os.getpid())
    with rep.run_lock(path) as held:
        assert held is None  # released: free again
