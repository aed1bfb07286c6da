"""Stage: compare a published artifact with its rebuild, best verdict first.

identical (same sha256) > same-content (every path, type, mode, link target and byte agree;
only archive metadata or compression differ) > content-differs > error. An archive that
cannot be read is an error verdict, never a pass.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from cpython_repro.cache import sha256_file
from cpython_repro.compare.archive import Listing, Member, iter_member_bytes, read_listing
from cpython_repro.compare.layers import describe
from cpython_repro.errors import ArchiveError
from cpython_repro.models import Comparison, Finding, Verdict

MAX_FINDINGS = 200
GROUP_AFTER = 5  # more than this many members with the same metadata change: one finding
DIFF_BYTES = 8 << 20  # members compared byte by byte to explain a difference, per side

CONTENT_FIELDS: tuple[tuple[str, Callable[[Member], object]], ...] = (
    ("type", lambda m: m.type),
    ("mode", lambda m: f"{m.mode:04o}"),
    ("link target", lambda m: m.linkname),
    ("content", lambda m: m.sha256),
)
METADATA_FIELDS: tuple[tuple[str, Callable[[Member], object]], ...] = (
    ("mtime", lambda m: _time(m.mtime)),
    ("uid/gid", lambda m: f"{m.uid}/{m.gid}"),
    ("owner names", lambda m: f"{m.uname or '-'}/{m.gname or '-'}"),
    ("device numbers", lambda m: f"{m.devmajor},{m.devminor}"),
    ("pax headers", lambda m: ",".join(f"{k}={v}" for k, v in sorted(m.pax.items()))),
)


def _time(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S") + "Z"


def compare(name: str, published: Path, rebuilt: Path) -> Comparison:
    pub_sha, reb_sha = sha256_file(published), sha256_file(rebuilt)
    sizes = published.stat().st_size, rebuilt.stat().st_size
    if pub_sha == reb_sha:
        return Comparison(name, "identical", pub_sha, reb_sha, *sizes, True, 0, 0)
    try:
        pub, reb = read_listing(published), read_listing(rebuilt)
        layer = {"published": describe(published, pub.compression),
                 "rebuilt": describe(rebuilt, reb.compression)}
    except ArchiveError as exc:
        return Comparison(name, "error", pub_sha, reb_sha, *sizes, None, 0, 0,
                          error=exc.one_line())
    findings = _compression_findings(pub, reb, layer)
    payload_identical = pub.payload_sha256 == reb.payload_sha256
    if not payload_identical:
        findings += _member_findings(pub, reb, published, rebuilt)
    content = any(f.kind == "content" for f in findings)
    verdict: Verdict = "content-differs" if content else "same-content"
    ordered = sorted(findings, key=lambda f: ("content", "metadata", "compression",
                                              "toolchain").index(f.kind))
    return Comparison(
        name, verdict, pub_sha, reb_sha, *sizes, payload_identical,
        len(pub.members), len(reb.members), tuple(ordered[:MAX_FINDINGS]), len(findings),
        layer=layer,
    )


def _compression_findings(pub: Listing, reb: Listing,
                          layer: dict[str, dict[str, str]]) -> list[Finding]:
    out = []
    if pub.compression != reb.compression:
        out.append(Finding("compression", "", "compression", pub.compression, reb.compression,
                           f"published is {pub.compression}, rebuilt is {reb.compression}"))
    if pub.payload_sha256 == reb.payload_sha256:
        out.append(Finding("compression", "", "payload", pub.payload_sha256[:16],
                           reb.payload_sha256[:16],
                           "the tar payloads are identical; only the compressed bytes differ"))
    for key in sorted(set(layer["published"]) | set(layer["rebuilt"])):
        a, b = layer["published"].get(key, ""), layer["rebuilt"].get(key, "")
        if a != b:
            out.append(Finding("compression", "", f"{pub.compression} {key}", a, b,
                               f"{pub.compression} {key}: published {a}, rebuilt {b}"))
    if pub.tar_format != reb.tar_format:
        out.append(Finding("metadata", "", "tar format", pub.tar_format, reb.tar_format,
                           f"tar format {pub.tar_format} instead of {reb.tar_format}"))
    return out


def _member_findings(pub: Listing, reb: Listing, pub_path: Path,
                     reb_path: Path) -> list[Finding]:
    out: list[Finding] = []
    pmap, rmap = _by_path(pub.members, out, "published"), _by_path(reb.members, out, "rebuilt")
    for path in sorted(set(pmap) - set(rmap)):
        m = pmap[path]
        out.append(Finding("content", path, "presence", "present", "absent",
                           f"{path}: only in the published artifact ({m.type}, {m.size} bytes)"))
    for path in sorted(set(rmap) - set(pmap)):
        m = rmap[path]
        out.append(Finding("content", path, "presence", "absent", "present",
                           f"{path}: missing from the published artifact ({m.type})"))
    common = [p for p in pmap if p in rmap]
    changed: list[str] = []
    for path in common:
        a, b = pmap[path], rmap[path]
        for field, get in CONTENT_FIELDS:
            if get(a) != get(b):
                if field == "content":
                    changed.append(path)
                else:
                    out.append(Finding("content", path, field, str(get(a)), str(get(b)),
                                       f"{path}: {field} {get(a)} instead of {get(b)}"))
    out += _explain_content(changed, pmap, rmap, pub_path, reb_path)
    for field, get in METADATA_FIELDS:
        diffs = [(p, str(get(pmap[p])), str(get(rmap[p]))) for p in common
                 if get(pmap[p]) != get(rmap[p])]
        out += _grouped(field, diffs, len(common))
    order_p = [m.path for m in pub.members if m.path in rmap]
    order_r = [m.path for m in reb.members if m.path in pmap]
    if order_p != order_r:
        first = next(i for i, (x, y) in enumerate(zip(order_p, order_r, strict=False)) if x != y)
        out.append(Finding("metadata", "", "member order", order_p[first], order_r[first],
                           f"member order differs from position {first}: published has "
                           f"{order_p[first]}, rebuilt has {order_r[first]}"))
    return out


def _by_path(members: Iterable[Member], out: list[Finding], side: str) -> dict[str, Member]:
    seen: dict[str, Member] = {}
    for m in members:
        if m.path in seen:
            out.append(Finding("content", m.path, "duplicate", side, "",
                               f"{m.path}: appears more than once in the {side} artifact"))
        seen[m.path] = m
    return seen


def _grouped(field: str, diffs: list[tuple[str, str, str]], total: int) -> list[Finding]:
    if len(diffs) <= GROUP_AFTER:
        return [Finding("metadata", p, field, a, b, f"{p}: {field} {a} instead of {b}")
                for p, a, b in diffs]
    (a, b), n = Counter((a, b) for _, a, b in diffs).most_common(1)[0]
    who = f"all {total} members" if len(diffs) == total else f"{len(diffs)} of {total} members"
    if n == len(diffs):
        text = f"{who}: {field} {a} instead of {b}"
    else:
        p0, a0, b0 = diffs[0]
        text = f"{who}: {field} differs, e.g. {p0}: {a0} instead of {b0}"
    return [Finding("metadata", f"({len(diffs)} members)", field, a, b, text)]


def _explain_content(paths: list[str], pmap: dict[str, Member], rmap: dict[str, Member],
                     pub_path: Path, reb_path: Path) -> list[Finding]:
    if not paths:
        return []
    wanted = set(paths)
    small = {p for p in wanted if max(pmap[p].size, rmap[p].size) <= DIFF_BYTES}
    pub_bytes = dict(iter_member_bytes(pub_path, small, DIFF_BYTES)) if small else {}
    reb_bytes = dict(iter_member_bytes(reb_path, small, DIFF_BYTES)) if small else {}
    out = []
    for path in paths:
        a, b = pmap[path], rmap[path]
        text = _describe_change(path, a.size, b.size, pub_bytes.get(path), reb_bytes.get(path))
        out.append(Finding("content", path, "content", a.sha256[:16], b.sha256[:16], text))
    return out


def _describe_change(path: str, psize: int, rsize: int, pub: bytes | None,
                     reb: bytes | None) -> str:
    if pub is None or reb is None:
        return f"{path}: content differs ({rsize} bytes rebuilt, {psize} published)"
    if pub.startswith(reb):
        return f"{path}: {psize - rsize} bytes appended"
    if reb.startswith(pub):
        return f"{path}: truncated by {rsize - psize} bytes"
    first = next((i for i, (x, y) in enumerate(zip(pub, reb, strict=False)) if x != y),
                 min(len(pub), len(reb)))
    line = reb.count(b"\n", 0, first) + 1
    if psize == rsize:
        n = sum(1 for x, y in zip(pub, reb, strict=True) if x != y)
        return f"{path}: {n} byte(s) changed, first at offset {first} (line {line})"
    return (f"{path}: differs from offset {first} (line {line}); "
            f"{psize} bytes published, {rsize} rebuilt")
