"""Stage: history. Every verify lands in a local SQLite database; `site` renders all of it
as a static status page (verdict per artifact, when, which toolchain)."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any

from cpython_repro.errors import BadVersion, OutputError
from cpython_repro.files import atomic_write, kind
from cpython_repro.outputs import CSS, badge
from cpython_repro.resolve import parse_version
from cpython_repro.text import utf8

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY, version TEXT NOT NULL, started TEXT, finished TEXT,
    verdict TEXT, exit_code INTEGER, signatures TEXT, generated TEXT, recipe TEXT,
    tag_commit TEXT, toolchain TEXT, report TEXT, error TEXT
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id INTEGER REFERENCES runs(id), name TEXT, verdict TEXT,
    published_sha256 TEXT, rebuilt_sha256 TEXT
);
"""
RUN_COLUMNS = ("version", "started", "finished", "verdict", "exit_code", "signatures",
               "generated", "recipe", "tag_commit", "toolchain", "report", "error")
INSERT_RUN = ("INSERT INTO runs (version, started, finished, verdict, exit_code, signatures,"
              " generated, recipe, tag_commit, toolchain, report, error)"
              " VALUES (?,?,?,?,?,?,?,?,?,?,?,?)")
DECIDED = (0, 1)  # runs that reached a verdict; 2 and 3 (bad input, environment) are retried


def default_path() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "cpython-repro" / "history.sqlite"


def _db(path: Path) -> sqlite3.Connection:
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise OutputError(f"cannot write {path}: it is {kind(os.lstat(path).st_mode)}, not a "
                          "regular file; left as it is")
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=60)  # parallel verifies wait for each other
    conn.executescript(SCHEMA)
    return conn


def record(path: Path, data: dict[str, Any], report: Path) -> None:
    with closing(_db(path)) as conn, conn:
        cur = conn.execute(
            "INSERT INTO runs (version, started, finished, verdict, exit_code, signatures,"
            " generated, recipe, tag_commit, toolchain, report) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (data["version"], data["started"], data["finished"], data["verdict"],
             data["exit_code"], data["signatures"]["status"], data["generated_files"]["status"],
             data["recipe"]["name"], data["source"]["commit"], json.dumps(data["toolchain"]),
             utf8(str(report))))
        conn.executemany(
            "INSERT INTO artifacts VALUES (?,?,?,?,?)",
            [(cur.lastrowid, a["name"], a["verdict"], a["published"]["sha256"],
              a["rebuilt"]["sha256"]) for a in data["artifacts"]])


def record_failure(path: Path, version: str, exit_code: int, message: str) -> None:
    """A run that ended without a verdict (bad input, broken environment) is kept too."""
    with closing(_db(path)) as conn, conn:
        now = dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
        conn.execute("INSERT INTO runs (version, finished, exit_code, verdict, error) "
                     "VALUES (?,?,?,?,?)", (utf8(version), now, exit_code, "error", message))


def latest_runs(path: Path) -> list[dict[str, Any]]:
    """The newest run of each version, newest version first."""
    if not path.is_file():
        return []
    with closing(_db(path)) as conn:
        conn.row_factory = sqlite3.Row
        rows = [dict(r) for r in conn.execute(
            "SELECT * FROM runs WHERE id IN (SELECT MAX(id) FROM runs GROUP BY version)")]
        for r in rows:
            r["artifacts"] = [dict(a) for a in conn.execute(
                "SELECT name, verdict, published_sha256 FROM artifacts WHERE run_id = ? "
                "ORDER BY name", (r["id"],))]
    return sorted(rows, key=lambda r: _key(r["version"]), reverse=True)


def merge(dest: Path, sources: list[Path]) -> int:
    """Copy the runs of other histories (e.g. one per CI job) into dest; returns how many
    were new. A run already present (same version, start and finish) is not copied twice."""
    added = 0
    with closing(_db(dest)) as out, out:
        for src in sources:
            with closing(_db(src)) as conn:
                conn.row_factory = sqlite3.Row
                for run in conn.execute("SELECT * FROM runs ORDER BY id"):
                    seen = out.execute(
                        "SELECT 1 FROM runs WHERE version = ? AND started IS ? AND finished IS ?"
                        " AND exit_code IS ?",
                        (run["version"], run["started"], run["finished"], run["exit_code"]))
                    if seen.fetchone():
                        continue
                    cur = out.execute(INSERT_RUN, [run[k] for k in RUN_COLUMNS])
                    out.executemany("INSERT INTO artifacts VALUES (?,?,?,?,?)", [
                        (cur.lastrowid, *a) for a in conn.execute(
                            "SELECT name, verdict, published_sha256, rebuilt_sha256 "
                            "FROM artifacts WHERE run_id = ?", (run["id"],))])
                    added += 1
    return added


def decided_versions(path: Path) -> set[str]:
    return {r["version"] for r in latest_runs(path) if r["exit_code"] in DECIDED}


def _key(version: str) -> tuple[int, ...]:
    try:
        return parse_version(version).sort_key()
    except BadVersion:  # a malformed version that was asked for is kept, sorted last
        return (0,)


def write_site(history: Path, outdir: Path) -> Path:
    """index.html of every verified release, with each run's own report copied beside it."""
    outdir.mkdir(parents=True, exist_ok=True)
    rows = []
    for r in latest_runs(history):
        link = html.escape(r["version"])
        report = Path(r["report"]).with_name("report.html") if r["report"] else None
        if report and report.is_file():
            (outdir / r["version"]).mkdir(exist_ok=True)
            shutil.copy(report, outdir / r["version"] / "report.html")
            link = f"<a href='{html.escape(r['version'])}/report.html'>{link}</a>"
        tools = json.loads(r["toolchain"]) if r["toolchain"] else {}
        toolchain = ", ".join(f"{k} {v}" for k, v in tools.items()
                              if k in ("tar", "gzip", "xz", "blurb"))
        arts = "<br>".join(f"{html.escape(a['name'])} {badge(a['verdict'])}"
                           for a in r["artifacts"]) or html.escape(r["error"] or "")
        rows.append(f"<tr><td>{link}</td><td>{badge(r['verdict'])}</td><td>{arts}</td>"
                    f"<td>{badge(r['signatures'])}</td><td>{badge(r['generated'])}</td>"
                    f"<td>{html.escape(r['finished'] or '')}</td>"
                    f"<td>{html.escape(toolchain)}</td></tr>")
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>CPython source releases: rebuild status</title><style>{CSS}</style>"
            "</head><body><h1>CPython source releases: rebuild status</h1>"
            f"<p class='muted'>{len(rows)} release(s), newest first. Each was rebuilt from its "
            "git tag in pinned containers and compared bit for bit with what python.org "
            "publishes.</p><table><thead><tr><th>release</th><th>verdict</th>"
            "<th>artifacts</th><th>signatures</th><th>generated files</th><th>verified</th>"
            f"<th>toolchain</th></tr></thead><tbody>{''.join(rows)}</tbody></table>"
            "</body></html>\n")
    index = outdir / "index.html"
    atomic_write(index, page.encode())
    return index
