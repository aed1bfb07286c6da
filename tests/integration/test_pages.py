"""The pages people read, in a real browser at 1280 px: report.html for an identical, a
content-differs and an identical-after-adoption release, and the status page. Nothing may
run off the page; the first thing on each report says pass or fail and why. Screenshots are
kept in /tmp/cpython-repro-pages/ for a person to look at."""

from __future__ import annotations

import html
import os
import re
import stat
from pathlib import Path

import pytest

from cpython_repro.cli import main
from tests.fixtures import browser, release
from tests.fixtures.server import Site
from tests.integration.conftest import VERSION, World, publish
from tests.integration.test_verify import tampered, verify

pytestmark = pytest.mark.docker


def outcome(page: str) -> str:
    found = re.search(r"<div class='outcome (pass|fail)'>(.*?)</div>", page)
    assert found, page[:2000]
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(2)))


def test_reports_and_status_page_fit_and_say_why(world: World, site: Site,
                                                 tmp_path: Path) -> None:
    history = tmp_path / "history.sqlite"
    publish(site, world)
    code, _ = verify(world, site, tmp_path / "ok", "--history", str(history))
    assert code == 0
    page = browser.fits(tmp_path / "ok" / "out" / "report.html", "identical")
    assert page.index("class='outcome pass'") < page.index("<h2>")  # first thing said
    assert "PASS (exit 0)" in outcome(page)
    assert "same bytes" not in page  # member counts shown, not "0 / 0"
    for link in ("report.json", "statement.intoto.json", "evidence.tar.zst"):
        assert f"href='{link}'" in page
    mode = (tmp_path / "ok" / "out" / "report.html").stat().st_mode
    assert stat.S_IMODE(mode) & 0o044 == 0o044  # a web server under another user reads it
    assert (tmp_path / "ok" / "out" / "report.html").stat().st_uid == os.getuid()

    bad = tampered(world, tmp_path, lambda t: (t / "Lib/os.py").write_text("evil\n"))
    publish(site, world, bad)
    code, _ = verify(world, site, tmp_path / "bad", "--history", str(history))
    assert code == 1
    page = browser.fits(tmp_path / "bad" / "out" / "report.html", "content-differs")
    said = outcome(page)
    assert said.startswith(" FAIL (exit 1)") and f"Python-{VERSION}/Lib/os.py" in said
    assert "diffoscope/" in page and "members.html" in page

    legacy = release.make_legacy_tarballs(world.tree, world.commit_time + 3600,
                                          world.base_image, tmp_path / "legacy")
    publish(site, world, legacy)
    code, _ = verify(world, site, tmp_path / "legacy-run", "--history", str(history))
    assert code == 0
    page = browser.fits(tmp_path / "legacy-run" / "out" / "report.html", "identical-after-adoption")
    assert "with the adopted metadata" in page and "the recipe alone" in page

    code, _ = verify(world, site, tmp_path / "skip", "--no-regen-check")
    page = (tmp_path / "skip" / "out" / "report.html").read_text()
    assert "turned off (--no-regen-check)" in page and "CPython used ." not in page

    assert main(["site", str(tmp_path / "site"), "--history", str(history), "-q"]) == 0
    index = browser.fits(tmp_path / "site" / "index.html", "status-page")
    assert index.count("<tr>") == 2 and "3 run(s)" in index
