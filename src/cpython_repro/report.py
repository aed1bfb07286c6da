"""The versioned JSON report. Schema: README.md "Report schema"; bump SCHEMA on any change
that removes or renames a field (adding fields keeps the version)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpython_repro import __version__
from cpython_repro.errors import EXIT_DIVERGENCE, EXIT_OK
from cpython_repro.files import atomic_write
from cpython_repro.models import (
    PASSING,
    Comparison,
    Image,
    NotChecked,
    Plan,
    Published,
    RebuildResult,
    RegenCheck,
    SignatureCheck,
    Source,
)
from cpython_repro.text import utf8

# Imported where used: `compare` writes its JSON through this module and needs neither the
# SBOM stage nor the signature stage (and cryptography), which cost ~45 ms to load.
if TYPE_CHECKING:
    from cpython_repro.sbom import SbomCheck

SCHEMA = "cpython-repro/report/v1"
VERDICT_ORDER = ("identical", "identical-after-adoption", "same-content", "content-differs",
                 "error")


@dataclass(frozen=True)
class VerifyReport:
    plan: Plan
    source: Source
    published: tuple[Published, ...]
    images: tuple[Image, ...]
    rebuild: RebuildResult
    comparisons: tuple[Comparison, ...]
    started: dt.datetime
    finished: dt.datetime
    signatures: tuple[SignatureCheck, ...] = ()
    signature_status: str = "skipped"  # verified | unverified | failed | skipped
    generated: RegenCheck = field(default_factory=lambda: RegenCheck("skipped"))
    not_checked: tuple[NotChecked, ...] = ()
    offline: bool = False
    sbom: SbomCheck | None = None
    timings: dict[str, float] = field(default_factory=dict)  # step -> seconds

    @property
    def verdict(self) -> str:
        return max((c.verdict for c in self.comparisons), key=VERDICT_ORDER.index)

    @property
    def exit_code(self) -> int:
        return EXIT_DIVERGENCE if self.reasons() else EXIT_OK

    def reasons(self) -> list[str]:
        """Why the run does not pass, one sentence each; empty when it passes. The exit code
        is derived from this list, so it always explains itself."""
        out = [_verdict_reason(c) for c in self.comparisons if c.verdict not in PASSING]
        if self.signature_status != "skipped":
            out += _signature_reasons(self.signatures, [c.artifact for c in self.comparisons])
        out += _generated_reasons(self.generated)
        if self.sbom is not None:
            from cpython_repro import sbom

            out += sbom.reasons(self.sbom)
        return out

    def toolchain_mismatches(self) -> list[str]:
        found = self.rebuild.tools
        return [f"{tool}: recipe expects {want}*, container has {found.get(tool, 'none')}"
                for tool, want in self.plan.recipe.expected_tools.items()
                if not found.get(tool, "").startswith(want)]


def _verdict_reason(c: Comparison) -> str:
    first = c.error or next((f.explanation for f in c.findings if f.kind == "content"), "") \
        or (c.findings[0].explanation if c.findings else "")
    more = f" ({c.findings_total} findings)" if c.findings_total > 1 else ""
    return f"{c.artifact}: {c.verdict}" + (f": {first}{more}" if first else "")


def _signature_reasons(checks: tuple[SignatureCheck, ...], artifacts: list[str]) -> list[str]:
    from cpython_repro.signatures import artifact_status

    out = []
    for name in artifacts:
        mine = [c for c in checks if c.artifact == name]
        status = artifact_status(mine)
        if status == "failed":
            bad = next(c for c in mine if c.status == "failed")
            out.append(f"{name}: {bad.kind} check failed: {bad.detail}")
        elif status == "unverified":
            why = "; ".join(f"{c.kind} {c.status}" for c in mine
                            if c.kind in ("openpgp", "sigstore", "digest-list"))
            out.append(f"{name}: no signature verified ({why})")
    out += [f"tag {c.artifact}: {c.detail}" for c in checks
            if c.kind == "tag" and c.status == "failed"]
    return out


def _generated_reasons(g: RegenCheck) -> list[str]:
    if g.status in ("match", "skipped"):
        return []
    if g.status == "differs":
        return [f"generated file {f.explanation}" for f in g.files if f.status != "same"]
    if g.status == "inconclusive":
        # Not a finding, and not a pass either: the run says what it could not check.
        return [f"generated files not checked (inconclusive, not a finding): {g.detail}"]
    return [f"generated files could not be checked: {g.detail}"]


def comparison_json(c: Comparison) -> dict[str, Any]:
    """Strings quoted from archives are made UTF-8 (a byte that is not becomes \\xNN);
    a finding's path that is not UTF-8 also keeps its exact bytes, in hex."""
    findings = []
    for f in c.findings:
        entry = dataclasses.asdict(f)
        if utf8(f.path) != f.path:
            entry["path_bytes"] = f.path.encode("utf-8", "surrogateescape").hex()
        findings.append(entry)
    data: dict[str, Any] = _utf8({
        "name": c.artifact,
        "verdict": c.verdict,
        "published": {"sha256": c.published_sha256, "size": c.published_size},
        "rebuilt": {"sha256": c.rebuilt_sha256, "size": c.rebuilt_size},
        "payload_identical": c.payload_identical,
        "members": {"published": c.members_published, "rebuilt": c.members_rebuilt},
        "compression": c.layer,
        "findings": findings,
        "findings_total": c.findings_total,
        "error": c.error or None,
        "diffoscope": None if c.diffoscope is None else dataclasses.asdict(c.diffoscope),
        "adoption": None if c.adoption is None else {
            "identical": c.adoption.identical,
            "fields": [dataclasses.asdict(f) for f in c.adoption.fields],
            "rebuilt_sha256": c.adoption.rebuilt_sha256 or None,
            "detail": c.adoption.detail or None,
        },
    })
    return data


def _utf8(value: Any) -> Any:
    if isinstance(value, str):
        return utf8(value)
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_utf8(v) for v in value]
    return value


def to_json(r: VerifyReport) -> dict[str, Any]:
    from cpython_repro import sbom

    origins = {p.name: p for p in r.published}
    artifacts = []
    for c in r.comparisons:
        entry = comparison_json(c)
        pub = origins.get(c.artifact)
        entry["origin"] = pub.origin if pub else ""
        entry["origin_note"] = pub.note if pub and pub.note else None
        artifacts.append(entry)
    data: dict[str, Any] = _utf8({  # paths given on the command line too
        "schema": SCHEMA,
        "tool": {"name": "cpython-repro", "version": __version__},
        "started": r.started.isoformat(timespec="seconds"),
        "finished": r.finished.isoformat(timespec="seconds"),
        "version": r.plan.version.text,
        "source": {
            "remote": r.plan.remote,
            "tag": r.source.tag,
            "tag_object": r.source.tag_object,
            "commit": r.source.commit,
            "commit_time": dt.datetime.fromtimestamp(r.source.commit_time, tz=dt.UTC)
            .isoformat(timespec="seconds"),
        },
        "recipe": {"name": r.plan.recipe.name, "sha256": r.plan.recipe.digest,
                   "strict": r.plan.recipe.strict, "notes": list(r.plan.recipe.notes)},
        "images": [dataclasses.asdict(i) for i in r.images],
        "toolchain": r.rebuild.tools,
        "toolchain_mismatches": r.toolchain_mismatches(),
        "rebuild_seconds": round(r.rebuild.seconds, 2),
        "payload_sha256": r.rebuild.payload_sha256,
        "signatures": {"status": r.signature_status,
                       "checks": [dataclasses.asdict(c) for c in r.signatures]},
        "generated_files": dataclasses.asdict(r.generated),
        "artifacts": artifacts,
        "not_checked": [dataclasses.asdict(n) for n in r.not_checked],
        "offline": r.offline,
        "verdict": r.verdict,
        "exit_code": r.exit_code,
        "sbom": sbom.to_json(r.sbom) if r.sbom is not None else None,
        # Not a verdict: stale version fields in the SBOM, shown beside it.
        "warnings": sbom.warnings(r.sbom) if r.sbom is not None else [],
        "timings": r.timings,
        "reasons": r.reasons(),
    })
    return data


def write_json(data: dict[str, Any], path: Path) -> None:
    atomic_write(path, (json.dumps(data, indent=2, sort_keys=False) + "\n").encode())
