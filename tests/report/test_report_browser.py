"""Run reports in a real browser: headless Chromium (Debian's package) driven by playwright.

Each report is opened from disk with the network blocked; the test takes a full-page
screenshot (kept under the session's tmp dir, path printed), checks that every image
decoded (naturalWidth > 0: a broken image still has ``complete``), that there were no
console errors or failed requests, that the expected sections and contents links are
there, and that the page fits a phone's width.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.report.conftest import ReportRuns

SECTIONS = ["overview", "curves", "confusion", "top-losses", "calibration", "weights", "monitors", "data",
            "model", "config", "environment", "log"]



@pytest.fixture(scope="module")
def screenshots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the screenshots of the reports are kept (a test artifact)."""
    return tmp_path_factory.mktemp("report-screenshots")


def _open(browser: Any, report: Path, width: int, height: int) -> tuple[Any, Any, list[str]]:
    """Open ``report`` in a fresh page with every network request refused; returns (context, page, problems)."""
    context = browser.new_context(viewport={"width": width, "height": height})
    problems: list[str] = []
    context.route("http://*/**", lambda route: (problems.append(f"network request {route.request.url}"),
                                                 route.abort()))
    context.route("https://*/**", lambda route: (problems.append(f"network request {route.request.url}"),
                                                  route.abort()))
    page = context.new_page()
    page.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(f"page error: {exc}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
    page.goto(report.as_uri(), wait_until="load")
    return context, page, problems


def _check_page(page: Any, problems: list[str], name: str) -> None:
    images = page.evaluate("Array.from(document.images).map(i => [i.alt, i.complete, i.naturalWidth])")
    assert images, f"{name}: no images"
    broken = [alt for alt, complete, width in images if not complete or width == 0]
    assert not broken, f"{name}: images that did not load: {broken}"
    assert not problems, f"{name}: {problems}"
    found = page.evaluate("Array.from(document.querySelectorAll('main > section')).map(s => s.id)")
    assert found == SECTIONS, name
    links = page.evaluate("Array.from(document.querySelectorAll('nav.toc a')).map(a => a.getAttribute('href'))")
    assert links == [f"#{anchor}" for anchor in SECTIONS], name
    assert page.title().startswith("Run report: ")


def test_run_reports_in_chromium(browser: Any, report_runs: ReportRuns, screenshots: Path) -> None:
    for name, path in report_runs.all().items():
        context, page, problems = _open(browser, path / "report.html", 1280, 900)
        try:
            _check_page(page, problems, name)
            shot = screenshots / f"{name}.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 10_000
            status = page.inner_text("#status")
            if name == "failed":
                assert "The run failed." in status
            elif name == "killed":
                assert "no summary.json" in status
        finally:
            context.close()
    print(f"report screenshots: {screenshots}")


def test_report_fits_a_phone(browser: Any, report_runs: ReportRuns, screenshots: Path) -> None:
    context, page, problems = _open(browser, report_runs.torch_cnn / "report.html", 390, 844)
    try:
        _check_page(page, problems, "phone")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"the page is {overflow}px wider than a phone screen"
        widths = page.evaluate("Array.from(document.images).map(i => i.getBoundingClientRect().width)")
        assert max(widths) <= 390
        page.screenshot(path=str(screenshots / "torch_cnn-phone.png"), full_page=True)
    finally:
        context.close()


def test_contents_links_jump_to_sections(browser: Any, report_runs: ReportRuns) -> None:
    context, page, _ = _open(browser, report_runs.mlp / "report.html", 1280, 900)
    try:
        before = page.evaluate("document.querySelector('#calibration').getBoundingClientRect().top")
        page.click("nav.toc a[href='#calibration']")
        page.wait_for_function("document.querySelector('#calibration').getBoundingClientRect().top < 50")
        after = page.evaluate("document.querySelector('#calibration').getBoundingClientRect().top")
        assert before > 900 and after < 50  # below the first screen, then at the top
        assert page.evaluate("location.hash") == "#calibration"
    finally:
        context.close()


def test_report_keeps_working_when_moved(browser: Any, report_runs: ReportRuns, tmp_path: Path) -> None:
    """Figures are embedded: the report alone, copied anywhere, still shows every image."""
    lone = tmp_path / "copied-report.html"
    shutil.copy(report_runs.linear / "report.html", lone)
    context, page, problems = _open(browser, lone, 1280, 900)
    try:
        _check_page(page, problems, "moved")
    finally:
        context.close()
