"""scripts/faults.py: its quick run leaves no invalid file, loses no result and shows no
traceback; and its checks do catch what they look for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import yaml

from tests.helpers import import_script

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "faults.py"


@pytest.fixture(scope="module")
def checks() -> ModuleType:
    """scripts/faults_check.py imported as a module."""
    return import_script("faults_check")


def test_quick_faults_leave_nothing_invalid_lost_or_traced_back(tmp_path: Path) -> None:
    """kill -9 (a step, an evaluation, a checkpoint write, the last log line), SIGTERM, SIGINT,
    a full disk, 4 runs started at once and bad inputs (about 20 s on 2 cores)."""
    out = tmp_path / "faults.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TRAINLAB_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)], capture_output=True,
                          text=True, timeout=600, env=env, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-3000:]
    result = json.loads(out.read_text())
    rows = {row[0]: [int(cell) for cell in row[1:]] for row in result["rows"]}
    injected, survived, invalid, lost, tracebacks = rows.pop("total")
    assert injected >= 15 and survived == injected and invalid == lost == tracebacks == 0
    assert {"kill -9 in a training step", "kill -9 in an evaluation",  # each phase of the quick plan
            "kill -9 in a checkpoint write", "kill -9 in an append to run.log / steps.csv",
            "SIGTERM (stop at the step reached)", "SIGINT / Ctrl-C", "disk full in a checkpoint write",
            "--run-id .. --overwrite"} <= set(rows)
    assert "Traceback" not in proc.stdout + proc.stderr


def test_the_checks_find_damaged_files_temp_files_and_changed_results(tmp_path: Path,
                                                                       checks: ModuleType) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.yaml").write_text(yaml.safe_dump({"name": "t", "provenance": {}}))
    (run / "summary.json").write_text('{"status": "compl')  # cut short
    (run / "metrics.csv").write_text("epoch,step,split,loss\n0,7,train,0.5\n0,,,\n")
    (run / "steps.csv").write_text("step,epoch,loss,lr,elapsed\n1,0.1,2.3,0.1,0.01\n2,0.2,2.")  # torn
    (run / "run.log").write_text("2026-11-24T10:15:30 run x\n2026-11-24T10:15:31 compl2026-11-24T10:16:00 run x\n")
    with open(run / "checkpoint.npz", "wb") as handle:
        np.savez(handle, w=np.zeros(1000))
    data = (run / "checkpoint.npz").read_bytes()
    (run / "checkpoint.npz").write_bytes(data[: len(data) // 2])
    (run / ".checkpoint.npz.ab12cd34.tmp").write_bytes(b"half")
    found = checks.invalid_files(run)
    named = sorted(problem.split(":")[0] for problem in found)
    assert named == ["checkpoint.npz", "metrics.csv", "run.log", "steps.csv", "summary.json"], found
    assert "two lines merged" in next(p for p in found if p.startswith("run.log"))
    # Right after a kill, a last line without its end is what an append leaves: allowed there.
    assert not [p for p in checks.invalid_files(run, torn_ok=True) if p.startswith("steps.csv")]
    assert [p.name for p in checks.temp_files(run)] == [".checkpoint.npz.ab12cd34.tmp"]

    (run / "summary.json").write_text(json.dumps({"test_loss": 0.25, "train_seconds": 3.0}))
    reference = checks.result_of(run)
    (run / "summary.json").write_text(json.dumps({"test_loss": 0.25, "train_seconds": 9.0}))  # the clock only
    assert checks.differences(checks.result_of(run), reference) == []
    (run / "summary.json").write_text(json.dumps({"test_loss": 0.2500000000000001, "train_seconds": 3.0}))
    assert checks.differences(checks.result_of(run), reference) == ["summary.json differs (test_loss)"]
