"""A study in optuna-dashboard: the objective's name in the storage, and ``trainlab dashboard``
serving a real tiny study's trials over HTTP."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml

from tests.studies.conftest import write_study
from trainlab.callbacks import Callback
from trainlab.cli import main
from trainlab.config import RunConfig
from trainlab.studies import Options, load_study, open_study_storage, run_study
from trainlab.studies import runner as runner_module
from trainlab.studies.dashboard import dashboard_url, label_objectives, make_dashboard_server
from trainlab.studies.storage import open_storage

METRIC = "final_val_accuracy"


def _score(config: RunConfig, run_dir: Path, callbacks: list[Callback], data_dir: str | None) -> dict[str, Any]:
    """A stand-in for the training run: scores the learning rate (no data needed)."""
    return {"status": "completed", METRIC: 1.0 - abs((config.optimizer.lr or 0.0) - 0.1)}


def _metric_names(study_dir: Path) -> list[list[str] | None]:
    """The objective names of every Optuna study in the study directory's journal, read afresh."""
    handle = open_storage(str(study_dir / "study.journal"), heartbeat=None, lock_dir=study_dir)
    return [optuna.load_study(study_name=s.study_name, storage=handle.storage).metric_names
            for s in handle.storage.get_all_studies()]


def test_a_study_names_its_objective_and_an_older_one_gets_it_when_opened(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write_study(tmp_path / "s.yaml", {"objective": METRIC, "space": {"optimizer.lr": [0.05, 0.1]}},
                       tmp_path / "runs", name="s")
    with monkeypatch.context() as patch:  # a study run before trainlab named objectives
        patch.setattr(runner_module, "label_objective", lambda study, metric: False)
        run_study(path, options=Options(echo=False), execute=_score)
    study_dir = tmp_path / "runs" / "s"
    assert _metric_names(study_dir) == [None]
    run_study(path, options=Options(echo=False), execute=_score)  # its next run (nothing left to do)
    assert _metric_names(study_dir) == [[METRIC]]

    two = write_study(tmp_path / "two.yaml", {"objective": METRIC, "stages": [
        {"name": "a", "space": {"optimizer.lr": [0.05, 0.1]}}, {"name": "b", "space": {"train.batch_size": [25]}}]},
        tmp_path / "runs", name="two")
    with monkeypatch.context() as patch:
        patch.setattr(runner_module, "label_objective", lambda study, metric: False)
        run_study(two, options=Options(echo=False), execute=_score)
    handle = open_study_storage(load_study(two), Options())
    assert label_objectives(handle) == 2  # the dashboard names both stages before serving them
    assert label_objectives(handle) == 0
    assert _metric_names(tmp_path / "runs" / "two") == [[METRIC], [METRIC]]


def test_dashboard_without_the_package_names_the_extra(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    path = write_study(tmp_path / "s.yaml", {"space": {"optimizer.lr": [0.1]}}, tmp_path / "runs", name="s")
    run_study(path, options=Options(echo=False), execute=_score)
    monkeypatch.setitem(sys.modules, "optuna_dashboard", None)  # makes `import optuna_dashboard` fail
    assert main(["dashboard", str(tmp_path / "runs" / "s")]) == 2
    assert "pip install 'trainlab[dashboard]'" in capsys.readouterr().err


def test_dashboard_of_a_folder_without_a_study_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["study", "dashboard", str(tmp_path)]) == 4
    assert "study.journal" in capsys.readouterr().err


# -- a real tiny study in optuna-dashboard ---------------------------------------------------


@pytest.fixture(scope="module")
def real_study(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A two-trial numpy study on 500 MNIST images (two epochs each); its study directory."""
    from trainlab.api import run_study as api_run_study

    root = tmp_path_factory.mktemp("dash")
    path = write_study(root / "real.yaml", {"objective": METRIC, "space": {"optimizer.lr": [0.05, 0.1]}},
                       root / "runs", name="real")
    api_run_study(path, options=Options(echo=False, data_dir=str(real_data)))
    return root / "runs" / "real"


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())


def _check_api(base: str, study_dir: Path) -> None:
    """The dashboard's JSON API lists the study with its two trials and the objective's name,
    each trial with the objective its own run reached (summary.json)."""
    (summary,) = _get(f"{base}/api/studies")["study_summaries"]
    assert summary["study_name"] == "real"
    detail = _get(f"{base}/api/studies/{summary['study_id']}")
    assert detail["objective_names"] == [METRIC]
    trials = detail["trials"]
    assert [t["state"] for t in trials] == ["Complete", "Complete"]
    assert sorted(float(t["params"][0]["param_external_value"]) for t in trials) == [0.05, 0.1]
    served = {float(t["params"][0]["param_external_value"]): t["values"][0] for t in trials}
    reached = {}
    for summary_path in study_dir.glob("t*/summary.json"):
        lr = yaml.safe_load((summary_path.parent / "config.yaml").read_text())["optimizer"]["lr"]
        reached[float(lr)] = json.loads(summary_path.read_text())[METRIC]
    assert set(reached) == {0.05, 0.1} and served == pytest.approx(reached)


def test_dashboard_server_serves_the_study_trials(real_study: Path) -> None:
    pytest.importorskip("optuna_dashboard")
    handle = open_storage(str(real_study / "study.journal"), heartbeat=None, lock_dir=real_study)
    server = make_dashboard_server(handle, port=0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = dashboard_url(server)
        assert url == f"http://127.0.0.1:{server.server_port}/dashboard"
        _check_api(url.removesuffix("/dashboard"), real_study)
        with urllib.request.urlopen(url, timeout=30) as page:  # the web app itself
            assert page.status == 200 and b"<html" in page.read().lower()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert not thread.is_alive()


def _read_url(process: subprocess.Popen[bytes], timeout: float) -> str:
    """The URL the command prints once it listens (its output so far, if it does not)."""
    assert process.stdout is not None
    seen = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([process.stdout], [], [], 1.0)
        if ready:
            line = process.stdout.readline()
            seen += line
            found = re.search(rb"http://\S+", line)
            if found:
                return found.group().decode()
            if not line:  # it ended
                break
    raise AssertionError(f"no URL from trainlab dashboard: {seen.decode(errors='replace')}")


def test_trainlab_dashboard_serves_until_ctrl_c(real_study: Path) -> None:
    pytest.importorskip("optuna_dashboard")
    command = [sys.executable, "-m", "trainlab.cli", "dashboard", str(real_study), "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"})
    try:
        url = _read_url(process, timeout=120)
        assert url.startswith("http://127.0.0.1:") and url.endswith("/dashboard")
        _check_api(url.removesuffix("/dashboard"), real_study)
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
