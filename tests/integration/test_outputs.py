"""What a run leaves behind: the HTML report, the evidence bundle, the in-toto statement,
the SQLite history and its status page (looked at in Debian's headless chromium), and the
scheduling commands against a loopback python.org listing."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import pyzstd
from google.protobuf import json_format
from in_toto_attestation.v1.statement import Statement
from in_toto_attestation.v1.statement_pb2 import (
    Statement as StatementProto,
)

from cpython_repro.cli import main
from tests.conftest import require
from tests.fixtures.server import Site
from tests.integration.conftest import VERSION, World, publish
from tests.integration.test_verify import tampered, verify

pytestmark = pytest.mark.docker


def test_html_evidence_and_statement(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world)
    code, report = verify(world, site, tmp_path)
    assert code == 0
    out = tmp_path / "out"
    page = (out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    for asset in ("<script", "<link", "src=", "<img", "url(", "@import"):
        assert asset not in page  # self-contained: URLs appear only as text
    assert f"CPython {VERSION}" in page and "identical" in page
    assert world.key.fingerprint in page  # the signer, in the signatures table

    with pyzstd.ZstdFile(out / "evidence.tar.zst") as raw, \
            tarfile.open(fileobj=raw, mode="r|") as tar:
        names = {m.name: m for m in tar}
    for must in ("report.json", "report.html", "export.log", "job/export.sh",
                 f"Python-{VERSION}.tgz", f"Python-{VERSION}.tar.xz", "regen/rebuild.log",
                 "statement.intoto.json"):
        assert f"evidence/{must}" in names, sorted(names)
    assert all(m.mtime == 0 and not m.issym() for m in names.values())

    stmt = json.loads((out / "statement.intoto.json").read_text())
    pb = json_format.ParseDict(stmt, StatementProto())
    Statement.copy_from_pb(pb).validate()  # the in-toto reference validator
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    assert {s["name"]: s["digest"]["sha256"] for s in stmt["subject"]} == {
        a["name"]: a["published"]["sha256"] for a in report["artifacts"]}
    predicate = stmt["predicate"]
    assert predicate["verdict"] == "identical"
    assert predicate["source"]["commit"] == report["source"]["commit"]
    assert predicate["recipe"]["sha256"] == report["recipe"]["sha256"]
    assert {i["role"] for i in predicate["images"]} == {"base", "builder", "autoconf"}
    assert predicate["toolchain"]["tar"] == "1.35"


def test_sign_without_credentials_is_a_clear_error(world: World, site: Site, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    publish(site, world)
    code, _ = verify(world, site, tmp_path, "--sign")
    assert code == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["cpython-repro: error: --sign: no ambient OIDC credential (run in a CI job "
                   "with id-token permission, or drop --sign)"]
    assert (tmp_path / "out" / "statement.intoto.json").is_file()  # written, just unsigned


def test_history_and_status_page_in_a_real_browser(world: World, site: Site,
                                                   tmp_path: Path) -> None:
    history = tmp_path / "history.sqlite"
    publish(site, world)
    assert verify(world, site, tmp_path / "a", "--history", str(history))[0] == 0
    bad = tampered(world, tmp_path, lambda t: (t / "Lib/os.py").write_text("evil\n"))
    publish(site, world, bad)
    assert verify(world, site, tmp_path / "b", "--history", str(history))[0] == 1
    assert main(["verify", "3.13.97", "--remote", str(world.repo), "--base-url",
                 site.base_url, "--recipes", str(world.recipes), "--history", str(history),
                 "--cache-dir", str(tmp_path / "c"), "-q"]) == 2  # no such tag: kept too
    siteout = tmp_path / "site"
    assert main(["site", str(siteout), "--history", str(history), "-q"]) == 0
    index = (siteout / "index.html").read_text()
    assert index.count("<tr>") == 2  # the header, then one row: 3.13.97 is no release
    assert "content-differs" in index and "3.13.97" not in index and "2 run(s)" in index
    for name in ("report.html", "report.json", "statement.intoto.json", "evidence.tar.zst"):
        assert (siteout / VERSION / name).is_file(), name
    # One history per CI job, merged: twice the same runs are copied once.
    merged = tmp_path / "merged.sqlite"
    assert main(["merge-history", str(merged), "--history", str(history), "--history",
                 str(history), "-q"]) == 0
    both = tmp_path / "site2"
    assert main(["site", str(both), "--history", str(merged), "--history", str(history),
                 "-q"]) == 0
    assert (both / "index.html").read_text().count("<tr>") == 2

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    require(chromium, "chromium is not installed (make test-host installs it)")
    assert chromium is not None  # for the type checker: require() did not return otherwise
    shot = tmp_path / "site.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--window-size=1280,600", f"--screenshot={shot}",
                    (siteout / "index.html").as_uri()], check=True, capture_output=True,
                   timeout=120)
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                          "--dump-dom", (siteout / "index.html").as_uri()],
                         check=True, capture_output=True, text=True, timeout=120).stdout
    assert "rebuild status" in dom and "content-differs" in dom
    shutil.copy(shot, Path("/tmp") / "cpython-repro-site.png")  # for a person to look at


LISTING = "".join(f'<a href="{v}/">{v}/</a>\n' for v in
                  ("2.7.18", "3.12.0", "3.12.1", "3.13.5", VERSION, "3.14.0"))


def test_latest_matrix_and_a_resumable_worker_pool(world: World, site: Site,
                                                   tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    publish(site, world)
    (site.root / "ftp" / "python").mkdir(parents=True, exist_ok=True)
    (site.root / "ftp" / "python" / "index.html").write_text(LISTING)
    history = tmp_path / "history.sqlite"
    common = ["--history", str(history), "--cache-dir", str(tmp_path / "cache")]
    assert main(["verify-many", VERSION, "3.13.98", "--jobs", "2", "--out-root",
                 str(tmp_path / "runs"), "--remote", str(world.repo), "--base-url",
                 site.base_url, "--recipes", str(world.recipes), *common]) == 2
    first = capsys.readouterr().out
    assert f"{VERSION}: exit 0" in first and "3.13.98: exit 2" in first
    assert (tmp_path / "runs" / VERSION / "report.json").is_file()
    # Run again, as after an interruption: the decided one is skipped, the other retried.
    main(["verify-many", VERSION, "3.13.98", "--jobs", "2", "--out-root",
          str(tmp_path / "runs"), "--remote", str(world.repo), "--base-url", site.base_url,
          "--recipes", str(world.recipes), *common])
    again = capsys.readouterr().out
    assert f"{VERSION}: skipped (already verified)" in again and "3.13.98: exit 2" in again

    assert main(["latest", "--base-url", site.base_url, *common]) == 0
    assert capsys.readouterr().out.split() == ["3.14.0"]  # newer than 3.13.99, verified
    assert main(["matrix", "--since", "3.13", "--base-url", site.base_url, *common]) == 0
    assert json.loads(capsys.readouterr().out) == {
        "include": [{"version": "3.14.0"}, {"version": "3.13.5"}]}
    assert main(["matrix", "--since", "3.13", "--all", "--base-url", site.base_url,
                 *common]) == 0
    assert [r["version"] for r in json.loads(capsys.readouterr().out)["include"]] == [
        "3.14.0", VERSION, "3.13.5"]


def test_terminal_shows_each_long_step_and_pipes_stay_plain(world: World, site: Site,
                                                            tmp_path: Path) -> None:
    import os
    import sys

    publish(site, world)
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    cmd = [sys.executable, "-m", "cpython_repro", "verify", VERSION, "--remote",
           str(world.repo), "--base-url", site.base_url, "--recipes", str(world.recipes),
           "--cache-dir", str(tmp_path / "cache"), "--history", str(tmp_path / "h.sqlite")]
    # On an 80-column terminal (a pseudo-terminal made by script(1)): a line per finished
    # step with its duration, the content verdict as soon as it is known, and a summary
    # that cuts neither names nor verdicts.
    shown = subprocess.run(["script", "-qec", " ".join([*cmd, "--out", str(tmp_path / "t")]),
                            "/dev/null"], env={**env, "COLUMNS": "80", "LINES": "40"},
                           capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stdout[-2000:]
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.stdout)
    for done in (f"✓ fetching tag v{VERSION} (", "✓ downloading the published artifacts (",
                 "✓ fetching and checking signatures (",
                 "✓ regenerating configure in the autoconf image (",
                 "✓ exporting the tag and writing the tar payload (",
                 f"✓ compressing Python-{VERSION}.tar.xz (xz -T1) (",
                 f"→ Python-{VERSION}.tgz: content identical"):
        assert done in text, text[-3000:]
    for name in (f"Python-{VERSION}.tgz: identical", f"Python-{VERSION}.tar.xz: identical"):
        assert name in text, text[-3000:]
    summary = text[text.index(f"CPython {VERSION}"):]
    assert max(len(line) for line in summary.splitlines()) <= 80, summary
    assert "0/? bytes" not in text  # no byte bar on a step that is no download
    # Through a pipe (as in CI): plain lines stamped with the time, no escape codes, a
    # line when each step starts and one when it ends.
    piped = subprocess.run([*cmd, "--out", str(tmp_path / "p")], env=env,
                           capture_output=True, text=True, timeout=300)
    assert piped.returncode == 0
    assert "\x1b[" not in piped.stdout + piped.stderr
    lines = piped.stderr.strip().splitlines()
    assert all(re.match(r"\[ *\d+\.\d s\] ", line) for line in lines), lines
    assert any(line.endswith(f"fetching tag v{VERSION} ...") for line in lines), lines
    assert any(re.search(r"✓ compressing .*\(\d+\.\d s\)$", line) for line in lines), lines
    assert "verdict: identical" in piped.stdout
