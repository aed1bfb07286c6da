"""Stage: history. Every verify lands in a local SQLite database, with its report, so that a
history copied to another machine (one per CI job, merged) is enough to publish the status
page: one row per release, newest first, its runs, and each run's report, statement and
(where the run's output directory is at hand) evidence beside it."""

from __future__ import annotations

import datetime as dt
import html
import json
import os
import sqlite3
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cpython_repro import files
from cpython_repro.errors import BadVersion, OutputError
from cpython_repro.files import atomic_write, kind
from cpython_repro.outputs import COLOUR, CSS, badge
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
# Added later: histories written before get the columns when opened.
DOCUMENTS = ("report_json", "report_html", "statement")
RUN_COLUMNS = ("version", "started", "finished", "verdict", "exit_code", "signatures",
               "generated", "recipe", "tag_commit", "toolchain", "report", "error", *DOCUMENTS)
DECIDED = (0, 1)  # runs that reached a verdict; 2 and 3 (bad input, environment) are retried
BAD_INPUT = 2  # a version that is not a release (malformed, no such tag): not on the page
MAX_DOCUMENT = 8 << 20  # a report page inlines bounded diffs; more is a runaway
# Published beside each release's report when the run's output directory is at hand.
BESIDE = ("evidence.tar.zst", "statement.intoto.sigstore.json")
BESIDE_DIRS = ("diffoscope", "regen")


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
    have = {row[1] for row in conn.execute("PRAGMA table_info(runs)")}
    for column in DOCUMENTS:
        if column not in have:
            conn.execute(f"ALTER TABLE runs ADD COLUMN {column} TEXT")
    return conn


def _document(path: Path) -> str | None:
    try:
        if path.is_file() and not path.is_symlink() and path.stat().st_size <= MAX_DOCUMENT:
            return path.read_text("utf-8", "replace")
    except OSError:
        pass
    return None


def record(path: Path, data: dict[str, Any], report: Path, outdir: Path) -> None:
    row = {
        "version": data["version"], "started": data["started"], "finished": data["finished"],
        "verdict": data["verdict"], "exit_code": data["exit_code"],
        "signatures": data["signatures"]["status"], "generated": data["generated_files"]["status"],
        "recipe": data["recipe"]["name"], "tag_commit": data["source"]["commit"],
        "toolchain": json.dumps(data["toolchain"]), "report": utf8(str(outdir / "report.json")),
        "error": None,
        "report_json": json.dumps(data), "report_html": _document(outdir / "report.html"),
        "statement": _document(outdir / "statement.intoto.json"),
    }
    with closing(_db(path)) as conn, conn:
        run_id = _insert(conn, row)
        conn.executemany(
            "INSERT INTO artifacts VALUES (?,?,?,?,?)",
            [(run_id, a["name"], a["verdict"], a["published"]["sha256"],
              a["rebuilt"]["sha256"]) for a in data["artifacts"]])


# Built from the constant column names above; values always go in as parameters.
INSERT_RUN = (f"INSERT INTO runs ({','.join(RUN_COLUMNS)}) "  # noqa: S608
              f"VALUES ({','.join('?' for _ in RUN_COLUMNS)})")


def _insert(conn: sqlite3.Connection, row: dict[str, Any]) -> int:
    cur = conn.execute(INSERT_RUN, [row.get(k) for k in RUN_COLUMNS])
    return int(cur.lastrowid or 0)


def record_failure(path: Path, version: str, exit_code: int, message: str) -> None:
    """A run that ended without a verdict (bad input, broken environment) is kept too."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with closing(_db(path)) as conn, conn:
        _insert(conn, {"version": utf8(version), "finished": now, "exit_code": exit_code,
                       "verdict": None, "error": message})


def _runs(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    with closing(_db(path)) as conn:
        conn.row_factory = sqlite3.Row
        runs = [dict(r) for r in conn.execute("SELECT * FROM runs")]
        for r in runs:
            r["artifacts"] = [dict(a) for a in conn.execute(
                "SELECT name, verdict, published_sha256 FROM artifacts WHERE run_id = ? "
                "ORDER BY name", (r["id"],))]
    return runs


@dataclass(frozen=True)
class Release:
    version: str
    runs: tuple[dict[str, Any], ...]  # newest first, by when they finished

    @property
    def decided(self) -> dict[str, Any] | None:
        """The newest run that reached a verdict: what the release's status is."""
        return next((r for r in self.runs if r["exit_code"] in DECIDED), None)

    @property
    def shown(self) -> dict[str, Any]:
        return self.decided or self.runs[0]


def releases(path: Path) -> list[Release]:
    """Each real release with its runs, newest release first. A version that is no release
    (malformed, or a tag that does not exist) is left out: it was bad input, not a result."""
    by_version: dict[str, list[dict[str, Any]]] = {}
    for run in _runs(path):
        by_version.setdefault(run["version"], []).append(run)
    out = []
    for version, runs in by_version.items():
        if _key(version) is None or all(r["exit_code"] == BAD_INPUT for r in runs):
            continue
        # The order of the histories merged must not decide which run is the latest.
        runs.sort(key=lambda r: (r["finished"] or "", r["id"]), reverse=True)
        out.append(Release(version, tuple(runs)))
    return sorted(out, key=lambda r: _key(r.version) or (0,), reverse=True)


def latest_runs(path: Path) -> list[dict[str, Any]]:
    """The run that stands for each release, newest release first."""
    return [r.shown for r in releases(path)]


def merge(dest: Path, sources: list[Path]) -> int:
    """Copy the runs of other histories (e.g. one per CI job) into dest; returns how many
    were new. A run already present (same version, start, finish and exit) is not copied."""
    added = 0
    with closing(_db(dest)) as out, out:
        for src in sources:
            if src.resolve() == dest.resolve():
                continue
            with closing(_db(src)) as conn:
                conn.row_factory = sqlite3.Row
                for run in conn.execute("SELECT * FROM runs ORDER BY id"):
                    seen = out.execute(
                        "SELECT 1 FROM runs WHERE version = ? AND started IS ? AND finished IS ?"
                        " AND exit_code IS ?",
                        (run["version"], run["started"], run["finished"], run["exit_code"]))
                    if seen.fetchone():
                        continue
                    run_id = _insert(out, dict(run))
                    out.executemany("INSERT INTO artifacts VALUES (?,?,?,?,?)", [
                        (run_id, *a) for a in conn.execute(
                            "SELECT name, verdict, published_sha256, rebuilt_sha256 "
                            "FROM artifacts WHERE run_id = ?", (run["id"],))])
                    added += 1
    return added


def decided_versions(path: Path) -> set[str]:
    return {r.version for r in releases(path) if r.decided is not None}


def _key(version: str) -> tuple[int, ...] | None:
    try:
        return parse_version(version).sort_key()
    except BadVersion:
        return None


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _publish(release: Release, dest: Path, outputs: list[Path]) -> list[str]:
    """The shown run's documents (from the history) and, where its output directory is at
    hand, its evidence and diffs, into dest; returns the names written."""
    run = release.decided
    if run is None:
        return []
    dest.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (("report.json", run["report_json"]), ("report.html", run["report_html"]),
                       ("statement.intoto.json", run["statement"])):
        if text:
            atomic_write(dest / name, text.encode("utf-8"))
            written.append(name)
    recorded = Path(run["report"]).parent if run["report"] else None
    candidates = [*([recorded] if recorded else []), *(o / release.version for o in outputs)]
    source = next((c for c in candidates if (c / "report.json").is_file()
                   and _same_run(c / "report.json", run)), None)
    if source is not None:
        for name in BESIDE:
            if (source / name).is_file() and not (source / name).is_symlink():
                files.copy(source / name, dest / name)
                written.append(name)
        for sub in BESIDE_DIRS:
            if (source / sub).is_dir() and not (source / sub).is_symlink():
                files.copy_tree(source / sub, dest / sub)
                written.append(sub + "/")
    return written


def _same_run(report: Path, run: dict[str, Any]) -> bool:
    """An output directory belongs to the run only if its report says so."""
    try:
        data = json.loads(report.read_text("utf-8"))
    except (OSError, ValueError):
        return False
    return bool(data.get("started") == run["started"] and data.get("version") == run["version"])


def _word(verdict: str | None) -> str:
    """A verdict in its colour that wraps like text (a pill does not, in a narrow column)."""
    if not verdict:
        return ""
    return f"<b style='color:{COLOUR.get(verdict, '#57606a')}'>{_e(verdict)}</b>"


def _when(iso: str | None) -> str:
    """'2026-11-25T19:32:36+00:00' as '2026-11-25 19:32Z': short enough for a column."""
    return (iso or "")[:16].replace("T", " ") + ("Z" if iso else "")


def _row(release: Release, published: list[str]) -> str:
    run = release.shown
    v = _e(release.version)
    link = f"<a href='{v}/report.html'>{v}</a>" if "report.html" in published else v
    tools = json.loads(run["toolchain"]) if run["toolchain"] else {}
    toolchain = ", ".join(f"{k} {v}" for k, v in tools.items()
                          if k in ("tar", "gzip", "xz", "blurb"))
    arts = "<br>".join(f"{_e(a['name'])} {badge(a['verdict'])}" for a in run["artifacts"])
    if release.decided is None:
        arts = f"<span class='muted'>no verdict yet: {_e(run['error'] or '')}</span>"
    files = " · ".join(f"<a href='{v}/{_e(n)}'>{_e(n.rstrip('/'))}</a>"
                       for n in published if n != "report.html")
    verified = _e(_when(run["finished"])) if release.decided is not None else "—"
    earlier = "".join(
        f"<li>{_e(_when(r['finished']))} {_word(r['verdict'])}"
        f" exit {_e(r['exit_code'])}{': ' + _e(r['error']) if r['error'] else ''}</li>"
        for r in release.runs[:10])
    more = f"<li>… {len(release.runs) - 10} more</li>" if len(release.runs) > 10 else ""
    return (f"<tr><td>{link}</td><td>{badge(run['verdict'] or 'error')}</td><td>{arts}</td>"
            f"<td>{badge(run['signatures'])}</td><td>{badge(run['generated'])}</td>"
            f"<td>{verified}</td><td class='small'>{_e(toolchain)}<br>{files}</td>"
            f"<td class='small'><details><summary>{len(release.runs)} run(s)</summary>"
            f"<ul>{earlier}{more}</ul></details></td></tr>")


def write_site(history: Path, outdir: Path, outputs: list[Path] | None = None) -> Path:
    """index.html of every real release, each release's report, JSON, statement and (where
    at hand) evidence in <version>/, and the history itself; all links relative."""
    outdir.mkdir(parents=True, exist_ok=True)
    found = releases(history)
    rows = [_row(r, _publish(r, outdir / r.version, outputs or [])) for r in found]
    if history.is_file():
        files.copy(history, outdir / "history.sqlite")
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    page = ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            f"<title>CPython source releases: rebuild status</title><style>{CSS}"
            ".small{font-size:12px}</style></head><body>"
            "<h1>CPython source releases: rebuild status</h1>"
            f"<p class='muted'>{len(rows)} release(s), newest first; generated {_e(now)}. "
            "Each was rebuilt from its git tag in pinned containers and compared bit for bit "
            "with what python.org publishes. <a href='history.sqlite'>history.sqlite</a> "
            "holds every run.</p><table style='width:100%'><thead><tr><th>release</th>"
            "<th>verdict</th>"
            "<th>artifacts</th><th>signatures</th><th>generated files</th><th>verified</th>"
            f"<th>toolchain, files</th><th>runs</th></tr></thead><tbody>{''.join(rows)}"
            "</tbody></table></body></html>\n")
    index = outdir / "index.html"
    atomic_write(index, page.encode())
    return index
