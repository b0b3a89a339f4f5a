"""The API behind ``trainlab gradcheck`` and ``trainlab report``: the verdict, the files, the choice.

The CLI only parses options and prints; what it decides lives here, so a notebook gets it too.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import trainlab.api as tl
from tests.helpers import write_config
from trainlab.errors import ConfigError, RunDirError


def test_report_options_of_a_study_are_refused_for_anything_else(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--trials and --format are for a study directory"):
        tl.write_report(tmp_path, trials=["t0000"])
    with pytest.raises(ConfigError, match="--trials and --format are for a study directory"):
        tl.write_report(tmp_path, table_format="md")
    # With a storage the path is taken for a study; the format is checked before it is opened.
    with pytest.raises(ConfigError, match="--format 'csv': use md or tex"):
        tl.write_report(tmp_path, table_format="csv", storage=f"sqlite:///{tmp_path / 'none.db'}")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(RunDirError):  # neither a study nor a run: the run report says why
        tl.write_report(tmp_path)


@pytest.mark.usefixtures("real_data")
def test_gradcheck_gives_its_verdict_and_writes_it(tmp_path: Path) -> None:
    config = write_config(tmp_path / "c.yaml", tmp_path / "runs")
    result = tl.gradcheck(config, entries=10)
    assert result["threshold"] == 1e-6 and result["passed"] is (result["max_rel_error"] <= 1e-6)
    assert result["passed"]  # a correct backward pass in float64
    # eps = 0.1 makes the finite differences of a ReLU net coarse: the verdict must say so.
    coarse = tl.gradcheck(config, entries=10, eps=0.1, threshold=1e-9)
    assert coarse["threshold"] == 1e-9 and not coarse["passed"]
    written = tl.write_gradcheck(result, out=tmp_path / "out")
    assert written == {"json": tmp_path / "out" / "gradcheck.json"}
    assert json.loads(written["json"].read_text(encoding="utf-8")) == json.loads(json.dumps(result))
    with pytest.raises(RunDirError):
        tl.write_gradcheck(result, run_dir=tmp_path / "out")  # not a run directory
