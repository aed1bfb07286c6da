"""SBOM cross-check: the release's software bill of materials against the rebuilt tree.

Misc/sbom.spdx.json (CPython's vendored sources, each file with SHA1 and SHA256) and
Misc/externals.spdx.json (what the Windows build downloads) are checked against the tree
they ship in, and the SBOM python.org publishes beside an artifact (`NAME.spdx.json`, made
by python/release-tools' sbom.py) against the artifact and the tree. Bytes that disagree,
files missing or not listed, and a release SBOM for another artifact or not valid SPDX 2.3
fail the run (`reasons`); a version field that is not what the source says about itself is
a warning (`warnings`): people decide which CVEs apply from it, but the tarball is fine.

The tree is read once, streaming, never extracted. Everything in it and in the SBOMs is
hostile until checked: sizes and counts are bounded, names are data (never opened, shown
escaped), and a malformed document gives status "error" with one line, never a traceback.
What each package vendors and how it states its version is data: recipes/sbom/packages.toml.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import lzma
import re
import time
import tomllib
import zipfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

from cpython_repro.compare.archive import Payload, TarReader
from cpython_repro.errors import ArchiveError, NoRecipe
from cpython_repro.resolve import data_dir

TREE_SBOM = "Misc/sbom.spdx.json"
EXTERNALS_SBOM = "Misc/externals.spdx.json"

# Real sizes, for scale: 3.13.5's Misc/sbom.spdx.json is 72 KB with 111 files; the SBOM
# release-tools makes for its tarball is 2.9 MB with 4,808 files and 4,835 relationships.
TREE_JSON_LIMIT = 8 << 20
RELEASE_JSON_LIMIT = 32 << 20
CAPTURE_LIMIT = 8 << 20  # a file whose text states a version (expat.h is 40 KB)
WHEEL_LIMIT = 64 << 20  # pip's wheel is ~1.8 MB
VENDOR_TXT_LIMIT = 1 << 20
MAX_PACKAGES = 2_000
# spdx-tools' relationship validation is quadratic (6 s for 3.13.5's 4,835 relationships
# on 2 cores), so this bound is also its time bound: about 2.5x a real tarball.
MAX_FILES = 12_000
MAX_RELATIONSHIPS = 15_000
KEPT_FINDINGS = 200  # per list in the report; the totals count them all
SHOWN_REASONS = 10

Status = Literal["match", "differs", "absent", "error"]
ReleaseStatus = Literal["match", "differs", "error", "absent", "unavailable", "skipped"]
NoReleaseSbom = Literal["absent", "unavailable", "skipped"]
FileProblem = Literal["checksum-differs", "missing", "unlisted", "not-a-file", "no-checksum",
                      "listed-twice", "twice-in-tree"]
PackageStatus = Literal["match", "stale", "undeclared", "unknown", "unlisted"]


@dataclass(frozen=True)
class FileFinding:
    """One file entry that disagrees with the tree, or one tree file no entry lists."""

    path: str  # relative to the tree's top directory, as the SBOM names it
    problem: FileProblem
    sbom: str  # whose entry: "Misc/sbom.spdx.json" or the release SBOM's file name
    package: str = ""  # the vendored package whose directory holds the file
    algorithm: str = ""  # "SHA1" or "SHA256", for checksum-differs and no-checksum
    expected: str = ""  # what the SBOM lists
    actual: str = ""  # what the tree has

    def sentence(self) -> str:
        where = f" ({self.package})" if self.package else ""
        if self.problem == "checksum-differs":
            return (f"{self.path}{where}: {self.algorithm} is {self.actual} in the tree, "
                    f"{self.sbom} lists {self.expected}")
        return f"{self.path}{where}: " + {
            "missing": f"listed in {self.sbom}, not in the tree",
            "unlisted": f"in the tree, not listed in {self.sbom}",
            "not-a-file": f"listed in {self.sbom}, but a {self.actual} in the tree",
            "no-checksum": f"{self.sbom} gives no {self.algorithm} for it",
            "listed-twice": f"listed {self.actual} times in {self.sbom}",
            "twice-in-tree": f"{self.actual} members of the tree have this name (extraction "
                             "keeps the last, and so does this check)",
        }[self.problem]


@dataclass(frozen=True)
class PackageCheck:
    """A package's version fields against what its source states about itself."""

    name: str
    sbom: str  # which document lists it
    listed: str  # versionInfo
    declared: str  # the version the source states; "" when it states none we could read
    declared_in: str  # where: "Modules/expat/expat.h", "PCbuild/get_externals.bat", ...
    status: PackageStatus
    fields: tuple[str, ...] = ()  # each disagreeing field and its value: "versionInfo 2.6.3"
    detail: str = ""

    def sentence(self) -> str:
        if self.status == "stale":
            names = ", ".join(f.split(" ", 1)[0] for f in self.fields)
            return (f"{self.sbom}: {self.name} is listed as {self.listed}, but "
                    f"{self.declared_in} says {self.declared} (stale: {names})")
        return f"{self.sbom}: {self.name} {self.listed}: {self.detail}"


@dataclass(frozen=True)
class ReleaseFinding:
    """A field of the published release SBOM that disagrees with the artifact, the tree or
    Misc/sbom.spdx.json. `fails`: it makes the run fail (another artifact, bytes, not SPDX)."""

    field: str  # e.g. "packages[CPython].checksums.SHA256", "documentNamespace"
    expected: str
    actual: str
    explanation: str
    fails: bool


@dataclass(frozen=True)
class ReleaseCheck:
    name: str  # Python-3.13.5.tar.xz.spdx.json
    status: ReleaseStatus
    sha256: str = ""  # of the SBOM file as published
    describes: str = ""  # the artifact it describes, as it names it
    files_checked: int = 0
    files: tuple[FileFinding, ...] = ()
    files_total: int = 0
    packages: tuple[PackageCheck, ...] = ()  # pip and its vendored projects, against the wheel
    findings: tuple[ReleaseFinding, ...] = ()
    spdx: str = ""  # what spdx-tools said
    detail: str = ""


@dataclass(frozen=True)
class Artifact:
    """A published artifact, and the release SBOM found beside it."""

    name: str  # Python-3.13.5.tar.xz
    sha256: str  # of the published file: what its release SBOM must name
    sbom: Path | None = None  # NAME.spdx.json as downloaded or given
    missing: NoReleaseSbom = "absent"  # when sbom is None, why: absent = 404
    note: str = ""  # said instead of the default sentence, e.g. "offline: not fetched"


@dataclass(frozen=True)
class SbomCheck:
    status: Status
    files: tuple[FileFinding, ...] = ()  # Misc/sbom.spdx.json's disagreements, at most KEPT
    files_total: int = 0
    files_checked: int = 0
    packages: tuple[PackageCheck, ...] = ()
    releases: tuple[ReleaseCheck, ...] = ()  # one per published artifact
    detail: str = ""
    seconds: float = 0.0


# --- the recipe: recipes/sbom/packages.toml ---------------------------------------------


@dataclass(frozen=True)
class Vendored:
    name: str
    include: tuple[str, ...]  # "DIR/**" or an exact path
    exclude: frozenset[str]
    version_file: str  # "" when the sources state no version
    patterns: tuple[re.Pattern[str], ...]
    why_undeclared: str = ""

    def holds(self, path: str) -> bool:
        for pattern in self.include:
            if pattern.endswith("/**"):
                rest = path.removeprefix(pattern[:-2])
                if rest != path and not any(p.startswith(".") for p in rest.split("/")):
                    return path not in self.exclude
            elif path == pattern:
                return path not in self.exclude
        return False


@dataclass(frozen=True)
class SbomRecipe:
    packages: tuple[Vendored, ...]
    wheel: re.Pattern[str]
    vendor_txt: str
    pin: re.Pattern[str]
    externals_file: str
    externals: re.Pattern[str]

    def wanted(self, path: str) -> int:
        """How many bytes of this tree file to keep for reading (0: none)."""
        if path in (TREE_SBOM, EXTERNALS_SBOM):
            return TREE_JSON_LIMIT
        if path == self.externals_file or any(p.version_file == path for p in self.packages):
            return CAPTURE_LIMIT
        return WHEEL_LIMIT if self.wheel.match(path) else 0


def load_recipe(path: Path | None = None) -> SbomRecipe:
    path = path or data_dir("recipes") / "sbom" / "packages.toml"
    try:
        data = tomllib.loads(path.read_text("utf-8"))
        packages = []
        for p in data["package"]:
            v = p["version"]
            for pattern in p["include"]:
                if "*" in pattern.removesuffix("/**"):
                    raise ValueError(f"{p['name']}: only DIR/** or exact paths: {pattern}")
            packages.append(Vendored(
                name=p["name"], include=tuple(p["include"]), exclude=frozenset(p["exclude"]),
                version_file=v.get("file", ""),
                patterns=tuple(re.compile(x, re.MULTILINE) for x in v.get("patterns", ())),
                why_undeclared=v.get("why", "")))
        pip, ext = data["pip"], data["externals"]
        return SbomRecipe(tuple(packages), re.compile(pip["wheel"]), pip["vendor"],
                          re.compile(pip["pin"]), ext["file"], re.compile(ext["pattern"]))
    except (OSError, KeyError, TypeError, ValueError, re.error) as exc:
        raise NoRecipe(f"SBOM recipe {path} is malformed: {exc}") from exc


# --- reading hostile input ----------------------------------------------------------------


class Malformed(Exception):
    """A document or tree the check cannot read; the message is one line."""


T = TypeVar("T")


def show(text: object, limit: int = 200) -> str:
    """A name from the input, safe on a terminal: control characters escaped, length bounded."""
    s = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(text)[:limit + 1])
    return s if len(s) <= limit else s[:limit] + "…"


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    # Two parsers may keep different copies of a repeated key: refuse the ambiguity.
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise Malformed(f"repeats the key {show(k)!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise Malformed(f"has {name}, which is not JSON")


def load_json(data: bytes, what: str, limit: int) -> dict[str, Any]:
    if len(data) > limit:
        raise Malformed(f"{what} is larger than {limit:,} bytes: refusing")
    try:
        doc = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicate_keys,
                         parse_constant=_no_constant)
    except Malformed as exc:
        raise Malformed(f"{what} {exc}") from None
    except RecursionError:
        raise Malformed(f"{what} is nested too deeply") from None
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, int digits limit
        raise Malformed(f"{what} is not JSON: {show(str(exc).splitlines()[0])}") from None
    if not isinstance(doc, dict):
        raise Malformed(f"{what} is JSON but not an object")
    return doc


def _get(obj: dict[str, Any], key: str, kind: type[T], where: str, default: T | None = None,
         ) -> T:
    value = obj.get(key, default)
    if not isinstance(value, kind):
        got = "nothing" if key not in obj else type(value).__name__
        raise Malformed(f"{where}.{key}".lstrip(".") + f": expected {kind.__name__}, found {got}")
    return value


def _objects(obj: dict[str, Any], key: str, where: str, limit: int) -> list[dict[str, Any]]:
    items = _get(obj, key, list, where, [])
    at = f"{where}.{key}".lstrip(".")
    if len(items) > limit:
        raise Malformed(f"{at} has {len(items):,} entries, more than {limit:,}: refusing")
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise Malformed(f"{at}[{i}]: expected an object")
    return items


@dataclass(frozen=True)
class _File:
    name: str
    spdx_id: str
    checksums: dict[str, str]  # algorithm -> lower-case hex


@dataclass(frozen=True)
class _Package:
    spdx_id: str
    name: str
    version: str
    download: str
    refs: tuple[tuple[str, str], ...]  # (referenceType, referenceLocator)
    checksums: dict[str, str]
    file_name: str
    verification_code: str


@dataclass(frozen=True)
class _Doc:
    name: str
    raw: dict[str, Any]
    namespace: str
    files: tuple[_File, ...]
    packages: tuple[_Package, ...]
    relationships: tuple[tuple[str, str, str], ...]  # (element, type, related)

    def package(self, spdx_id: str) -> _Package | None:
        return next((p for p in self.packages if p.spdx_id == spdx_id), None)

    def contains(self) -> dict[str, str]:
        """file name -> name of the package that CONTAINS it."""
        names = {p.spdx_id: p.name for p in self.packages}
        files = {f.spdx_id: f.name for f in self.files}
        return {files[r]: names[e] for e, t, r in self.relationships
                if t == "CONTAINS" and e in names and r in files}


def _checksums(obj: dict[str, Any], where: str) -> dict[str, str]:
    out = {}
    for i, c in enumerate(_objects(obj, "checksums", where, 16)):
        at = f"{where}.checksums[{i}]"
        algorithm = _get(c, "algorithm", str, at)
        out[algorithm] = _get(c, "checksumValue", str, at).lower()
    return out


def parse_doc(raw: dict[str, Any], name: str, max_files: int) -> _Doc:
    try:
        return _parse_doc(raw, name, max_files)
    except Malformed as exc:
        raise Malformed(f"{name}: {exc}") from None


def _parse_doc(raw: dict[str, Any], name: str, max_files: int) -> _Doc:
    files = tuple(
        _File(_get(f, "fileName", str, f"files[{i}]"), _get(f, "SPDXID", str, f"files[{i}]", ""),
              _checksums(f, f"files[{i}]"))
        for i, f in enumerate(_objects(raw, "files", "", max_files)))
    packages = []
    for i, p in enumerate(_objects(raw, "packages", "", MAX_PACKAGES)):
        at = f"packages[{i}]"
        refs = tuple((_get(r, "referenceType", str, f"{at}.externalRefs[{j}]"),
                      _get(r, "referenceLocator", str, f"{at}.externalRefs[{j}]"))
                     for j, r in enumerate(_objects(p, "externalRefs", at, 64)))
        code = _get(p, "packageVerificationCode", dict, at, {})
        packages.append(_Package(
            spdx_id=_get(p, "SPDXID", str, at, ""), name=_get(p, "name", str, at),
            version=_get(p, "versionInfo", str, at, ""),
            download=_get(p, "downloadLocation", str, at, ""), refs=refs,
            checksums=_checksums(p, at), file_name=_get(p, "packageFileName", str, at, ""),
            verification_code=_get(code, "packageVerificationCodeValue", str,
                                    f"{at}.packageVerificationCode", "").lower()))
    relationships = tuple(
        (_get(r, "spdxElementId", str, f"relationships[{i}]"),
         _get(r, "relationshipType", str, f"relationships[{i}]"),
         _get(r, "relatedSpdxElement", str, f"relationships[{i}]"))
        for i, r in enumerate(_objects(raw, "relationships", "", MAX_RELATIONSHIPS)))
    return _Doc(name, raw, _get(raw, "documentNamespace", str, "", ""), files,
                tuple(packages), relationships)


# --- the tree -----------------------------------------------------------------------------


class _Hasher:
    """SHA1 and SHA256 of a file as it is, and as CPython's generate_sbom.py hashes it (CRLF
    turned into LF unless the file holds a NUL byte), in one pass. The second pair starts at
    the first CR, from copies of the first: most files have none."""

    def __init__(self) -> None:
        # SPDX requires SHA1 for files; it is a name here, not a security check.
        self.raw = (hashlib.sha1(usedforsecurity=False), hashlib.sha256())
        self.lf: tuple[Any, Any] | None = None
        self.held_cr = False
        self.nul = False

    def update(self, data: bytes) -> None:
        if self.lf is None and b"\r" in data:
            self.lf = (self.raw[0].copy(), self.raw[1].copy())
        for h in self.raw:
            h.update(data)
        self.nul = self.nul or b"\0" in data
        if self.lf is not None:
            if self.held_cr:  # a CR at the end of the last piece may start a CRLF
                data = b"\r" + data
            self.held_cr = data.endswith(b"\r")
            data = data[:-1] if self.held_cr else data
            for h in self.lf:
                h.update(data.replace(b"\r\n", b"\n"))

    def digests(self) -> tuple[dict[str, str], dict[str, str]]:
        raw = {"SHA1": self.raw[0].hexdigest(), "SHA256": self.raw[1].hexdigest()}
        if self.lf is None or self.nul:
            return raw, raw
        if self.held_cr:
            for h in self.lf:
                h.update(b"\r")
        return raw, {"SHA1": self.lf[0].hexdigest(), "SHA256": self.lf[1].hexdigest()}


@dataclass
class _TreeFile:
    kind: str  # "file", "dir", "symlink", ...
    raw: dict[str, str] = field(default_factory=dict)  # algorithm -> hex, as the bytes are
    generated: dict[str, str] = field(default_factory=dict)  # as generate_sbom.py hashes
    count: int = 1


@dataclass
class _Tree:
    files: dict[str, _TreeFile] = field(default_factory=dict)
    captured: dict[str, bytes] = field(default_factory=dict)
    oversized: dict[str, int] = field(default_factory=dict)

    def text(self, path: str) -> str | None:
        data = self.captured.get(path)
        return None if data is None else data.decode("utf-8", "replace")

    def regular(self) -> Iterable[str]:
        return (p for p, f in self.files.items() if f.kind == "file")


def read_tree(path: Path, recipe: SbomRecipe) -> _Tree:
    """Every member's kind and digests, and the bytes of the few files the check reads."""
    tree = _Tree()
    payload = Payload(path)
    reader = TarReader(payload)
    try:
        while (entry := reader.next()) is not None:
            member = entry.member
            _top, sep, rel = member.path.rstrip("/").partition("/")
            if not sep:
                continue  # the top directory itself
            # A name that repeats: extraction keeps the last copy, and so does the check.
            count = tree.files[rel].count + 1 if rel in tree.files else 1
            tree.captured.pop(rel, None)
            tree.oversized.pop(rel, None)
            keep = recipe.wanted(rel)
            if member.type != "file":
                tree.files[rel] = _TreeFile(member.type, count=count)
                continue
            hasher, parts, size = _Hasher(), [], 0
            while piece := reader.data():
                hasher.update(piece)
                size += len(piece)
                if keep and size <= keep:
                    parts.append(piece)
            raw, generated = hasher.digests()
            tree.files[rel] = _TreeFile("file", raw, generated, count)
            if keep and size <= keep:
                tree.captured[rel] = b"".join(parts)
            elif keep:
                tree.oversized[rel] = size
    finally:
        payload.close()
    return tree


# --- the checks ---------------------------------------------------------------------------


def check(tree: Path, artifacts: Iterable[Artifact] = (),
          recipe: SbomRecipe | None = None) -> SbomCheck:
    """Misc/sbom.spdx.json and Misc/externals.spdx.json against the tree (`tree`: the rebuilt
    tar payload, members "Python-X.Y.Z/..."), and each artifact's release SBOM against the
    artifact and the tree."""
    started = time.monotonic()
    recipe = recipe or load_recipe()
    artifacts = tuple(artifacts)
    try:
        files = read_tree(tree, recipe)
    except (ArchiveError, OSError) as exc:
        why = exc.one_line() if isinstance(exc, ArchiveError) else show(exc)
        return SbomCheck("error", detail=f"the rebuilt tree is unreadable: {why}",
                         releases=tuple(ReleaseCheck(_release_name(a), "skipped",
                                                     detail="the tree is unreadable")
                                        for a in artifacts),
                         seconds=round(time.monotonic() - started, 3))
    result = _check_tree(files, recipe)
    source = result.doc if result.status != "error" else None
    releases = tuple(_check_release(files, recipe, a, source) for a in artifacts)
    status: Status = result.status
    errors = [r.detail for r in releases if r.status == "error"]
    if errors:
        status = "error"
    elif any(r.status == "differs" for r in releases) and status in ("match", "absent"):
        status = "differs"
    elif status == "absent" and any(r.status == "match" for r in releases):
        status = "match"
    detail = "; ".join(filter(None, (result.detail, *errors)))
    return SbomCheck(status, tuple(result.files[:KEPT_FINDINGS]), len(result.files),
                     result.checked, tuple(result.packages), releases, detail,
                     round(time.monotonic() - started, 3))


def _release_name(a: Artifact) -> str:
    return a.sbom.name if a.sbom is not None else f"{a.name}.spdx.json"


@dataclass
class _TreeResult:
    status: Status
    detail: str = ""
    doc: _Doc | None = None
    files: list[FileFinding] = field(default_factory=list)
    checked: int = 0
    packages: list[PackageCheck] = field(default_factory=list)


def _check_tree(tree: _Tree, recipe: SbomRecipe) -> _TreeResult:
    if TREE_SBOM not in tree.files:
        return _TreeResult("absent", "no SBOM in this release (no Misc/sbom.spdx.json)")
    try:
        doc = _tree_doc(tree, TREE_SBOM)
        externals = _tree_doc(tree, EXTERNALS_SBOM) if EXTERNALS_SBOM in tree.files else None
    except Malformed as exc:
        return _TreeResult("error", str(exc))
    out = _TreeResult("match", doc=doc)
    out.files = _file_findings(doc, tree, recipe, every_file=False)
    out.checked = len(doc.files)
    out.packages = [_vendored_version(p, tree, recipe) for p in doc.packages
                    if p.name != "pip" and not _pip_dependency(doc, p)]
    out.packages += _pip_checks(doc, tree, recipe)
    if externals is not None:
        out.packages += _externals_versions(externals, tree, recipe)
    if out.files:
        out.status = "differs"
    return out


def _tree_doc(tree: _Tree, path: str) -> _Doc:
    if path in tree.oversized:
        raise Malformed(f"{path} is {tree.oversized[path]:,} bytes, more than "
                        f"{TREE_JSON_LIMIT:,}: refusing")
    if tree.files[path].kind != "file":
        raise Malformed(f"{path} is a {tree.files[path].kind}, not a file")
    raw = load_json(tree.captured[path], path, TREE_JSON_LIMIT)
    return parse_doc(raw, path, MAX_FILES)


def _file_findings(doc: _Doc, tree: _Tree, recipe: SbomRecipe,
                   every_file: bool) -> list[FileFinding]:
    """Each entry against the tree's bytes; then each tree file the entries should cover.
    Misc/sbom.spdx.json covers the vendored directories, hashed as generate_sbom.py hashes
    (CRLF->LF); the release SBOM covers every file, hashed as its bytes are."""
    out: list[FileFinding] = []

    def package_of(path: str) -> str:
        return next((p.name for p in recipe.packages if p.holds(path)), "")

    counts: dict[str, int] = {}
    for f in doc.files:
        counts[f.name] = counts.get(f.name, 0) + 1
    for name, n in counts.items():
        if n > 1:
            out.append(FileFinding(show(name), "listed-twice", doc.name, package_of(name),
                                   actual=str(n)))
    for f in doc.files:
        here = tree.files.get(f.name)
        pkg = package_of(f.name)
        if here is None:
            out.append(FileFinding(show(f.name), "missing", doc.name, pkg))
            continue
        if here.kind != "file":
            out.append(FileFinding(show(f.name), "not-a-file", doc.name, pkg, actual=here.kind))
            continue
        if here.count > 1:
            out.append(FileFinding(show(f.name), "twice-in-tree", doc.name, pkg,
                                   actual=str(here.count)))
        digests = here.raw if every_file else here.generated
        for algorithm in ("SHA1", "SHA256"):
            listed = f.checksums.get(algorithm)
            if listed is None:
                out.append(FileFinding(show(f.name), "no-checksum", doc.name, pkg, algorithm))
            elif listed != digests[algorithm]:
                out.append(FileFinding(show(f.name), "checksum-differs", doc.name, pkg,
                                       algorithm, show(listed, 80), digests[algorithm]))
    for path in tree.regular():
        # The tree SBOM covers the vendored directories; the release SBOM every file.
        pkg = package_of(path)
        if path not in counts and (pkg or every_file):
            out.append(FileFinding(show(path), "unlisted", doc.name, pkg))
    return out


_CPE_SPLIT = re.compile(r"(?<!\\):")


def _ref_version(kind: str, locator: str) -> str | None:
    """The version a CPE 2.3 or purl reference names; None for other kinds."""
    if kind == "cpe23Type":
        parts = _CPE_SPLIT.split(locator)
        return parts[5] if len(parts) > 5 else ""
    if kind == "purl":
        return locator.rpartition("@")[2].split("?")[0].split("#")[0] if "@" in locator else ""
    return None


def _stale_fields(p: _Package, version: str) -> tuple[str, ...]:
    """The version fields of `p` that do not say `version`."""
    out = []
    if p.version != version:
        out.append(f"versionInfo {show(p.version, 80)}")
    for kind, locator in p.refs:
        named = _ref_version(kind, locator)
        if named is not None and named != version:
            out.append(f"{kind} {show(locator, 120)}")
    if p.download and version not in p.download:
        out.append(f"downloadLocation {show(p.download, 160)}")
    return tuple(out)


def _compare_version(p: _Package, sbom: str, declared: str, declared_in: str) -> PackageCheck:
    stale = _stale_fields(p, declared)
    return PackageCheck(show(p.name), sbom, show(p.version, 80), show(declared, 80),
                        declared_in, "stale" if stale else "match", stale)


def _vendored_version(p: _Package, tree: _Tree, recipe: SbomRecipe) -> PackageCheck:
    known = next((v for v in recipe.packages if v.name == p.name), None)

    def unknown(status: PackageStatus, why: str) -> PackageCheck:
        # Nothing to compare with: still, its fields must at least agree with each other.
        stale = _stale_fields(p, p.version)
        if stale:
            why += f"; and its own fields disagree with versionInfo: {', '.join(stale)}"
        return PackageCheck(show(p.name), TREE_SBOM, show(p.version, 80), "",
                            known.version_file if known else "", status, stale, why)

    if known is None:
        return unknown("unknown", "recipes/sbom/packages.toml does not know this package, "
                                  "so its version is not checked")
    if not known.version_file:
        return unknown("undeclared", known.why_undeclared)
    text = tree.text(known.version_file)
    if text is None:
        return unknown("unknown", f"{known.version_file} is not in the tree")
    parts = [m.group(1) if (m := pattern.search(text)) else None for pattern in known.patterns]
    if None in parts:
        return unknown("unknown", f"{known.version_file} states no version the recipe "
                                  "recognises")
    return _compare_version(p, TREE_SBOM, ".".join(x for x in parts if x), known.version_file)


def _externals_versions(doc: _Doc, tree: _Tree, recipe: SbomRecipe) -> list[PackageCheck]:
    text = tree.text(recipe.externals_file)
    if text is None:
        return [PackageCheck(show(p.name), EXTERNALS_SBOM, show(p.version, 80), "", "",
                             "unknown", detail=f"{recipe.externals_file} is not in the tree")
                for p in doc.packages]
    fetched = {}
    for tag in recipe.externals.findall(text):
        name, _, version = tag.rpartition("-")
        fetched[name] = version
    out = []
    for p in doc.packages:
        if p.name in fetched:
            out.append(_compare_version(p, EXTERNALS_SBOM, fetched.pop(p.name),
                                        recipe.externals_file))
        else:
            out.append(PackageCheck(show(p.name), EXTERNALS_SBOM, show(p.version, 80), "",
                                    recipe.externals_file, "unknown",
                                    detail=f"{recipe.externals_file} does not fetch it"))
    out += [PackageCheck(show(name), EXTERNALS_SBOM, "", show(version, 80),
                         recipe.externals_file, "unlisted",
                         detail=f"{recipe.externals_file} fetches {show(name)}-{show(version)}, "
                                "the SBOM does not list it")
            for name, version in fetched.items()]
    return out


# --- pip: its wheel in Lib/ensurepip/_bundled -----------------------------------------


def _pip_dependency(doc: _Doc, p: _Package) -> bool:
    pip = next((q for q in doc.packages if q.name == "pip"), None)
    return pip is not None and (pip.spdx_id, "DEPENDS_ON", p.spdx_id) in doc.relationships


def _wheel(tree: _Tree, recipe: SbomRecipe) -> tuple[str, str, bytes | None] | None:
    """(path, version, bytes) of pip's wheel in the tree; bytes None when too large."""
    for path in tree.regular():
        if m := recipe.wheel.match(path):
            return path, m.group(1), tree.captured.get(path)
    return None


def _vendor_pins(data: bytes, recipe: SbomRecipe) -> dict[str, str]:
    """pip/_vendor/vendor.txt of the wheel: project (lower case) -> pinned version."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as whl, whl.open(recipe.vendor_txt) as f:
            text = f.read(VENDOR_TXT_LIMIT + 1)
    # What a hostile archive makes zipfile raise: not a zip, no such member, encrypted,
    # an unknown or corrupt compression.
    except (zipfile.BadZipFile, zipfile.LargeZipFile, KeyError, OSError, ValueError, EOFError,
            RuntimeError, NotImplementedError, zlib.error, lzma.LZMAError) as exc:
        raise Malformed(f"pip's wheel has no readable {recipe.vendor_txt}: {show(exc)}") \
            from None
    if len(text) > VENDOR_TXT_LIMIT:
        raise Malformed(f"{recipe.vendor_txt} in pip's wheel is larger than "
                        f"{VENDOR_TXT_LIMIT:,} bytes")
    pins = {}
    for line in text.decode("utf-8", "replace").splitlines():
        line = line.partition("#")[0].strip()
        if m := recipe.pin.match(line):
            pins[m.group(1).lower()] = m.group(2)
    return pins


def _pip_checks(doc: _Doc, tree: _Tree, recipe: SbomRecipe) -> list[PackageCheck]:
    pip = next((p for p in doc.packages if p.name == "pip"), None)
    if pip is None:
        return []
    wheel = _wheel(tree, recipe)
    if wheel is None:
        return [PackageCheck("pip", doc.name, show(pip.version, 80), "", "", "unknown",
                             detail="the tree has no pip wheel in Lib/ensurepip/_bundled")]
    path, version, data = wheel
    out = [_compare_version(pip, doc.name, version, path)]
    deps = [q for q in doc.packages if _pip_dependency(doc, q)]
    try:
        pins = _vendor_pins(data, recipe) if data is not None else None
    except Malformed as exc:
        pins, why = None, str(exc)
    else:
        why = f"{path} is larger than {WHEEL_LIMIT:,} bytes"
    where = f"{path}:{recipe.vendor_txt}"
    if pins is None:
        return out + [PackageCheck(show(q.name), doc.name, show(q.version, 80), "", where,
                                   "unknown", detail=why) for q in deps]
    for q in deps:
        pinned = pins.pop(q.name.lower(), None)
        out.append(_compare_version(q, doc.name, pinned, where) if pinned is not None else
                   PackageCheck(show(q.name), doc.name, show(q.version, 80), "", where,
                                "unknown", detail="pip's vendor.txt does not pin it"))
    out += [PackageCheck(show(name), doc.name, "", show(pinned, 80), where, "unlisted",
                         detail=f"pip vendors {show(name)} {show(pinned)}, the SBOM does not "
                                "list it as pip's dependency")
            for name, pinned in pins.items()]
    return out


# --- the release SBOM ---------------------------------------------------------------------


def _check_release(tree: _Tree, recipe: SbomRecipe, artifact: Artifact,
                   source: _Doc | None) -> ReleaseCheck:
    name = _release_name(artifact)
    if artifact.sbom is None:
        return ReleaseCheck(name, artifact.missing, detail=artifact.note or {
            "absent": f"python.org publishes no {name} (404)",
            "unavailable": f"{name} could not be fetched",
            "skipped": "not looked for",
        }[artifact.missing])
    try:
        with artifact.sbom.open("rb") as f:
            data = f.read(RELEASE_JSON_LIMIT + 1)
    except OSError as exc:
        return ReleaseCheck(name, "error", detail=f"{name} is unreadable: {show(exc)}")
    sha256 = hashlib.sha256(data).hexdigest()
    try:
        doc = parse_doc(load_json(data, name, RELEASE_JSON_LIMIT), name, MAX_FILES)
    except Malformed as exc:
        return ReleaseCheck(name, "error", sha256, detail=str(exc))
    findings = _describes(doc, artifact.name, artifact.sha256)
    files = _file_findings(doc, tree, recipe, every_file=True)
    findings += _against_source(doc, source)
    findings += _verification_codes(doc)
    findings += _pip_wheel_digest(doc, tree, recipe)
    spdx, problems = spdx_validate(doc.raw)
    if problems:
        findings.append(ReleaseFinding("SPDX-2.3", "valid", f"{len(problems)} problem(s)",
                                       f"not valid SPDX 2.3 (spdx-tools): {problems[0]}", True))
    described = [p for e, t, r in doc.relationships
                 if e == "SPDXRef-DOCUMENT" and t == "DESCRIBES" and (p := doc.package(r))]
    fails = bool(files) or any(f.fails for f in findings)
    return ReleaseCheck(
        name, "differs" if fails else "match", sha256,
        ", ".join(show(p.file_name or p.name) for p in described), len(doc.files),
        tuple(files[:KEPT_FINDINGS]), len(files), tuple(_pip_checks(doc, tree, recipe)),
        tuple(findings), spdx)


def _describes(doc: _Doc, artifact_name: str, artifact_sha256: str) -> list[ReleaseFinding]:
    """The SBOM must describe this artifact: the package DOCUMENT DESCRIBES, with the
    artifact's name and sha256 (release-tools' create_cpython_sbom())."""
    described = [r for e, t, r in doc.relationships
                 if e == "SPDXRef-DOCUMENT" and t == "DESCRIBES"]
    p = doc.package(described[0]) if len(described) == 1 else None
    if p is None:
        return [ReleaseFinding("relationships[DESCRIBES]", "one package",
                               show(", ".join(described) or "none"),
                               "the SBOM does not describe exactly one package", True)]
    at = f"packages[{show(p.name)}]"
    out = []
    listed = p.checksums.get("SHA256", "")
    if listed != artifact_sha256:
        out.append(ReleaseFinding(f"{at}.checksums.SHA256", artifact_sha256, show(listed, 80),
                                  f"it describes another artifact: sha256 {show(listed, 80)} "
                                  f"is not {artifact_name}'s {artifact_sha256}", True))
    if p.file_name != artifact_name:
        out.append(ReleaseFinding(f"{at}.packageFileName", artifact_name, show(p.file_name),
                                  f"it describes {show(p.file_name) or 'no file'}, not "
                                  f"{artifact_name}", True))
    m = re.match(r"^Python-([0-9abrc.]+)\.(?:tgz|tar\.xz)$", artifact_name)
    if m is None:
        return out
    version = m.group(1)
    url = f"https://www.python.org/ftp/python/{re.sub(r'[abrc].*', '', version)}/{artifact_name}"
    for fieldname, want, got in (("documentNamespace", f"{url}.spdx.json", doc.namespace),
                                 (f"{at}.downloadLocation", url, p.download)):
        if got != want:
            out.append(ReleaseFinding(fieldname, want, show(got), f"{fieldname} is "
                                      f"{show(got) or 'empty'}, not {want}", False))
    stale = _stale_fields(p, version)
    if stale:
        out.append(ReleaseFinding(f"{at}.versionInfo", version, show(p.version, 80),
                                  f"CPython's version fields do not all say {version}: "
                                  f"{', '.join(stale)}", False))
    return out


def _against_source(doc: _Doc, source: _Doc | None) -> list[ReleaseFinding]:
    """release-tools copies Misc/sbom.spdx.json's packages and their files' CONTAINS as they
    are; only supplier, filesAnalyzed and packageVerificationCode are added."""
    if source is None:
        return []
    out = []
    mine = {p.name: p for p in doc.packages}
    for p in source.packages:
        q = mine.get(p.name)
        at = f"packages[{show(p.name)}]"
        if q is None:
            out.append(ReleaseFinding(at, "present", "absent", f"{TREE_SBOM} lists "
                                      f"{show(p.name)}, the release SBOM does not", False))
            continue
        for label, a, b in (("versionInfo", p.version, q.version),
                            ("downloadLocation", p.download, q.download),
                            ("externalRefs", sorted(p.refs), sorted(q.refs)),
                            ("checksums", sorted(p.checksums.items()),
                             sorted(q.checksums.items()))):
            if a != b:
                out.append(ReleaseFinding(f"{at}.{label}", show(a), show(b),
                                          f"{show(p.name)}'s {label} is {show(b)} in the "
                                          f"release SBOM, {show(a)} in {TREE_SBOM}", False))
    theirs, ours = source.contains(), doc.contains()
    for path, package in theirs.items():
        if path in ours and ours[path] != package:
            out.append(ReleaseFinding(f"relationships[CONTAINS {show(path)}]", show(package),
                                      show(ours[path]), f"{show(path)} belongs to "
                                      f"{show(ours[path])} in the release SBOM, to "
                                      f"{show(package)} in {TREE_SBOM}", False))
    return out


def _verification_codes(doc: _Doc) -> list[ReleaseFinding]:
    """packageVerificationCode: SHA1 of the sorted SHA1s of the files a package CONTAINS
    (SPDX 2.3 §7.9). A code that does not match its files is a checksum that lies."""
    sha1s: dict[str, list[bytes]] = {p.spdx_id: [] for p in doc.packages
                                     if p.verification_code}
    # By file entry, as release-tools counts: two files with one SPDXID both count.
    owner = {related: element for element, kind, related in doc.relationships
             if kind == "CONTAINS" and element in sha1s}
    for f in doc.files:
        if f.spdx_id in owner:
            sha1s[owner[f.spdx_id]].append(f.checksums.get("SHA1", "").encode())
    out = []
    for p in doc.packages:
        if p.spdx_id in sha1s:
            code = hashlib.sha1(b"".join(sorted(sha1s[p.spdx_id])),
                                usedforsecurity=False).hexdigest()
            if code != p.verification_code:
                out.append(ReleaseFinding(
                    f"packages[{show(p.name)}].packageVerificationCode", code,
                    show(p.verification_code, 80), f"{show(p.name)}'s packageVerificationCode "
                    f"does not match the SHA1s of the files it contains", True))
    return out


def _pip_wheel_digest(doc: _Doc, tree: _Tree, recipe: SbomRecipe) -> list[ReleaseFinding]:
    pip = next((p for p in doc.packages if p.name == "pip"), None)
    wheel = _wheel(tree, recipe)
    if pip is None or wheel is None:
        return []
    actual = tree.files[wheel[0]].raw["SHA256"]
    listed = pip.checksums.get("SHA256", "")
    if listed == actual:
        return []
    return [ReleaseFinding("packages[pip].checksums.SHA256", actual, show(listed, 80),
                           f"pip's SHA256 is {show(listed, 80) or 'missing'}, the wheel in the "
                           f"tree ({wheel[0]}) has {actual}", True)]


def spdx_validate(raw: dict[str, Any]) -> tuple[str, list[str]]:
    """(what spdx-tools said, its problems) for a parsed JSON document."""
    # Imported here: spdx-tools pulls in rdflib and beartype, which only this step needs.
    from importlib.metadata import version

    from spdx_tools.spdx.parser.jsonlikedict.json_like_dict_parser import JsonLikeDictParser
    from spdx_tools.spdx.validation.document_validator import validate_full_spdx_document

    tool = f"spdx-tools {version('spdx-tools')}"
    # spdx-tools is the reference, not a hardened parser: whatever it raises on hostile
    # input is a verdict about the document, never a crash of the run.
    try:
        document = JsonLikeDictParser().parse(raw)  # type: ignore[no-untyped-call]
    except Exception as exc:
        messages = getattr(exc, "messages", None) or [str(exc)]
        return f"{tool}: cannot parse it", [show(m, 300) for m in messages]
    try:
        problems = validate_full_spdx_document(document, "SPDX-2.3")
    except Exception as exc:
        return f"{tool}: validation failed", [show(f"{type(exc).__name__}: {exc}", 300)]
    if problems:
        return f"{tool}: {len(problems)} problem(s)", [show(p.validation_message, 300)
                                                       for p in problems]
    return f"{tool}: valid SPDX-2.3", []


# --- what the report and the exit code take -----------------------------------------------


def reasons(c: SbomCheck) -> list[str]:
    """Sentences that fail the run: bytes that disagree, files missing or unlisted, a
    release SBOM for another artifact or malformed, a check that could not be made."""
    out: list[str] = []
    if c.status == "error":
        out.append(f"SBOM check error: {c.detail}")
    files = [f.sentence() for f in c.files] + [f.sentence() for r in c.releases for f in r.files]
    total = c.files_total + sum(r.files_total for r in c.releases)
    out += [f"SBOM: {s}" for s in files[:SHOWN_REASONS]]
    if total > SHOWN_REASONS:
        out.append(f"SBOM: and {total - SHOWN_REASONS} more file finding(s) (report.json)")
    out += [f"{r.name}: {f.explanation}" for r in c.releases for f in r.findings if f.fails]
    return out


def warnings(c: SbomCheck) -> list[str]:
    """Stale or unreadable version fields, and release SBOM fields that disagree with
    Misc/sbom.spdx.json: shown in the summary and the report, not a tarball verdict."""
    packages = [*c.packages, *(p for r in c.releases for p in r.packages)]
    out = [p.sentence() for p in packages if p.status in ("stale", "unknown", "unlisted")]
    out += [f"{r.name}: {f.explanation}" for r in c.releases for f in r.findings
            if not f.fails]
    return out


def to_json(c: SbomCheck) -> dict[str, Any]:
    """For report.json's `sbom`."""
    data = dataclasses.asdict(c)
    data["reasons"] = reasons(c)
    data["warnings"] = warnings(c)
    return data
