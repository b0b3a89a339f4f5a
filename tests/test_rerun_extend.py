"""Rerun a run from its own config.yaml, run a config given as a dict, and extend a run with
more epochs (recorded in its provenance), on real data."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

import trainlab.api as tl
from tests.helpers import InterruptAt, timeless, write_config
from trainlab.cli import main
from trainlab.errors import ConfigError

pytestmark = pytest.mark.usefixtures("real_data")


def _train(epochs: int) -> dict[str, object]:
    return {"epochs": epochs, "batch_size": 50}


def test_a_runs_config_yaml_reruns_it(tmp_path: Path) -> None:
    first = tl.run(write_config(tmp_path / "c.yaml", tmp_path / "runs", train=_train(1)), run_id="a",
                   progress=False, echo=False)
    again = tl.run(first.path / "config.yaml", run_id="b", progress=False, echo=False)
    assert timeless(again.metrics) == timeless(first.metrics)
    assert again.config["provenance"]["created"]  # its own provenance, not a copy
    assert main(["run", str(first.path / "config.yaml"), "--run-id", "c", "--no-progress"]) == 0
    assert timeless(tl.open_run(tmp_path / "runs" / "t" / "c").metrics) == timeless(first.metrics)


def test_a_dict_config_runs_like_its_file(tmp_path: Path) -> None:
    path = write_config(tmp_path / "c.yaml", tmp_path / "runs", train=_train(1))
    from_file = tl.run(path, run_id="file", progress=False, echo=False)
    as_dict = yaml.safe_load(path.read_text())
    from_dict = tl.run(as_dict, overrides=["seed=0"], run_id="dict", progress=False, echo=False)
    assert timeless(from_dict.metrics) == timeless(from_file.metrics)
    with pytest.raises(ConfigError, match=r"model\.hiden"):
        tl.run({**as_dict, "model": {"type": "mlp", "hiden": [3]}}, progress=False, echo=False)


def test_extending_a_finished_run_equals_training_longer(tmp_path: Path) -> None:
    longer = tl.run(write_config(tmp_path / "l.yaml", tmp_path / "runs", train=_train(3)), run_id="long",
                    progress=False, echo=False)
    short = tl.run(write_config(tmp_path / "s.yaml", tmp_path / "runs", train=_train(1)), run_id="short",
                   progress=False, echo=False)
    extended = tl.run(resume=short.path, epochs=3, progress=False, echo=False)
    assert timeless(extended.metrics) == timeless(longer.metrics)  # constant lr: the same run
    assert extended.summary["test_accuracy"] == longer.summary["test_accuracy"]
    assert extended.config["train"]["epochs"] == 3
    (record,) = extended.config["provenance"]["extensions"]
    assert (record["from_epochs"], record["to_epochs"], record["at_step"]) == (1, 3, 40)
    assert "extending from 1 to 3 epochs" in (short.path / "run.log").read_text()


def test_an_extension_interrupted_before_its_first_checkpoint_resumes(tmp_path: Path) -> None:
    longer = tl.run(write_config(tmp_path / "l.yaml", tmp_path / "runs", train=_train(3)), run_id="long",
                    progress=False, echo=False)
    short = tl.run(write_config(tmp_path / "s.yaml", tmp_path / "runs", train=_train(1)), run_id="short",
                   progress=False, echo=False)
    with pytest.raises(KeyboardInterrupt):  # stops at step 80, before its checkpoint
        tl.run(resume=short.path, epochs=3, progress=False, echo=False, callbacks=[InterruptAt(80)])
    resumed = tl.run(resume=short.path, progress=False, echo=False)  # config.yaml says 3, the checkpoint 1
    assert timeless(resumed.metrics) == timeless(longer.metrics)


def test_extensions_that_cannot_be_made_are_refused(tmp_path: Path) -> None:
    run = tl.run(write_config(tmp_path / "c.yaml", tmp_path / "runs", train=_train(2)), run_id="r",
                 progress=False, echo=False)
    before = sorted(p.name for p in run.path.iterdir())
    with pytest.raises(ConfigError, match="already 2 epochs long"):
        tl.run(resume=run.path, epochs=2, progress=False, echo=False)
    with pytest.raises(ConfigError, match="--epochs extends a run"):
        tl.run(tmp_path / "c.yaml", epochs=3, progress=False, echo=False)
    assert sorted(p.name for p in run.path.iterdir()) == before
    stepped = tl.run(write_config(tmp_path / "s.yaml", tmp_path / "runs", train={"steps": 40, "batch_size": 50}),
                     run_id="steps", progress=False, echo=False)
    with pytest.raises(ConfigError, match=r"sized by train\.steps"):
        tl.run(resume=stepped.path, epochs=3, progress=False, echo=False)
    assert main(["run", "--resume", str(run.path), "--epochs", "1", "--no-progress"]) == 2


def test_the_log_ends_with_best_val_and_test(tmp_path: Path) -> None:
    run = tl.run(write_config(tmp_path / "c.yaml", tmp_path / "runs", train=_train(2)), run_id="r",
                 progress=False, echo=False)
    last = (run.path / "run.log").read_text().strip().splitlines()[-1]
    best = max(float(r["accuracy"]) for r in run.metrics if r["split"] == "val")
    assert last.split(" ", 1)[1].startswith("completed: 80 steps in") and f"best val acc {best:.4f} (epoch" in last
    assert f"test acc {run.summary['test_accuracy']:.4f}" in last
