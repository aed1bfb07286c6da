"""Frozen data handed from stage to stage. No I/O here."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

PRE_ORDER = {"a": 0, "b": 1, "rc": 2}

Step = Callable[[str], AbstractContextManager[object]]  # shows a long step while it runs


@dataclass(frozen=True, order=True)
class Version:
    major: int
    minor: int
    micro: int
    pre_level: str = ""  # "", "a", "b" or "rc"
    pre_serial: int = 0

    @property
    def text(self) -> str:
        pre = f"{self.pre_level}{self.pre_serial}" if self.pre_level else ""
        return f"{self.major}.{self.minor}.{self.micro}{pre}"

    @property
    def series(self) -> str:
        return f"{self.major}.{self.minor}"

    @property
    def final(self) -> str:
        """python.org's directory name: the version without its pre-release suffix."""
        return f"{self.major}.{self.minor}.{self.micro}"

    @property
    def tag(self) -> str:
        return f"v{self.text}"

    def sort_key(self) -> tuple[int, int, int, int, int]:
        level = PRE_ORDER[self.pre_level] if self.pre_level else 3
        return (self.major, self.minor, self.micro, level, self.pre_serial)


@dataclass(frozen=True)
class Dated:
    """A value that took effect on a date (release-tools changed its pins over time)."""

    since: dt.date
    value: str
    sha256: tuple[str, ...] = ()


@dataclass(frozen=True)
class Limits:
    """What a container may use: memory, processes, wall time, CPUs."""

    memory: str = "2g"
    pids: int = 512
    seconds: float = 1800.0
    cpus: float = 2.0


@dataclass(frozen=True)
class BaseSpec:
    suite: str
    mirror: str
    variant: str
    packages: tuple[str, ...]
    source_date_epoch: int
    snapshot: str = ""
    upstream: str = ""


@dataclass(frozen=True)
class ArtifactRecipe:
    suffix: str  # ".tgz" or ".tar.xz"
    compress: tuple[str, ...]


@dataclass(frozen=True)
class Recipe:
    name: str
    summary: str
    digest: str  # sha256 of the TOML file: the report names the exact recipe used
    path: Path
    strict: bool  # True: the strict rebuild is expected to give the published bytes
    version_ranges: tuple[str, ...]
    base: BaseSpec
    expected_tools: dict[str, str]
    touch: tuple[str, ...]
    remove_files: tuple[str, ...]
    remove_dirs: tuple[Dated, ...]
    blurb: tuple[Dated, ...]
    tar_options: tuple[str, ...]
    artifacts: tuple[ArtifactRecipe, ...]
    notes: tuple[str, ...] = ()

    def blurb_for(self, when: dt.date) -> Dated:
        pins = [b for b in self.blurb if b.since <= when] or [self.blurb[0]]
        return max(pins, key=lambda b: b.since)

    def remove_dirs_for(self, when: dt.date) -> tuple[str, ...]:
        return tuple(d.value for d in self.remove_dirs if d.since <= when)


@dataclass(frozen=True)
class AutoconfSpec:
    """The autoconf image a series used, and how we replicate it (recipes/autoconf.toml)."""

    used: str  # what CPython used, in words
    base: BaseSpec  # our replica's base: Debian suite and packages
    command: tuple[str, ...]
    files: tuple[str, ...]  # the generated files to compare with the committed ones
    expected: dict[str, str] = field(default_factory=dict)  # tool -> version CPython used
    upstream: str = ""  # a digest-pinned image to use instead, where a registry is reachable


@dataclass(frozen=True)
class SigstoreIdentity:
    identity: str  # the certificate's e-mail address
    issuer: str  # the OIDC issuer that vouched for it


@dataclass(frozen=True)
class Signers:
    """Who may sign a release series (recipes/signers.toml); keys live in recipes/keys/."""

    series: str
    sigstore: tuple[SigstoreIdentity, ...] = ()
    openpgp: tuple[str, ...] = ()  # fingerprints, upper-case hex
    pgp_expected: bool = True
    keys_dir: Path = Path()
    commits: dict[str, str] = field(default_factory=dict)  # tag -> expected commit


@dataclass(frozen=True)
class ArtifactPlan:
    name: str  # Python-3.13.5.tgz
    url: str
    recipe: ArtifactRecipe


SIGNATURE_SUFFIXES = (".asc", ".sigstore", ".sig", ".crt")


@dataclass(frozen=True)
class Plan:
    """What resolve decided: which release, which recipe, where things come from."""

    version: Version
    recipe: Recipe
    remote: str
    artifacts: tuple[ArtifactPlan, ...]
    local_published: tuple[Path, ...] = ()
    signers: Signers = field(default_factory=lambda: Signers(""))
    autoconf: AutoconfSpec | None = None

    @property
    def prefix(self) -> str:
        return f"Python-{self.version.text}"

    @property
    def packager(self) -> bool:
        """An artifact was given with --published: verify those, download none."""
        return any(not p.name.endswith(SIGNATURE_SUFFIXES) for p in self.local_published)


@dataclass(frozen=True)
class Source:
    """The tag as fetched: the bare repository holds its commit; times are the commit's."""

    repo: Path
    tag: str
    tag_object: str
    commit: str
    commit_time: int  # %ct of the tagged commit, what release.py clamps mtimes to

    @property
    def commit_date(self) -> dt.date:
        return dt.datetime.fromtimestamp(self.commit_time, tz=dt.UTC).date()


@dataclass(frozen=True)
class Published:
    name: str
    path: Path
    sha256: str
    size: int
    origin: str  # URL or local path
    note: str = ""  # e.g. a cached copy used without revalidation, and why


SignatureStatus = Literal["verified", "failed", "not-verifiable", "absent", "unavailable",
                          "not-expected", "not-pinned"]


@dataclass(frozen=True)
class SignatureFiles:
    """What was published beside one artifact; None where nothing was, or where it could not
    be had (then `unavailable` says which file and why: offline, or the server unreachable)."""

    artifact: str
    asc: Path | None = None
    sigstore: Path | None = None
    sig: Path | None = None
    crt: Path | None = None
    unavailable: dict[str, str] = field(default_factory=dict)  # suffix -> why


@dataclass(frozen=True)
class NotChecked:
    """An artifact of the release that this run did not verify, and why (packager mode)."""

    artifact: str
    reason: str


@dataclass(frozen=True)
class SignatureCheck:
    artifact: str
    kind: Literal["openpgp", "sigstore", "digest-list", "tag"]
    status: SignatureStatus
    signer: str = ""
    detail: str = ""
    signed_at: str = ""  # ISO 8601 UTC, where the signature says


@dataclass(frozen=True)
class GeneratedFile:
    path: str
    status: Literal["same", "differs", "missing-committed", "missing-regenerated"]
    committed_sha256: str = ""
    regenerated_sha256: str = ""
    explanation: str = ""
    diff: str = ""  # unified diff, committed -> regenerated, bounded


@dataclass(frozen=True)
class RegenCheck:
    """configure and friends regenerated from the tag's sources, against the committed ones."""

    status: Literal["match", "differs", "error", "skipped"]
    used: str = ""  # the image CPython used for this series
    image: str = ""  # ours
    command: tuple[str, ...] = ()
    tools: dict[str, str] = field(default_factory=dict)
    tool_mismatches: tuple[str, ...] = ()
    files: tuple[GeneratedFile, ...] = ()
    detail: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Image:
    role: str  # "base" or "builder"
    ref: str  # tag, e.g. cpython-repro/builder:3f2a...
    image_id: str
    content_digest: str  # what defines it (inputs), not the daemon's image id
    layer_digest: str = ""  # for bases: the rootfs diff_id, stable across imports


@dataclass(frozen=True)
class Rebuilt:
    name: str
    path: Path
    sha256: str
    size: int


@dataclass(frozen=True)
class RebuildResult:
    payload: Path  # the uncompressed tar, kept for comparison
    payload_sha256: str
    artifacts: tuple[Rebuilt, ...]
    tools: dict[str, str]
    log: Path
    seconds: float


Verdict = Literal[
    "identical", "identical-after-adoption", "same-content", "content-differs", "error"
]
PASSING: frozenset[str] = frozenset({"identical", "identical-after-adoption"})


@dataclass(frozen=True)
class Finding:
    """One explained difference. kind: 'content' changes what a user gets, 'metadata' does not."""

    kind: Literal["content", "metadata", "compression", "toolchain"]
    path: str  # member path, or "" for the archive itself
    field: str
    published: str
    rebuilt: str
    explanation: str


@dataclass(frozen=True)
class AdoptedField:
    """One piece of metadata taken from the published artifact for the adoption rebuild."""

    field: str  # "member order", "mtimes", "owner", "tar format", "gzip header", ...
    value: str  # what was taken, in words


@dataclass(frozen=True)
class Adoption:
    """The rebuild that took named metadata from the published artifact, and its outcome."""

    fields: tuple[AdoptedField, ...]
    identical: bool  # the adopted rebuild has the published sha256
    rebuilt_sha256: str = ""
    detail: str = ""  # why it could not be tried, or what still differs


@dataclass(frozen=True)
class DiffoscopeRun:
    """diffoscope over the members that differ; paths are relative to the report directory."""

    status: str  # "differences", "no differences", "not installed: ...", "failed: ..."
    members: tuple[str, ...] = ()
    text: str = ""
    html: str = ""
    seconds: float = 0.0


@dataclass(frozen=True)
class Comparison:
    artifact: str
    verdict: Verdict
    published_sha256: str
    rebuilt_sha256: str
    published_size: int
    rebuilt_size: int
    payload_identical: bool | None
    members_published: int
    members_rebuilt: int
    findings: tuple[Finding, ...] = field(default=())
    findings_total: int = 0  # before truncation of the list
    error: str = ""
    layer: dict[str, dict[str, str]] = field(default_factory=dict)
    adoption: Adoption | None = None
    diffoscope: DiffoscopeRun | None = None
