"""Write docs/studies.md: the seed studies run as trainlab studies, against their published conclusions.

Reads the manifest (configs/study-outcomes.yaml: per study its file, directory, the command
that ran it, what was reduced, the published conclusion and checkable claims) and each study
directory's storage through ``trainlab.studies`` (the same ranking and verdicts as its
results.md), and writes, per study: the published conclusion, the measured ranking, and per
claim whether it holds beyond seed noise::

    .venv/bin/python scripts/study_outcomes.py                 # docs/studies.md
    .venv/bin/python scripts/study_outcomes.py --out /tmp/s.md

A study that is still running is reported as far as it got; one not started says so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import shutil
import sys
import tempfile
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from optuna.trial import TrialState

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from trainlab.studies import load_stages, open_storage, rank_settings, resolve_url, spread, welch_p  # noqa: E402
from trainlab.studies.results import Setting, StageData, reported_values  # noqa: E402
from trainlab.studies.storage import JOURNAL_FILE  # noqa: E402

ARCHIVE = ROOT / "docs" / "study-journals"  # copies of the study journals the page was written from
CLAIM_KINDS = ("best", "better", "not_worse", "tie", "near_chance", "above_chance", "best_in")


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest, with each study's quotes and each claim's kind and basis checked.

    ``published`` is a list of the report's own words, each ``{quote, at}`` (FILE:LINE of a
    seed report); a claim names the quote it tests (``quote: <index>``) or says it is our
    hypothesis (``ours: true``), never neither.
    """
    manifest = yaml.safe_load(path.read_text(encoding="utf-8"))
    for study in manifest["studies"]:
        quotes = study.get("published")
        if not isinstance(quotes, list) or not all(isinstance(q, dict) and {"quote", "at"} <= set(q) for q in quotes):
            raise SystemExit(f"{path}: {study['file']}: published: give a list of {{quote, at}} (the report's words)")
        for claim in study.get("claims") or []:
            kinds = [k for k in CLAIM_KINDS if k in claim]
            if len(kinds) != 1:
                raise SystemExit(f"{path}: {study['file']}: claim {claim!r}: give one of {', '.join(CLAIM_KINDS)}")
            index = claim.get("quote")
            if "within" in claim and kinds != ["tie"]:
                raise SystemExit(f"{path}: {study['file']}: claim {claim['text']!r}: within: is for tie claims only")
            if ("ours" in claim) == (index is not None) or (index is not None and not 0 <= index < len(quotes)):
                raise SystemExit(f"{path}: {study['file']}: claim {claim['text']!r}: give quote: <index into "
                                 f"published, 0..{len(quotes) - 1}> or ours: true")
    return manifest


def basis(claim: dict[str, Any], study: dict[str, Any]) -> str:
    """Whose conclusion a claim tests: the report's (with its line) or ours."""
    if claim.get("ours"):
        return "ours (hypothesis)"
    return f"report, {study['published'][claim['quote']]['at']}"


def read_study(study_dir: Path, archive: Path = ARCHIVE) -> list[StageData] | None:
    """The stages stored in a study directory's journal (None: the study never ran).

    Study directories live under ``runs/``, which is not committed, so each journal read here
    is also copied to ``archive/<directory name>.journal``; a later checkout without the
    directory reads that copy instead.
    """
    kept = archive / f"{study_dir.name}.journal"
    if (study_dir / JOURNAL_FILE).exists():
        archive.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(study_dir / JOURNAL_FILE, kept)
        return _load(study_dir)
    if not kept.exists():
        return None
    with tempfile.TemporaryDirectory() as scratch:  # the storage wants its journal in a study folder
        shutil.copyfile(kept, Path(scratch) / JOURNAL_FILE)
        return _load(Path(scratch))


def _load(study_dir: Path) -> list[StageData] | None:
    handle = open_storage(resolve_url(None, study_dir), heartbeat=None, lock_dir=study_dir)
    found = load_stages(handle)
    return next(iter(found.values()), None)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b or a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, str) and isinstance(b, list | tuple):  # grids of lists are stored as text
        return _same(yaml.safe_load(a), b)
    return a == b


def matching(settings: Sequence[Setting], spec: dict[str, Any]) -> list[Setting]:
    """The settings whose params include every key/value of ``spec``."""
    return [s for s in settings if all(k in s.params and _same(s.params[k], v) for k, v in spec.items())]


def show_params(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in params.items())


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _pct(value: float) -> str:
    return f"{100 * value:.2f}"


def untrained(claim: dict[str, Any], settings: list[Setting], chance: float, tol: float) -> list[Setting]:
    """The settings a comparison claim favours whose mean accuracy is at chance (within ``tol``).

    A setting that never left chance did not train at the study's size (a reduced study's few
    steps), so whether the report's claim for it holds cannot be told there. The favoured
    settings: for ``best``, the best-ranked claimed one; for ``better`` and ``not_worse``, the
    first group; for ``tie``, both. A disfavoured setting at chance is an outcome (zero init
    against Glorot), not a missing one; claims about chance itself are not comparisons.
    """
    if "best" in claim:
        favoured = matching(settings, claim["best"])[:1]
    elif "tie" in claim:
        favoured = matching(settings, claim["tie"][0]) + matching(settings, claim["tie"][1])
    elif "better" in claim or "not_worse" in claim:
        favoured = matching(settings, (claim.get("better") or claim.get("not_worse"))[0])
    else:
        return []
    return [s for s in favoured if abs(s.spread.mean - chance) <= tol]


def judge(claim: dict[str, Any], settings: list[Setting], maximize: bool, alpha: float, chance: float,
          tol: float) -> str:
    """One claim's outcome, in words: holds / holds within noise / contradicted, and why.

    Where the metric is maximised (an accuracy) and a setting the claim favours stayed at chance
    (:func:`untrained`), the outcome is "inconclusive at this size", with the measured one after it.
    """
    if not settings:
        return "not measured (no completed trial)"
    outcome = _judge(claim, settings, maximize, alpha, chance, tol)
    stuck = untrained(claim, settings, chance, tol) if maximize else []
    if not stuck or outcome.startswith("not measured"):
        return outcome
    names = "; ".join(f"{show_params(s.params)} ({_pct(s.spread.mean)} %)" for s in stuck)
    subject = "it" if len(stuck) == 1 else "they"
    return (f"inconclusive at this size: {names} stayed at chance ({_pct(chance)} % ± {_pct(tol)} points), "
            f"so {subject} did not train here (measured: {outcome})")


def _judge(claim: dict[str, Any], settings: list[Setting], maximize: bool, alpha: float, chance: float,
           tol: float) -> str:
    """:func:`judge` before the chance check."""
    repeats = min(s.spread.n for s in settings)
    no_test = repeats < 2
    if "best" in claim:
        targets = matching(settings, claim["best"])
        if not targets:
            return "not measured (setting missing)"
        top = settings[0]
        if top not in targets:
            verdict = targets[0].verdict
            gap = f"ranked {settings.index(targets[0]) + 1} of {len(settings)}, best is {show_params(top.params)}"
            if no_test:
                return f"not reproduced ({gap}; one run per setting, no noise test)"
            if verdict is not None and verdict.verdict == "worse":
                return f"contradicted beyond seed noise ({gap}; {verdict.text})"
            return f"not reproduced, but within seed noise ({gap}; {verdict.text if verdict else 'n/a'})"
        others = [s for s in settings if s is not top]
        if no_test:
            return "holds in the ranking (one run per setting: no noise test)"
        ties = [s for s in others if s.verdict is None or s.verdict.verdict != "worse"]
        if not ties:
            return "holds beyond seed noise (every other setting: worse than best)"
        shown = "; ".join(show_params(s.params) for s in ties)
        return f"ranks first, but not beyond seed noise (not distinguishable: {shown})"
    if "better" in claim or "tie" in claim or "not_worse" in claim:
        kind = next(k for k in ("better", "tie", "not_worse") if k in claim)
        spec_a, spec_b = claim[kind]
        pairs = paired(matching(settings, spec_a), matching(settings, spec_b), spec_a, spec_b)
        if not pairs:
            return "not measured (setting missing)"
        within = claim.get("within")
        outcomes = [(context, *_pair_outcome(kind, a, b, maximize, alpha, within)) for context, a, b in pairs]
        if len(outcomes) == 1:
            _, verdict, detail = outcomes[0]
            return f"{verdict} ({detail})"
        verdicts = {verdict for _, verdict, _ in outcomes}
        if len(verdicts) == 1:
            details = "; ".join(f"{context}: {detail}" for context, _, detail in outcomes)
            return f"{verdicts.pop()} in each of {len(outcomes)} pairs ({details})"
        return "mixed: " + "; ".join(f"{context}: {verdict} ({detail})" for context, verdict, detail in outcomes)
    if "near_chance" in claim or "above_chance" in claim:
        near = "near_chance" in claim
        targets = matching(settings, claim["near_chance" if near else "above_chance"])
        if not targets:
            return "not measured (setting missing)"
        means = ", ".join(f"{_pct(s.spread.mean)} % (n={s.spread.n})" for s in targets)
        if near:
            ok = all(abs(s.spread.mean - chance) <= tol for s in targets)
        else:
            ok = all(s.spread.ci_low > chance + tol if s.spread.n > 1 else s.spread.mean > chance + tol
                     for s in targets)
        what = f"chance {_pct(chance)} %, tolerance {_pct(tol)} points"
        return f"{'holds' if ok else 'does not hold'} (mean {means}; {what})"
    spec = claim["best_in"]
    value = settings[0].params.get(spec["param"])
    if value is None:
        return "not measured (parameter missing)"
    inside = spec["low"] <= float(value) <= spec["high"]
    return (f"{'holds' if inside else 'does not hold'}: best {spec['param']} = {float(value):.4g} "
            f"(range {spec['low']:g}..{spec['high']:g})")


def paired(group_a: list[Setting], group_b: list[Setting], spec_a: dict[str, Any],
           spec_b: dict[str, Any]) -> list[tuple[str, Setting, Setting]]:
    """The (context, a, b) pairs a comparison claim is tested on.

    A setting of ``group_a`` is compared with each of ``group_b`` that agrees with it on every
    parameter neither spec names (its context: "on each baseline" compares before and after
    on the same baseline, never across baselines). Where no pair shares its context, every
    cross pair is compared. The context is shown as ``key=value, ...`` ("all" when empty).
    """
    named = set(spec_a) | set(spec_b)

    def context(setting: Setting) -> dict[str, Any]:
        return {k: v for k, v in setting.params.items() if k not in named}

    def agree(a: Setting, b: Setting) -> bool:
        ca, cb = context(a), context(b)
        return ca.keys() == cb.keys() and all(_same(ca[k], cb[k]) for k in ca)

    matched = [(a, b) for a in group_a for b in group_b if agree(a, b)]
    if matched:
        return [(show_params(context(a)) or "all", a, b) for a, b in matched]
    return [(f"{show_params(a.params)} vs {show_params(b.params)}", a, b) for a in group_a for b in group_b]


def _pair_outcome(kind: str, a: Setting, b: Setting, maximize: bool, alpha: float,
                  within: float | None = None) -> tuple[str, str]:
    """A two-setting claim's outcome, as (verdict, detail): ``better`` (a beats b), ``not_worse``
    or ``tie``; shown as ``verdict (detail)``.

    ``within`` (tie only) is the largest difference, in the metric's units, the claim allows
    ("within 0.1 point": 0.001); without it a tie holds when the difference is not beyond
    seed noise.
    """
    p = welch_p(a.values, b.values)
    diff = a.spread.mean - b.spread.mean
    if not maximize:
        diff = -diff
    p_text = f"Welch's t-test p = {p:.2g}" if p is not None else "no noise test (fewer than 2 runs)"
    # an accuracy's difference in points; a minimised number (a loss) as it is, first minus second
    delta = (f"difference {100 * diff:+.2f} points" if maximize
             else f"first minus second {a.spread.mean - b.spread.mean:+.4g} (lower is better)")
    if kind == "tie":
        if within is not None:
            if abs(diff) <= within:
                return f"holds: within {100 * within:.2g} points", f"{delta}, {p_text}"
            if p is None or p >= alpha:
                return (f"does not hold as stated: the difference exceeds {100 * within:.2g} points, "
                        "though it is not beyond seed noise"), f"{delta}, {p_text}"
            return "contradicted: the difference is beyond seed noise", f"{delta}, {p_text}"
        if p is None:
            return "no noise test", delta
        if p >= alpha:
            return "holds: not distinguishable at seed noise", f"{delta}, {p_text}"
        return "contradicted: the difference is beyond seed noise", f"{delta}, {p_text}"
    if kind == "not_worse":
        if diff >= 0:
            return "holds: not worse", f"{delta}, {p_text}"
        if p is None:
            return "worse in direction", f"{delta}; one run per setting: no noise test"
        if p >= alpha:
            return "holds: worse only within seed noise", f"{delta}, {p_text}"
        return "contradicted: worse beyond seed noise", f"{delta}, {p_text}"
    if diff > 0:
        if p is None:
            return "holds in direction", f"{delta}; one run per setting: no noise test"
        if p < alpha:
            return "holds beyond seed noise", f"{delta}, {p_text}"
        return "holds in direction, not beyond seed noise", f"{delta}, {p_text}"
    if p is not None and p < alpha:
        return "contradicted beyond seed noise", f"{delta}, {p_text}"
    return "reversed, but within seed noise", f"{delta}, {p_text}"


def stage_lines(stage: StageData, settings: list[Setting], metric: str) -> list[str]:
    counts = {state.name.lower(): stage.count(state) for state in TrialState}
    planned = stage.attrs.get("planned", len(stage.trials))
    lines = [f"Stage `{stage.name}`: {counts['complete']} of {planned} planned trials complete"
             + (f", {counts['running']} running" if counts["running"] else "")
             + (f", {counts['fail']} failed" if counts["fail"] else "")
             + (f", {counts['pruned']} pruned" if counts["pruned"] else "")
             + f"; repeats {stage.attrs.get('repeats', 1)}.", ""]
    if not settings:
        return [*lines, "(no completed trial yet)", ""]
    extra = metric != "test_accuracy"  # chosen on validation: show the test accuracy beside it
    lines += [f"| rank | setting | n | mean {metric} % | sd | 95 % CI | vs best |"
              + (" mean test_accuracy % |" if extra else ""),
              "|---|---|---|---|---|---|---|" + ("---|" if extra else "")]
    for rank, s in enumerate(settings, 1):
        sd = f"{100 * s.spread.sd:.2f}" if s.spread.n > 1 else "-"
        ci = f"{_pct(s.spread.ci_low)} .. {_pct(s.spread.ci_high)}" if s.spread.n > 1 else "-"
        verdict = s.verdict.text if s.verdict is not None else "-"
        lines.append(f"| {rank} | {show_params(s.params)} | {s.spread.n} | {_pct(s.spread.mean)} | {sd} | {ci} "
                     f"| {verdict} |" + (f" {_test_mean(s)} |" if extra else ""))
    return [*lines, ""]


def _test_mean(setting: Setting) -> str:
    values = reported_values(setting, "test_accuracy")
    return _pct(sum(values) / len(values)) if values else "-"


def study_section(entry: dict[str, Any], alpha: float, chance: float, tol: float) -> list[str]:
    name = Path(entry["dir"]).name
    lines = [f"## {entry['file']}", "", "The report's words:", ""]
    lines += [f"> {i}. \"{q['quote']}\" ({q['at']})" for i, q in enumerate(entry["published"])]
    lines += ["",
             f"- Size: {entry['size']}" + (f" ({entry['reduced']})" if entry.get("reduced") else ""),
             f"- Study directory: `{entry['dir']}`",
             f"- Command: `{entry['command']}`"]
    lines += [f"- Note: {entry['note']}"] if entry.get("note") else []
    lines.append("")
    stages = read_study(ROOT / entry["dir"])
    if stages is None:
        lines += [f"Not run yet: no `{JOURNAL_FILE}` in `{entry['dir']}` (nor a copy in "
                  f"`docs/study-journals/`).", ""]
        claims = entry.get("claims") or []
        if claims:
            lines += ["| conclusion to test | whose |", "|---|---|"]
            lines += [f"| {c['text']} | {basis(c, entry)} |" for c in claims]
            lines.append("")
        return lines
    metric = stages[0].attrs.get("metric", "objective")
    overrides = stages[0].attrs.get("overrides") or []
    if overrides:
        lines += ["Overrides recorded in the study: " + ", ".join(f"`{o}`" for o in overrides) + ".", ""]
    ranked = {stage.name: rank_settings(stage, alpha) for stage in stages}
    lines += [f"### Measured ranking ({name})", ""]
    for stage in stages:
        lines += stage_lines(stage, ranked[stage.name], metric)
    missing = [s for s in stage_names(stages) if s not in ranked]
    if missing:
        lines += [f"Stages not started: {', '.join(missing)}.", ""]
    claims = entry.get("claims") or []
    if claims:
        lines += ["### Conclusions against the measurement", "",
                  "| conclusion | whose | stage | outcome |", "|---|---|---|---|"]
        for claim in claims:
            stage_name = claim.get("stage", stages[0].name)
            stage = next((s for s in stages if s.name == stage_name), None)
            settings = ranked.get(stage_name, [])
            maximize = stage.maximize if stage else True
            if claim.get("metric"):
                settings, maximize = by_metric(settings, claim["metric"])
            outcome = judge(claim, settings, maximize, alpha, chance, tol)
            if stage is not None and settings and not _finished(stage):
                outcome += " (partial: the stage is unfinished)"
            judged_on = f" (on {claim['metric']})" if claim.get("metric") else ""
            lines.append(f"| {claim['text']} | {basis(claim, entry)} | {stage_name}{judged_on} | {outcome} |")
        lines.append("")
    return lines


def by_metric(settings: list[Setting], metric: str) -> tuple[list[Setting], bool]:
    """``settings`` judged by another number of their runs' summaries (a claim's ``metric:``,
    e.g. ``final_val_loss`` where the report compares validation losses), best first, and
    whether it is maximised (a loss is minimised). A setting none of whose runs recorded it
    is left out."""
    maximize = "loss" not in metric
    found = []
    for setting in settings:
        values = reported_values(setting, metric)
        if values:
            found.append(Setting(params=setting.params, values=values, trials=setting.trials, spread=spread(values)))
    found.sort(key=lambda s: s.spread.mean, reverse=maximize)
    return found, maximize


def _finished(stage: StageData) -> bool:
    planned = int(stage.attrs.get("planned", len(stage.trials)))
    done = sum(stage.count(state) for state in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
    return done >= planned


def stage_names(stages: list[StageData]) -> list[str]:
    return list(stages[0].attrs.get("stages", [s.name for s in stages]))


def render(manifest: dict[str, Any], manifest_path: Path) -> str:
    alpha = float(manifest.get("alpha", 0.05))
    chance = float(manifest.get("chance", 0.1))
    tol = float(manifest.get("chance_tol", 0.03))
    lines = ["# The seed studies as trainlab studies", "",
             f"Written by `scripts/study_outcomes.py` from `{manifest_path.relative_to(ROOT)}` and each study "
             f"directory's storage, {dt.datetime.now():%Y-%m-%d %H:%M}. Do not edit by hand.", "",
             "Accuracies are in %, of the metric each study ranks by (its table names it; a study ranked on a "
             "validation accuracy shows the mean test accuracy beside it). 'vs best' is the study's own "
             "verdict (Welch's t-test of each setting against the best, Holm-adjusted, over seeds); a claim between two settings "
             "uses Welch's t-test between them, pairing only settings that agree on every parameter the claim does not "
             "name (BN before against BN after on the same baseline, never across baselines), and lists each pair "
             f"where there are several; alpha {alpha}. With one run per setting there is no noise "
             "test and only the direction is reported. Each study quotes the report's own conclusions "
             "(verbatim, with the seed file's prefix and line); a conclusion marked 'report' tests one of "
             "those quotes as the report states it, one marked 'ours' is our hypothesis. Reduced-size studies (fewer epochs, a data subset, or fewer trials than the report's) "
             "test whether the published ranking shows up early in training, not the published numbers. "
             f"A conclusion whose favoured setting stayed at chance ({_pct(chance)} % ± {_pct(tol)} points) is "
             "'inconclusive at this size': that setting did not train in the study's steps, so the study "
             "cannot tell (the measured outcome follows in brackets).",
             ""]
    for entry in manifest["studies"]:
        lines += study_section(entry, alpha, chance, tol)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, default=ROOT / "configs" / "study-outcomes.yaml")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "studies.md")
    args = parser.parse_args(argv)
    # identical repeats (a zero-init net always at chance) make scipy warn; the p-value is still right
    warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
    text = render(load_manifest(args.manifest), args.manifest.resolve())
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text, encoding="utf-8")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
