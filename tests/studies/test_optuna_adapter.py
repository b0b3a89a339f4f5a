"""The Optuna adapter against the installed Optuna, on the journal file and on SQLite.

Each test exercises one adapter function, so that an Optuna upgrade that breaks what the
adapter relies on fails here, by name. The last test keeps Optuna's private members out of
the rest of studies/.
"""

from __future__ import annotations

import ast
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from sqlalchemy import text

import trainlab.studies as studies_package
from trainlab.studies.optuna_adapter import (
    claim_waiting,
    label_objective,
    open_trial,
    rdb_engine,
    trial_id,
)
from trainlab.studies.storage import StorageHandle, open_storage

optuna.logging.set_verbosity(optuna.logging.WARNING)


@pytest.fixture(params=["journal", "sqlite"])
def handle(request: pytest.FixtureRequest, tmp_path: Path) -> StorageHandle:
    """A storage as trainlab opens it: the default journal file, or a database (SQLite)."""
    url = str(tmp_path / "s.journal") if request.param == "journal" else f"sqlite:///{tmp_path / 's.db'}"
    return open_storage(url, heartbeat=None, lock_dir=tmp_path)


def _study(handle: StorageHandle, name: str, lrs: list[float]) -> optuna.Study:
    """A study on ``handle`` with one WAITING trial per learning rate."""
    study = optuna.create_study(storage=handle.storage, study_name=name, direction="maximize")
    for lr in lrs:
        study.enqueue_trial({"lr": lr}, user_attrs={"key": f"lr{lr}"})
    return study


def test_trial_id_names_the_trial_of_that_study_and_number(handle: StorageHandle) -> None:
    plans = {"a": [0.1, 0.2], "b": [0.3, 0.4, 0.5]}
    for name, lrs in plans.items():
        _study(handle, name, lrs)
    ids = {(name, n): trial_id(handle.storage, name, n) for name, lrs in plans.items() for n in range(len(lrs))}
    assert len(set(ids.values())) == 5  # one id per trial, across studies
    for (name, number), tid in ids.items():
        frozen = handle.storage.get_trial(tid)
        assert frozen.number == number and frozen.user_attrs["key"] == f"lr{plans[name][number]}"


def test_claim_waiting_claims_each_waiting_trial_once_and_creates_none(handle: StorageHandle) -> None:
    study = _study(handle, "c", [0.1, 0.2])
    first = claim_waiting(handle.storage, study)
    second = claim_waiting(handle.storage, study)
    assert first is not None and second is not None and first != second
    assert {handle.storage.get_trial(t).state for t in (first, second)} == {TrialState.RUNNING}
    assert claim_waiting(handle.storage, study) is None
    assert len(study.get_trials()) == 2  # Study.ask would have created a third


def test_claim_waiting_skips_trials_taken_or_finished_since_it_looked(
    handle: StorageHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Other workers claim and finish trials between the listing and the claim."""
    study = _study(handle, "d", [0.1, 0.2, 0.3])
    stale = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    other = optuna.load_study(study_name="d", storage=handle.storage)
    taken = claim_waiting(handle.storage, other)  # trial 0: RUNNING elsewhere
    finished = claim_waiting(handle.storage, other)  # trial 1: finished elsewhere
    assert taken is not None and finished is not None
    other.tell(handle.storage.get_trial(finished).number, 0.5)
    monkeypatch.setattr(study, "get_trials", lambda **_: stale)
    claimed = claim_waiting(handle.storage, study)
    assert claimed is not None and handle.storage.get_trial(claimed).number == 2


def test_open_trial_samples_the_planned_values_and_is_told(handle: StorageHandle) -> None:
    study = _study(handle, "e", [0.25])
    claimed = claim_waiting(handle.storage, study)
    assert claimed is not None
    trial = open_trial(study, claimed)
    assert trial.number == handle.storage.get_trial(claimed).number
    assert trial.suggest_float("lr", 1e-3, 1.0, log=True) == 0.25  # the enqueued value
    trial.set_user_attr("worker", {"pid": 1})
    study.tell(trial, 0.9)
    frozen = handle.storage.get_trial(claimed)
    assert frozen.state == TrialState.COMPLETE and frozen.value == 0.9
    assert frozen.params == {"lr": 0.25} and frozen.user_attrs["worker"] == {"pid": 1}


def test_label_objective_names_the_objective_in_the_storage_once(handle: StorageHandle) -> None:
    study = _study(handle, "s", [])
    assert study.metric_names is None
    assert label_objective(study, "final_val_accuracy") is True
    stored = optuna.load_study(study_name="s", storage=handle.storage)  # read back from the storage
    assert stored.metric_names == ["final_val_accuracy"]
    assert label_objective(stored, "final_val_accuracy") is False  # already named: nothing written
    assert label_objective(stored, "test_accuracy") is True
    assert optuna.load_study(study_name="s", storage=handle.storage).metric_names == ["test_accuracy"]


def test_rdb_engine_is_the_storage_database(tmp_path: Path) -> None:
    handle = open_storage(f"sqlite:///{tmp_path / 'e.db'}", heartbeat=None)
    optuna.create_study(storage=handle.storage, study_name="engine")
    with rdb_engine(handle.storage).connect() as conn:
        names = conn.execute(text("SELECT study_name FROM studies")).scalars().all()
    assert names == ["engine"]


def _private_accesses(path: Path) -> list[str]:
    """``x._name`` with ``x`` not ``self``/``cls``, and imports of private modules, in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))):
            found.append(f"{path.name}:{node.lineno}: .{node.attr}")
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("optuna") and (
                any(part.startswith("_") for part in (node.module or "").split("."))
                or any(alias.name.startswith("_") for alias in node.names)):
            found.append(f"{path.name}:{node.lineno}: from {node.module}")
    return found


def test_studies_use_no_private_optuna_member_outside_the_adapter() -> None:
    folder = Path(studies_package.__file__).parent
    found = [hit for path in sorted(folder.glob("*.py")) if path.name != "optuna_adapter.py"
             for hit in _private_accesses(path)]
    assert found == []
