"""Stage: signatures. A rebuild proves the content; signatures prove who published it.

OpenPGP `.asc` files are checked with gpg in a throw-away home directory holding only the
keys pinned for the series (never the user's keyring). Sigstore bundles (and the older
`.sig` + `.crt` pairs) are checked against the series' identities: first what can be checked
with the certificate alone (identity, issuer, digest, signature), then the full
sigstore-python verification with the trust root shipped in the package. Each check ends in
one status; anything that could not be decided is never "verified".
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import json
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, utils

from cpython_repro import proc
from cpython_repro.errors import ReproError
from cpython_repro.models import (
    SignatureCheck,
    SignatureFiles,
    SignatureStatus,
    Signers,
    Source,
)

OIDC_ISSUER_V1 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.1")  # raw string
OIDC_ISSUER_V2 = x509.ObjectIdentifier("1.3.6.1.4.1.57264.1.8")  # DER UTF8String


Result = Callable[..., SignatureCheck]


def _utc(ts: str | int) -> str:
    return dt.datetime.fromtimestamp(int(ts), tz=dt.UTC).isoformat(timespec="seconds")


# --- OpenPGP ---------------------------------------------------------------------------

def check_openpgp(artifact: str, data: Path, asc: Path | None,
                  signers: Signers, unavailable: str = "") -> SignatureCheck:
    """unavailable: why no .asc could be had (offline, server unreachable), where so."""
    def result(status: SignatureStatus, detail: str, signer: str = "",
               when: str = "") -> SignatureCheck:
        return SignatureCheck(artifact, "openpgp", status, signer, detail, when)

    if asc is None:
        if not signers.pgp_expected:
            return result("not-expected", f"no .asc, as expected for {signers.series} (PEP 761)")
        if unavailable:
            return result("unavailable", f"no .asc could be had: {unavailable}")
        return result("absent", "the server answered 404 for the .asc: none was published")
    keys, unusable = _pinned_keys(signers)
    if unusable:
        return result("not-pinned", unusable)
    with _keyring(keys) as (env, expiry):
        out = proc.run([*GPG, "--status-fd", "1", "--verify", str(asc), str(data)],
                       env=env, ok=(0, 1, 2)).stdout.decode("utf-8", "replace")
    return _openpgp_verdict(_status_lines(out), signers, expiry, result)


GPG = ["gpg", "--batch", "--no-autostart", "--no-tty"]


def _pinned_keys(signers: Signers) -> tuple[list[Path], str]:
    """The series' pinned key files, or why they cannot be used."""
    keys = [signers.keys_dir / f"{fpr}.asc" for fpr in signers.openpgp]
    if not keys:
        return keys, f"no OpenPGP key is pinned for {signers.series} (recipes/signers.toml)"
    missing = [k.name for k in keys if not k.is_file()]
    if missing:
        return keys, f"pinned key file(s) missing: {', '.join(missing)}"
    return keys, ""


@contextlib.contextmanager
def _keyring(keys: list[Path]) -> Iterator[tuple[dict[str, str], dict[str, str]]]:
    """A throw-away GnuPG home holding only these keys: (its environment, key expiries)."""
    with tempfile.TemporaryDirectory(prefix="cpython-repro-gnupg-", dir=_short_tmp()) as home:
        env = {"GNUPGHOME": home, "LC_ALL": "C", "PATH": os.environ.get("PATH", "/usr/bin")}
        proc.run([*GPG, "--quiet", "--import", *map(str, keys)], env=env)
        expiry = _key_expiry(proc.run([*GPG, "--with-colons", "--list-keys"],
                                      env=env).stdout.decode())
        yield env, expiry


def _short_tmp() -> str:
    """Where the throw-away GnuPG home goes: gpg puts its agent's socket in it, and a unix
    socket's path has at most 107 bytes; a long TMPDIR (a CI's, pytest's) would make every
    check fail with "can't connect to the agent: File name too long"."""
    base = tempfile.gettempdir()
    return base if len(base) <= 48 or not Path("/tmp").is_dir() else "/tmp"


def _status_lines(text: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.startswith("[GNUPG:] "):
            words = line.split()[1:]
            if words:
                found.setdefault(words[0], words[1:])
    return found


def _key_expiry(colons: str) -> dict[str, str]:
    """Primary fingerprint -> expiry timestamp ("" when it never expires)."""
    out: dict[str, str] = {}
    expires: str | None = None  # set by a "pub" line, used by the "fpr" line after it
    for line in colons.splitlines():
        f = line.split(":")
        if f[0] == "pub" and len(f) > 6:
            expires = f[6]
        elif f[0] == "fpr" and expires is not None and len(f) > 9:
            out.setdefault(f[9], expires)
            expires = None
    return out


def _openpgp_verdict(st: dict[str, list[str]], signers: Signers, expiry: dict[str, str],
                     result: Result) -> SignatureCheck:
    pinned = ", ".join(signers.openpgp)
    if "VALIDSIG" in st:
        args = st["VALIDSIG"]
        primary, made = args[-1], args[2]
        good = st.get("GOODSIG") or st.get("EXPKEYSIG") or ["", "?"]
        who = f"{' '.join(good[1:])} ({primary})"
        if primary not in signers.openpgp:
            return result("failed", f"made by {primary}, which is not pinned ({pinned})", who)
        expires = expiry.get(primary, "")
        if expires and int(made) >= int(expires):
            return result("failed", f"made {_utc(made)}, after the key expired {_utc(expires)}",
                          who, _utc(made))
        note = (f"good; the key has since expired ({_utc(expires)}), after this signature "
                f"was made" if "EXPKEYSIG" in st or "KEYEXPIRED" in st else "good")
        return result("verified", note, who, _utc(made))
    if "BADSIG" in st:
        who = " ".join(st["BADSIG"][1:])
        return result("failed", "bad signature: these bytes are not what the key "
                                f"{st['BADSIG'][0]} ({who}) signed", who)
    if "NO_PUBKEY" in st or "ERRSIG" in st:
        keyid = (st.get("NO_PUBKEY") or st.get("ERRSIG") or ["?"])[0]
        return result("failed", f"signed by key {keyid}, which is not pinned for "
                                f"{signers.series} (pinned: {pinned})")
    return result("failed", "no OpenPGP signature could be read from the .asc "
                            "(malformed or truncated)")


# --- Sigstore --------------------------------------------------------------------------

class _Malformed(Exception):
    pass


def _b64(text: Any, what: str) -> bytes:
    try:
        return base64.b64decode(str(text), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _Malformed(f"{what} is not base64") from exc


def _parse_bundle(raw: bytes) -> tuple[bytes, bytes, str, dict[str, Any]]:
    """(certificate DER, signature, sha256 hex the bundle signs, the bundle as JSON)."""
    try:
        doc = json.loads(raw)
        material = doc["verificationMaterial"]
        if "certificate" in material:
            cert = _b64(material["certificate"]["rawBytes"], "certificate")
        else:
            cert = _b64(material["x509CertificateChain"]["certificates"][0]["rawBytes"],
                        "certificate")
        message = doc["messageSignature"]
        digest = _b64(message["messageDigest"]["digest"], "digest").hex()
        return cert, _b64(message["signature"], "signature"), digest, doc
    except (ValueError, KeyError, IndexError, TypeError) as exc:
        raise _Malformed(f"not a Sigstore bundle ({type(exc).__name__}: {exc})") from exc


def _parse_pair(sig: bytes, crt: bytes) -> tuple[bytes, bytes]:
    """python.org's .crt is a base64-encoded PEM certificate; .sig a base64 signature."""
    pem = crt if crt.lstrip().startswith(b"-----BEGIN") else _b64(crt.strip().decode(), ".crt")
    try:
        cert = x509.load_pem_x509_certificate(pem)
    except ValueError as exc:
        raise _Malformed(f".crt holds no certificate ({exc})") from exc
    from cryptography.hazmat.primitives.serialization import Encoding

    return cert.public_bytes(Encoding.DER), _b64(sig.strip().decode(), ".sig")


def _identity(cert: x509.Certificate) -> tuple[list[str], str]:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.RFC822Name) + \
            san.get_values_for_type(x509.UniformResourceIdentifier)
    except x509.ExtensionNotFound:
        names = []
    issuer = ""
    for oid in (OIDC_ISSUER_V1, OIDC_ISSUER_V2):
        try:
            value = cert.extensions.get_extension_for_oid(oid).value
        except x509.ExtensionNotFound:
            continue
        raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
        # v2 is a DER UTF8String (tag 0x0c, short length); v1 is the bare string.
        issuer = raw[2:].decode() if oid == OIDC_ISSUER_V2 and raw[:1] == b"\x0c" \
            else raw.decode("utf-8", "replace")
        break
    return names, issuer


Lookup = Callable[[str], bytes]  # URL -> body; the caller's HTTP seam (download.Fetcher)


def check_sigstore(artifact: str, sha256: str, files: SignatureFiles, signers: Signers,
                   offline: bool = True, rekor: str = "",
                   lookup: Lookup | None = None) -> SignatureCheck:
    """offline: use the trust root shipped with sigstore (else refresh it with TUF).
    rekor + lookup: where a bundle lacks its inclusion proof's checkpoint, ask that Rekor."""
    def result(status: SignatureStatus, detail: str, signer: str = "",
               when: str = "") -> SignatureCheck:
        return SignatureCheck(artifact, "sigstore", status, signer, detail, when)

    if files.sigstore is None and (files.sig is None or files.crt is None):
        why = files.unavailable.get(".sigstore") or files.unavailable.get(".sig") \
            or files.unavailable.get(".crt")
        if why:
            return result("unavailable", f"no Sigstore bundle could be had: {why}")
        return result("absent", "the server answered 404 for the .sigstore bundle (and for "
                                ".sig and .crt): none was published")
    if not signers.sigstore:
        return result("not-pinned", f"no Sigstore identity is pinned for {signers.series}")
    doc: dict[str, Any] = {}
    try:
        if files.sigstore is not None:
            cert_der, signature, signed_digest, doc = _parse_bundle(files.sigstore.read_bytes())
        elif files.sig is not None and files.crt is not None:
            cert_der, signature = _parse_pair(files.sig.read_bytes(), files.crt.read_bytes())
            signed_digest = sha256
        else:  # ruled out above; keeps the type checker informed
            return result("absent", "no signature files")
        cert = x509.load_der_x509_certificate(cert_der)
    except (_Malformed, ValueError) as exc:
        return result("failed", f"malformed: {exc}")
    names, issuer = _identity(cert)
    who = f"{', '.join(names) or '(no identity)'} via {issuer or '(no issuer)'}"
    allowed = {(i.identity, i.issuer) for i in signers.sigstore}
    pinned = "; ".join(f"{i.identity} via {i.issuer}" for i in signers.sigstore)
    match = next(((n, issuer) for n in names if (n, issuer) in allowed), None)
    if match is None:
        same = [n for n in names if n in {i.identity for i in signers.sigstore}]
        why = (f"issuer {issuer or '(none)'} is not the pinned issuer for {same[0]}" if same
               else "not a pinned signer")
        return result("failed", f"{why} for {signers.series} (pinned: {pinned})", who)
    if signed_digest != sha256:
        return result("failed", f"digest mismatch: the bundle signs sha256 {signed_digest[:16]}…, "
                                f"the artifact is {sha256[:16]}…", who)
    try:
        key = cert.public_key()
        if not isinstance(key, ec.EllipticCurvePublicKey):
            return result("failed", "the certificate's key is not an ECDSA key", who)
        key.verify(signature, bytes.fromhex(sha256), ec.ECDSA(utils.Prehashed(hashes.SHA256())))
    except InvalidSignature:
        return result("failed", "the signature does not verify for this artifact with the "
                                "certificate's key", who)
    checked = "identity, issuer, digest and signature checked"
    if files.sigstore is None:
        return result("not-verifiable", f"{checked}; a .sig/.crt pair has no transparency "
                                        "log entry, so the signing time cannot be checked "
                                        "offline", who)
    raw = files.sigstore.read_bytes()
    entries = doc.get("verificationMaterial", {}).get("tlogEntries", [{}])
    gap = _log_gap(entries)
    if gap and rekor and lookup is not None:
        try:
            raw = _with_proof_from_rekor(doc, rekor, lookup)
        except _Malformed as exc:
            return result("failed", f"{checked}; {rekor} did not give this entry's inclusion "
                                    f"proof: {exc}", who)
        except ReproError as exc:
            return result("not-verifiable", f"{checked}; could not ask {rekor} for the "
                                            f"missing inclusion proof: {exc.one_line()}", who)
    return _full_verification(raw, sha256, match, offline, who, checked, result)


def _with_proof_from_rekor(doc: dict[str, Any], rekor: str, lookup: Lookup) -> bytes:
    """The bundle with its first entry's inclusion proof (and checkpoint) as Rekor has it
    now. Nothing from Rekor is trusted: sigstore verifies the checkpoint's signature with
    the log key in the trust root, and the proof against the entry, afterwards."""
    entry = doc["verificationMaterial"]["tlogEntries"][0]
    body = lookup(f"{rekor.rstrip('/')}/api/v1/log/entries?logIndex={int(entry['logIndex'])}")
    try:
        (answer,) = json.loads(body).values()
        proof = answer["verification"]["inclusionProof"]
        if "canonicalizedBody" in entry and answer["body"] != entry["canonicalizedBody"]:
            raise _Malformed("Rekor's entry at that index is another entry")
        entry["inclusionProof"] = {
            "logIndex": str(int(proof["logIndex"])),
            "rootHash": base64.b64encode(bytes.fromhex(proof["rootHash"])).decode(),
            "treeSize": str(int(proof["treeSize"])),
            "hashes": [base64.b64encode(bytes.fromhex(h)).decode() for h in proof["hashes"]],
            "checkpoint": {"envelope": str(proof["checkpoint"])},
        }
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        if isinstance(exc, _Malformed):
            raise
        raise _Malformed(f"an answer we cannot read ({type(exc).__name__})") from exc
    return json.dumps(doc).encode()


def _full_verification(raw: bytes, sha256: str, match: tuple[str, str], offline: bool,
                       who: str, checked: str, result: Result) -> SignatureCheck:
    from sigstore.errors import Error as SigstoreError
    from sigstore.hashes import Hashed

    # sigstore logs "TUF repository is loaded in offline mode" on stderr; our report says it.
    logging.getLogger("sigstore").setLevel(logging.ERROR)
    from sigstore.models import Bundle, InvalidBundle
    from sigstore.verify import Verifier
    from sigstore.verify.policy import Identity
    from sigstore_models.common.v1 import HashAlgorithm

    entries = json.loads(raw).get("verificationMaterial", {}).get("tlogEntries", [{}])
    when = _utc(entries[0]["integratedTime"]) if entries and "integratedTime" in entries[0] \
        else ""
    gap = _log_gap(entries)
    if gap:
        return result("not-verifiable", f"{checked}; log inclusion not verifiable offline: "
                                        f"{gap}; --rekor-url or --online-sigstore looks it up",
                      who, when)
    try:
        bundle = Bundle.from_json(raw)
    except InvalidBundle as exc:
        return result("not-verifiable", f"{checked}; sigstore cannot load the bundle: "
                                        f"{_first_line(exc)}", who, when)
    try:
        Verifier.production(offline=offline).verify_artifact(
            Hashed(algorithm=HashAlgorithm.SHA2_256, digest=bytes.fromhex(sha256)), bundle,
            Identity(identity=match[0], issuer=match[1]))
    except SigstoreError as exc:
        return result("failed", f"Sigstore verification failed: {_first_line(exc)}", who, when)
    return result("verified", "Sigstore bundle verified (certificate chain, log inclusion, "
                              "identity)", who, when)


def _log_gap(entries: list[dict[str, Any]]) -> str:
    """What the bundle lacks for an offline proof of log inclusion, or "" if nothing."""
    if not entries:
        return "the bundle has no transparency log entry"
    proof = entries[0].get("inclusionProof")
    if not proof:
        return "the log entry has no inclusion proof"
    if not proof.get("checkpoint"):
        return ("the inclusion proof has no checkpoint (python.org's bundles made before "
                "2024-09)")
    return ""


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# --- the tag ---------------------------------------------------------------------------

def check_tag(source: Source, signers: Signers) -> list[SignatureCheck]:
    """The tag's commit against a pinned one, and the tag's own OpenPGP signature."""
    checks = []
    want = signers.commits.get(source.tag)
    if want is not None:
        ok = want == source.commit
        checks.append(SignatureCheck(
            source.tag, "tag", "verified" if ok else "failed", "",
            f"commit {source.commit[:12]} is the pinned one" if ok else
            f"tag points at commit {source.commit}, the pinned commit is {want}"))
    git = ["git", "-C", str(source.repo), "-c", "safe.directory=*"]
    body = proc.run([*git, "cat-file", "-p", source.tag_object], ok=(0, 128)).stdout
    if b"-----BEGIN PGP SIGNATURE-----" not in body:
        checks.append(SignatureCheck(source.tag, "tag", "absent", "",
                                     "the tag carries no OpenPGP signature"))
        return checks
    keys, unusable = _pinned_keys(signers)
    if unusable:
        checks.append(SignatureCheck(source.tag, "tag", "not-pinned", "",
                                     f"the tag is signed; {unusable}"))
        return checks
    with _keyring(keys) as (env, expiry):
        done = proc.run([*git, "verify-tag", "--raw", source.tag_object],
                        env={**env, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"},
                        ok=(0, 1))
    status = _status_lines(done.stderr.decode("utf-8", "replace"))

    def result(st: SignatureStatus, detail: str, signer: str = "",
               when: str = "") -> SignatureCheck:
        return SignatureCheck(source.tag, "tag", st, signer, f"tag signature: {detail}", when)

    checks.append(_openpgp_verdict(status, signers, expiry, result))
    return checks


# --- digest lists ----------------------------------------------------------------------

def load_digest_list(path: Path) -> dict[str, str]:
    """'<sha256>  <file name>' lines, as sha256sum writes them and python.org's list has."""
    out: dict[str, str] = {}
    for line in path.read_text("utf-8", "replace").splitlines():
        words = line.split()
        if len(words) == 2 and len(words[0]) == 64:
            out[words[1].lstrip("*")] = words[0].lower()
    return out


def check_digest(artifact: str, sha256: str, known: dict[str, str],
                 source: str) -> SignatureCheck:
    want = known.get(artifact)
    if want is None:
        return SignatureCheck(artifact, "digest-list", "absent", detail=f"not listed in {source}")
    if want != sha256:
        return SignatureCheck(artifact, "digest-list", "failed",
                              detail=f"{source} lists sha256 {want[:16]}…, the file is "
                                     f"{sha256[:16]}…")
    return SignatureCheck(artifact, "digest-list", "verified", detail=f"listed in {source}")


def overall(checks: Iterable[SignatureCheck], artifacts: Iterable[str]) -> str:
    """'failed' if any check failed (the tag's too); 'verified' if every artifact has a
    verified OpenPGP or Sigstore signature; else 'unverified'."""
    checks = list(checks)
    per = [artifact_status(c for c in checks if c.artifact == a) for a in artifacts]
    if "failed" in per or any(c.kind == "tag" and c.status == "failed" for c in checks):
        return "failed"
    return "verified" if per and all(s == "verified" for s in per) else "unverified"


PROVENANCE = ("openpgp", "sigstore", "digest-list")


def artifact_status(checks: Iterable[SignatureCheck]) -> str:
    """'failed' if any check failed; 'verified' if an OpenPGP or Sigstore signature verified,
    or the digest is in a list the user vouched for with --known-digests; else 'unverified'."""
    checks = list(checks)
    if any(c.status == "failed" for c in checks):
        return "failed"
    if any(c.status == "verified" and c.kind in PROVENANCE for c in checks):
        return "verified"
    return "unverified"
