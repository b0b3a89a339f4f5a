"""scripts/augmented_val.py: a run's validation accuracy under its own training augmentation."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import trainlab.api as tl
from tests.helpers import import_script

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def script() -> ModuleType:
    return import_script("augmented_val")


def _folder(root: Path) -> Path:
    """Two classes told apart by a bright left half (so that a flip changes the picture)."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for label, name in enumerate(("left", "right")):
        folder = root / "train" / name
        folder.mkdir(parents=True)
        for i in range(40):
            pixels = rng.integers(0, 60, size=(8, 8, 3)).astype(np.float64)
            pixels[:, :4] += 150 if label == 0 else 0  # the same brightness, on one side or the other
            pixels[:, 4:] += 150 if label == 1 else 0
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root


def _run(tmp_path: Path, augment: dict, run_id: str) -> Path:
    config = tmp_path / f"{run_id}.yaml"
    config.write_text(json.dumps({
        "name": "aug", "seed": 0, "engine": "torch",
        "data": {"dataset": str(_folder(tmp_path / run_id / "data")), "val_fraction": 0.25},
        "model": {"type": "cnn", "conv": [{"filters": 4}]}, "optimizer": {"type": "adam", "lr": 0.01},
        "augment": augment, "train": {"epochs": 3, "batch_size": 16},
        "output": {"dir": str(tmp_path / "runs"), "report": False}}))
    return tl.run(config, run_id=run_id, progress=False, echo=False).path


def test_clean_and_augmented_accuracy_of_a_run(script: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    from trainlab.engines.torch.augment import BatchAugment

    run_dir = _run(tmp_path, {"hflip": True, "rotate": 10}, "r")
    seen: list[tuple[dict, int]] = []
    call = BatchAugment.__call__

    def spy(self: BatchAugment, x, y, *args, **kwargs):
        seen.append((self.cfg.model_dump(), len(x)))
        return call(self, x, y, *args, **kwargs)

    monkeypatch.setattr(BatchAugment, "__call__", spy)
    result = script.augmented_accuracy(run_dir, 2)
    summary = json.loads((run_dir / "summary.json").read_text())
    assert result["images"] == 20 and result["clean"] == pytest.approx(summary["final_val_accuracy"], abs=1e-9)
    assert len(result["augmented"]) == 2 and all(0.0 <= a <= 1.0 for a in result["augmented"])
    # the run's own augmentation, over every validation image, once per draw
    assert [n for _, n in seen] == [20, 20]
    assert all(cfg["hflip"] is True and cfg["rotate"] == 10 for cfg, _ in seen)
    assert script.augmented_accuracy(run_dir, 2)["augmented"] == result["augmented"]  # seeded by the draw
    out = tmp_path / "aug.json"
    assert script.main([str(run_dir), "--draws", "2", "--json", str(out)]) == 0
    assert "under the training augmentation" in capsys.readouterr().out
    assert json.loads(out.read_text())[0]["augmented"] == result["augmented"]


def test_a_run_without_augmentation_is_refused(script: ModuleType, tmp_path: Path) -> None:
    run_dir = _run(tmp_path, {}, "plain")
    with pytest.raises(SystemExit, match="trained without augmentation"):
        script.augmented_accuracy(run_dir, 1)
