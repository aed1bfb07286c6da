"""The comparison and adoption on real published CPython tarballs from Debian's archive,
each checked against a pinned sha256: python3.13_3.13.5.orig.tar.xz, byte-identical to
python.org's Python-3.13.5.tar.xz (DESIGN.md), and python3.11_3.11.2.orig.tar.gz, which is
python.org's Python-3.11.2.tgz.

Repacking its tree in the builder container with the recipe's tar options and compressor
gives the published bytes; copies with members changed, added and removed, with only mtimes
and owners changed, and with the payload recompressed, each get the verdict they must.
"""

from __future__ import annotations

import dataclasses
import io
import json
import lzma
import shlex
import shutil
import subprocess
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest
import pyzstd

from cpython_repro import adopt, resolve
from cpython_repro.cache import Cache, sha256_file
from cpython_repro.compare import compare
from cpython_repro.dockerio import Docker
from cpython_repro.download import Fetcher
from cpython_repro.images import ensure_builder
from cpython_repro.models import Comparison
from cpython_repro.rebuild import clamp_time
from cpython_repro.resolve import data_dir, load_recipe
from cpython_repro.signatures import check_digest, check_openpgp, load_digest_list
from tests.bench import ORIG_SHA256, ORIG_URL
from tests.conftest import docker_or_skip
from tests.fixtures import signing
from tests.fixtures.origs import ORIGS
from tests.integration.conftest import IMAGES_CACHE

pytestmark = pytest.mark.docker

TOP = "Python-3.13.5"
CHANGED = [f"{TOP}/Lib/os.py", f"{TOP}/configure"]
REMOVED = f"{TOP}/Lib/this.py"
ADDED = f"{TOP}/Lib/_backdoor.py"


@pytest.fixture(scope="module")
def orig() -> Path:
    path = Fetcher(Cache(IMAGES_CACHE)).get(ORIG_URL).path
    assert sha256_file(path) == ORIG_SHA256
    return path


@pytest.fixture(scope="module")
def repacked(orig: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The published tree re-tarred in the builder image with the recipe's own options."""
    docker_or_skip()
    recipe = load_recipe(data_dir("recipes") / "release-tools-2023-10.toml")
    image = ensure_builder(recipe, recipe.blurb[-1], Docker.connect(), Cache(IMAGES_CACHE))[-1]
    with tarfile.open(orig) as tar:
        first = tar.next()
        assert first is not None
        mtime = int(first.mtime)  # the tag's commit time, as clamped
    opts = " ".join(shlex.quote(o.replace("{commit_time}", clamp_time(mtime)))
                    for o in recipe.tar_options)
    xz = " ".join(recipe.artifacts[1].compress)
    out = tmp_path_factory.mktemp("repack")
    out.chmod(0o777)
    script = (f"set -e; cd /tmp && xz -dc /i/{orig.name} | tar xf - && "
              f"tar cf - {opts} {TOP} | {xz} > /o/repacked.tar.xz")
    subprocess.run(["docker", "run", "--rm", "--network", "none", "--tmpfs", "/tmp:size=2g",
                    "-v", f"{orig.parent}:/i:ro", "-v", f"{out}:/o", image.ref, "sh", "-c",
                    script], check=True, capture_output=True)
    return out / "repacked.tar.xz"


Member = tuple[tarfile.TarInfo, bytes | None]


def rewrite(orig: Path, dest: Path,
            change: Callable[[tarfile.TarInfo, bytes | None], Member | None],
            extra: tuple[tarfile.TarInfo, bytes] | None = None) -> Path:
    """Stream the published archive into a .tar.zst copy, member by member, changed."""
    with tarfile.open(orig, "r|xz") as src, pyzstd.ZstdFile(dest, "w") as raw, \
            tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as out:
        for info in src:
            f = src.extractfile(info) if info.isreg() else None
            data = f.read() if f else None
            kept = change(info, data)
            if kept is not None:
                new_info, new_data = kept
                if new_data is not None:
                    new_info.size = len(new_data)
                out.addfile(new_info, io.BytesIO(new_data) if new_data is not None else None)
        if extra:
            out.addfile(extra[0], io.BytesIO(extra[1]))
    return dest


def content_paths(c: Comparison) -> set[str]:
    return {f.path for f in c.findings if f.kind == "content"}


def test_repacking_the_published_tree_is_identical(orig: Path, repacked: Path) -> None:
    c = compare("Python-3.13.5.tar.xz", orig, repacked)
    assert c.verdict == "identical", c.findings[:5]
    assert c.published_sha256 == ORIG_SHA256


def test_changed_added_removed_members_are_named_exactly(orig: Path, tmp_path: Path) -> None:
    def change(info: tarfile.TarInfo, data: bytes | None) -> Member | None:
        if info.name == REMOVED:
            return None
        if info.name in CHANGED and data is not None:
            return info, data + b"\n# injected\n"
        return info, data

    added = tarfile.TarInfo(ADDED)
    added.mtime, added.mode = 1749000000, 0o644
    tampered = rewrite(orig, tmp_path / "tampered.tar.zst", change,
                       (added, b"import os\nos.system('id')\n"))
    c = compare("Python-3.13.5.tar.xz", orig, tampered, diff_dir=tmp_path / "diffs",
                report_dir=tmp_path)
    assert c.verdict == "content-differs"
    assert content_paths(c) == {*CHANGED, REMOVED, ADDED}
    text = {f.path: f.explanation for f in c.findings if f.kind == "content"}
    # Published is the real artifact; the "rebuilt" side is the tampered copy here.
    assert text[f"{TOP}/Lib/os.py"].endswith("truncated by 12 bytes")
    assert "only in the published" in text[REMOVED]
    assert "missing from the published" in text[ADDED]
    assert c.diffoscope is not None and set(c.diffoscope.members) == {*CHANGED, REMOVED, ADDED}


def test_mtimes_and_owner_only_are_same_content(orig: Path, tmp_path: Path) -> None:
    def change(info: tarfile.TarInfo, data: bytes | None) -> Member:
        info.mtime -= 86400
        info.uid, info.gid, info.uname, info.gname = 1000, 1000, "pablogsal", "pablogsal"
        return info, data

    copy = rewrite(orig, tmp_path / "meta.tar.zst", change)
    c = compare("Python-3.13.5.tar.xz", orig, copy)
    assert c.verdict == "same-content", [f.explanation for f in c.findings[:5]]
    assert not content_paths(c)
    by_field = {f.field: f.explanation for f in c.findings}
    assert by_field["owner"].startswith(f"all {c.members_published} members: owner: published 0/-")
    assert by_field["mtime"].startswith(f"all {c.members_published} members")


def test_same_payload_recompressed_is_recognised(orig: Path, tmp_path: Path) -> None:
    copy = tmp_path / "same.tar.zst"
    with lzma.open(orig) as src, pyzstd.ZstdFile(copy, "w") as dst:
        while chunk := src.read(1 << 20):
            dst.write(chunk)
    c = compare("Python-3.13.5.tar.xz", orig, copy)
    assert c.verdict == "same-content"
    assert c.payload_identical is True
    assert {f.kind for f in c.findings} == {"compression"}
    assert any(f.field == "compression" and f.published == "xz" and f.rebuilt == "zstd"
               for f in c.findings)


# Python-3.11.2.tgz (2023-02, made the pre-2023-10 way on the release manager's machine) is
# Debian's python3.11_3.11.2.orig.tar.gz; python.org's sha256 of it, from its digest list:
LEGACY_URL = ORIGS["3.11.2"].url
LEGACY_SHA256 = ORIGS["3.11.2"].sha256


def test_a_legacy_release_is_reproduced_by_adoption(tmp_path: Path) -> None:
    """DESIGN.md: a release made before 2023-10 comes out byte for byte once its metadata is
    adopted. Its own tree is re-tarred in the builder with what adopt.plan() took from it."""
    docker_or_skip()
    published = Fetcher(Cache(IMAGES_CACHE)).get(LEGACY_URL).path
    assert sha256_file(published) == LEGACY_SHA256
    recipe = load_recipe(data_dir("recipes") / "release-tools-legacy.toml")
    a = adopt.plan("Python-3.11.2.tgz", published, list(recipe.tar_options))
    fields = {f.field: f.value for f in a.fields}
    assert fields["tar format"] == "gnu"
    assert fields["gzip level"] == "-9"
    image = ensure_builder(recipe, recipe.blurb[-1], Docker.connect(), Cache(IMAGES_CACHE))[-1]
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    (inputs / "list").write_bytes(b"".join(p.encode() + b"\0" for p in a.order))
    (inputs / "mtimes").write_text(json.dumps(list(zip(a.order, a.mtimes, strict=True))))
    shutil.copy(data_dir("containers") / "builder" / adopt.HELPER, inputs / adopt.HELPER)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    tar = " ".join(shlex.quote(o) for o in a.tar)
    compress = " ".join(shlex.quote(c) for c in a.compress)
    script = (f"set -e; cd /tmp && tar xzf /i/{published.name} && "
              f"python3 /a/{adopt.HELPER} /a/mtimes && "
              f"tar cf - {tar} --no-recursion --null -T /a/list | {compress} > /o/adopted.tgz")
    subprocess.run(["docker", "run", "--rm", "--network", "none", "--tmpfs", "/tmp:size=2g",
                    "-v", f"{published.parent}:/i:ro", "-v", f"{inputs}:/a:ro",
                    "-v", f"{out}:/o", image.ref, "sh", "-c", script],
                   check=True, capture_output=True)
    adopted = out / "adopted.tgz"
    adopt.splice_gzip_header(adopted, a.gzip_header)
    assert sha256_file(adopted) == LEGACY_SHA256, fields


ASC_URL = ORIG_URL + ".asc"
ASC_SHA256 = "da6e013d98dcf8fc6696cdb2872b0051fc8fdeb632f73ef9f54d7b5a68647401"
DATA = Path(__file__).parents[1] / "data"


@pytest.fixture(scope="module")
def asc() -> Path:
    path = Fetcher(Cache(IMAGES_CACHE)).get(ASC_URL).path
    assert sha256_file(path) == ASC_SHA256
    return path


def test_real_openpgp_signature_of_an_expired_key(orig: Path, asc: Path) -> None:
    """Thomas Wouters' key (shipped in recipes/keys/, from Debian) expired 2026-07-02; the
    signature was made 2025-06-11, while it was valid: good, and the report says so."""
    signers = resolve.plan("3.13.5").signers
    c = check_openpgp("Python-3.13.5.tar.xz", orig, asc, signers)
    assert c.status == "verified", c
    assert "7169605F62C751356D054A26A821E680E5FA6305" in c.signer
    assert "Thomas Wouters" in c.signer
    assert c.signed_at.startswith("2025-06-11")
    assert "has since expired (2026-07-02" in c.detail


def test_real_signature_changed_byte_wrong_key_truncated(orig: Path, asc: Path,
                                                         tmp_path: Path) -> None:
    signers = resolve.plan("3.13.5").signers
    changed = tmp_path / orig.name
    data = bytearray(orig.read_bytes())
    data[len(data) // 2] ^= 0x01
    changed.write_bytes(bytes(data))
    bad = check_openpgp("Python-3.13.5.tar.xz", changed, asc, signers)
    assert bad.status == "failed" and bad.detail.startswith("bad signature")

    other = signing.make_key(tmp_path / "other", "Impostor <x@example.org>")
    try:
        keys = tmp_path / "keys"
        keys.mkdir()
        shutil.copy(other.public, keys / f"{other.fingerprint}.asc")
        wrong = dataclasses.replace(signers, openpgp=(other.fingerprint,), keys_dir=keys)
        c = check_openpgp("Python-3.13.5.tar.xz", orig, asc, wrong)
        assert c.status == "failed" and "A821E680E5FA6305, which is not pinned" in c.detail
    finally:
        other.stop()

    cut = tmp_path / "cut.asc"
    cut.write_bytes(asc.read_bytes()[:400])
    c = check_openpgp("Python-3.13.5.tar.xz", orig, cut, signers)
    assert c.status == "failed" and "malformed or truncated" in c.detail


def test_debian_3_11_2_orig_is_python_orgs_tgz() -> None:
    published = Fetcher(Cache(IMAGES_CACHE)).get(LEGACY_URL).path
    known = load_digest_list(DATA / "python-org-sha256.txt")
    c = check_digest("Python-3.11.2.tgz", sha256_file(published), known,
                     "python-org-sha256.txt")
    assert c.status == "verified", c
