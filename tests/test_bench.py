"""Every benchmark runs in --quick mode and writes well-formed rows; run_all gathers them.

These check that the benchmarks work, never a time: a quick run's figures mean nothing.
"""

from __future__ import annotations

import importlib
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "bench"
FIELDS = {"benchmark", "workload", "trainlab", "peer", "peer_name", "unit", "ratio",
          "higher_is_better", "goal", "met", "note"}
# Quick enough for the default run (time to accuracy's quick mode: about 16 s); a script
# added later runs with the slow tests until it is listed here.
QUICK = ("bench_data", "bench_numpy", "bench_torch", "bench_augment", "bench_study", "bench_time_to_accuracy",
         "bench_dropout", "bench_epoch")
NEEDS_DATA = ("bench_data", "bench_study", "bench_time_to_accuracy")
SCRIPTS = sorted(p.stem for p in BENCH.glob("bench_*.py"))


def bench_env() -> dict[str, str]:
    """One thread everywhere: the machine is shared."""
    threads = dict.fromkeys(("TRAINLAB_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                             "MKL_NUM_THREADS"), "1")
    return {**os.environ, **threads}


def run(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run ``python ARGS`` in the project root; fail with the end of its output."""
    done = subprocess.run([sys.executable, *args], cwd=ROOT, env=bench_env(), capture_output=True,
                          text=True, timeout=timeout)
    assert done.returncode == 0, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def check_rows(rows: Any, benchmark: str) -> None:
    """The protocol of bench/_common.py: fields, types, positive figures, a consistent ratio."""
    assert isinstance(rows, list) and rows, "no rows"
    for row in rows:
        assert set(row) >= FIELDS, f"missing {FIELDS - set(row)}"
        assert row["benchmark"] == benchmark
        assert isinstance(row["workload"], str) and row["workload"]
        assert isinstance(row["peer_name"], str) and row["peer_name"]
        assert isinstance(row["unit"], str) and row["unit"]
        assert isinstance(row["goal"], str) and isinstance(row["note"], str)
        assert isinstance(row["higher_is_better"], bool)
        assert row["met"] in (True, False, None)
        trainlab, peer, ratio = row["trainlab"], row["peer"], row["ratio"]
        assert isinstance(trainlab, float) and math.isfinite(trainlab) and trainlab > 0
        if peer is None:
            assert ratio is None
            continue
        assert isinstance(peer, float) and math.isfinite(peer) and peer > 0
        expected = trainlab / peer if row["higher_is_better"] else peer / trainlab
        assert ratio == pytest.approx(expected, rel=1e-3)
        if row["met"] is not None:
            assert row["goal"], "a met flag without a goal"
        if row["goal"].startswith(">= ") and row["goal"].endswith("x"):
            threshold = float(row["goal"][3:-1])
            if abs(ratio - threshold) > 0.01 * threshold:  # the goal is shown rounded
                assert row["met"] == (ratio >= threshold)


@pytest.mark.parametrize(
    "script", [pytest.param(s, marks=() if s in QUICK else pytest.mark.slow) for s in SCRIPTS]
)
def test_quick_run_writes_rows(script: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """``bench_X.py --quick --json PATH`` runs and writes rows that follow the protocol."""
    if script in NEEDS_DATA:
        request.getfixturevalue("real_data")
    out = tmp_path / "rows.json"
    run([str(BENCH / f"{script}.py"), "--quick", "--json", str(out)])
    check_rows(json.loads(out.read_text(encoding="utf-8")), script)


def test_every_script_is_known() -> None:
    """The quick list names scripts that exist (a renamed script is not silently dropped)."""
    assert set(QUICK) <= set(SCRIPTS)


def test_bench_torch_without_keras(tmp_path: Path) -> None:
    """Without keras the keras.fit column is skipped with a note, and the rest still runs."""
    out = tmp_path / "rows.json"
    code = ("import runpy, sys; sys.modules['keras'] = None; "  # find_spec then reports it missing
            f"sys.argv = ['bench_torch.py', '--quick', '--models', 'mlp', '--precisions', 'fp32', "
            f"'--json', {str(out)!r}]; sys.path.insert(0, {str(BENCH)!r}); "
            f"runpy.run_path({str(BENCH / 'bench_torch.py')!r}, run_name='__main__')")
    done = run(["-c", code])
    assert "keras is not installed" in done.stdout
    rows = json.loads(out.read_text(encoding="utf-8"))
    check_rows(rows, "bench_torch")
    keras_rows = [r for r in rows if r["peer_name"].startswith("keras.fit")]
    assert len(keras_rows) == 1 and keras_rows[0]["peer"] is None and keras_rows[0]["met"] is None
    assert [r["peer"] > 0 for r in rows if r["peer_name"] == "plain PyTorch loop"] == [True]


def test_run_all_quick_writes_markdown(tmp_path: Path, real_data: Path) -> None:
    """``run_all.py --quick --only ...`` prints the table and writes the markdown file."""
    out = tmp_path / "results.md"
    done = run([str(BENCH / "run_all.py"), "--quick", "--only", "augment", "bench_study", "--output", str(out)])
    text = out.read_text(encoding="utf-8")
    assert "Generated by `python bench/run_all.py`" in text
    assert f"--only augment bench_study --output {out}" in text  # the exact command
    assert "- CPU: " in text and "torch " in text and "BLAS" in text
    assert "| benchmark | workload | trainlab | vs | peer | ratio | goal | met | note |" in text
    assert "| augment | crop (pad 4) + flip" in text and "| study | study overhead" in text
    assert "| bench_augment | ok | 1 |" in text
    assert "trainlab benchmarks" in done.stdout and "| numpy |" not in text


@pytest.fixture
def run_all(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """bench/run_all.py as a module (its sibling _common on the path)."""
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("run_all")


def test_run_all_reports_a_failing_script(run_all: ModuleType, tmp_path: Path) -> None:
    """A script that fails or hangs is a failed line with its output's end, not a crash."""
    broken = tmp_path / "bench_broken.py"
    broken.write_text("import sys\nprint('about to fail')\nsys.exit(3)\n", encoding="utf-8")
    hangs = tmp_path / "bench_hangs.py"
    hangs.write_text("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n", encoding="utf-8")
    results = [run_all.run_script(broken, quick=True, timeout=60, echo=False),
               run_all.run_script(hangs, quick=True, timeout=1, echo=False)]
    assert results[0]["error"] == "exit status 3" and "about to fail" in results[0]["tail"]
    assert results[1]["error"].startswith("timed out") and "sleeping" in results[1]["tail"]
    cells = run_all.table_rows(results)
    assert [c["met"] for c in cells] == ["failed", "failed"]
    info = {"cpu": "cpu", "cpu_flags": [], "cores": 2, "usable_cores": 2, "load_average": [0.5],
            "os": "Linux", "python": "3", "torch": "2", "torch_build": "mkl", "torch_threads": 1,
            "numpy": "2", "numpy_blas": "openblas", "keras": None}
    text = run_all.markdown(cells, results, info, "python bench/run_all.py --quick", "today", True, 1.0)
    assert "### bench_broken failed: exit status 3" in text and "about to fail" in text
    assert "| broken | FAILED: exit status 3 |" in text


def test_ratio_is_above_one_when_trainlab_is_better(run_all: ModuleType) -> None:
    """Rates divide trainlab by the peer, times the peer by trainlab; a ratio goal sets met."""
    common = importlib.import_module("_common")
    fast = common.make_row("b", "w", 200.0, 100.0, peer_name="p", unit="img/s", min_ratio=1.4)
    quick = common.make_row("b", "w", 1.0, 3.0, peer_name="p", unit="s", higher_is_better=False)
    alone = common.make_row("b", "w", 1.0, None, peer_name="p", unit="s", min_ratio=1.0)
    assert (fast["ratio"], fast["goal"], fast["met"]) == (2.0, ">= 1.4x", True)
    assert (quick["ratio"], quick["goal"], quick["met"]) == (3.0, "", None)
    assert (alone["ratio"], alone["met"]) == (None, None)


def test_doc_sections_replace_only_their_own_text(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two benchmarks write one document: each rewrite replaces its section and keeps the other."""
    monkeypatch.syspath_prepend(str(BENCH))
    common = importlib.import_module("_common")
    doc = tmp_path / "performance.md"
    common.write_doc_section(doc, "a", "## A\n\nfirst", "# Title")
    common.write_doc_section(doc, "b", "## B\n\nsecond", "# Title")
    common.write_doc_section(doc, "a", "## A\n\nthird", "# Title")
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Title\n") and text.count("# Title") == 1
    assert "third" in text and "first" not in text and "second" in text
    assert text.index("## A") < text.index("## B")  # a section keeps its place when rewritten


def test_bench_torch_compile_column(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--compile adds a row per model: the engine with train.compile against itself in eager mode."""
    out = tmp_path / "rows.json"
    done = run([str(BENCH / "bench_torch.py"), "--quick", "--compile", "--no-keras", "--models", "mlp",
                "--precisions", "fp32", "--json", str(out)])
    rows = json.loads(out.read_text(encoding="utf-8"))
    check_rows(rows, "bench_torch")
    (compiled,) = [r for r in rows if r["workload"].endswith("train.compile: true")]
    assert compiled["peer_name"].startswith("trainlab eager") and compiled["goal"] == ""
    assert "compile time" in compiled["note"] and "break-even" in compiled["note"]
    assert "train.compile:" in done.stdout
    monkeypatch.syspath_prepend(str(BENCH))
    section = importlib.import_module("bench_torch").compile_verdicts(rows)
    assert section.startswith("## torch.compile") and section.count("\n| MLP 3072-500-500-10") == 1


def test_profile_step_quick(real_data: Path) -> None:
    """bench/profile_step.py profiles both workloads and prints an op table for each."""
    done = run([str(BENCH / "profile_step.py"), "--quick"])
    assert done.stdout.count("| op | self ms per step | share | calls per step |") == 2
    assert "seed C final CNN" in done.stdout and "fast recipe cifar10-94" in done.stdout
    assert "aten::convolution_backward" in done.stdout  # a conv net's step is mostly its convolutions


def test_bench_compile_rows_and_answers(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_compile's arithmetic on made-up timings: rates, compile time, break-even, answer."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench_compile = importlib.import_module("bench_compile")
    config, run_steps = bench_compile.recipe_config("cifar10-90", "bf16", 100)
    assert config.train.batch_size == 100 and config.train.precision == "bf16"
    faster = {"warmup": {"eager": 2.0, "compiled": 32.0},  # compiling took 30 s more
              "seconds": {"eager": [1.0, 1.2, 1.1], "compiled": [0.5, 0.6, 0.5]}}
    row = bench_compile.row_of("cifar10-90", config, faster, steps=10, run_steps=run_steps)
    check_rows([row], "bench_compile")
    # 1000 images per pass: eager 1000 / 1.1 s, compiled 1000 / 0.5 s; saves 0.6 ms per image
    assert row["peer"] == pytest.approx(1000 / 1.1) and row["trainlab"] == pytest.approx(2000.0)
    assert row["compile_seconds"] == pytest.approx(30.0) and row["break_even"] == "50,000 images"
    slower = {"warmup": {"eager": 2.0, "compiled": 12.0}, "seconds": {"eager": [1.0], "compiled": [1.02]}}
    slow_row = bench_compile.row_of("cifar10-90", config, slower, steps=10, run_steps=run_steps)
    assert slow_row["break_even"] == "never (slower per step)"
    text = bench_compile.verdicts([row, slow_row], "python bench/bench_compile.py --write-docs")
    assert "| configs/fast/cifar10-90.yaml, batch 100, bf16 | 909 | 2,000 | 2.20x | 30.0 s | 50,000 images |" in text
    assert text.count("does not pay") == 1 and "keep it off" in text
    assert row["run_images"] == 288 * 100  # cifar10-90 trains 288 steps: 28,800 images < 50,000
    assert "ends before the compile time is paid back" in bench_compile.answer(row)
    assert bench_compile.answer({**row, "break_even_images": 1000.0}).startswith("pays")


def test_bench_epoch_row_scales_passes_to_an_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    """bench_epoch's row on made-up timings: median pass scaled to an epoch, ratio plain / trainlab."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench_epoch = importlib.import_module("bench_epoch")
    result = {"per_epoch": 10, "seconds": {"trainlab": [2.0, 1.0, 1.2], "plain": [1.5, 1.4, 3.0]}}
    row = bench_epoch.row_of(result, images=10240, batch=1024, steps=5, source="CIFAR-10")
    check_rows([row], "bench_epoch")
    # medians 1.2 s and 1.5 s per 5 steps: 2.4 and 3.0 s per 10-step epoch
    assert row["trainlab"] == pytest.approx(2.4) and row["peer"] == pytest.approx(3.0)
    assert row["unit"] == "s/epoch" and row["ratio"] == pytest.approx(1.25) and row["met"] is True
    slower = bench_epoch.row_of({**result, "seconds": {"trainlab": [1.6], "plain": [1.5]}}, 10240, 1024, 5,
                                "CIFAR-10")
    assert slower["ratio"] == pytest.approx(1.5 / 1.6, rel=1e-3) and slower["met"] is False
    config = bench_epoch.recipe_config(256, 88)
    assert config.train.batch_size == 256 and config.train.steps == 88
    assert config.schedule.warmup_steps == 20 and config.train.lookahead.start_epoch == 0


def test_bench_epoch_muon_row_names_its_recipe_and_rendition(monkeypatch: pytest.MonkeyPatch) -> None:
    """--recipe cifar10-94-muon's row on made-up timings: the same arithmetic, its recipe and peer named."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench_epoch = importlib.import_module("bench_epoch")
    muon = bench_epoch.RECIPES["cifar10-94-muon"]
    result = {"per_epoch": 5, "seconds": {"trainlab": [3.0, 2.0, 2.2], "plain": [2.6, 2.4, 2.5]}}
    row = bench_epoch.row_of(result, images=10000, batch=2000, steps=5, source="CIFAR-10", recipe=muon)
    check_rows([row], "bench_epoch")
    # medians 2.2 s and 2.5 s per 5 steps, a 5-step epoch: ratio 2.5 / 2.2
    assert row["trainlab"] == pytest.approx(2.2) and row["peer"] == pytest.approx(2.5)
    assert row["ratio"] == pytest.approx(2.5 / 2.2, rel=1e-3) and row["met"] is True
    assert row["workload"].startswith("configs/fast/cifar10-94-muon.yaml net, 10000 CIFAR-10, batch 2000")
    assert row["peer_name"] == "plain PyTorch airbench94_muon rendition"
    tuned = bench_epoch.row_of(result, 10000, 1000, 5, "CIFAR-10", muon, ["train.batch_size=1000"])
    assert tuned["workload"].startswith("configs/fast/cifar10-94-muon.yaml --set train.batch_size=1000 net")
    default = bench_epoch.row_of(result, 10000, 1024, 5, "CIFAR-10")
    assert default["workload"].startswith("configs/fast/cifar10-94.yaml net")
    assert default["peer_name"] == "plain PyTorch airbench94 rendition"


def test_bench_epoch_times_every_recipe_by_default(tmp_path: Path, request: pytest.FixtureRequest) -> None:
    """Without --recipe each recipe is timed against its own rendition (a row each, as run_all
    records them); --set, which changes one recipe, needs --recipe."""
    request.getfixturevalue("real_data")
    out = tmp_path / "rows.json"
    run([str(BENCH / "bench_epoch.py"), "--quick", "--json", str(out)])
    rows = json.loads(out.read_text(encoding="utf-8"))
    check_rows(rows, "bench_epoch")
    assert [r["peer_name"] for r in rows] == ["plain PyTorch airbench94 rendition",
                                              "plain PyTorch airbench94_muon rendition"]
    refused = subprocess.run([sys.executable, str(BENCH / "bench_epoch.py"), "--quick", "--set",
                              "train.batch_size=64"], cwd=ROOT, env=bench_env(), capture_output=True, text=True,
                             timeout=120)
    assert refused.returncode == 2 and "name it with --recipe" in refused.stderr


def test_bench_epoch_muon_recipe_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """The muon recipe stretched over the steps run: its straight-down schedule (no warm-up), no
    lookahead; its 8 epochs kept at another batch size; --set refuses what would change the net."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench_epoch = importlib.import_module("bench_epoch")
    muon = bench_epoch.RECIPES["cifar10-94-muon"]
    config = bench_epoch.recipe_config(256, 40, muon)
    assert config.train.batch_size == 256 and config.train.steps == 40 and config.train.device == "cpu"
    assert config.schedule.warmup_steps == 0 and config.train.lookahead is None
    assert config.optimizer.type == "muon" and config.model.whiten.bias_epochs == 3
    assert bench_epoch.recipe_epochs(bench_epoch.tuned_recipe(muon)) == 8  # 200 steps of 25 batches of 2000
    assert bench_epoch.recipe_epochs(bench_epoch.tuned_recipe(bench_epoch.DEFAULT_RECIPE)) == 11
    assert bench_epoch.recipe_epochs(bench_epoch.tuned_recipe(muon, ["train.batch_size=1000"])) == 8
    candidate = ["train.epochs=7", "train.batch_size=1000", "optimizer.lr=0.17", "optimizer.other.weight_decay=2.29"]
    tuned = bench_epoch.recipe_config(1000, 350, muon, candidate)
    assert (tuned.train.batch_size, tuned.train.steps, tuned.optimizer.lr) == (1000, 350, 0.17)
    assert tuned.optimizer.other.weight_decay == 2.29
    for refused in ["augment.low_res={size: 24, epochs: 4, mode: crop}", "model.conv[0].filters=[32,32]",
                    "optimizer.type=nesterov", "train.precision=fp32", "optimizer.weight_decay=0.1", "train.epochs"]:
        with pytest.raises(SystemExit, match="--set"):
            bench_epoch.tuned_recipe(muon, [refused])


def test_bench_epoch_muon_side_has_no_lookahead(monkeypatch: pytest.MonkeyPatch) -> None:
    """The plain airbench94_muon side trains (Muon and SGD), freezes the whitening bias after its
    epochs, and keeps no lookahead average; the airbench94 side keeps one."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench_epoch = importlib.import_module("bench_epoch")
    bench_torch = importlib.import_module("bench_torch")
    images, labels, _ = bench_torch.load_images(None, 16)  # random images
    data = bench_torch.prepared(images, labels)
    muon = bench_epoch.AirbenchSide(data, batch=8, total_steps=10, muon=True)  # 2 steps per epoch
    kernel = muon.net[2][0].weight.detach().clone()
    muon.steps(7)
    assert muon.average is None and bool((kernel != muon.net[2][0].weight).any())
    assert not muon.net[0].bias.requires_grad  # epoch 3: the whitening bias is frozen
    plain = bench_epoch.AirbenchSide(data, batch=8, total_steps=10)
    plain.steps(5)
    assert plain.average is not None


def test_alternating_passes_turn_the_order_each_round(monkeypatch: pytest.MonkeyPatch) -> None:
    """No side always goes first: the order of the sides turns by one each round."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench_torch = importlib.import_module("bench_torch")
    calls: list[str] = []

    class Side:
        def __init__(self, name: str) -> None:
            self.name = name

        def steps(self, count: int) -> None:
            calls.append(f"{self.name}{count}")

    warmups, seconds = bench_torch.alternating_passes({"a": Side("a"), "b": Side("b")}, 1, 2, 3)
    assert calls == ["a1", "b1", "a2", "b2", "b2", "a2", "a2", "b2"]
    assert set(warmups) == {"a", "b"} and [len(s) for s in seconds.values()] == [3, 3]


def test_bench_epoch_eval_rows_time_both_evaluations(monkeypatch: pytest.MonkeyPatch) -> None:
    """--eval-passes: one row without and one with TTA, each the median evaluation of each side."""
    monkeypatch.syspath_prepend(str(BENCH))
    bench_epoch = importlib.import_module("bench_epoch")
    result = {"eval": {False: {"trainlab": [1.0, 1.2, 1.1], "plain": [1.1, 1.3, 1.2]},
                       True: {"trainlab": [6.0, 5.0, 5.5], "plain": [5.0, 5.2, 4.9]}}}
    rows = bench_epoch.eval_rows(result, 4000, "CIFAR-10", bench_epoch.RECIPES["cifar10-94-muon"])
    check_rows(rows, "bench_epoch")
    plain_eval, with_tta = rows
    assert "no TTA" in plain_eval["workload"] and "with TTA" in with_tta["workload"]
    assert plain_eval["unit"] == "s/eval" and plain_eval["ratio"] == pytest.approx(1.2 / 1.1, rel=1e-3)
    assert with_tta["trainlab"] == 5.5 and with_tta["peer"] == 5.0 and with_tta["met"] is False
    assert bench_epoch.eval_rows({"seconds": {}}, 4000, "CIFAR-10") == []  # --eval-passes 0: no rows


KERAS_CNN = {"engine": "torch", "seed": 1, "data": {"dataset": "cifar10", "normalize": "scale"},
             "model": {"type": "cnn", "conv": [{"filters": [4, 4]}, {"filters": 8}], "batch_norm": True,
                       "bn_momentum": 0.01, "bn_eps": 1e-3, "init": {"scheme": "he_uniform"}, "dropout": 0.3},
             "optimizer": {"type": "adam", "lr": 1e-3, "eps": 1e-7},
             "regularization": {"l2": 1e-3, "apply_to": "weights"}}


def keras_parity_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("KERAS_BACKEND", "torch")  # keras picks its backend at its first import
    pytest.importorskip("keras", reason="keras_parity needs keras (the bench extra)")
    monkeypatch.syspath_prepend(str(BENCH))
    return importlib.import_module("keras_parity")


def test_keras_parity_agrees_on_a_seed_c_style_cnn(real_data: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A BN CNN with L2 and Keras' Adam epsilon: the same first-step loss and gradients as Keras;
    with Adam's epsilon where PyTorch puts it, the weights still agree after the first step."""
    keras_parity = keras_parity_module(monkeypatch)
    config = tmp_path / "cnn.yaml"
    config.write_text(json.dumps(KERAS_CNN))
    out = tmp_path / "parity.json"
    args = [str(config), "--steps", "3", "--batch-size", "16", "--eval-images", "32", "--json", str(out),
            "--data-dir", str(real_data)]
    assert keras_parity.main([*args, "--adam-epsilon", "torch"]) == 0
    result = json.loads(out.read_text())
    assert result["passed"] and result["first_step_grad_rel_diff"] < 1e-4
    assert [layer.split("/")[0] for layer in result["layers"]][:3] == ["Conv2d", "BatchNorm2d", "Conv2d"]
    assert result["rows"][0]["weight_rel_diff"] < 1e-4
    assert result["eval"]["penalty_trainlab"] > 0
    assert abs(result["eval"]["loss_trainlab"] - result["eval"]["loss_keras"]) < 1e-2


def test_keras_parity_fails_when_the_nets_differ(real_data: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """The check can fail: the dense kernel copied without reordering its rows from NCHW to
    NHWC flattening gives Keras another function, and the first step says so."""
    keras_parity = keras_parity_module(monkeypatch)
    copied = keras_parity.as_keras
    monkeypatch.setattr(keras_parity, "as_keras", lambda module, _flatten, grads=False: copied(module, None, grads))
    config = tmp_path / "cnn.yaml"
    config.write_text(json.dumps(KERAS_CNN))
    assert keras_parity.main([str(config), "--steps", "1", "--batch-size", "16", "--eval-images", "16",
                              "--data-dir", str(real_data)]) == 1


def test_selective_tta_scores_thresholds_on_the_validation_split(tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A run trained with a validation split and TTA: its full-TTA accuracy is the run's own,
    a threshold of 1 views every image (the full-TTA figure), a tiny one none (the plain one)."""
    from PIL import Image

    import trainlab.api as tl

    rng = np.random.default_rng(0)
    for label, name in enumerate(("red", "blue")):
        folder = tmp_path / "data" / "train" / name
        folder.mkdir(parents=True)
        for i in range(40):
            base = np.array([170, 60, 90] if label == 0 else [90, 60, 170], dtype=np.float64)
            pixels = np.clip(base + rng.normal(0, 60, size=(8, 8, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(folder / f"{i}.png")
    config = tmp_path / "run.yaml"
    config.write_text(json.dumps({
        "name": "tta", "seed": 0, "engine": "torch", "data": {"dataset": str(tmp_path / "data"), "val_fraction": 0.25},
        "model": {"type": "cnn", "conv": [{"filters": 4}]}, "optimizer": {"type": "adam", "lr": 0.01},
        "train": {"epochs": 2, "batch_size": 16, "tta": "flip_translate"}, "output": {"dir": str(tmp_path / "runs")}}))
    run_dir = tl.run(config, run_id="r", progress=False, echo=False).path
    monkeypatch.syspath_prepend(str(BENCH))
    selective_tta = importlib.import_module("selective_tta")
    out = tmp_path / "scores.json"
    assert selective_tta.main([str(run_dir), "--thresholds", "1e-6,1", "--json", str(out)]) == 0
    (result,) = json.loads(out.read_text())
    none_viewed, all_viewed = result["rows"]
    assert none_viewed["share"] == 0 and none_viewed["accuracy"] == result["plain_accuracy"]
    assert all_viewed["share"] == 1 and all_viewed["accuracy"] == result["full_accuracy"]
    assert result["full_accuracy"] == pytest.approx(result["summary_val_accuracy"], abs=1e-9)
    assert result["views"] == 6
    assert selective_tta.main(["--render-from", str(out)]) == 0  # the table again, from the scores alone

    # a run cut off before its final evaluation is refused, and left out of a rendered table
    summary_path = run_dir / "summary.json"
    summary = json.loads(summary_path.read_text())
    summary.pop("final_val_accuracy")
    summary_path.write_text(json.dumps(summary))
    assert selective_tta.main([str(run_dir), "--thresholds", "0.5"]) == 1
    cut = dict(result, run=str(tmp_path / "cut-s0"), summary_val_accuracy=None,
               full_accuracy=0.2, plain_accuracy=0.9)
    out.write_text(json.dumps([result, cut]))
    capsys.readouterr()
    assert selective_tta.main(["--render-from", str(out)]) == 0
    printed = capsys.readouterr().out
    plain_row = next(line for line in printed.splitlines() if line.startswith("| none viewed"))
    expected = 100 * (result["plain_accuracy"] - result["full_accuracy"])
    assert plain_row.startswith(f"| none viewed (plain) | {expected:+.2f} | {expected:+.2f} |")  # the cut run left out
