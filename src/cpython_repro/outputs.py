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
import re
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
          "inconclusive": "#9a6700", "absent": "#57606a", "not checked": "#57606a"}
EVIDENCE_SKIPS = ("payload.tar",)  # 110 MB that the rebuilt artifacts decompress to
EVIDENCE_LIMIT = 2 << 30  # rebuilt artifacts are ~50 MB; refuse to bundle a runaway directory


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def badge(word: str | None) -> str:
    """A verdict or status as a coloured pill; a missing one reads "none"."""
    w = word or "none"
    return f'<span class="v" style="background:{COLOUR.get(w, "#57606a")}">{_e(w)}</span>'


_TAG = re.compile(r"<[^>]+>")
LONG_WORD = 28  # characters: URLs, fingerprints, paths


def _td(cell: str) -> str:
    """A cell holding a long unbroken word (a URL, a key fingerprint) may break it anywhere;
    the others break between words only, so short words are never cut while such a cell
    would push the table past the page."""
    words = html.unescape(_TAG.sub(" ", cell)).split()
    long = any(len(w) > LONG_WORD for w in words)
    return f"<td class='long'>{cell}</td>" if long else f"<td>{cell}</td>"


def _table(head: list[str], rows: list[list[str]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(_td(c) for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:72em;padding:0 1em;
color:#1f2328}
h1{font-size:1.6em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #d0d7de}
table{border-collapse:collapse;margin:.5em 0;max-width:100%}
td,th{border:1px solid #d0d7de;padding:.3em .6em;text-align:left;vertical-align:top;
overflow-wrap:break-word}th{background:#f6f8fa}td.long{overflow-wrap:anywhere}
code,pre{font:12px ui-monospace,monospace}code{overflow-wrap:anywhere;word-break:break-all}
pre{background:#f6f8fa;padding:.8em;overflow:auto;max-height:30em;white-space:pre}
.v{color:#fff;border-radius:1em;padding:.1em .7em;font-weight:600;white-space:nowrap}
.ladder td.on{outline:3px solid #1f2328}.muted{color:#57606a}
.outcome{border-radius:.4em;padding:.6em 1em;margin:.8em 0;border:2px solid}
.pass{border-color:#1a7f37;background:#dafbe1}.fail{border-color:#cf222e;background:#ffebe9}
.outcome p{margin:.2em 0;font-weight:600}.outcome ul{margin:.3em 0}
"""


def _link(href: str, text: str) -> str:
    return f"<a href='{_e(href)}'>{_e(text)}</a>"


def _outcome(data: dict[str, Any]) -> str:
    """The first thing on the page: pass or fail, and why, as the exit code says."""
    reasons = data.get("reasons", [])
    if not reasons:
        verdicts = ", ".join(f"{a['name']} {a['verdict']}" for a in data["artifacts"])
        return (f"<div class='outcome pass'><p>PASS (exit 0): {_e(verdicts)}; signatures "
                f"{_e(data['signatures']['status'])}; generated files "
                f"{_e(data['generated_files']['status'])}; SBOM "
                f"{_e((data.get('sbom') or {}).get('status', 'not checked'))}.</p></div>")
    items = "".join(f"<li>{_e(r)}</li>" for r in reasons)
    return (f"<div class='outcome fail'><p>FAIL (exit {_e(data['exit_code'])}): "
            f"{len(reasons)} reason(s)</p><ul>{items}</ul></div>")


def _commit_link(src: dict[str, Any]) -> str:
    remote = str(src["remote"])
    if remote.startswith("https://github.com/"):
        return _link(f"{remote.removesuffix('.git')}/commit/{src['commit']}", src["commit"])
    return f"<code>{_e(src['commit'])}</code>"


def _files(sign: bool) -> str:
    """The files written beside this page (write_all), linked relatively."""
    names = ["report.json", "statement.intoto.json",
             *(["statement.intoto.sigstore.json"] if sign else []), "evidence.tar.zst"]
    return "Files: " + " · ".join(_link(n, n) for n in names)


def _digest_cell(side: dict[str, Any], note: str = "") -> str:
    return (f"<code>{_e(side['sha256'])}</code><br>{side['size']:,} bytes"
            + (f"<br><span class='muted'>{_e(note)}</span>" if note else ""))


def _artifact_rows(data: dict[str, Any]) -> list[list[str]]:
    rows = []
    for a in data["artifacts"]:
        origin = str(a.get("origin", ""))
        where = _link(origin, origin) if origin.startswith(("http://", "https://")) \
            else f"<code>{_e(origin)}</code>"
        rebuilt = _digest_cell(a["rebuilt"])
        if a["verdict"] == "identical-after-adoption" and a.get("adoption"):
            adopted = {**a["published"], "sha256": a["adoption"]["rebuilt_sha256"]}
            rebuilt = (_digest_cell(adopted, "with the adopted metadata") + "<br>"
                       + _digest_cell(a["rebuilt"], "the recipe alone"))
        members = a["members"]
        count = (f"{members['published']:,} / {members['rebuilt']:,}"
                 if members["published"] or members["rebuilt"] else "same bytes")
        rows.append([f"<b>{_e(a['name'])}</b><br>{where}", badge(a["verdict"]),
                     _digest_cell(a["published"]), rebuilt, count])
    for n in data.get("not_checked", []):
        rows.append([f"<b>{_e(n['artifact'])}</b>", badge("not checked"),
                     _e(n["reason"]), "", ""])
    return rows


def _adoption(a: dict[str, Any]) -> str:
    adoption = a.get("adoption")
    if not adoption:
        return ""
    if not adoption["fields"]:
        return f"<p>Adoption was not attempted: {_e(adoption['detail'])}</p>"
    state = ("Adoption gives the published bytes" if adoption["identical"]
             else f"Adoption did not give the published bytes: {_e(adoption['detail'])}")
    differed = [f for f in adoption["fields"] if f.get("differed", True)]
    same = [f["field"] for f in adoption["fields"] if not f.get("differed", True)]
    return (f"<p>{state}. Taken from the published artifact, where the strict rebuild "
            "differed:</p>"
            + _table(["field", "value"], [[_e(f["field"]), _e(f["value"])] for f in differed])
            + (f"<p class='muted'>Taken too, already the same: {_e(', '.join(same))}</p>"
               if same else ""))


def _generated(gen: dict[str, Any]) -> list[str]:
    parts = [f"<h2>Generated files {badge(gen['status'])}</h2>"]
    if gen["status"] == "skipped" or not gen.get("command"):
        return [*parts, f"<p>{_e(gen['detail'] or gen['status'])}</p>"]
    parts.append(f"<p><code>{_e(' '.join(gen['command']))}</code> in <code>"
                 f"{_e(gen['image'])}</code>"
                 + (f", standing for {_e(gen['used'])}" if gen.get("used") else "")
                 + (f". {_e(gen['detail'])}" if gen.get("detail") else "") + "</p>")
    parts += [f"<p class='muted'>{_e(m)}</p>" for m in gen.get("tool_mismatches", [])]
    for f in gen["files"]:
        name = f["path"]
        diff = f" ({_link(f'regen/{name}.diff', 'full diff')})" if f["status"] == "differs" \
            else ""
        parts.append(f"<p><code>{_e(f['path'])}</code> {badge(f['status'])} "
                     f"{_e(f['explanation'])}{diff}</p>")
        if f["diff"]:
            parts.append(f"<pre>{_e(f['diff'])}</pre>")
    return parts


def _sbom(data: dict[str, Any]) -> list[str]:
    bill = data.get("sbom")
    if not bill:
        return []
    parts = [f"<h2>SBOM {badge(bill['status'])}</h2>"]
    if bill["status"] == "absent":
        return [*parts, f"<p>{_e(bill['detail'] or 'no SBOM in this release')}</p>"]
    parts.append(f"<p>{bill['files_checked']:,} vendored file(s) and {len(bill['packages'])} "
                 "package(s) of Misc/sbom.spdx.json checked against the rebuilt tree."
                 + (f" {_e(bill['detail'])}" if bill["detail"] else "") + "</p>")
    parts += [f"<p>✗ {_e(r)}</p>" for r in bill["reasons"]]
    parts += [f"<p>! {_e(w)}</p>" for w in data.get("warnings", [])]
    if bill["releases"]:
        parts.append(_table(["release SBOM", "status", "detail"], [
            [_e(r["name"]), badge(r["status"]), _e(r.get("detail") or r.get("spdx") or "")]
            for r in bill["releases"]]))
    return parts


def render_html(data: dict[str, Any], report_dir: Path, sign: bool = False) -> str:
    src = data["source"]
    parts = [f"<h1>CPython {_e(data['version'])}: {badge(data['verdict'])}</h1>",
             _outcome(data),
             f"<p>tag <code>{_e(src['tag'])}</code> → commit {_commit_link(src)} "
             f"({_e(src['commit_time'])}) from <code>{_e(src['remote'])}</code>; recipe "
             f"<code>{_e(data['recipe']['name'])}</code> (sha256 "
             f"<code>{_e(data['recipe']['sha256'][:16])}…</code>); {_e(data['started'])} to "
             f"{_e(data['finished'])}. {_files(sign)}</p>",
             "<h2>Artifacts</h2>"
             + _table(["artifact", "verdict", "published sha256", "rebuilt sha256",
                       "members (published / rebuilt)"], _artifact_rows(data))]
    for a in data["artifacts"]:
        parts.append(f"<h2>{_e(a['name'])} {badge(a['verdict'])}</h2>")
        if a.get("error"):
            parts.append(f"<p><b>error:</b> {_e(a['error'])}</p>")
        parts.append(_adoption(a))
        if a["findings"]:
            more = a["findings_total"] - len(a["findings"])
            parts.append(_table(["kind", "member", "field", "published", "rebuilt",
                                 "explanation"], [
                [_e(f["kind"]), f"<code>{_e(f['path'])}</code>", _e(f["field"]),
                 f"<code>{_e(f['published'])}</code>", f"<code>{_e(f['rebuilt'])}</code>",
                 _e(f["explanation"])] for f in a["findings"]])
                + (f"<p class='muted'>{more} more in report.json</p>" if more > 0 else ""))
        elif not a.get("error"):
            parts.append("<p class='muted'>No findings: the published bytes are the "
                         "rebuilt ones.</p>" if a["verdict"] == "identical"
                         else "<p class='muted'>No findings.</p>")
        d = a.get("diffoscope")
        if d:
            parts.append(f"<p>diffoscope on {len(d['members'])} member(s): {_e(d['status'])}"
                         + (f" ({_link(d['html'], 'full diff, HTML')})" if d["html"] else "")
                         + "</p>")
            text = report_dir / d["text"] if d["text"] else None
            if text and text.is_file():
                parts.append(f"<pre>{_e(text.read_text('utf-8', 'replace')[:200_000])}</pre>")
        if a["compression"]:
            keys = sorted(set(a["compression"]["published"]) | set(a["compression"]["rebuilt"]))
            parts.append(_table(["compression", "published", "rebuilt"], [
                [_e(k), _e(a["compression"]["published"].get(k, "")),
                 _e(a["compression"]["rebuilt"].get(k, ""))] for k in keys]))
    parts += _generated(data["generated_files"])
    parts += _sbom(data)
    sigs = data["signatures"]
    parts.append(f"<h2>Signatures {badge(sigs['status'])}</h2>" + _table(
        ["artifact", "kind", "status", "detail", "signature by", "signed"],
        [[_e(c["artifact"]), _e(c["kind"]), badge(c["status"]), _e(c["detail"]),
          _e(c["signer"]), _e(c["signed_at"])] for c in sigs["checks"]]))
    timings = data.get("timings") or {}
    if timings:
        parts.append("<h2>Timings</h2>" + _table(
            ["step", "seconds"], [[_e(k), f"{v:.1f}"] for k, v in timings.items()]))
    parts.append("<h2>Toolchain and images</h2>" + _table(
        ["tool", "version"], [[_e(k), _e(v)] for k, v in data["toolchain"].items()])
        + _table(["role", "image", "id", "defined by"], [
            [_e(i["role"]), _e(i["ref"]), f"<code>{_e(i['image_id'][:19])}</code>",
             f"<code>{_e(i['content_digest'][:16])}</code>"] for i in data["images"]]))
    reached = {a["verdict"] for a in data["artifacts"]}
    parts.append("<h2>Verdict ladder</h2><table class='ladder'><tr>" + "".join(
        f"<td class='{'on' if v in reached else ''}'>{badge(v)}</td>" for v in LADDER)
        + "</tr></table><p class='muted'>Best first: identical bytes; identical once the "
        "listed metadata is taken from the published artifact; every member's content the "
        "same; members added, removed or changed; unreadable.</p>")
    return ("<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
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
            "sbom": _sbom_summary(data.get("sbom")),
            "reasons": data.get("reasons", []),
            "verifier": data["tool"],
            "startedOn": data["started"],
            "finishedOn": data["finished"],
        },
    }


def _sbom_summary(bill: dict[str, Any] | None) -> dict[str, Any]:
    if bill is None:
        return {"status": "not checked"}
    return {"status": bill["status"], "warnings": len(bill.get("warnings", [])),
            "releaseSboms": [{"name": r["name"], "status": r["status"],
                              **({"digest": {"sha256": r["sha256"]}} if r.get("sha256") else {})}
                             for r in bill["releases"]]}


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
    atomic_write(page, render_html(data, report_dir, sign).encode())
    out["html"] = str(page)
    stmt = statement(data)
    spath = report_dir / "statement.intoto.json"
    atomic_write(spath, (json.dumps(stmt, indent=2) + "\n").encode())
    out["statement"] = str(spath)
    if sign:
        out["statement_bundle"] = str(sign_statement(stmt, spath))
    out["evidence"] = str(evidence(report_dir, report_dir / "evidence.tar.zst"))
    return out
