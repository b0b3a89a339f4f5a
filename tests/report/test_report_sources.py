"""The "Where each setting comes from" section: its rows, its escaping, and its place in the run
and study reports (only when the config has a source section)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from tests.helpers import write_config
from trainlab import api
from trainlab.config import RunConfig, load_config
from trainlab.config.source_listing import list_sources
from trainlab.report.html import render_report
from trainlab.report.sources import COLUMNS, source_rows, source_sections, study_source_sections
from trainlab.report.study_report import StudyReport

SOURCE: dict[str, Any] = {
    "optimizer.lr": {"published": "a learning rate of 0.1 <b>bold</b>", "at": "002:3"},
    "model": {"reading": "<script>alert(1)</script> & a linear model", "tried": "an MLP: 91 %", "note": "n"},
    "optimizer.type": {"published": "opt = SGD()", "code": "owner/repo:train.py"},
}
RUN: dict[str, Any] = {"engine": "numpy", "data": {"dataset": "mnist"}, "model": {"type": "linear"},
                       "optimizer": {"type": "sgd", "lr": 0.1}, "source": SOURCE}


def _resolved() -> dict[str, Any]:
    return RunConfig.from_dict(RUN).model_dump(mode="json")


def test_rows_give_value_origin_text_and_place() -> None:
    rows = source_rows(_resolved(), searched=["optimizer.lr"])
    assert [r[0] for r in rows] == ["optimizer.lr", "model", "optimizer.type"]
    assert rows[0] == ["optimizer.lr", "searched (optimizer.lr); base 0.1", "published",
                       "a learning rate of 0.1 <b>bold</b>", "002:3"]
    assert rows[1][1].startswith("{type: linear, hidden: []")
    assert rows[1][2:] == ["reading", "<script>alert(1)</script> & a linear model Tried: an MLP: 91 % Note: n", ""]
    assert rows[2][1:] == ["sgd", "published", "opt = SGD()", "code owner/repo:train.py"]


def test_section_is_escaped_and_absent_without_a_source() -> None:
    assert source_sections({**_resolved(), "source": {}}) == []
    sections = source_sections(_resolved(), lead="The run's config.")
    assert [s.anchor for s in sections] == ["sources"]
    page = render_report("r", sections)
    assert "<script>alert" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; &amp; a linear model" in page
    assert "&lt;b&gt;bold&lt;/b&gt;" in page
    assert "The run&#39;s config. 2 of 3 entries are published" in page
    assert all(f"<th>{c}</th>" in page or f'<th class="num">{c}</th>' in page for c in COLUMNS)


def test_an_invalid_source_section_is_a_note() -> None:
    config = {**_resolved(), "source": {"model": {"tried": "no published or reading"}}}
    (section,) = source_sections(config)
    assert section.blocks[0].kind == "note" and "needs exactly one of published" in section.blocks[0].text


def _study_file(tmp_path: Path) -> Path:
    path = tmp_path / "study.yaml"
    path.write_text(yaml.safe_dump({**RUN, "name": "s", "study": {"objective": "test_accuracy",
                                                                  "space": {"optimizer.lr": [0.1, 0.01]}}}))
    return path


def _fake_study(tmp_path: Path, source: str | None, run_dir: Path | None = None) -> Any:
    """The few attributes of StudyData that the section reads (a real study trains its trials)."""
    stage = SimpleNamespace(attrs={"source": source, "overrides": []}, params=[SimpleNamespace(name="optimizer.lr")])
    trial = SimpleNamespace(user_attrs={"key": "t0000"}, number=0)
    return SimpleNamespace(path=tmp_path / "study", stages=[stage], trials=[(stage, trial)],
                           run_dir=lambda _trial: run_dir)


def test_study_section_reads_the_study_file_else_a_trial(tmp_path: Path) -> None:
    (section,) = study_source_sections(_fake_study(tmp_path, str(_study_file(tmp_path))))
    assert "The study's base config" in section.blocks[0].text
    values = {row[0]: row[1] for row in section.blocks[1].rows}
    assert values["optimizer.lr"] == "searched (optimizer.lr); base 0.1" and values["optimizer.type"] == "sgd"

    trial_dir = tmp_path / "t0000"
    trial_dir.mkdir()
    (trial_dir / "config.yaml").write_text(yaml.safe_dump({**_resolved(), "provenance": {"created": "now"}}))
    (section,) = study_source_sections(_fake_study(tmp_path, str(tmp_path / "gone.yaml"), trial_dir))
    assert "as trial t0000 ran it" in section.blocks[0].text and len(section.blocks[1].rows) == 3
    assert study_source_sections(_fake_study(tmp_path, None)) == []


def test_study_report_hook_adds_the_section(tmp_path: Path) -> None:
    report = StudyReport(_fake_study(tmp_path, str(_study_file(tmp_path))))
    anchors = [s.anchor for s in report.sections()]
    assert anchors.index("sources") == anchors.index("export") - 1


def test_run_report_shows_where_each_setting_comes_from(real_data: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRAINLAB_NUM_THREADS", "1")
    config = write_config(tmp_path / "run.yaml", tmp_path / "runs", model={"type": "linear"},
                          data={"dataset": "mnist", "limit": {"train": 300, "val": 100, "test": 100},
                                "normalize": "scale"},
                          train={"epochs": 1, "batch_size": 100}, source=SOURCE)
    run = api.run(config, run_id="a", progress=False, echo=False).path
    saved = yaml.safe_load((run / "config.yaml").read_text(encoding="utf-8"))
    assert saved["source"] == SOURCE  # kept as written, next to the run-level provenance
    assert "provenance" in saved
    assert RunConfig.from_dict({k: v for k, v in saved.items() if k != "provenance"}) == load_config(config)
    assert {row.path: row.kind for row in list_sources(run / "config.yaml").rows}["optimizer.lr"] == "published"
    page = api.write_report(run).read_text(encoding="utf-8")
    assert '<section id="sources">' in page and 'href="#sources"' in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page
