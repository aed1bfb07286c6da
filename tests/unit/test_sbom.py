"""The SBOM cross-check on real release trees and on crafted ones.

Real: Debian's orig tarballs, which are python.org's Python-3.13.5.tar.xz,
Python-3.13.15.tar.xz and Python-3.11.2.tgz (pinned sha256), decompressed to their tar
payload as the rebuild leaves it. Crafted: a small tree of the same shape (the real 3.13.5
SBOMs, vendored directories, version files, pip's wheel) with one thing changed at a time,
and release SBOMs written by tests/fixtures/release_sbom.py the way release-tools does.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import lzma
import shutil
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cpython_repro import sbom
from cpython_repro.cache import Cache, sha256_file
from cpython_repro.download import Fetcher
from cpython_repro.errors import NetworkError
from tests.conftest import require
from tests.fixtures import release_sbom

POOL = "http://deb.debian.org/debian/pool/main/p"
RELEASES = {
    "3.13.5": (f"{POOL}/python3.13/python3.13_3.13.5.orig.tar.xz", "Python-3.13.5.tar.xz",
               "93e583f243454e6e9e4588ca2c2662206ad961659863277afcdb96801647d640"),
    "3.13.15": (f"{POOL}/python3.13/python3.13_3.13.15.orig.tar.xz", "Python-3.13.15.tar.xz",
                "1e66a7945a48390ee4c2a4268a0e4185884059a13c4aab6d148aa208deea4a76"),
    "3.11.2": (f"{POOL}/python3.11/python3.11_3.11.2.orig.tar.gz", "Python-3.11.2.tgz",
               "2411c74bda5bbcfcddaf4531f66d1adc73f247f529aee981b029513aefdbf849"),
}
CACHE = Path("/var/tmp/cpython-repro-test-cache")
TOP = "Python-3.13.5"
NAME, SHA256 = RELEASES["3.13.5"][1:]

Payloads = dict[str, Path]


@pytest.fixture(scope="module")
def payloads(tmp_path_factory: pytest.TempPathFactory) -> Payloads:
    """Each release's uncompressed tar payload, from the pinned published artifact."""
    out = {}
    tmp = tmp_path_factory.mktemp("payloads")
    for version, (url, _name, pinned) in RELEASES.items():
        try:
            orig = Fetcher(Cache(CACHE)).get(url).path
        except NetworkError as exc:
            require(False, f"Debian's archive is unreachable: {exc.one_line()}")
        assert sha256_file(orig) == pinned
        opener: Callable[[Path], Any] = gzip.open if url.endswith(".gz") else lzma.open
        out[version] = tmp / f"{version}.tar"
        with opener(orig) as src, out[version].open("wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    return out


def run(tree: Path, release: Path | None = None, name: str = NAME,
        sha256: str = SHA256) -> sbom.SbomCheck:
    return sbom.check(tree, [sbom.Artifact(name, sha256, release)])


# --- real releases --------------------------------------------------------------------------


def test_3_13_5_files_match_but_expat_is_listed_stale(payloads: Payloads) -> None:
    c = run(payloads["3.13.5"])
    assert (c.status, c.files, c.files_checked) == ("match", (), 111)
    versions = {(p.sbom, p.name): (p.status, p.listed, p.declared) for p in c.packages}
    # The truth of the published 3.13.5: Misc/sbom.spdx.json still says expat 2.6.3 while
    # Modules/expat/expat.h (and refresh.sh) ship 2.7.1.
    assert versions[(sbom.TREE_SBOM, "expat")] == ("stale", "2.6.3", "2.7.1")
    expat = next(p for p in c.packages if p.name == "expat")
    assert expat.declared_in == "Modules/expat/expat.h"
    assert [f.split(" ")[0] for f in expat.fields] == ["versionInfo", "cpe23Type",
                                                       "downloadLocation"]
    assert versions[(sbom.TREE_SBOM, "mpdecimal")] == ("match", "2.5.1", "2.5.1")
    assert versions[(sbom.TREE_SBOM, "macholib")] == ("match", "1.0", "1.0")
    hacl = "bb3d0dc8d9d15a5cd51094d5b69e70aa09005ff0"
    assert versions[(sbom.TREE_SBOM, "hacl-star")] == ("match", hacl, hacl)
    assert versions[(sbom.TREE_SBOM, "libb2")] == ("undeclared", "0.98.1", "")
    externals = {n: v for (s, n), v in versions.items() if s == sbom.EXTERNALS_SBOM}
    assert externals["openssl"] == ("match", "3.0.16", "3.0.16")
    assert len(externals) == 9 and all(v[0] == "match" for v in externals.values())
    assert sbom.reasons(c) == []
    assert sbom.warnings(c) == [
        "Misc/sbom.spdx.json: expat is listed as 2.6.3, but Modules/expat/expat.h says 2.7.1 "
        "(stale: versionInfo, cpe23Type, downloadLocation)"]
    assert c.releases[0].status == "absent"
    assert "404" in c.releases[0].detail


def test_3_13_15_matches_entirely(payloads: Payloads) -> None:
    c = run(payloads["3.13.15"], name=RELEASES["3.13.15"][1], sha256=RELEASES["3.13.15"][2])
    assert (c.status, c.files, c.files_checked) == ("match", (), 113)
    by_name = {(p.sbom, p.name): p for p in c.packages}
    assert (by_name[(sbom.TREE_SBOM, "expat")].status,
            by_name[(sbom.TREE_SBOM, "expat")].declared) == ("match", "2.8.2")
    assert by_name[(sbom.EXTERNALS_SBOM, "openssl")].declared == "3.0.21"
    assert {p.status for p in c.packages} == {"match", "undeclared"}  # libb2 states none
    assert sbom.reasons(c) == [] and sbom.warnings(c) == []


def test_3_11_2_has_no_sbom(payloads: Payloads) -> None:
    c = run(payloads["3.11.2"], name=RELEASES["3.11.2"][1], sha256=RELEASES["3.11.2"][2])
    assert c.status == "absent"
    assert c.detail.startswith("no SBOM in this release")
    assert sbom.reasons(c) == [] and sbom.warnings(c) == []
    assert sbom.to_json(c)["status"] == "absent"


def test_release_sbom_of_3_13_5_as_release_tools_writes_it(payloads: Payloads,
                                                          tmp_path: Path) -> None:
    doc = release_sbom.make(release_sbom.tar_files(payloads["3.13.5"]), NAME, SHA256)
    path = release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json")
    started = time.monotonic()
    c = run(payloads["3.13.5"], path)
    seconds = time.monotonic() - started
    (r,) = c.releases
    assert (c.status, r.status, r.describes, r.files_checked) == ("match", "match", NAME, 4808)
    assert r.spdx.endswith("valid SPDX-2.3"), r.spdx
    assert r.findings == () and r.files == ()
    assert {p.name: (p.status, p.listed) for p in r.packages}["pip"] == ("match", "25.1.1")
    assert len(r.packages) == 21 and {p.status for p in r.packages} == {"match"}
    assert sbom.reasons(c) == []
    assert r.sha256 == sha256_file(path)
    print(f"\ncheck with the release SBOM on the real 3.13.5 payload: {seconds:.2f} s")
    assert seconds < 120


def test_time_on_a_real_payload(payloads: Payloads) -> None:
    times = []
    for _ in range(3):
        started = time.monotonic()
        run(payloads["3.13.5"])
        times.append(time.monotonic() - started)
    print(f"\ncheck on the real 3.13.5 payload (110 MB, 5214 members): "
          f"median {sorted(times)[1]:.2f} s")
    assert sorted(times)[1] < 30


# --- crafted trees ------------------------------------------------------------------------

SHAPE = ("Misc/sbom.spdx.json", "Misc/externals.spdx.json", "PCbuild/get_externals.bat",
         "Modules/expat/", "Modules/_decimal/libmpdec/", "Modules/_hacl/",
         "Modules/_blake2/impl/", "Lib/ctypes/macholib/", "Lib/ensurepip/_bundled/")


@pytest.fixture(scope="module")
def small(payloads: Payloads) -> dict[str, bytes]:
    """The real 3.13.5 tree's files that the SBOMs are about, by path under the top."""
    out = {}
    for name, data in release_sbom.tar_files(payloads["3.13.5"]):
        rel = name.split("/", 1)[1]
        if rel.startswith(SHAPE):
            out[rel] = data
    return out


def write_tree(files: dict[str, bytes], path: Path) -> Path:
    with tarfile.open(path, "w", format=tarfile.PAX_FORMAT) as tar:
        for rel, data in sorted(files.items()):
            info = tarfile.TarInfo(f"{TOP}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def edit_json(files: dict[str, bytes], rel: str, change: Callable[[Any], None]) -> None:
    doc = json.loads(files[rel])
    change(doc)
    files[rel] = json.dumps(doc, indent=2).encode()


def package(doc: dict[str, Any], name: str) -> dict[str, Any]:
    return next(p for p in doc["packages"] if p["name"] == name)


def test_the_small_tree_has_the_real_results(small: dict[str, bytes], tmp_path: Path) -> None:
    c = run(write_tree(small, tmp_path / "t.tar"))
    assert (c.status, c.files, c.files_checked) == ("match", (), 111)
    assert [p.name for p in c.packages if p.status == "stale"] == ["expat"]


def test_a_changed_vendored_file_fails_naming_file_algorithm_and_digests(
        small: dict[str, bytes], tmp_path: Path) -> None:
    files = dict(small)
    files["Modules/expat/xmlparse.c"] += b"/* one more line */\n"
    c = run(write_tree(files, tmp_path / "t.tar"))
    listed = {x["algorithm"]: x["checksumValue"]
              for f in json.loads(small["Misc/sbom.spdx.json"])["files"]
              if f["fileName"] == "Modules/expat/xmlparse.c" for x in f["checksums"]}
    data = files["Modules/expat/xmlparse.c"]
    assert c.status == "differs"
    assert c.files == (
        sbom.FileFinding("Modules/expat/xmlparse.c", "checksum-differs", sbom.TREE_SBOM,
                         "expat", "SHA1", listed["SHA1"],
                         hashlib.sha1(data, usedforsecurity=False).hexdigest()),
        sbom.FileFinding("Modules/expat/xmlparse.c", "checksum-differs", sbom.TREE_SBOM,
                         "expat", "SHA256", listed["SHA256"], hashlib.sha256(data).hexdigest()),
    )
    assert sbom.reasons(c) == [
        f"SBOM: Modules/expat/xmlparse.c (expat): SHA1 is {c.files[0].actual} in the tree, "
        f"Misc/sbom.spdx.json lists {listed['SHA1']}",
        f"SBOM: Modules/expat/xmlparse.c (expat): SHA256 is {c.files[1].actual} in the tree, "
        f"Misc/sbom.spdx.json lists {listed['SHA256']}"]


def test_a_changed_hash_in_the_sbom_names_only_that_algorithm(small: dict[str, bytes],
                                                              tmp_path: Path) -> None:
    files = dict(small)

    def change(doc: Any) -> None:
        entry = next(f for f in doc["files"] if f["fileName"] == "Modules/_hacl/Hacl_Hash_MD5.c")
        entry["checksums"] = [c if c["algorithm"] == "SHA1" else
                              {"algorithm": "SHA256", "checksumValue": "0" * 64}
                              for c in entry["checksums"]]

    edit_json(files, "Misc/sbom.spdx.json", change)
    c = run(write_tree(files, tmp_path / "t.tar"))
    assert [(f.path, f.problem, f.package, f.algorithm, f.expected) for f in c.files] == [
        ("Modules/_hacl/Hacl_Hash_MD5.c", "checksum-differs", "hacl-star", "SHA256", "0" * 64)]
    assert c.status == "differs"


def test_a_missing_vendored_file_fails(small: dict[str, bytes], tmp_path: Path) -> None:
    files = dict(small)
    del files["Modules/_decimal/libmpdec/mpdecimal.c"]
    c = run(write_tree(files, tmp_path / "t.tar"))
    assert [(f.path, f.problem, f.package) for f in c.files] == [
        ("Modules/_decimal/libmpdec/mpdecimal.c", "missing", "mpdecimal")]
    assert sbom.reasons(c) == ["SBOM: Modules/_decimal/libmpdec/mpdecimal.c (mpdecimal): "
                               "listed in Misc/sbom.spdx.json, not in the tree"]


def test_an_unlisted_vendored_file_fails_but_excluded_and_hidden_ones_do_not(
        small: dict[str, bytes], tmp_path: Path) -> None:
    files = dict(small)
    files["Modules/expat/xmlbackdoor.c"] = b"int x;\n"
    files["Modules/expat/.hidden"] = b"glob's ** skips it, and so does generate_sbom.py\n"
    c = run(write_tree(files, tmp_path / "t.tar"))
    assert [(f.path, f.problem, f.package) for f in c.files] == [
        ("Modules/expat/xmlbackdoor.c", "unlisted", "expat")]
    assert sbom.reasons(c) == ["SBOM: Modules/expat/xmlbackdoor.c (expat): in the tree, not "
                               "listed in Misc/sbom.spdx.json"]
    # expat_config.h, refresh.sh, README.ctypes...: CPython's own, excluded by upstream.
    assert "Modules/expat/expat_config.h" in small


def test_a_package_dropped_from_the_sbom_leaves_its_files_unlisted(small: dict[str, bytes],
                                                                   tmp_path: Path) -> None:
    files = dict(small)

    def change(doc: Any) -> None:
        doc["packages"] = [p for p in doc["packages"] if p["name"] != "macholib"]
        doc["files"] = [f for f in doc["files"] if "macholib" not in f["fileName"]]

    edit_json(files, "Misc/sbom.spdx.json", change)
    c = run(write_tree(files, tmp_path / "t.tar"))
    assert {(f.problem, f.package) for f in c.files} == {("unlisted", "macholib")}
    assert sorted(f.path for f in c.files) == [
        "Lib/ctypes/macholib/__init__.py", "Lib/ctypes/macholib/dyld.py",
        "Lib/ctypes/macholib/dylib.py", "Lib/ctypes/macholib/framework.py"]


def test_a_version_field_that_disagrees_with_the_source_is_a_warning(
        small: dict[str, bytes], tmp_path: Path) -> None:
    files = dict(small)

    def change(doc: Any) -> None:
        mpd = package(doc, "mpdecimal")
        mpd["versionInfo"] = "2.5.0"
        mpd["externalRefs"][0]["referenceLocator"] = \
            "cpe:2.3:a:bytereef:mpdecimal:2.5.0:*:*:*:*:*:*:*"
        package(doc, "macholib")["externalRefs"][0]["referenceLocator"] = "pkg:pypi/macholib@0.9"

    edit_json(files, "Misc/sbom.spdx.json", change)
    c = run(write_tree(files, tmp_path / "t.tar"))
    assert c.status == "match" and c.files == ()
    stale = {p.name: p for p in c.packages if p.status == "stale"}
    assert set(stale) == {"expat", "mpdecimal", "macholib"}
    assert (stale["mpdecimal"].listed, stale["mpdecimal"].declared,
            stale["mpdecimal"].declared_in) == ("2.5.0", "2.5.1",
                                                "Modules/_decimal/libmpdec/mpdecimal.h")
    # The download URL still names 2.5.1, what ships: only the two edited fields are stale.
    assert stale["mpdecimal"].fields == (
        "versionInfo 2.5.0", "cpe23Type cpe:2.3:a:bytereef:mpdecimal:2.5.0:*:*:*:*:*:*:*")
    assert stale["macholib"].fields == ("purl pkg:pypi/macholib@0.9",)  # versionInfo is right
    assert sbom.reasons(c) == []
    assert ("Misc/sbom.spdx.json: mpdecimal is listed as 2.5.0, but "
            "Modules/_decimal/libmpdec/mpdecimal.h says 2.5.1 (stale: versionInfo, cpe23Type)"
            ) in sbom.warnings(c)
    assert ("Misc/sbom.spdx.json: macholib is listed as 1.0, but "
            "Lib/ctypes/macholib/__init__.py says 1.0 (stale: purl)") in sbom.warnings(c)


def test_an_external_that_disagrees_with_get_externals_is_a_warning(
        small: dict[str, bytes], tmp_path: Path) -> None:
    files = dict(small)
    files["PCbuild/get_externals.bat"] = files["PCbuild/get_externals.bat"].replace(
        b"openssl-3.0.16", b"openssl-3.0.17").replace(
        b"set libraries=%libraries%                                       xz-5.2.5\r\n",
        b"set libraries=%libraries%                                       xz-5.2.5\r\n"
        b"set libraries=%libraries%                                       zstd-1.5.7\r\n")
    c = run(write_tree(files, tmp_path / "t.tar"))
    ext = {p.name: p for p in c.packages if p.sbom == sbom.EXTERNALS_SBOM}
    assert (ext["openssl"].status, ext["openssl"].listed, ext["openssl"].declared) == (
        "stale", "3.0.16", "3.0.17")
    assert (ext["zstd"].status, ext["zstd"].declared) == ("unlisted", "1.5.7")
    assert c.status == "match" and sbom.reasons(c) == [] and len(sbom.warnings(c)) == 3


def test_an_unknown_package_or_unreadable_version_is_a_warning(small: dict[str, bytes],
                                                               tmp_path: Path) -> None:
    files = dict(small)
    files["Modules/expat/expat.h"] = b"/* no version here */\n"

    def change(doc: Any) -> None:
        extra = dict(package(doc, "libb2"), name="zlib-ng", SPDXID="SPDXRef-PACKAGE-zlib-ng")
        doc["packages"].append(extra)
        for f in doc["files"]:
            if f["fileName"] == "Modules/expat/expat.h":
                data = files["Modules/expat/expat.h"]
                f["checksums"] = [
                    {"algorithm": "SHA1",
                     "checksumValue": hashlib.sha1(data, usedforsecurity=False).hexdigest()},
                    {"algorithm": "SHA256", "checksumValue": hashlib.sha256(data).hexdigest()}]

    edit_json(files, "Misc/sbom.spdx.json", change)
    c = run(write_tree(files, tmp_path / "t.tar"))
    states = {p.name: (p.status, p.detail) for p in c.packages if p.sbom == sbom.TREE_SBOM}
    assert states["expat"] == ("unknown", "Modules/expat/expat.h states no version the "
                                          "recipe recognises")
    assert states["zlib-ng"][0] == "unknown" and "does not know" in states["zlib-ng"][1]
    assert c.status == "match" and sbom.reasons(c) == []


def test_crlf_files_are_hashed_as_generate_sbom_does(small: dict[str, bytes],
                                                     tmp_path: Path) -> None:
    files = dict(small)
    data = b"line one\r\nline two\r\n" * 70000 + b"\r"  # crosses read-piece boundaries
    files["Modules/_hacl/Hacl_Extra.h"] = data
    lf = data.replace(b"\r\n", b"\n")

    def change(doc: Any) -> None:
        doc["files"].append({"SPDXID": "SPDXRef-FILE-Modules-hacl-Hacl-Extra.h",
                             "fileName": "Modules/_hacl/Hacl_Extra.h", "checksums": [
                                 {"algorithm": "SHA1", "checksumValue":
                                  hashlib.sha1(lf, usedforsecurity=False).hexdigest()},
                                 {"algorithm": "SHA256",
                                  "checksumValue": hashlib.sha256(lf).hexdigest()}]})

    edit_json(files, "Misc/sbom.spdx.json", change)
    c = run(write_tree(files, tmp_path / "t.tar"))
    assert c.status == "match", [f.sentence() for f in c.files]


@pytest.mark.parametrize("pieces", [[b"a\r", b"\nb"], [b"a\r\r", b"\n"], [b"\r"], [b"x\0\r\n"],
                                    [b"plain"], [b"a\r", b"\r", b"\r\n", b"\r"]])
def test_hasher_matches_whole_file_normalisation(pieces: list[bytes]) -> None:
    h = sbom._Hasher()
    for piece in pieces:
        h.update(piece)
    raw, generated = h.digests()
    whole = b"".join(pieces)
    expect = whole if b"\0" in whole else whole.replace(b"\r\n", b"\n")
    assert raw["SHA256"] == hashlib.sha256(whole).hexdigest()
    assert generated["SHA256"] == hashlib.sha256(expect).hexdigest()
    assert generated["SHA1"] == hashlib.sha1(expect, usedforsecurity=False).hexdigest()


# --- crafted release SBOMs ------------------------------------------------------------------


def small_release(small: dict[str, bytes], tmp_path: Path, name: str = NAME,
                  sha256: str = SHA256) -> tuple[Path, dict[str, Any]]:
    tree = write_tree(small, tmp_path / "t.tar")
    doc = release_sbom.make(release_sbom.tar_files(tree), name, sha256)
    return tree, doc


def test_a_release_sbom_of_the_small_tree_matches(small: dict[str, bytes],
                                                  tmp_path: Path) -> None:
    tree, doc = small_release(small, tmp_path)
    c = run(tree, release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    assert (c.status, c.releases[0].status, c.releases[0].findings, c.releases[0].files) == (
        "match", "match", (), ())


def test_a_release_sbom_for_another_artifact_fails(small: dict[str, bytes],
                                                   tmp_path: Path) -> None:
    other = "Python-3.13.5.tgz"
    other_sha = "c4c60cabfb7d5ed2bb2d8e9ebb22c7e6d04e6e93d7b8e4d8e8e0c4a5c2c1b1a0"
    tree, doc = small_release(small, tmp_path, other, other_sha)
    c = run(tree, release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    assert c.status == "differs" and c.releases[0].status == "differs"
    assert c.releases[0].describes == other
    failing = [(f.field, f.expected, f.actual) for f in c.releases[0].findings if f.fails]
    assert failing == [("packages[CPython].checksums.SHA256", SHA256, other_sha),
                       ("packages[CPython].packageFileName", NAME, other)]
    assert sbom.reasons(c) == [
        f"{NAME}.spdx.json: it describes another artifact: sha256 {other_sha} is not "
        f"{NAME}'s {SHA256}",
        f"{NAME}.spdx.json: it describes {other}, not {NAME}"]
    # The namespace and download URL name the other artifact too: said, not counted twice.
    assert {f.field for f in c.releases[0].findings if not f.fails} == {
        "documentNamespace", "packages[CPython].downloadLocation"}


def test_each_artifact_is_checked_against_its_own_release_sbom(small: dict[str, bytes],
                                                               tmp_path: Path) -> None:
    tgz, tgz_sha = "Python-3.13.5.tgz", "e" * 64
    tree, xz_doc = small_release(small, tmp_path)
    tgz_doc = release_sbom.make(release_sbom.tar_files(tree), tgz, tgz_sha)
    xz_sbom = release_sbom.write(xz_doc, tmp_path / f"{NAME}.spdx.json")
    tgz_sbom = release_sbom.write(tgz_doc, tmp_path / f"{tgz}.spdx.json")
    c = sbom.check(tree, [sbom.Artifact(NAME, SHA256, xz_sbom),
                          sbom.Artifact(tgz, tgz_sha, tgz_sbom)])
    assert [(r.name, r.status, r.describes) for r in c.releases] == [
        (f"{NAME}.spdx.json", "match", NAME), (f"{tgz}.spdx.json", "match", tgz)]
    swapped = sbom.check(tree, [sbom.Artifact(NAME, SHA256, tgz_sbom),
                                sbom.Artifact(tgz, tgz_sha, xz_sbom)])
    assert swapped.status == "differs"
    assert [(r.status, r.describes) for r in swapped.releases] == [("differs", tgz),
                                                                   ("differs", NAME)]
    assert [r for r in sbom.reasons(swapped) if "another artifact" in r] == [
        f"{tgz}.spdx.json: it describes another artifact: sha256 {tgz_sha} is not {NAME}'s "
        f"{SHA256}",
        f"{NAME}.spdx.json: it describes another artifact: sha256 {SHA256} is not {tgz}'s "
        f"{tgz_sha}"]


def test_a_release_sbom_file_hash_that_disagrees_with_the_tree_fails(
        small: dict[str, bytes], tmp_path: Path) -> None:
    tree, doc = small_release(small, tmp_path)
    entry = next(f for f in doc["files"] if f["fileName"] == "Lib/ctypes/macholib/dyld.py")
    entry["checksums"] = [{"algorithm": c["algorithm"], "checksumValue": "ab" * 32}
                          if c["algorithm"] == "SHA256" else c for c in entry["checksums"]]
    doc["files"] = [f for f in doc["files"] if f["fileName"] != "PCbuild/get_externals.bat"]
    doc["relationships"] = [r for r in doc["relationships"]
                            if r["relatedSpdxElement"] != "SPDXRef-FILE-PCbuild-get-externals.bat"]
    c = run(tree, release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    assert [(f.path, f.problem, f.algorithm, f.expected) for f in c.releases[0].files] == [
        ("Lib/ctypes/macholib/dyld.py", "checksum-differs", "SHA256", "ab" * 32),
        ("PCbuild/get_externals.bat", "unlisted", "", "")]
    # CPython's packageVerificationCode covered the dropped file's SHA1: it no longer adds up.
    assert [f.field for f in c.releases[0].findings] == [
        "packages[CPython].packageVerificationCode"]
    assert c.status == "differs"
    assert any("PCbuild/get_externals.bat: in the tree, not listed in "
               f"{NAME}.spdx.json" in r for r in sbom.reasons(c))


def test_a_release_sbom_that_disagrees_with_misc_sbom_warns(small: dict[str, bytes],
                                                            tmp_path: Path) -> None:
    tree, doc = small_release(small, tmp_path)
    package(doc, "expat")["versionInfo"] = "2.7.1"
    package(doc, "pip")["versionInfo"] = "25.0"
    c = run(tree, release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    assert c.status == "match" and sbom.reasons(c) == []
    assert [(f.field, f.expected, f.actual, f.fails) for f in c.releases[0].findings] == [
        ("packages[expat].versionInfo", "2.6.3", "2.7.1", False)]
    pip = next(p for p in c.releases[0].packages if p.name == "pip")
    assert (pip.status, pip.listed, pip.declared) == ("stale", "25.0", "25.1.1")
    assert pip.declared_in == "Lib/ensurepip/_bundled/pip-25.1.1-py3-none-any.whl"
    assert f"{NAME}.spdx.json: pip is listed as 25.0, but {pip.declared_in} says 25.1.1 " \
           "(stale: versionInfo)" in sbom.warnings(c)


def test_a_release_sbom_with_another_pip_wheel_digest_fails(small: dict[str, bytes],
                                                            tmp_path: Path) -> None:
    tree, doc = small_release(small, tmp_path)
    package(doc, "pip")["checksums"] = [{"algorithm": "SHA256", "checksumValue": "cd" * 32}]
    c = run(tree, release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    assert [(f.field, f.actual, f.fails) for f in c.releases[0].findings] == [
        ("packages[pip].checksums.SHA256", "cd" * 32, True)]
    assert c.status == "differs"


def test_a_broken_pip_wheel_is_named_not_a_crash(small: dict[str, bytes],
                                                 tmp_path: Path) -> None:
    _tree, doc = small_release(small, tmp_path)
    wheel = next(k for k in small if k.startswith("Lib/ensurepip/_bundled/pip-"))
    broken = dict(small, **{wheel: b"PK\x03\x04 not really a zip"})
    c = run(write_tree(broken, tmp_path / "broken.tar"),
            release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    (r,) = c.releases
    assert {p.status for p in r.packages if p.name != "pip"} == {"unknown"}
    assert "pip's wheel has no readable pip/_vendor/vendor.txt" in r.packages[1].detail
    # The wheel's bytes are not what the release SBOM lists for them: that fails.
    assert [f.path for f in r.files] == [wheel] * 2
    assert [f.field for f in r.findings if f.fails] == ["packages[pip].checksums.SHA256"]


def test_a_release_sbom_that_is_not_valid_spdx_fails(small: dict[str, bytes],
                                                     tmp_path: Path) -> None:
    tree, doc = small_release(small, tmp_path)
    doc["relationships"].append({"spdxElementId": "SPDXRef-PACKAGE-cpython",
                                 "relatedSpdxElement": "SPDXRef-FILE-nowhere",
                                 "relationshipType": "CONTAINS"})
    c = run(tree, release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    assert c.status == "differs" and c.releases[0].status == "differs"
    (finding,) = c.releases[0].findings
    assert finding.fails and finding.field == "SPDX-2.3"
    assert "SPDXRef-FILE-nowhere" in finding.explanation
    assert sbom.reasons(c) == [f"{NAME}.spdx.json: {finding.explanation}"]


def test_a_release_sbom_with_the_2024_duplicate_ids_is_not_valid_spdx(
        small: dict[str, bytes], tmp_path: Path) -> None:
    # python.org's SBOMs from 2024-02 to 2024-11 (3.12.2 ... 3.13.0) have this defect.
    files = dict(small, **{"Lib/_collections_abc.py": b"a\n", "Lib/collections/abc.py": b"b\n"})
    tree = write_tree(files, tmp_path / "t.tar")
    doc = release_sbom.make(release_sbom.tar_files(tree), NAME, SHA256, unique_ids=False)
    c = run(tree, release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    (r,) = c.releases
    assert r.files == () and r.status == "differs"
    (finding,) = r.findings
    assert "duplicates: ['SPDXRef-FILE-Lib-collections-abc.py']" in finding.explanation


def test_a_release_sbom_spdx_tools_cannot_parse_fails(small: dict[str, bytes],
                                                      tmp_path: Path) -> None:
    tree, doc = small_release(small, tmp_path)
    doc["creationInfo"] = {"created": "yesterday", "creators": ["nobody"]}
    c = run(tree, release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    assert c.releases[0].status == "differs"
    assert c.releases[0].spdx.endswith("cannot parse it")
    assert sbom.reasons(c)[0].startswith(f"{NAME}.spdx.json: not valid SPDX 2.3 (spdx-tools):")


def test_no_release_sbom_states_why(small: dict[str, bytes], tmp_path: Path) -> None:
    tree = write_tree(small, tmp_path / "t.tar")
    c = sbom.check(tree, [sbom.Artifact(NAME, SHA256, None, "unavailable",
                                        "offline: nothing fetched")])
    (r,) = c.releases
    assert (r.status, r.detail) == ("unavailable", "offline: nothing fetched")
    assert c.status == "match"


# --- hostile input ------------------------------------------------------------------------

HOSTILE: dict[str, tuple[bytes, str]] = {
    "not JSON": (b"{\"files\": [", "is not JSON: Expecting value: line 1 column 12 (char 11)"),
    "not UTF-8": (b"{\"files\": \"\xff\"}", "is not JSON: 'utf-8' codec can't decode"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, "is nested too deeply"),
    "an array": (b"[]", "is JSON but not an object"),
    "files not a list": (b"{\"files\": {}, \"packages\": []}",
                         ": files: expected list, found dict"),
    "checksums of the wrong type": (
        b"{\"files\": [{\"fileName\": \"a\", \"checksums\": [{\"algorithm\": 1}]}]}",
        ": files[0].checksums[0].algorithm: expected str, found int"),
    "a repeated key": (b"{\"files\": [], \"files\": []}", "repeats the key 'files'"),
    "NaN": (b"{\"files\": [], \"x\": NaN}", "has NaN, which is not JSON"),
    "a huge number": (b"{\"x\": " + b"9" * 5000 + b"}", "is not JSON: Exceeds the limit"),
    "too many files": (json.dumps({"files": [{"fileName": str(i), "checksums": []}
                                             for i in range(sbom.MAX_FILES + 1)]}).encode(),
                       f": files has {sbom.MAX_FILES + 1:,} entries, more than"),
    "huge": (b" " * (sbom.TREE_JSON_LIMIT + 1) + b"{}", "bytes, more than 8,388,608: refusing"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_a_hostile_tree_sbom_is_an_error_in_one_line(case: str, small: dict[str, bytes],
                                                     tmp_path: Path) -> None:
    data, expected = HOSTILE[case]
    files = dict(small, **{"Misc/sbom.spdx.json": data})
    c = run(write_tree(files, tmp_path / "t.tar"))
    assert c.status == "error"
    assert c.detail.startswith("Misc/sbom.spdx.json")
    assert expected in c.detail and "\n" not in c.detail, c.detail
    assert sbom.reasons(c) == [f"SBOM check error: {c.detail}"]
    json.dumps(sbom.to_json(c))


@pytest.mark.parametrize("case", sorted(set(HOSTILE) - {"huge"}))
def test_a_hostile_release_sbom_is_an_error_in_one_line(case: str, small: dict[str, bytes],
                                                        tmp_path: Path) -> None:
    data, expected = HOSTILE[case]
    path = tmp_path / f"{NAME}.spdx.json"
    path.write_bytes(data)
    c = run(write_tree(small, tmp_path / "t.tar"), path)
    (r,) = c.releases
    assert (c.status, r.status) == ("error", "error")
    assert r.detail.startswith(f"{NAME}.spdx.json")
    assert expected in r.detail and "\n" not in r.detail, r.detail
    assert sbom.reasons(c) == [f"SBOM check error: {r.detail}"]


def test_a_huge_release_sbom_is_refused_unread(small: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / f"{NAME}.spdx.json"
    with path.open("wb") as f:
        f.truncate(sbom.RELEASE_JSON_LIMIT + 10)
    c = run(write_tree(small, tmp_path / "t.tar"), path)
    assert c.releases[0].status == "error"
    assert c.releases[0].detail == f"{NAME}.spdx.json is larger than 33,554,432 bytes: refusing"


def test_names_from_the_sbom_are_shown_escaped(small: dict[str, bytes], tmp_path: Path) -> None:
    files = dict(small)

    def change(doc: Any) -> None:
        doc["files"].append({"fileName": "Modules/expat/\x1b[2Jevil\n.c", "SPDXID": "x",
                             "checksums": []})

    edit_json(files, "Misc/sbom.spdx.json", change)
    c = run(write_tree(files, tmp_path / "t.tar"))
    (finding,) = c.files
    assert finding.path == "Modules/expat/\\x1b[2Jevil\\n.c"
    assert all(ch.isprintable() for r in sbom.reasons(c) for ch in r)


def test_an_unreadable_tree_is_an_error(small: dict[str, bytes], tmp_path: Path) -> None:
    tree = write_tree(small, tmp_path / "t.tar")
    cut = tmp_path / "cut.tar"
    cut.write_bytes(tree.read_bytes()[:100_000])
    c = run(cut)
    assert c.status == "error" and c.detail.startswith("the rebuilt tree is unreadable:")
    c = run(tmp_path / "nonexistent.tar")
    assert c.status == "error"


def test_the_sbom_is_not_a_regular_file(small: dict[str, bytes], tmp_path: Path) -> None:
    path = tmp_path / "t.tar"
    write_tree({k: v for k, v in small.items() if k != "Misc/sbom.spdx.json"}, path)
    with tarfile.open(path, "a") as tar:
        link = tarfile.TarInfo(f"{TOP}/Misc/sbom.spdx.json")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        tar.addfile(link)
    c = run(path)
    assert c.status == "error" and c.detail == "Misc/sbom.spdx.json is a symlink, not a file"


def test_to_json_is_json(small: dict[str, bytes], tmp_path: Path) -> None:
    tree, doc = small_release(small, tmp_path)
    c = run(tree, release_sbom.write(doc, tmp_path / f"{NAME}.spdx.json"))
    data = json.loads(json.dumps(sbom.to_json(c)))
    assert set(data) >= {"status", "files", "files_total", "files_checked", "packages",
                         "releases", "detail", "seconds", "reasons", "warnings"}
    assert data["releases"][0]["status"] == "match"
