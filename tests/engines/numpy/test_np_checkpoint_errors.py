"""A damaged checkpoint.npz (truncated, not an archive, a flipped byte, pickled objects,
wrong shapes, no meta) gives a clean RunDirError naming the file on resume, evaluate,
predict and report, never a traceback; as checkpoint.pt does for the torch engine."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import trainlab.api as tl
from tests.data.synthdata import write_idx
from tests.helpers import write_config
from trainlab.cli import main
from trainlab.errors import RunDirError
from trainlab.report.artifacts import load_artifacts


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished numpy run on a tiny MNIST-like folder."""
    root = tmp_path_factory.mktemp("np-ckpt")
    dataset = write_idx(root / "mnist", n_train=120, n_test=30)
    cfg = write_config(root / "c.yaml", root / "runs",
                       data={"dataset": str(dataset), "normalize": "scale", "val_fraction": 0.1},
                       model={"type": "mlp", "hidden": [8]}, optimizer={"type": "adam", "lr": 0.01},
                       train={"epochs": 1, "batch_size": 20})
    return tl.run(cfg, run_id="r", progress=False, echo=False).path


def _arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as saved:
        return {k: saved[k] for k in saved.files}


def _rewrite(path: Path, change: Callable[[dict[str, np.ndarray]], None]) -> None:
    arrays = _arrays(path)
    change(arrays)
    np.savez(path, **arrays)  # allow_pickle is on when saving: object arrays are pickled


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip_weight_bytes(path: Path) -> None:
    """Damage the data of the first weight matrix in place (the archive's CRC then fails)."""
    data = bytearray(path.read_bytes())
    weights = _arrays(path)["model/0.W"].tobytes()
    at = bytes(data).index(weights[:64]) + len(weights) // 2
    data[at : at + 16] = bytes(255 - b for b in data[at : at + 16])
    path.write_bytes(bytes(data))


DAMAGE: dict[str, tuple[Callable[[Path], None], str]] = {
    "truncated": (_truncate, "truncated or damaged"),
    "empty": (lambda p: p.write_bytes(b""), "not an .npz archive"),
    "another file": (lambda p: p.write_bytes(b"not a checkpoint at all\n"), "not an .npz archive"),
    "flipped bytes": (_flip_weight_bytes, "truncated or damaged"),
    "pickled objects": (lambda p: _rewrite(p, lambda a: a.update({"model/0.W": np.array([{"x": 1}], dtype=object)})),
                        "holds pickled objects"),
    "wrong shape": (lambda p: _rewrite(p, lambda a: a.update({"model/0.W": np.zeros((3, 3), np.float32)})),
                    "does not fit"),
    "no meta": (lambda p: _rewrite(p, lambda a: a.pop("meta")), "no meta entry"),
    "meta not json": (lambda p: _rewrite(p, lambda a: a.update({"meta": np.array("{oops")})),
                      "not a JSON object"),
}


def _damaged_copy(trained: Path, tmp_path: Path, kind: str) -> tuple[Path, str]:
    damage, expected = DAMAGE[kind]
    copy = tmp_path / "runs" / "t" / "copy"
    shutil.copytree(trained, copy)
    damage(copy / "checkpoint.npz")
    return copy, expected


@pytest.fixture(params=sorted(DAMAGE))
def damaged(request: pytest.FixtureRequest, trained: Path, tmp_path: Path) -> tuple[Path, str]:
    """A copy of the trained run with its checkpoint damaged; the message expected."""
    return _damaged_copy(trained, tmp_path, request.param)


def _no_traceback_exit(argv: list[str], capsys: pytest.CaptureFixture[str], expected: str) -> None:
    assert main(argv) == RunDirError.exit_code
    err = capsys.readouterr().err
    assert "Traceback" not in err and "checkpoint.npz" in err and expected in " ".join(err.split())


def test_resume_gives_a_clean_error_and_leaves_the_run_as_it_was(
    damaged: tuple[Path, str], capsys: pytest.CaptureFixture[str]
) -> None:
    run, expected = damaged
    summary = (run / "summary.json").read_text()
    with pytest.raises(RunDirError, match=r"checkpoint\.npz") as caught:
        tl.run(resume=run, progress=False, echo=False)
    assert expected in str(caught.value)
    _no_traceback_exit(["run", "--resume", str(run), "--no-progress"], capsys, expected)
    assert (run / "summary.json").read_text() == summary


def test_evaluate_gives_a_clean_error(damaged: tuple[Path, str], capsys: pytest.CaptureFixture[str]) -> None:
    run, expected = damaged
    _no_traceback_exit(["evaluate", str(run)], capsys, expected)


def test_predict_gives_a_clean_error(damaged: tuple[Path, str], tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    run, expected = damaged
    (tmp_path / "imgs").mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(tmp_path / "imgs" / "1.png")
    out = tmp_path / "out.csv"
    _no_traceback_exit(["predict", str(run), "--images", str(tmp_path / "imgs"), "--out", str(out)], capsys, expected)
    assert not out.exists()


# A report shows whatever weights the file holds: a wrong shape is no error there.
@pytest.mark.parametrize("kind", sorted(set(DAMAGE) - {"wrong shape"}))
def test_report_notes_the_damaged_checkpoint(trained: Path, tmp_path: Path, kind: str) -> None:
    run, expected = _damaged_copy(trained, tmp_path, kind)
    note = load_artifacts(run).notes["weights"]
    assert "checkpoint.npz" in note and expected in note


def test_an_intact_checkpoint_still_loads(trained: Path, tmp_path: Path) -> None:
    copy = tmp_path / "runs" / "t" / "copy"
    shutil.copytree(trained, copy)
    assert load_artifacts(copy).weights["0.W"].shape == (784, 8)
    result = tl.run(resume=copy, progress=False, echo=False)
    assert result.summary["status"] == "completed"
    with np.load(copy / "checkpoint.npz") as saved:
        assert json.loads(str(saved["meta"]))["step"] == result.summary["steps"]
