"""Stage: what a run leaves for people and for others to check, all made from the JSON report.

- report.html: one self-contained page (inline CSS, no scripts, no external assets).
- evidence.tar.zst: the rebuilt artifacts, logs, scripts, JSON and HTML reports and diffs,
  so a finding can be re-examined later without rebuilding. Deterministic member order,
  times and owners.
- statement.intoto.json: an in-toto Statement v1 whose subjects are the published
  artifacts; `--sign` wraps it in a Sigstore DSSE bundle with ambient OIDC credentials.
"""

from __future__ import annotations

import html
import json
import tarfile
from pathlib import Path
from typing import Any

import pyzstd

from cpython_repro.errors import EnvironmentFailure
from cpython_repro.files import atomic_write, staged

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://github.com/cpython-repro/cpython-repro/verification/v1"
LADDER = ("identical", "identical-after-adoption", "same-content", "content-differs", "error")
COLOUR = {"identical": "#1a7f37", "identical-after-adoption": "#2da44e", "same-content":
          "#9a6700", "content-differs": "#cf222e", "error": "#cf222e", "verified": "#1a7f37",
          "match": "#1a7f37", "failed": "#cf222e", "differs": "#cf222e",
          "inconclusive": "#9a6700"}
EVIDENCE_SKIPS = ("payload.tar",)  # 110 MB that the rebuilt artifacts decompress to
EVIDENCE_LIMIT = 2 << 30  # rebuilt artifacts are ~50 MB; refuse to bundle a runaway directory


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def badge(word: str | None) -> str:
    """A verdict or status as a coloured pill; a missing one reads "none"."""
    w = word or "none"
    return f'<span class="v" style="background:{COLOUR.get(w, "#57606a")}">{_e(w)}</span>'


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;color:#1f2328}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #d0d7de;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#f6f8fa}code,pre{font:12px ui-monospace,monospace}
pre{background:#f6f8fa;padding:.8em;overflow:auto;max-height:30em}
.v{color:#fff;border-radius:1em;padding:.1em .7em;font-weight:600;white-space:nowrap}
.ladder td.on{outline:3px solid #1f2328}.muted{color:#57606a}
"""


def render_html(data: dict[str, Any], report_dir: Path) -> str:
    src = data["source"]
    parts = [f"<h1>CPython {_e(data['version'])} {badge(data['verdict'])}</h1>",
             f"<p>tag <code>{_e(src['tag'])}</code> → commit <code>{_e(src['commit'])}</code> "
             f"({_e(src['commit_time'])}) from <code>{_e(src['remote'])}</code>; recipe "
             f"<code>{_e(data['recipe']['name'])}</code> (sha256 "
             f"<code>{_e(data['recipe']['sha256'][:16])}…</code>); exit code "
             f"{_e(data['exit_code'])}; {_e(data['started'])} to {_e(data['finished'])}</p>"]
    reached = {a["verdict"] for a in data["artifacts"]}
    parts.append("<h2>Verdict ladder</h2><table class='ladder'><tr>" + "".join(
        f"<td class='{'on' if v in reached else ''}'>{badge(v)}</td>" for v in LADDER)
        + "</tr></table>")
    parts.append("<h2>Artifacts</h2>" + _table(
        ["artifact", "verdict", "published", "rebuilt", "members", "origin"],
        [[_e(a["name"]), badge(a["verdict"]),
          f"<code>{_e(a['published']['sha256'])}</code><br>{a['published']['size']:,} B",
          f"<code>{_e(a['rebuilt']['sha256'])}</code><br>{a['rebuilt']['size']:,} B",
          f"{a['members']['published']} / {a['members']['rebuilt']}", _e(a.get("origin", ""))]
         for a in data["artifacts"]]))
    for a in data["artifacts"]:
        parts.append(f"<h2>{_e(a['name'])}</h2>")
        if a.get("error"):
            parts.append(f"<p><b>error:</b> {_e(a['error'])}</p>")
        adoption = a.get("adoption")
        if adoption:
            state = ("gives the published bytes" if adoption["identical"]
                     else f"did not give the published bytes: {_e(adoption['detail'])}")
            parts.append(f"<p>Adoption {state}. Adopted from the published artifact:</p>"
                         + _table(["field", "value"], [[_e(f["field"]), _e(f["value"])]
                                                      for f in adoption["fields"]]))
        if a["findings"]:
            more = a["findings_total"] - len(a["findings"])
            parts.append(_table(["kind", "member", "field", "explanation"], [
                [_e(f["kind"]), f"<code>{_e(f['path'])}</code>", _e(f["field"]),
                 _e(f["explanation"])] for f in a["findings"]])
                + (f"<p class='muted'>{more} more in report.json</p>" if more > 0 else ""))
        elif not a.get("error"):
            parts.append("<p class='muted'>No findings.</p>")
        d = a.get("diffoscope")
        if d:
            parts.append(f"<p>diffoscope on {len(d['members'])} member(s): {_e(d['status'])}"
                         + (f" (<a href='{_e(d['html'])}'>HTML</a>)" if d["html"] else "")
                         + "</p>")
            text = report_dir / d["text"] if d["text"] else None
            if text and text.is_file():
                parts.append(f"<pre>{_e(text.read_text('utf-8', 'replace')[:200_000])}</pre>")
        if a["compression"]:
            keys = sorted(set(a["compression"]["published"]) | set(a["compression"]["rebuilt"]))
            parts.append(_table(["compression", "published", "rebuilt"], [
                [_e(k), _e(a["compression"]["published"].get(k, "")),
                 _e(a["compression"]["rebuilt"].get(k, ""))] for k in keys]))
    gen = data["generated_files"]
    parts.append(f"<h2>Generated files {badge(gen['status'])}</h2>"
                 f"<p>{_e(' '.join(gen['command']))} in <code>{_e(gen['image'])}</code>; CPython "
                 f"used {_e(gen['used'])}. {_e(gen['detail'])}</p>")
    parts += [f"<p class='muted'>{_e(m)}</p>" for m in gen["tool_mismatches"]]
    for f in gen["files"]:
        parts.append(f"<p><code>{_e(f['path'])}</code> {badge(f['status'])} "
                     f"{_e(f['explanation'])}</p>")
        if f["diff"]:
            parts.append(f"<pre>{_e(f['diff'])}</pre>")
    sigs = data["signatures"]
    parts.append(f"<h2>Signatures {badge(sigs['status'])}</h2>" + _table(
        ["artifact", "kind", "status", "signer", "signed", "detail"],
        [[_e(c["artifact"]), _e(c["kind"]), badge(c["status"]), _e(c["signer"]),
          _e(c["signed_at"]), _e(c["detail"])] for c in sigs["checks"]]))
    parts.append("<h2>Toolchain and images</h2>" + _table(
        ["tool", "version"], [[_e(k), _e(v)] for k, v in data["toolchain"].items()])
        + _table(["role", "image", "id", "defined by"], [
            [_e(i["role"]), _e(i["ref"]), f"<code>{_e(i['image_id'][:19])}</code>",
             f"<code>{_e(i['content_digest'][:16])}</code>"] for i in data["images"]]))
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            f"<title>CPython {_e(data['version'])}: {_e(data['verdict'])}</title>"
            f"<style>{CSS}</style></head><body>{''.join(parts)}</body></html>\n")


def statement(data: dict[str, Any]) -> dict[str, Any]:
    """in-toto Statement v1 of the result; subjects are the published artifacts."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": a["name"], "digest": {"sha256": a["published"]["sha256"]}}
                    for a in data["artifacts"]],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "verdict": data["verdict"],
            "exitCode": data["exit_code"],
            "artifacts": [{"name": a["name"], "verdict": a["verdict"],
                           "rebuiltSha256": a["rebuilt"]["sha256"],
                           "adopted": [f["field"] for f in (a.get("adoption") or {})
                                       .get("fields", [])] if a["verdict"] ==
                           "identical-after-adoption" else []}
                          for a in data["artifacts"]],
            "source": {"remote": data["source"]["remote"], "tag": data["source"]["tag"],
                       "commit": data["source"]["commit"]},
            "recipe": {"name": data["recipe"]["name"], "sha256": data["recipe"]["sha256"]},
            "images": [{"role": i["role"], "ref": i["ref"], "imageId": i["image_id"],
                        "contentDigest": i["content_digest"]} for i in data["images"]],
            "toolchain": data["toolchain"],
            "signatures": data["signatures"]["status"],
            "generatedFiles": data["generated_files"]["status"],
            "verifier": data["tool"],
            "startedOn": data["started"],
            "finishedOn": data["finished"],
        },
    }


def sign_statement(stmt: dict[str, Any], path: Path) -> Path:
    """A Sigstore DSSE bundle of the statement, with ambient OIDC credentials (CI)."""
    from sigstore.dsse import StatementBuilder, Subject
    from sigstore.errors import Error as SigstoreError
    from sigstore.models import ClientTrustConfig
    from sigstore.oidc import IdentityToken, detect_credential
    from sigstore.sign import SigningContext

    try:
        token = detect_credential()
        if token is None:
            raise EnvironmentFailure("--sign: no ambient OIDC credential (run in a CI job with "
                                     "id-token permission, or drop --sign)")
        built = StatementBuilder().subjects(
            [Subject(name=s["name"], digest=s["digest"]) for s in stmt["subject"]]
        ).predicate_type(stmt["predicateType"]).predicate(stmt["predicate"]).build()
        context = SigningContext.from_trust_config(ClientTrustConfig.production())
        with context.signer(IdentityToken(token)) as signer:
            bundle = signer.sign_dsse(built)
    except SigstoreError as exc:
        raise EnvironmentFailure(f"--sign: Sigstore signing failed: {exc}") from exc
    out = path.with_suffix(".sigstore.json")
    atomic_write(out, bundle.to_json().encode())
    return out


def evidence(report_dir: Path, dest: Path) -> Path:
    """Everything under report_dir (but the bundle itself, and the uncompressed payload that
    the rebuilt artifacts hold anyway) as a deterministic .tar.zst."""
    files = sorted(p for p in report_dir.rglob("*")
                   if p.is_file() and not p.is_symlink() and p != dest
                   and "work" not in p.relative_to(report_dir).parts[:1]
                   and p.relative_to(report_dir).as_posix() not in EVIDENCE_SKIPS
                   and not p.name.startswith("."))
    total = sum(p.stat().st_size for p in files)
    if total > EVIDENCE_LIMIT:
        raise EnvironmentFailure(f"evidence: {total} bytes under {report_dir} is over "
                                 f"{EVIDENCE_LIMIT}; not bundled")
    with staged(dest) as out, pyzstd.ZstdFile(out, "w", level_or_option=3) as raw, \
            tarfile.open(fileobj=raw, mode="w|", format=tarfile.PAX_FORMAT) as tar:
        for p in files:
            info = tarfile.TarInfo(f"evidence/{p.relative_to(report_dir).as_posix()}")
            info.size, info.mtime, info.mode = p.stat().st_size, 0, 0o644
            with p.open("rb") as f:
                tar.addfile(info, f)
    return dest


def write_all(data: dict[str, Any], report_dir: Path, sign: bool = False) -> dict[str, str]:
    """report.html, statement.intoto.json (and its bundle), evidence.tar.zst; their paths."""
    out = {}
    page = report_dir / "report.html"
    atomic_write(page, render_html(data, report_dir).encode())
    out["html"] = str(page)
    stmt = statement(data)
    spath = report_dir / "statement.intoto.json"
    atomic_write(spath, (json.dumps(stmt, indent=2) + "\n").encode())
    out["statement"] = str(spath)
    if sign:
        out["statement_bundle"] = str(sign_statement(stmt, spath))
    out["evidence"] = str(evidence(report_dir, report_dir / "evidence.tar.zst"))
    return out
