"""bench/tune_fast_recipe.py: candidates' overrides, cost in full-size epochs, the table, the doc section."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType

import pytest
import yaml

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.fixture()
def tune(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("tune_fast_recipe")


def _tuning_file(tmp_path: Path) -> Path:
    path = tmp_path / "tuning.yaml"
    path.write_text(yaml.safe_dump({
        "recipe": "configs/fast/cifar10-94-muon.yaml", "output_dir": str(tmp_path / "runs"),
        "common": ["data.val_fraction=0.1"],
        "candidates": {"plain": ["train.epochs=8"],
                       "small": ["train.epochs=8", "augment.low_res={size: 24, epochs: 4, mode: crop}"],
                       "later": ["train.epochs=6"]}}, sort_keys=False))
    return path


def _finished(folder: Path, accuracy: float, low_res: dict | None, test_accuracy: float | None = None) -> None:
    folder.mkdir(parents=True)
    (folder / "summary.json").write_text(json.dumps(
        {"final_val_accuracy": accuracy, "epochs": 8.0, "train_seconds": 100.0, "status": "completed",
         "test_accuracy": test_accuracy}))
    (folder / "config.yaml").write_text(yaml.safe_dump({"augment": {"low_res": low_res}}))


def test_overrides_cost_and_table(tune: ModuleType, tmp_path: Path) -> None:
    tuning = tune.read_tuning(_tuning_file(tmp_path))
    assert tune.overrides_of(tuning, "small", 3) == [
        "data.val_fraction=0.1", "train.epochs=8", "augment.low_res={size: 24, epochs: 4, mode: crop}",
        f"output.dir={tmp_path / 'runs'}", "seed=3"]
    # where `trainlab run` puts a run of the recipe (its name) with the candidate's run id
    assert tune.run_path(tuning, "small", 1) == tmp_path / "runs" / "fast-cifar10-94-muon" / "small-s1"
    # 4 epochs at (24/32)^2 = 0.5625 plus 4 full ones
    assert tune.full_size_epochs({"augment": {"low_res": {"size": 24, "epochs": 4}}}, 8.0, 32) == pytest.approx(6.25)
    assert tune.full_size_epochs({"augment": {"low_res": {"size": 16, "epochs": 10}}}, 8.0, 32) == pytest.approx(2.0)
    assert tune.full_size_epochs({"augment": {}}, 8.0, 32) == 8.0
    _finished(tmp_path / "runs" / "fast-cifar10-94-muon" / "plain-s0", 0.94, None)
    _finished(tmp_path / "runs" / "fast-cifar10-94-muon" / "plain-s1", 0.942, None)
    _finished(tmp_path / "runs" / "fast-cifar10-94-muon" / "small-s0", 0.9375, {"size": 24, "epochs": 4, "mode": "crop"})
    cut = tmp_path / "runs" / "fast-cifar10-94-muon" / "later-s0"  # interrupted: a summary, but not a result
    cut.mkdir(parents=True)
    (cut / "summary.json").write_text(json.dumps({"status": "interrupted", "steps": 2}))
    text = tune.table(tuning, 2)
    assert "At 94.0 % on 5,000 images, one run's accuracy has a binomial sd of 0.34 points" in text
    assert "No run evaluated the test split." in text
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 94.10 ± 0.14 | 2/2 | 94.00, 94.20 | reference | 8 | 8.00 | 100 |" in rows["plain"]
    assert "| 93.75 | 1/2 | 93.75 | -0.25 (1 seed) | 8 | 6.25 | 100 |" in rows["small"]
    assert "| not run | 0/2 |" in rows["later"]
    # every finished seed on disk counts, whatever --seeds says; pairs only over shared seeds
    _finished(tmp_path / "runs" / "fast-cifar10-94-muon" / "small-s1", 0.9435, {"size": 24, "epochs": 4, "mode": "crop"})
    _finished(tmp_path / "runs" / "fast-cifar10-94-muon" / "small-s2", 0.95, {"size": 24, "epochs": 4, "mode": "crop"},
              test_accuracy=0.93)  # a run made before train.final_test_eval=false: said, never used
    later_text = tune.table(tuning, 1)
    assert "1 of these 5 runs (made before `train.final_test_eval=false`" in later_text
    assert "93.00" not in later_text
    rows = {line.split(" | ")[0].strip("| "): line for line in later_text.splitlines() if line.startswith("| ")}
    assert "| 3/3 | 93.75, 94.35, 95.00 | -0.05 ± 0.28 (2 seeds) |" in rows["small"]
    assert "| 2/2 |" in rows["plain"]
    doc = tmp_path / "doc.md"
    tune.write_doc(text, tuning, doc)
    tune.write_doc(text.replace("93.75", "93.80"), tuning, doc)  # the section is replaced, not appended
    written = doc.read_text()
    assert written.count("<!-- begin tuning -->") == 1 and "93.80" in written and "93.75 |" not in written


def test_the_choice_rule_picks_within_cost_and_seeds(tune: ModuleType, tmp_path: Path) -> None:
    """``choose:`` picks the best mean among candidates with enough seeds within the cost, and
    says the pick is not final while a candidate within the cost has fewer seeds or has not run."""
    path = _tuning_file(tmp_path)
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "choose": {"max_cost": 7.0, "seeds": 2}}, sort_keys=False))
    tuning = tune.read_tuning(path)
    assert tuning.choose == tune.ChoiceRule(max_cost=7.0, seeds=2)
    folder = tmp_path / "runs" / "fast-cifar10-94-muon"
    crop = {"size": 24, "epochs": 4, "mode": "crop"}
    _finished(folder / "plain-s0", 0.95, None)  # the best, but cost 8 > 7
    _finished(folder / "plain-s1", 0.95, None)
    _finished(folder / "small-s0", 0.93, crop)  # cost 6.25, one seed of two
    rule_line = tune.table(tuning, 2).splitlines()[-1]
    assert "none qualifies yet; not final while small has fewer seeds; not run yet: later." in rule_line
    _finished(folder / "small-s1", 0.94, crop)
    rule_line = tune.table(tuning, 2).splitlines()[-1]
    assert rule_line.endswith("accuracy): small (93.50 % over 2 seeds, cost 6.25); not run yet: later.")
    for bad in ({"max_cost": 6}, {"max_cost": -1, "seeds": 2}, {"max_cost": 6, "seeds": True}):
        path.write_text(yaml.safe_dump({**raw, "choose": bad}))
        with pytest.raises(SystemExit, match="choose"):
            tune.read_tuning(path)


def test_unknown_candidate_and_bad_file(tune: ModuleType, tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        tune.main([str(_tuning_file(tmp_path)), "--only", "nope", "--only-table"])
    assert "unknown candidate(s) nope; the file has plain, small, later" in capsys.readouterr().err
    bad = tmp_path / "bad.yaml"
    bad.write_text("recipe: x\n")
    with pytest.raises(SystemExit, match="missing output_dir, candidates"):
        tune.read_tuning(bad)


@pytest.mark.parametrize("path", sorted((BENCH.parent / "configs" / "fast" / "tuning").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_tuning_files_give_valid_configs(tune: ModuleType, path: Path) -> None:
    """Every candidate of a shipped tuning file is a valid run config that holds out a validation
    split and never evaluates the test set, during training or at its end."""
    from trainlab.config import load_config

    tuning = tune.read_tuning(path)
    for name in tuning.candidates:
        config = load_config(tuning.recipe, tune.overrides_of(tuning, name, 0))
        assert config.data.val_fraction > 0 and not config.train.eval_on_test, name
        assert not config.train.final_test_eval, name


def test_dropped_candidates_are_marked_never_picked_and_never_trained(tune: ModuleType, tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    """A ``dropped:`` candidate keeps its row (marked), is neither picked nor waited for by the
    choice, is left out of a plain run and refused by ``--only``; bad entries are clear errors."""
    path = _tuning_file(tmp_path)
    raw = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**raw, "choose": {"max_cost": 8.0, "seeds": 2},
                                    "dropped": {"small": "seed 0 trailed by 0.5", "later": "not run: shorter"}},
                                   sort_keys=False))
    tuning = tune.read_tuning(path)
    assert tuning.dropped == {"small": "seed 0 trailed by 0.5", "later": "not run: shorter"}
    folder = tmp_path / "runs" / "fast-cifar10-94-muon"
    _finished(folder / "plain-s0", 0.94, None)
    _finished(folder / "plain-s1", 0.94, None)
    _finished(folder / "small-s0", 0.99, {"size": 24, "epochs": 4, "mode": "crop"})  # best, but dropped
    _finished(folder / "small-s1", 0.99, {"size": 24, "epochs": 4, "mode": "crop"})
    text = tune.table(tuning, 4)
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "| 2/2 |" in rows["small (dropped)"] and "| not run | 0/0 |" in rows["later (dropped)"]
    assert "accuracy): plain (94.00 % over 2 seeds, cost 8.00); dropped (see below): small, later." in text
    assert text.rstrip().endswith("- small: seed 0 trailed by 0.5\n- later: not run: shorter")
    with pytest.raises(SystemExit):  # argparse's error: a dropped candidate is not trained
        tune.main([str(path), "--only", "later"])
    assert "later: dropped in" in capsys.readouterr().err
    assert not (folder / "later-s0").exists()
    for bad, message in (({"nope": "x"}, "unknown candidate"), ({"small": " "}, "needs a reason"),
                         ({"plain": "x"}, "reference"), (["small"], "must map")):
        path.write_text(yaml.safe_dump({**raw, "dropped": bad}, sort_keys=False))
        with pytest.raises(SystemExit, match=message):
            tune.read_tuning(path)


def test_one_seed_at_a_time(tune: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    """``--seed N`` trains seed N alone (two processes can run two seeds side by side), and the
    table plans at least N + 1 seeds."""
    trained: list[tuple[list[str], list[int]]] = []
    written: list[str] = []
    monkeypatch.setattr(tune, "train", lambda tuning, names, seeds: trained.append((list(names), list(seeds))))
    monkeypatch.setattr(tune, "write_doc", lambda text, tuning, force=False: written.append(text))
    path = _tuning_file(tmp_path)
    tune.main([str(path), "--only", "small", "--seed", "3"])
    assert trained == [(["small"], [3])] and "| not run | 0/4 |" in written[-1]
    tune.main([str(path), "--only", "small", "--seeds", "2"])
    assert trained[-1] == (["small"], [0, 1])
    with pytest.raises(SystemExit):
        tune.main([str(path), "--seed", "-1"])
    assert "--seed: a seed is 0 or more" in capsys.readouterr().err


def test_the_ledger_keeps_outcomes_whose_run_directories_are_gone(tune: ModuleType, tmp_path: Path) -> None:
    import shutil

    ledger = tmp_path / "ledger.json"
    tuning = tune.read_tuning(_tuning_file(tmp_path), ledger=ledger)
    runs = tmp_path / "runs" / "fast-cifar10-94-muon"
    _finished(runs / "plain-s0", 0.94, None)
    _finished(runs / "plain-s1", 0.942, None)
    tune.record(tuning, "plain", tune.on_disk(tuning, "plain"))
    shutil.rmtree(runs / "plain-s1")  # a new machine: the run directory is gone, the ledger is not
    _finished(runs / "plain-s2", 0.944, None)  # on disk only
    assert [(o.seed, o.val_accuracy) for o in tune.outcomes(tuning, "plain")] == [(0, 0.94), (1, 0.942), (2, 0.944)]
    saved = json.loads(ledger.read_text())[str(tuning.path)]["plain"]
    assert saved["overrides"] == ["data.val_fraction=0.1", "train.epochs=8"] and list(saved["seeds"]) == ["0", "1"]
    # the candidate edited: its old outcomes no longer count, and a new record replaces them
    edited = tmp_path / "edited.yaml"
    raw = yaml.safe_load(_tuning_file(tmp_path).read_text())
    raw["candidates"]["plain"] = ["train.epochs=9"]
    edited.write_text(yaml.safe_dump(raw))
    tuning_edited = tune.read_tuning(edited, ledger=ledger)
    ledger.write_text(json.dumps({str(edited): json.loads(ledger.read_text())[str(tuning.path)]}))
    assert [o.seed for o in tune.outcomes(tuning_edited, "plain")] == [0, 2]  # on disk only
    tune.record(tuning_edited, "plain", tune.on_disk(tuning_edited, "plain")[1:])
    assert list(json.loads(ledger.read_text())[str(edited)]["plain"]["seeds"]) == ["2"]


def test_a_rewrite_never_drops_finished_runs_the_table_shows(tune: ModuleType, tmp_path: Path) -> None:
    """Runs made before the ledger live only in the table once their directories are gone: a
    rewrite that would show fewer is refused unless forced."""
    tuning = tune.read_tuning(_tuning_file(tmp_path), ledger=tmp_path / "ledger.json")
    runs = tmp_path / "runs" / "fast-cifar10-94-muon"
    _finished(runs / "plain-s0", 0.94, None)
    _finished(runs / "plain-s1", 0.942, None)
    _finished(runs / "small-s0", 0.9375, {"size": 24, "epochs": 4, "mode": "crop"})
    doc = tmp_path / "doc.md"
    full = tune.table(tuning, 2)
    assert tune.finished_runs_shown(full) == 3
    tune.write_doc(full, tuning, doc)
    import shutil

    shutil.rmtree(runs / "plain-s1")  # gone, and never in the ledger
    fewer = tune.table(tuning, 2)
    assert tune.finished_runs_shown(fewer) == 2
    with pytest.raises(SystemExit, match=r"shows 3 finished runs, .* only 2: rewriting it would lose 1"):
        tune.write_doc(fewer, tuning, doc)
    assert "94.20" in doc.read_text()  # kept as it was
    tune.write_doc(fewer, tuning, doc, force=True)
    assert "94.20" not in doc.read_text()
    _finished(runs / "later-s0", 0.93, None)  # more runs than before: written without asking
    tune.write_doc(tune.table(tuning, 2), tuning, doc)
    assert "| 93.00 | 1/2 |" in doc.read_text()
