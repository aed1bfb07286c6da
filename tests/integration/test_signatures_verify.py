"""Signatures inside verify: the fixture's release manager signs with a throw-away OpenPGP
key that the test recipes pin; the fake python.org serves the .asc files."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from cpython_repro.cache import sha256_file
from tests.fixtures import signing
from tests.fixtures.server import Site
from tests.integration.conftest import VERSION, World, publish
from tests.integration.test_verify import by_name, verify

pytestmark = pytest.mark.docker


def checks(report: dict, kind: str) -> list[dict]:  # type: ignore[type-arg]
    return [c for c in report["signatures"]["checks"] if c["kind"] == kind]


def test_signed_release_verifies(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world)
    code, report = verify(world, site, tmp_path)
    assert code == 0
    assert report["signatures"]["status"] == "verified"
    pgp = checks(report, "openpgp")
    assert [c["status"] for c in pgp] == ["verified", "verified"]
    assert all(world.key.fingerprint in c["signer"] for c in pgp)
    assert [c["status"] for c in checks(report, "sigstore")] == ["absent", "absent"]
    assert checks(report, "tag")[0]["detail"] == "the tag carries no OpenPGP signature"


def test_signature_over_other_bytes_fails(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world, signed=False)
    for suffix in (".tgz", ".tar.xz"):
        site.put(VERSION, f"Python-{VERSION}{suffix}.asc", world.key.sign(b"something else"))
    code, report = verify(world, site, tmp_path)
    assert code == 1
    assert report["signatures"]["status"] == "failed"
    assert all(a["verdict"] == "identical" for a in report["artifacts"])  # the bytes are fine
    assert all(c["detail"].startswith("bad signature") for c in checks(report, "openpgp"))


def test_unsigned_is_never_a_pass_unless_skipped(world: World, site: Site,
                                                 tmp_path: Path) -> None:
    publish(site, world, signed=False)
    code, report = verify(world, site, tmp_path)
    assert code == 1 and report["signatures"]["status"] == "unverified"
    assert {c["status"] for c in checks(report, "openpgp")} == {"absent"}
    code, report = verify(world, site, tmp_path, "--no-signatures")
    assert code == 0 and report["signatures"] == {"status": "skipped", "checks": []}


def test_packagers_local_file_matched_by_content(world: World, site: Site,
                                                 tmp_path: Path) -> None:
    """A distro's renamed orig tarball with its .asc beside it, plus a digest list."""
    publish(site, world)
    local = tmp_path / "debian" / f"python3.13_{VERSION}.orig.tar.xz"
    local.parent.mkdir()
    shutil.copy(world.published[".tar.xz"], local)
    local.with_name(local.name + ".asc").write_bytes(world.key.sign(local.read_bytes()))
    digests = tmp_path / "SHA256SUMS"
    digests.write_text("".join(f"{sha256_file(world.published[s])}  Python-{VERSION}{s}\n"
                               for s in (".tgz", ".tar.xz")))
    code, report = verify(world, site, tmp_path, "--published", str(local),
                          "--known-digests", str(digests))
    assert code == 0, report["signatures"]
    xz = by_name(report)[f"Python-{VERSION}.tar.xz"]
    assert xz["origin"] == str(local) and xz["verdict"] == "identical"
    # Packager mode: only the artifact given is verified (and rebuilt); the other is named.
    assert list(by_name(report)) == [f"Python-{VERSION}.tar.xz"]
    assert report["not_checked"] == [{"artifact": f"Python-{VERSION}.tgz",
                                      "reason": "not given: with --published, only the "
                                                "artifacts given are verified"}]
    assert not (tmp_path / "out" / f"Python-{VERSION}.tgz").exists()
    assert not any(p.endswith(".tgz") for _, p, _ in site.requests), site.requests
    assert [c["status"] for c in checks(report, "digest-list")] == ["verified"]
    digests.write_text(f"{'0' * 64}  Python-{VERSION}.tar.xz\n")
    code, report = verify(world, site, tmp_path, "--published", str(local),
                          "--known-digests", str(digests))
    assert code == 1 and report["signatures"]["status"] == "failed"
    listed = {c["artifact"]: c for c in checks(report, "digest-list")}
    assert listed[f"Python-{VERSION}.tar.xz"]["status"] == "failed"
    assert report["reasons"] == [f"Python-{VERSION}.tar.xz: digest-list check failed: "
                                 f"SHA256SUMS lists sha256 {'0' * 16}…, the file is "
                                 f"{xz['published']['sha256'][:16]}…"]


def test_local_file_of_another_release_is_refused(world: World, site: Site, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    publish(site, world)
    other = tmp_path / "python3.13_3.13.98.orig.tar.xz"
    subprocess.run(["sh", "-c", f"mkdir -p {tmp_path}/x/Python-3.13.98 && "
                                f"tar -C {tmp_path}/x -cJf {other} Python-3.13.98"], check=True)
    code, _ = verify(world, site, tmp_path, "--published", str(other))
    assert code == 2
    assert "an xz archive of Python-3.13.98/" in capsys.readouterr().err


def signed_tag_repo(world: World, key: signing.Key, dest: Path) -> Path:
    repo = dest / "signed.git"
    subprocess.run(["git", "clone", "-q", "--mirror", str(world.repo), str(repo)], check=True)
    env = {**os.environ, "GNUPGHOME": str(key.home), "GIT_COMMITTER_NAME": "RM",
           "GIT_COMMITTER_EMAIL": "rm@example.org"}
    subprocess.run(["git", "-C", str(repo), "tag", "-f", "-s", "-u", key.fingerprint, "-m",
                    f"Python {VERSION}", f"v{VERSION}", f"v{VERSION}^{{commit}}"],
                   check=True, env=env, capture_output=True)
    return repo


def test_signed_tag(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world)
    repo = signed_tag_repo(world, world.key, tmp_path)
    good = World(**{**world.__dict__, "repo": repo})
    code, report = verify(good, site, tmp_path)
    tag = checks(report, "tag")
    assert code == 0 and tag[0]["status"] == "verified", tag
    other = signing.make_key(tmp_path / "other", "Impostor <x@example.org>")
    try:
        bad = World(**{**world.__dict__, "repo": signed_tag_repo(world, other,
                                                                 tmp_path / "o")})
        code, report = verify(bad, site, tmp_path / "2")
    finally:
        other.stop()
    tag = checks(report, "tag")
    assert code == 1 and tag[0]["status"] == "failed" and "not pinned" in tag[0]["detail"]
