"""The acceptance test: real published releases, verified the way users run the tool.

Each release's artifact is python.org's, from Debian's archive (tests/fixtures/realrelease.py
builds the git tag it was exported from). The README's own command runs, `make verify
VERSION=... REMOTE=... PUBLISHED=...`, in a directory laid out as a checkout (links to this
one's files), so the default output directory out/VERSION, the default cache and history
are what is exercised; under `unshare --net` where the tests run as root, so there is
really no network. Asserted: the verdict, the exit code, every reason, and that the
report.html of each fits a 1280 px window in Chromium.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from cpython_repro.cache import Cache
from cpython_repro.dockerio import Docker
from cpython_repro.images import ensure_autoconf, ensure_builder
from cpython_repro.resolve import plan
from tests.conftest import IN_CI, docker_or_skip, require
from tests.fixtures import browser, realrelease
from tests.fixtures import checkout as checkout_farm
from tests.fixtures.origs import CACHE, ORIGS
from tests.fixtures.realrelease import RealRelease

pytestmark = pytest.mark.docker

THOMAS = "7169605F62C751356D054A26A821E680E5FA6305"


@dataclass(frozen=True)
class Run:
    code: int  # make's own: 0, or 2 when the command it ran failed
    report: dict[str, Any]
    stdout: str
    stderr: str
    seconds: float


@pytest.fixture(scope="module")
def checkout(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    docker_or_skip()
    require(checkout_farm.ready(), "no .venv made by `make setup`")
    yield checkout_farm.make(tmp_path_factory.mktemp("checkout"))


def images_for(release: RealRelease) -> None:
    """What verify --offline cannot make: the images, built beforehand with network, as a
    user would with `cpython-repro images build`."""
    p = plan(release.version)
    docker, cache = Docker.connect(), Cache(CACHE)
    date = dt.datetime.fromtimestamp(release.commit_time, tz=dt.UTC).date()
    ensure_builder(p.recipe, p.recipe.blurb_for(date), docker, cache)
    for replica in p.autoconf.replicas if p.autoconf is not None else ():
        ensure_autoconf(replica, docker, cache)


def no_network() -> list[str]:
    can = os.getuid() == 0 and shutil.which("unshare") is not None
    if IN_CI:
        require(can, "unshare --net needs root")
    return ["unshare", "--net", "--"] if can else []


def make_verify(checkout: Path, release: RealRelease, *args: str) -> Run:
    """The README's command, as typed: default paths, nothing else but ARGS."""
    out = checkout / "out" / release.version
    shutil.rmtree(out, ignore_errors=True)
    cmd = [*no_network(), "make", "--no-print-directory", "verify",
           f"VERSION={release.version}", f"REMOTE={release.repo}",
           f"PUBLISHED={release.published}", *([f"ARGS={' '.join(args)}"] if args else [])]
    started = time.monotonic()
    done = subprocess.run(cmd, cwd=checkout, capture_output=True, text=True,
                          stdin=subprocess.DEVNULL, check=False)
    seconds = time.monotonic() - started
    report_path = out / "report.json"
    assert report_path.is_file(), (done.stdout[-2000:], done.stderr[-2000:])
    print(f"\n{release.version} {' '.join(args)}: exit {done.returncode}, {seconds:.0f} s")
    # The page of a real release (long signer names, URLs, fingerprints) fits too.
    browser.fits(out / "report.html", f"real-{release.repo.name}")
    return Run(done.returncode, json.loads(report_path.read_text()), done.stdout,
               done.stderr, seconds)


def artifact(run: Run) -> dict[str, Any]:
    (only,) = run.report["artifacts"]  # packager mode: the given artifact, no other
    return only  # type: ignore[no-any-return]


def summary_tail(run: Run) -> list[str]:
    """The terminal summary from its verdict line on: what a reader sees last."""
    lines = run.stdout.strip().splitlines()
    start = max(i for i, line in enumerate(lines) if line.startswith("verdict:"))
    return lines[start:]


def signature(run: Run, kind: str) -> dict[str, Any]:
    (check,) = [c for c in run.report["signatures"]["checks"] if c["kind"] == kind]
    return check  # type: ignore[no-any-return]


def generated_match(run: Run) -> None:
    gen = run.report["generated_files"]
    assert gen["status"] == "match", gen
    assert {f["path"]: f["status"] for f in gen["files"]} == {
        "configure": "same", "aclocal.m4": "same", "pyconfig.h.in": "same"}


def test_3_13_5_identical_and_signed_without_network(checkout: Path) -> None:
    """python.org is unreachable and nothing says --offline: the .asc beside Debian's file
    verifies, the Sigstore bundle that would come from python.org is stated unavailable."""
    release = realrelease.make("3.13.5")
    images_for(release)
    run = make_verify(checkout, release)
    xz = artifact(run)
    assert xz["name"] == "Python-3.13.5.tar.xz" and xz["verdict"] == "identical"
    assert xz["published"]["sha256"] == ORIGS["3.13.5"].sha256
    assert run.report["not_checked"][0]["artifact"] == "Python-3.13.5.tgz"
    pgp = signature(run, "openpgp")
    assert pgp["status"] == "verified" and THOMAS in pgp["signer"], pgp
    assert pgp["signed_at"].startswith("2025-06-11")
    sigstore = signature(run, "sigstore")
    if no_network():  # where the test cannot cut the network, python.org may answer
        assert sigstore["status"] == "unavailable" and "cannot connect" in sigstore["detail"]
    generated_match(run)
    assert run.report["reasons"] == [] and run.report["exit_code"] == 0
    assert run.code == 0, run.stderr[-2000:]
    assert summary_tail(run)[0].startswith("verdict: identical  exit 0")


def test_3_13_15_identical_offline_and_unsigned(checkout: Path) -> None:
    """No signature of 3.13.15 is reachable (Debian ships no .asc): identical, and the one
    reason it does not pass is said, last, on the terminal."""
    release = realrelease.make("3.13.15")
    images_for(release)
    run = make_verify(checkout, release, "--offline")
    assert artifact(run)["verdict"] == "identical"
    assert run.report["offline"] is True
    generated_match(run)
    reason = ("Python-3.13.15.tar.xz: no signature verified (openpgp unavailable; "
              "sigstore unavailable)")
    assert run.report["reasons"] == [reason]
    # Wrapped at the width of a CI log (80 columns), one reason is still one sentence.
    assert " ".join(" ".join(summary_tail(run)[1:]).split()) == f"exit 1: {reason}"
    assert run.report["exit_code"] == 1
    assert run.code == 2 and "Error 1" in run.stderr  # make's own code; the tool's is 1


def test_3_13_15_tag_one_second_late_is_identical_after_adoption(checkout: Path) -> None:
    release = realrelease.make("3.13.15", late=1)
    assert release.commit_time == release.clamp + 1
    images_for(release)
    run = make_verify(checkout, release, "--offline", "--no-signatures")
    xz = artifact(run)
    assert xz["verdict"] == "identical-after-adoption", xz["adoption"]
    assert xz["adoption"]["rebuilt_sha256"] == ORIGS["3.13.15"].sha256
    adopted = {f["field"]: f["value"] for f in xz["adoption"]["fields"]}
    assert adopted["mtimes"] == "one mtime for all members, 2026-08-05 12:25:43Z"
    assert adopted["pax header names"] == "%d/PaxHeaders/%f"
    assert run.report["reasons"] == [] and run.code == 0, run.report["reasons"]


def test_3_11_2_identical_after_adoption_with_its_digest_confirmed(checkout: Path) -> None:
    """Made before 2023-10 on the release manager's machine: the tree comes out, and its
    metadata adopted gives python.org's bytes, whose sha256 is in python.org's list."""
    release = realrelease.make("3.11.2")
    images_for(release)
    run = make_verify(checkout, release, "--offline", "--known-digests",
                      "tests/data/python-org-sha256.txt")
    tgz = artifact(run)
    assert tgz["name"] == "Python-3.11.2.tgz"
    assert tgz["verdict"] == "identical-after-adoption", tgz["adoption"]
    adopted = {f["field"]: f["value"] for f in tgz["adoption"]["fields"]}
    assert adopted["owner"] == "1000/pablogsal" and adopted["tar format"] == "gnu"
    assert signature(run, "digest-list")["status"] == "verified"
    generated_match(run)
    assert run.report["reasons"] == [] and run.code == 0, run.report["reasons"]
