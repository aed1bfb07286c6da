"""The run history and the status page: only real releases, the latest run by when it
finished (not by the order histories were merged), failures kept in a release's runs, and
every document a run left published beside it with relative links."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from cpython_repro import history


def report(version: str, started: str, verdict: str = "identical", code: int = 0) -> dict[str, Any]:
    return {
        "version": version, "started": started, "finished": started, "verdict": verdict,
        "exit_code": code, "signatures": {"status": "verified"},
        "generated_files": {"status": "match"}, "recipe": {"name": "r"},
        "source": {"commit": "c" * 40}, "toolchain": {"tar": "1.35"},
        "artifacts": [{"name": f"Python-{version}.tgz", "verdict": verdict,
                       "published": {"sha256": "a" * 64}, "rebuilt": {"sha256": "b" * 64}}],
    }


def run_dir(tmp_path: Path, name: str, data: dict[str, Any]) -> Path:
    out = tmp_path / name
    out.mkdir(parents=True)
    (out / "report.json").write_text(json.dumps(data))
    (out / "report.html").write_text(f"<html>{data['verdict']}</html>")
    (out / "statement.intoto.json").write_text("{}")
    (out / "evidence.tar.zst").write_bytes(b"zstd")
    (out / "diffoscope" / "x").mkdir(parents=True)
    (out / "diffoscope" / "x" / "members.html").write_text("<html/>")
    return out


def test_only_real_releases_are_listed(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    history.record_failure(db, "3.x.bad", 2, "not a CPython 3 release version: '3.x.bad'")
    history.record_failure(db, "3.13.98", 2, "tag v3.13.98 does not exist")
    history.record_failure(db, "3.13.5", 3, "cannot talk to the Docker daemon")
    assert [r["version"] for r in history.latest_runs(db)] == ["3.13.5"]
    assert history.decided_versions(db) == set()  # exit 2 and 3 are retried
    page = history.write_site(db, tmp_path / "site").read_text()
    assert "3.x.bad" not in page and "3.13.98" not in page
    assert "no verdict yet: cannot talk to the Docker daemon" in page


def test_latest_is_by_time_not_merge_order(tmp_path: Path) -> None:
    old, new, dest = tmp_path / "old.sqlite", tmp_path / "new.sqlite", tmp_path / "d.sqlite"
    history.record(new, report("3.13.5", "2026-11-02T00:00:00+00:00", "content-differs", 1),
                   tmp_path / "n" / "report.json", tmp_path / "n")
    history.record(old, report("3.13.5", "2026-11-01T00:00:00+00:00"),
                   tmp_path / "o" / "report.json", tmp_path / "o")
    history.merge(dest, [new, old])  # the newer run is merged first, and gets the lower id
    (shown,) = history.latest_runs(dest)
    assert shown["verdict"] == "content-differs"
    assert history.merge(dest, [new, old]) == 0  # merging again copies nothing


def test_a_later_failure_does_not_hide_the_verdict(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    history.record(db, report("3.13.5", "2026-11-01T00:00:00+00:00"),
                   tmp_path / "r" / "report.json", tmp_path / "r")
    history.record_failure(db, "3.13.5", 3, "network is down")
    (release,) = history.releases(db)
    assert release.shown["verdict"] == "identical" and len(release.runs) == 2
    page = history.write_site(db, tmp_path / "site").read_text()
    assert "network is down" in page and "2 run(s)" in page


def test_documents_and_evidence_are_published_beside_the_page(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    data = report("3.13.5", "2026-11-01T00:00:00+00:00")
    out = run_dir(tmp_path, "elsewhere", data)
    history.record(db, data, out / "report.json", out)
    moved = tmp_path / "downloaded" / "3.13.5"  # as a CI job's artifact arrives elsewhere
    moved.parent.mkdir()
    out.rename(moved)
    site = tmp_path / "site"
    index = history.write_site(db, site, [tmp_path / "downloaded"]).read_text()
    for name in ("report.json", "report.html", "statement.intoto.json", "evidence.tar.zst",
                 "diffoscope/x/members.html"):
        assert (site / "3.13.5" / name).is_file(), name
    assert "href='3.13.5/report.html'" in index and "href='3.13.5/evidence.tar.zst'" in index
    assert "file://" not in index and str(tmp_path) not in index  # relative links only
    assert (site / "history.sqlite").is_file()
    # Without the output directory, the documents still come from the history alone.
    bare = tmp_path / "bare"
    history.write_site(db, bare)
    assert (bare / "3.13.5" / "report.html").read_text() == "<html>identical</html>"
    assert not (bare / "3.13.5" / "evidence.tar.zst").exists()


def test_an_older_history_is_opened_and_upgraded(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(history.SCHEMA)
        conn.execute("INSERT INTO runs (version, finished, verdict, exit_code) "
                     "VALUES ('3.12.1', '2025-01-01T00:00:00+00:00', 'identical', 0)")
    assert [r["version"] for r in history.latest_runs(db)] == ["3.12.1"]
    assert history.write_site(db, tmp_path / "site").is_file()
