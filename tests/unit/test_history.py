"""The run history: failures kept, malformed versions sorted last, merges idempotent."""

from __future__ import annotations

from pathlib import Path

from cpython_repro import history


def test_failures_and_malformed_versions_are_kept_and_rendered(tmp_path: Path) -> None:
    db = tmp_path / "h.sqlite"
    history.record_failure(db, "3.13", 2, "not a CPython 3 release version: '3.13'")
    history.record_failure(db, "3.13.5", 3, "cannot talk to the Docker daemon")
    assert [r["version"] for r in history.latest_runs(db)] == ["3.13.5", "3.13"]
    assert history.decided_versions(db) == set()  # exit 2 and 3 are retried
    page = history.write_site(db, tmp_path / "site").read_text()
    assert "cannot talk to the Docker daemon" in page and "&#x27;3.13&#x27;" in page


def test_merge_copies_each_run_once(tmp_path: Path) -> None:
    a, b, dest = tmp_path / "a.sqlite", tmp_path / "b.sqlite", tmp_path / "d.sqlite"
    history.record_failure(a, "3.12.1", 3, "x")
    history.record_failure(b, "3.12.2", 3, "y")
    assert history.merge(dest, [a, b]) == 2
    assert history.merge(dest, [a, b]) == 0
    assert {r["version"] for r in history.latest_runs(dest)} == {"3.12.1", "3.12.2"}
