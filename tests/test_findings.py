"""The README's "What we found" and docs/findings.md: generated from the committed outputs, each
finding linking to what backs it, its verdicts following the numbers."""

from __future__ import annotations

import json
import re
import shutil

from ml4dynamics.reporting.report import fill_readme, generated_text
from ml4dynamics.studies import findings
from tests.conftest import REPO

LINK = re.compile(r"\]\(([^)#]+)(#[^)]*)?\)")


def test_every_finding_has_its_numbers_and_links_to_the_committed_file_behind_them():
    bullets = findings.findings(REPO).splitlines()
    assert 1 <= len(bullets) <= 10  # (the README stays within 150 lines: below)
    for bullet in bullets:
        assert bullet.startswith("- **") and re.search(r"\d", bullet), bullet
        targets = [m[1] for m in LINK.finditer(bullet)]
        assert targets and all((REPO / t).is_file() for t in targets), bullet


def render(source: str) -> str:
    if source == findings.SOURCE:
        return findings.findings(REPO)
    return generated_text(source, REPO)


def test_the_committed_readme_and_findings_page_are_what_ml4d_report_writes():
    """A tour, not a notebook: the README is short, and neither file's generated blocks are stale
    (`ml4d report` after a new trial brings them up to date)."""
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 150
    assert f"from {findings.SOURCE}:" in readme
    for page in (REPO / "README.md", REPO / "docs" / "findings.md"):
        text = page.read_text()
        assert fill_readme(text, render, page.name) == text, f"{page.name}: run `ml4d report`"
        base = page.parent
        for target, _ in LINK.findall(text):
            if not target.startswith("http"):
                assert (base / target).exists(), f"{page.name} links to missing {target}"


def test_a_verdict_follows_the_numbers(tmp_path):
    """The same sentence with other numbers says the other thing: TR 2× more accurate than OLS
    beyond the seeds' spread is called paying, not 'does not pay'."""
    (tmp_path / "sweep").mkdir()
    shutil.copy(REPO / "sweep/rd_120_epochs_table.json", tmp_path / "sweep")
    assert "tangency does not pay" in findings._rd(tmp_path)
    path = tmp_path / "sweep/rd_120_epochs_table.json"
    trial = json.loads(path.read_text())
    for run in trial["runs"]:
        if run["estimator"] == "tr-projector":
            run["error"] = 0.5 * 0.0123 + 1e-5 * run["seed"]
    path.write_text(json.dumps(trial))
    sentence = findings._rd(tmp_path)
    assert "tangency pays" in sentence and "2× lower" in sentence
    assert "DAgger" not in sentence  # its trial is not there: the sentence says nothing of it
