"""Every reproduction config says where each of its settings comes from, and its quotes are true.

For each row of configs/reproductions.yaml, and each seed study file that has a source
section: every setting the file (with its bases) writes is covered by a ``source:`` key;
every ``at`` quote is at its line of the source report; every published quote that states
numbers is quoted for a field that holds one of them. The reports are looked for in
``$TRAINLAB_REFERENCE`` (the reference folder, or its seeds/ folder itself), else in
``<repo>/../shared/reference/seeds``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from trainlab.api import validate_files
from trainlab.config import load_config_dict
from trainlab.config.source import uncovered
from trainlab.config.source_checks import number_problems, quote_problems

ROOT = Path(__file__).resolve().parents[1]
MANIFEST = ROOT / "configs" / "reproductions.yaml"


def _seeds_dir() -> Path:
    env = os.environ.get("TRAINLAB_REFERENCE")
    if env:
        return Path(env) / "seeds" if (Path(env) / "seeds").is_dir() else Path(env)
    return ROOT.parent / "shared" / "reference" / "seeds"


def _rows() -> list[Any]:
    rows = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))["rows"]
    return [pytest.param(ROOT / row["config"], id=row["id"]) for row in rows]


def _studies_with_source() -> list[Any]:
    found = []
    for path in sorted(ROOT.glob("configs/seed-*/*.yaml")):
        raw = load_config_dict(path)
        if "study" in raw and raw.get("source"):
            found.append(pytest.param(path, id=str(path.relative_to(ROOT / "configs"))))
    return found


@pytest.fixture(scope="module")
def seeds() -> Path:
    folder = _seeds_dir()
    if not folder.is_dir():
        pytest.skip(f"the source reports are not at {folder}: set TRAINLAB_REFERENCE to the folder that holds "
                    "them (or its parent reference/ folder)")
    return folder


def _check(path: Path, seeds: Path) -> None:
    (_, error), = validate_files([path])
    assert error is None, f"{path} does not validate:\n{error}"
    raw = load_config_dict(path)
    source = raw.get("source") or {}
    assert source, f"{path} has no source: section (see docs/provenance.md)"
    problems = [f"set but not covered by a source key: {', '.join(missing)}"
                for missing in [uncovered(raw, source)] if missing]
    problems += quote_problems(source, seeds)
    problems += number_problems(raw, source)
    assert not problems, f"{path}:\n" + "\n".join(problems)


@pytest.mark.parametrize("path", _rows())
def test_reproduction_row_provenance(path: Path, seeds: Path) -> None:
    _check(path, seeds)


@pytest.mark.parametrize("path", _studies_with_source())
def test_seed_study_provenance(path: Path, seeds: Path) -> None:
    _check(path, seeds)
