"""configs/study-outcomes.yaml: every quoted conclusion is the report's own words at its line."""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from tests.helpers import import_script
from trainlab.config.source_checks import quote_problems

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "configs" / "study-outcomes.yaml"
SEEDS = Path(os.environ.get("TRAINLAB_REFERENCE", ROOT.parent / "shared" / "reference" / "seeds"))


@pytest.fixture(scope="module")
def outcomes() -> ModuleType:
    """scripts/study_outcomes.py imported as a module."""
    return import_script("study_outcomes")


def test_manifest_loads_with_a_basis_for_every_claim(outcomes: ModuleType) -> None:
    manifest = outcomes.load_manifest(MANIFEST)
    claims = [c for study in manifest["studies"] for c in study.get("claims") or []]
    assert claims and all(("ours" in c) != ("quote" in c) for c in claims)
    assert any("quote" in c for c in claims) and any(c.get("ours") for c in claims)


def test_a_claim_without_basis_is_refused(outcomes: ModuleType, tmp_path: Path) -> None:
    bad = {"studies": [{"file": "x.yaml", "published": [{"quote": "q", "at": "002:1"}],
                        "claims": [{"text": "t", "best": {"a": 1}}]}]}
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(SystemExit, match="give quote: <index"):
        outcomes.load_manifest(path)
    bad["studies"][0]["claims"][0]["quote"] = 3  # out of range
    path.write_text(yaml.safe_dump(bad), encoding="utf-8")
    with pytest.raises(SystemExit, match="give quote"):
        outcomes.load_manifest(path)


@pytest.mark.skipif(not SEEDS.is_dir(), reason=f"the seed reports are not at {SEEDS}")
def test_every_quote_is_at_its_line() -> None:
    manifest = yaml.safe_load(MANIFEST.read_text(encoding="utf-8"))
    entries = {
        f"{study['file']}#{i}": {"published": q["quote"], "at": q["at"]}
        for study in manifest["studies"]
        for i, q in enumerate(study["published"])
    }
    assert entries
    assert quote_problems(entries, SEEDS) == []


def _setting(params: dict, values: list[float]):
    from trainlab.studies.results import Setting
    from trainlab.studies.stats import spread

    return Setting(params=params, trials=[], values=values, spread=spread(values), verdict=None)


def test_not_worse_claims(outcomes: ModuleType) -> None:
    a = _setting({"bn": "after"}, [0.80, 0.81, 0.79])
    b = _setting({"bn": "before"}, [0.70, 0.71, 0.69])
    claim = {"text": "t", "not_worse": [{"bn": "after"}, {"bn": "before"}]}
    assert outcomes.judge(claim, [a, b], True, 0.05, 0.1, 0.03).startswith("holds: not worse")
    reverse = {"text": "t", "not_worse": [{"bn": "before"}, {"bn": "after"}]}
    assert outcomes.judge(reverse, [a, b], True, 0.05, 0.1, 0.03).startswith("contradicted: worse beyond")


def test_a_study_is_read_from_its_archived_journal_once_runs_is_gone(outcomes: ModuleType, tmp_path: Path) -> None:
    archived = sorted((ROOT / "docs" / "study-journals").glob("*.journal"))
    if not archived:
        pytest.skip("no archived study journal in docs/study-journals")
    archive = tmp_path / "archive"
    archive.mkdir()
    journal = archived[0]
    (archive / journal.name).write_bytes(journal.read_bytes())
    gone = tmp_path / "runs" / journal.stem  # the study directory of a new checkout: absent
    stages = outcomes.read_study(gone, archive=archive)
    assert stages and any(stage.trials for stage in stages)
    assert outcomes.read_study(tmp_path / "runs" / "never-ran", archive=archive) is None


def test_a_comparison_with_a_setting_at_chance_is_inconclusive(outcomes: ModuleType) -> None:
    """A favoured setting that stayed at chance did not train at the study's size: the claim is
    inconclusive (the measured outcome follows); claims about chance itself are judged."""
    small = _setting({"batch": 32}, [0.29, 0.30, 0.28])
    large = _setting({"batch": 256}, [0.10, 0.101, 0.099])
    best = {"text": "t", "best": {"batch": 256}}
    outcome = outcomes.judge(best, [small, large], True, 0.05, 0.1, 0.03)
    assert outcome.startswith("inconclusive at this size: batch=256 (10.00 %) stayed at chance")
    assert "(measured: not reproduced" in outcome
    # the favoured side at chance: inconclusive; only the other side there: an outcome (zero init)
    better = {"text": "t", "better": [{"batch": 256}, {"batch": 32}]}
    assert outcomes.judge(better, [small, large], True, 0.05, 0.1, 0.03).startswith("inconclusive")
    worse = {"text": "t", "better": [{"batch": 32}, {"batch": 256}]}
    assert outcomes.judge(worse, [small, large], True, 0.05, 0.1, 0.03).startswith("holds")
    tie = {"text": "t", "tie": [{"batch": 32}, {"batch": 256}]}
    assert outcomes.judge(tie, [small, large], True, 0.05, 0.1, 0.03).startswith("inconclusive")
    near = {"text": "t", "near_chance": {"batch": 256}}
    assert outcomes.judge(near, [small, large], True, 0.05, 0.1, 0.03).startswith("holds")
    trained = _setting({"batch": 64}, [0.25, 0.26, 0.24])
    assert outcomes.judge({"text": "t", "best": {"batch": 32}}, [small, trained], True, 0.05, 0.1, 0.03) \
        .startswith("ranks first")
    # a loss (minimised) has no chance level: the comparison stands
    assert not outcomes.judge(best, [large, small], False, 0.05, 0.1, 0.03).startswith("inconclusive")



def test_a_comparison_pairs_settings_within_their_context(outcomes: ModuleType) -> None:
    """"On each baseline, before beats after" compares before and after on the same baseline:
    a cross-baseline pair (baseline-2's before against baseline-1's after) must not decide it."""
    b1_before = _setting({"net": "b1", "bn": "before"}, [0.50, 0.51, 0.49])
    b1_after = _setting({"net": "b1", "bn": "after"}, [0.40, 0.41, 0.39])
    b2_before = _setting({"net": "b2", "bn": "before"}, [0.70, 0.71, 0.69])
    b2_after = _setting({"net": "b2", "bn": "after"}, [0.80, 0.81, 0.79])
    settings = [b2_after, b2_before, b1_before, b1_after]
    claim = {"text": "t", "better": [{"bn": "before"}, {"bn": "after"}]}
    outcome = outcomes.judge(claim, settings, True, 0.05, 0.1, 0.03)
    # all four cross pairs would give min(diff) = 0.50 - 0.80 = -30 points; per baseline: +10 and -10
    assert outcome.startswith("mixed: ")
    assert "net=b1: holds beyond seed noise (difference +10.00 points" in outcome
    assert "net=b2: contradicted beyond seed noise (difference -10.00 points" in outcome
    assert "-30.00" not in outcome
    b2_after_low = _setting({"net": "b2", "bn": "after"}, [0.60, 0.61, 0.59])
    agreed = outcomes.judge(claim, [b2_before, b1_before, b2_after_low, b1_after], True, 0.05, 0.1, 0.03)
    assert agreed.startswith("holds beyond seed noise in each of 2 pairs (")
    assert "net=b1: difference +10.00 points" in agreed
    assert "net=b2: difference +10.00 points" in agreed
    # specs that name every parameter: no context, every cross pair compared
    pairs = outcomes.paired([b1_before], [b2_after], {"net": "b1", "bn": "before"}, {"net": "b2", "bn": "after"})
    assert [(a, b) for _, a, b in pairs] == [(b1_before, b2_after)]


def test_a_tie_within_a_stated_margin(outcomes: ModuleType) -> None:
    """"Within 0.1 point" holds only when the means are that close, whatever the noise says."""
    a = _setting({"h": 512}, [0.9800, 0.9830, 0.9770])
    close = _setting({"h": 256}, [0.9795, 0.9825, 0.9765])
    apart = _setting({"h": 256}, [0.9770, 0.9800, 0.9740])
    claim = {"text": "t", "tie": [{"h": 512}, {"h": 256}], "within": 0.001}
    assert outcomes.judge(claim, [a, close], True, 0.05, 0.1, 0.03).startswith("holds: within 0.1 points")
    assert outcomes.judge(claim, [a, apart], True, 0.05, 0.1, 0.03).startswith("does not hold as stated")
    plain = {"text": "t", "tie": [{"h": 512}, {"h": 256}]}
    assert outcomes.judge(plain, [a, apart], True, 0.05, 0.1, 0.03).startswith("holds: not distinguishable")


def test_within_is_refused_on_other_claims(outcomes: ModuleType, tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"studies": [{
        "file": "x.yaml", "published": [{"quote": "q", "at": "000:1"}],
        "claims": [{"text": "t", "quote": 0, "better": [{"a": 1}, {"a": 2}], "within": 0.01}]}]}))
    with pytest.raises(SystemExit, match="within: is for tie claims only"):
        outcomes.load_manifest(manifest)


def test_a_claim_can_be_judged_on_another_summary_number(outcomes: ModuleType) -> None:
    """``metric: final_val_loss``: the settings of the stage's ranking, judged by their runs' final
    validation loss (minimised), as the report compared BN before and after."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    def trial(bn: str, loss: float):
        return optuna.trial.create_trial(
            params={"bn": bn}, distributions={"bn": CategoricalDistribution(["before", "after"])}, value=0.5,
            user_attrs={"result": {"summary": {"final_val_loss": loss}}})

    before = _setting({"bn": "before"}, [0.5, 0.5, 0.5])
    before.trials.extend(trial("before", v) for v in (0.90, 0.92, 0.91))
    after = _setting({"bn": "after"}, [0.5, 0.5, 0.5])
    after.trials.extend(trial("after", v) for v in (1.30, 1.32, 1.31))
    judged, maximize = outcomes.by_metric([after, before], "final_val_loss")
    assert not maximize and [s.params["bn"] for s in judged] == ["before", "after"]
    assert judged[0].values == [0.90, 0.92, 0.91]
    claim = {"text": "t", "better": [{"bn": "before"}, {"bn": "after"}], "metric": "final_val_loss"}
    outcome = outcomes.judge(claim, judged, maximize, 0.05, 0.1, 0.03)
    assert outcome.startswith("holds beyond seed noise (first minus second -0.4 (lower is better)")
