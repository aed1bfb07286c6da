"""Signature checks on real data that needs no network: python.org's Sigstore bundle for
Python-3.12.5.tgz and its digest list; OpenPGP with throw-away keys made here by gpg."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from cpython_repro.models import SignatureCheck, SignatureFiles, Signers, SigstoreIdentity
from cpython_repro.signatures import (
    check_digest,
    check_openpgp,
    check_sigstore,
    load_digest_list,
    overall,
)
from tests.fixtures import signing

DATA = Path(__file__).parents[1] / "data"
BUNDLE = DATA / "Python-3.12.5.tgz.sigstore"
DIGESTS = load_digest_list(DATA / "python-org-sha256.txt")
SHA = DIGESTS["Python-3.12.5.tgz"]
Keys = tuple[signing.Key, signing.Key, Signers]
THOMAS = SigstoreIdentity("thomas@python.org", "https://accounts.google.com")


def signers(*ids: SigstoreIdentity, series: str = "3.12") -> Signers:
    return Signers(series, sigstore=ids)


def bundle_check(path: Path = BUNDLE, sha: str = SHA,
                 who: Signers | None = None) -> SignatureCheck:
    return check_sigstore("Python-3.12.5.tgz", sha, SignatureFiles("Python-3.12.5.tgz",
                          sigstore=path), who or signers(THOMAS))


def edited(tmp_path: Path, change: Callable[[dict[str, Any]], None]) -> Path:
    doc = json.loads(BUNDLE.read_text())
    change(doc)
    path = tmp_path / "edited.sigstore"
    path.write_text(json.dumps(doc))
    return path


def test_real_bundle_is_checked_but_not_verifiable_offline() -> None:
    c = bundle_check()
    assert c.status == "not-verifiable"
    assert c.signer == "thomas@python.org via https://accounts.google.com"
    assert "identity, issuer, digest and signature checked" in c.detail
    assert "checkpoint" in c.detail
    assert c.signed_at == "2024-08-06T20:32:47+00:00"
    assert overall([c], ["Python-3.12.5.tgz"]) == "unverified"  # never a pass


def test_wrong_identity() -> None:
    c = bundle_check(who=signers(SigstoreIdentity("pablogsal@python.org",
                                                  "https://accounts.google.com"),
                                 series="3.11"))
    assert c.status == "failed" and "not a pinned signer for 3.11" in c.detail


def test_wrong_issuer() -> None:
    c = bundle_check(who=signers(SigstoreIdentity("thomas@python.org",
                                                  "https://github.com/login/oauth")))
    assert c.status == "failed"
    assert "issuer https://accounts.google.com is not the pinned issuer" in c.detail


def test_digest_mismatch() -> None:
    c = bundle_check(sha=DIGESTS["Python-3.12.4.tgz"])
    assert c.status == "failed" and c.detail.startswith("digest mismatch")


def test_signature_that_does_not_verify(tmp_path: Path) -> None:
    def flip(doc: dict[str, Any]) -> None:
        sig = bytearray(base64.b64decode(doc["messageSignature"]["signature"]))
        sig[-1] ^= 1
        doc["messageSignature"]["signature"] = base64.b64encode(bytes(sig)).decode()

    c = bundle_check(edited(tmp_path, flip))
    assert c.status == "failed" and "signature does not verify" in c.detail


@pytest.mark.parametrize("garbage", [b"", b"{not json", b'{"mediaType": "x"}',
                                     b'{"verificationMaterial": {"certificate": '
                                     b'{"rawBytes": "!!"}}}'])
def test_malformed_bundle(tmp_path: Path, garbage: bytes) -> None:
    path = tmp_path / "bad.sigstore"
    path.write_bytes(garbage)
    c = bundle_check(path)
    assert c.status == "failed" and c.detail.startswith("malformed")


def test_bundle_without_inclusion_proof_offline(tmp_path: Path) -> None:
    def strip(doc: dict[str, Any]) -> None:
        for entry in doc["verificationMaterial"]["tlogEntries"]:
            entry.pop("inclusionProof", None)

    c = bundle_check(edited(tmp_path, strip))
    assert c.status == "not-verifiable"
    assert "inclusion proof" in c.detail


def test_sig_and_crt_pair(tmp_path: Path) -> None:
    doc = json.loads(BUNDLE.read_text())
    der = base64.b64decode(
        doc["verificationMaterial"]["x509CertificateChain"]["certificates"][0]["rawBytes"])
    pem = x509.load_der_x509_certificate(der).public_bytes(Encoding.PEM)
    crt, sig = tmp_path / "a.crt", tmp_path / "a.sig"
    crt.write_bytes(base64.b64encode(pem))  # python.org's .crt: base64 of the PEM
    sig.write_text(doc["messageSignature"]["signature"])
    files = SignatureFiles("Python-3.12.5.tgz", sig=sig, crt=crt)
    c = check_sigstore("Python-3.12.5.tgz", SHA, files, signers(THOMAS))
    assert c.status == "not-verifiable" and "no transparency log entry" in c.detail
    bad = check_sigstore("Python-3.12.5.tgz", DIGESTS["Python-3.12.4.tgz"], files,
                         signers(THOMAS))
    assert bad.status == "failed" and "signature does not verify" in bad.detail


def test_digest_list() -> None:
    assert check_digest("Python-3.12.5.tgz", SHA, DIGESTS, "list").status == "verified"
    wrong = check_digest("Python-3.12.5.tgz", "0" * 64, DIGESTS, "list")
    assert wrong.status == "failed" and "lists sha256 38dc4e2c261d49c6" in wrong.detail
    assert check_digest("Python-9.9.9.tgz", SHA, DIGESTS, "list").status == "absent"


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Keys]:
    root = tmp_path_factory.mktemp("keys")
    rm, other = signing.make_key(root / "rm"), signing.make_key(root / "other", "Other <o@x>")
    keys_dir = root / "pinned"
    keys_dir.mkdir()
    (keys_dir / f"{rm.fingerprint}.asc").write_bytes(rm.public.read_bytes())
    yield rm, other, Signers("3.13", openpgp=(rm.fingerprint,), keys_dir=keys_dir)
    rm.stop()
    other.stop()


def test_openpgp_good_bad_wrong_key_truncated(tmp_path: Path, keys: Keys) -> None:
    rm, other, pinned = keys
    data = tmp_path / "Python-3.13.99.tgz"
    data.write_bytes(b"the artifact\n" * 1000)
    asc = tmp_path / "good.asc"
    asc.write_bytes(rm.sign(data.read_bytes()))
    good = check_openpgp(data.name, data, asc, pinned)
    assert good.status == "verified" and rm.fingerprint in good.signer
    changed = tmp_path / "changed.tgz"
    changed.write_bytes(data.read_bytes()[:-1] + b"!")
    bad = check_openpgp(data.name, changed, asc, pinned)
    assert bad.status == "failed" and bad.detail.startswith("bad signature")
    wrong = tmp_path / "wrong.asc"
    wrong.write_bytes(other.sign(data.read_bytes()))
    c = check_openpgp(data.name, data, wrong, pinned)
    assert c.status == "failed" and "not pinned" in c.detail
    cut = tmp_path / "cut.asc"
    cut.write_bytes(asc.read_bytes()[: len(asc.read_bytes()) // 2])
    c = check_openpgp(data.name, data, cut, pinned)
    assert c.status == "failed" and "malformed or truncated" in c.detail


def test_openpgp_under_a_long_tmpdir(tmp_path: Path, keys: Keys,
                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """gpg's agent socket lives in the throw-away home; under a long TMPDIR (as a CI's or
    pytest's) its path would pass the 107 bytes a unix socket may have."""
    import tempfile

    rm, _, pinned = keys
    long_tmp = tmp_path / ("t" * 60) / ("u" * 60)
    long_tmp.mkdir(parents=True)
    monkeypatch.setenv("TMPDIR", str(long_tmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # read TMPDIR again
    data = tmp_path / "a.tgz"
    data.write_bytes(b"released bytes")
    asc = tmp_path / "a.tgz.asc"
    asc.write_bytes(rm.sign(data.read_bytes()))
    assert check_openpgp(data.name, data, asc, pinned).status == "verified"
    assert list(long_tmp.iterdir()) == []


def test_openpgp_absent_and_not_expected(tmp_path: Path, keys: Keys) -> None:
    _, _, pinned = keys
    data = tmp_path / "a"
    data.write_bytes(b"x")
    assert check_openpgp("a", data, None, pinned).status == "absent"
    pep761 = Signers("3.14", pgp_expected=False)
    assert check_openpgp("a", data, None, pep761).status == "not-expected"
    nobody = Signers("3.11")
    asc = tmp_path / "a.asc"
    asc.write_text("-----BEGIN PGP SIGNATURE-----\n")
    assert check_openpgp("a", data, asc, nobody).status == "not-pinned"


def test_tag_commit_against_a_pinned_one(tmp_path: Path) -> None:
    from cpython_repro.models import Source
    from cpython_repro.signatures import check_tag
    from tests.fixtures.minicpython import git

    repo = tmp_path / "r"
    repo.mkdir()
    env = {"GIT_AUTHOR_NAME": "a", "GIT_AUTHOR_EMAIL": "a@x", "GIT_COMMITTER_NAME": "a",
           "GIT_COMMITTER_EMAIL": "a@x"}
    git(repo, "init", "-q")
    git(repo, "commit", "-q", "--allow-empty", "-m", "x", env=env)
    git(repo, "tag", "-a", "v3.13.99", "-m", "t", env=env)
    commit = git(repo, "rev-parse", "HEAD")
    source = Source(repo, "v3.13.99", git(repo, "rev-parse", "v3.13.99"), commit, 0)
    good = check_tag(source, Signers("3.13", commits={"v3.13.99": commit}))
    assert [c.status for c in good] == ["verified", "absent"]  # pinned commit; unsigned tag
    bad = check_tag(source, Signers("3.13", commits={"v3.13.99": "0" * 40}))
    assert bad[0].status == "failed" and f"points at commit {commit}" in bad[0].detail


def test_missing_proof_is_looked_up_and_never_trusted_blindly(tmp_path: Path) -> None:
    """A v0.1 bundle lacks its checkpoint; a fake Rekor on loopback answers through the
    real HTTP client. A checkpoint the log key never signed fails, an answer for another
    entry fails, and a Rekor that cannot be reached leaves the check not-verifiable."""
    import socket

    from cpython_repro.cache import Cache
    from cpython_repro.download import Fetcher
    from tests.fixtures.server import Site, serve

    doc = json.loads(BUNDLE.read_text())
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    proof = entry["inclusionProof"]
    forged = ("rekor.sigstore.dev - 1193050959916656506\n114818493\n"
              f"{proof['rootHash']}\n\n\u2014 rekor.sigstore.dev AAAAAAAA\n")
    files = SignatureFiles("Python-3.12.5.tgz", sigstore=BUNDLE)

    def rekor_answering(site: Site, body: str) -> str:
        answer = {"uuid": {"body": body, "verification": {"inclusionProof": {
            "logIndex": int(proof["logIndex"]), "treeSize": int(proof["treeSize"]),
            "rootHash": base64.b64decode(proof["rootHash"]).hex(),
            "hashes": [base64.b64decode(h).hex() for h in proof["hashes"]],
            "checkpoint": forged}}}}
        target = site.root / "rekor" / "api" / "v1" / "log" / "entries?logIndex=118981923"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(answer))
        return site.base_url.replace("/ftp/python", "/rekor")

    def check(rekor: str, cache: str) -> SignatureCheck:
        fetcher = Fetcher(Cache(tmp_path / cache), attempts=1)
        return check_sigstore("Python-3.12.5.tgz", SHA, files, signers(THOMAS), rekor=rekor,
                              lookup=lambda url: fetcher.get(url).path.read_bytes())

    with serve(tmp_path / "www") as site:
        c = check(rekor_answering(site, entry["canonicalizedBody"]), "c1")
        assert site.requests[-1][1] == "/rekor/api/v1/log/entries?logIndex=118981923"
        assert c.status == "failed" and "Signature not found for log ID" in c.detail, c
        other = check(rekor_answering(site, "b3RoZXI="), "c2")
        assert other.status == "failed" and "another entry" in other.detail

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}"
    c = check(closed, "c3")
    assert c.status == "not-verifiable" and f"could not ask {closed}" in c.detail
