"""Stage: compare a published artifact with its rebuild, best verdict first.

identical (same sha256) > same-content (every path, type, mode, link target and byte agree;
only archive metadata or compression differ) > content-differs > error. An archive that
cannot be read is an error verdict, never a pass.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import sys
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from cpython_repro.cache import sha256_file
from cpython_repro.compare import diffoscope
from cpython_repro.compare.archive import (
    DEFAULT_PAYLOAD_LIMIT,
    HEADER_FIELDS,
    Entry,
    Listing,
    Member,
    Payload,
    TarReader,
    with_digest,
)
from cpython_repro.compare.layers import describe
from cpython_repro.errors import ArchiveError
from cpython_repro.models import Comparison, Finding, Verdict

MAX_FINDINGS = 200
GROUP_AFTER = 5  # more than this many members with the same metadata change: one finding
DIFF_BYTES = 8 << 20  # members up to this size are kept while read, to explain a difference
KEEP_BUDGET = 32 << 20  # bytes held at once: unpaired members and changed ones to explain

CONTENT_FIELDS: tuple[tuple[str, Callable[[Member], object]], ...] = (
    ("type", lambda m: m.type),
    ("mode", lambda m: f"{m.mode:04o}"),
    ("link target", lambda m: m.linkname),
    ("content", lambda m: m.sha256),
)
# (name, what is compared, how it is shown): the raw value is compared for every member,
# and only a difference is put into words (5,000 members, both sides, every run).
METADATA_FIELDS: tuple[tuple[str, Callable[[Member], object], Callable[[Member], object]],
                       ...] = (
    ("mtime", lambda m: m.mtime, lambda m: utc_time(m.mtime)),
    ("owner", lambda m: (m.uid, m.uname), lambda m: f"{m.uid}/{m.uname or '-'}"),
    ("group", lambda m: (m.gid, m.gname), lambda m: f"{m.gid}/{m.gname or '-'}"),
    ("device numbers", lambda m: (m.devmajor, m.devminor),
     lambda m: f"{m.devmajor},{m.devminor}"),
    ("header format", lambda m: m.format, lambda m: m.format),
    ("pax headers", lambda m: m.pax,
     lambda m: ",".join(f"{k}={v}" for k, v in sorted(m.pax.items()))),
    ("pax header name", lambda m: m.pax_name, lambda m: m.pax_name),
    ("global pax headers", lambda m: m.pax_global, lambda m: m.pax_global),
    ("sparse storage", lambda m: m.sparse, lambda m: m.sparse),
)
# Raw header fields whose value is already compared above, parsed; their encoding is
# reported only where the parsed values agree.
_PARSED = {"mode": "mode", "uid": "owner", "gid": "group", "size": "content",
           "mtime": "mtime", "typeflag": "type", "linkname": "link target", "uname": "owner",
           "gname": "group", "devmajor": "device numbers", "devminor": "device numbers",
           "magic": "header format", "version": "header format"}


def utc_time(t: float) -> str:
    """Any mtime a header can hold, also one before year 1 or after 9999 (as seconds)."""
    try:
        return (EPOCH + dt.timedelta(seconds=t)).strftime("%Y-%m-%d %H:%M:%S") + "Z"
    except (OverflowError, ValueError):
        return f"{t:.0f} s since 1970 (outside the calendar)"


EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
SHOWN = 200  # characters of a member-supplied string quoted in a finding
PATH_MAX = 4096  # Linux's: a longer path or link target is not extracted as named


def _show(text: str) -> str:
    """A path, link target or record value as quoted in a finding: a megabyte-long pax
    path is named by its start and length, not copied into every finding."""
    return text if len(text) <= SHOWN else f"{text[:SHOWN]}…({len(text)} chars)"


@dataclass
class _Side:
    name: str
    reader: TarReader
    members: list[Member] = field(default_factory=list)
    pending: dict[str, tuple[Member, bytes | None]] = field(default_factory=dict)
    head: Entry | None = None

    def advance(self) -> None:
        self.head = self.reader.next()


@dataclass
class _Pass:
    """Both archives read once, together: members paired by path as they stream by."""

    pub: _Side
    reb: _Side
    kept: int = 0
    changed: dict[str, tuple[bytes | None, bytes | None]] = field(default_factory=dict)

    def run(self) -> None:
        pub, reb = self.pub, self.reb
        pub.advance()
        reb.advance()
        while pub.head or reb.head:
            p, r = pub.head, reb.head
            if p and r and p.member.path == r.member.path:
                if max(p.data_size, r.data_size) <= DIFF_BYTES:
                    self._pair_small()
                else:
                    self._pair(self._consume(pub, False), self._consume(reb, False))
                pub.advance()
                reb.advance()
            elif p and p.member.path in reb.pending:
                mine = self._consume(pub, True)
                self._pair(mine, self._unpend(reb, p.member.path))
                self._release(mine)
                pub.advance()
            elif r and r.member.path in pub.pending:
                mine = self._consume(reb, True)
                self._pair(self._unpend(pub, r.member.path), mine)
                self._release(mine)
                reb.advance()
            else:
                side = pub if r is None or (p is not None and p.member.path < r.member.path) \
                    else reb
                m, data = self._consume(side, True)
                side.pending.setdefault(m.path, (m, data))
                side.advance()

    def _unpend(self, side: _Side, path: str) -> tuple[Member, bytes | None]:
        held = side.pending.pop(path)
        self._release(held)
        return held

    def _release(self, held: tuple[Member, bytes | None]) -> None:
        self.kept -= len(held[1] or b"")

    def _consume(self, side: _Side, keep: bool) -> tuple[Member, bytes | None]:
        entry = side.head
        if entry is None:
            raise ArchiveError(f"{side.name}: no member to read")  # unreachable by run()
        keep = keep and entry.data_size <= DIFF_BYTES and self.kept < KEEP_BUDGET
        h = hashlib.sha256()
        parts: list[bytes] = []
        while piece := side.reader.data():
            h.update(piece)
            if keep:
                parts.append(piece)
        m = with_digest(entry.member, h.hexdigest() if entry.member.type == "file" else "")
        side.members.append(m)
        if not keep:
            return m, None
        self.kept += entry.data_size  # held until paired: counted against the budget
        return m, b"".join(parts)

    def _pair_small(self) -> None:
        """The common case, a member at the same place in both: compare bytes, hash only
        when they differ (memcmp is ten times cheaper than sha256)."""
        pe, re_ = self.pub.head, self.reb.head
        if pe is None or re_ is None:
            raise ArchiveError("no member to read")  # unreachable by run()
        pdata, rdata = self._read_all(self.pub), self._read_all(self.reb)
        same = pdata == rdata
        pairs = []
        for side, entry, data in ((self.pub, pe, pdata), (self.reb, re_, rdata)):
            digest = "" if same or entry.member.type != "file" else _sha256(data)
            m = with_digest(entry.member, digest)
            side.members.append(m)
            pairs.append((m, data))
        self._pair(pairs[0], pairs[1])

    @staticmethod
    def _read_all(side: _Side) -> bytes:
        parts = []
        while piece := side.reader.data():
            parts.append(piece)
        return parts[0] if len(parts) == 1 else b"".join(parts)

    def _pair(self, p: tuple[Member, bytes | None], r: tuple[Member, bytes | None]) -> None:
        if p[0].sha256 == r[0].sha256:
            return
        size = len(p[1] or b"") + len(r[1] or b"")
        # Past the budget a changed member is still named, just described by its sizes.
        if self.kept + size <= KEEP_BUDGET:
            self.changed[p[0].path] = (p[1], r[1])
            self.kept += size
        else:
            self.changed[p[0].path] = (None, None)


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def compare(name: str, published: Path, rebuilt: Path, limit: int = DEFAULT_PAYLOAD_LIMIT,
            diff_dir: Path | None = None, report_dir: Path | None = None) -> Comparison:
    """diff_dir: where diffoscope writes its view of the differing members (none: skip)."""
    sizes = published.stat().st_size, rebuilt.stat().st_size
    hashed = sizes[0] == sizes[1]  # only then can they be identical; else hash while reading
    if hashed:
        pub_sha, reb_sha = sha256_file(published), sha256_file(rebuilt)
        if pub_sha == reb_sha:
            return Comparison(name, "identical", pub_sha, reb_sha, *sizes, True, 0, 0)
    ppay, rpay = Payload(published, limit, not hashed), Payload(rebuilt, limit, not hashed)
    work = _Pass(_Side("published", TarReader(ppay)), _Side("rebuilt", TarReader(rpay)))
    interval = sys.getswitchinterval()
    # The inflate threads give the GIL back after each piece; with the default 5 ms switch
    # interval they wait on the tar parser and the pass runs about 6% slower.
    sys.setswitchinterval(min(interval, 0.0002))
    try:
        work.run()
        layer = {"published": describe(published, ppay.kind),
                 "rebuilt": describe(rebuilt, rpay.kind)}
    except ArchiveError as exc:
        return Comparison(name, "error", sha256_file(published), sha256_file(rebuilt),
                          *sizes, None, 0, 0, error=exc.one_line())
    finally:
        sys.setswitchinterval(interval)
        ppay.close()
        rpay.close()
    if not hashed:
        pub_sha, reb_sha = ppay.file_hash.hexdigest(), rpay.file_hash.hexdigest()
    pub, reb = (_listing(s, pay) for s, pay in ((work.pub, ppay), (work.reb, rpay)))
    findings = _compression_findings(pub, reb, layer)
    payload_identical = pub.payload_sha256 == reb.payload_sha256
    if not payload_identical:
        findings += _member_findings(pub, reb, work.changed)
    content = any(f.kind == "content" for f in findings)
    verdict: Verdict = "content-differs" if content else "same-content"
    ordered = sorted(findings, key=lambda f: ("content", "metadata", "compression",
                                              "toolchain").index(f.kind))
    member_diffs = None
    if diff_dir is not None and content:
        member_diffs = diffoscope.run(_differing_bytes(findings, work), diff_dir,
                                      report_dir or diff_dir)
    return Comparison(
        name, verdict, pub_sha, reb_sha, *sizes, payload_identical,
        len(pub.members), len(reb.members), tuple(ordered[:MAX_FINDINGS]), len(findings),
        layer=layer, diffoscope=member_diffs,
    )


def _differing_bytes(findings: list[Finding],
                     work: _Pass) -> list[tuple[str, bytes | None, bytes | None]]:
    """The members whose bytes or type differ, with what the pass kept of each side."""
    out = []
    for f in findings:
        if f.kind != "content" or f.field not in ("content", "type", "presence"):
            continue
        if f.path in work.changed:
            pub, reb = work.changed[f.path]
        else:
            pub = work.pub.pending.get(f.path, (None, None))[1]
            reb = work.reb.pending.get(f.path, (None, None))[1]
        if pub is not None or reb is not None:
            out.append((f.path, pub, reb))
    return out


def _listing(side: _Side, payload: Payload) -> Listing:
    r = side.reader
    return Listing(payload.kind, side.members, payload.hash.hexdigest(), payload.size,
                   "+".join(sorted(r.formats)) or "empty", r.trailing, r.end_size,
                   r.end_digest)


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
    several_blocks = any(side.get("blocks", "1") != "1" for side in layer.values())
    for key in sorted(set(layer["published"]) | set(layer["rebuilt"])):
        a, b = layer["published"].get(key, ""), layer["rebuilt"].get(key, "")
        if key == "header_bytes" or (key == "block_size" and not several_blocks):
            continue  # follows from other fields, or is just the payload size
        if a != b:
            out.append(Finding("compression", "", f"{pub.compression} {key}", a, b,
                               f"{pub.compression} {key}: published {a}, rebuilt {b}"))
    if pub.tar_format != reb.tar_format:
        out.append(Finding("metadata", "", "tar format", pub.tar_format, reb.tar_format,
                           f"tar format: published {pub.tar_format}, rebuilt {reb.tar_format}"))
    return out


def _member_findings(pub: Listing, reb: Listing,
                     kept: dict[str, tuple[bytes | None, bytes | None]]) -> list[Finding]:
    out: list[Finding] = []
    for side, listing in (("published", pub), ("rebuilt", reb)):
        if listing.trailing:
            out.append(Finding("content", "", "trailing data", str(pub.trailing),
                               str(reb.trailing),
                               f"{listing.trailing} non-zero bytes after the end-of-archive "
                               f"marker of the {side} artifact, outside any member"))
    if not out and (pub.end_size, pub.end_digest) != (reb.end_size, reb.end_digest):
        # Zero blocks after the marker (another `tar -b`), or non-zero data padding of the
        # last member: nothing is extracted from them, but they are bytes that differ.
        out.append(Finding("metadata", "", "end of archive", str(pub.end_size),
                           str(reb.end_size),
                           f"end of archive: bytes after the last member's data: published "
                           f"{pub.end_size}, rebuilt {reb.end_size}"
                           + (" (the same length, other bytes: non-zero padding)"
                              if pub.end_size == reb.end_size else "")))
    pmap, rmap = _by_path(pub.members, out, "published"), _by_path(reb.members, out, "rebuilt")
    out += _hazards(pub.members, rmap)
    for path in sorted(set(pmap) - set(rmap)):
        m = pmap[path]
        out.append(Finding("content", path, "presence", "present", "absent",
                           f"{_show(path)}: only in the published artifact ({m.type}, "
                           f"{m.size} bytes)"))
    for path in sorted(set(rmap) - set(pmap)):
        m = rmap[path]
        out.append(Finding("content", path, "presence", "absent", "present",
                           f"{_show(path)}: missing from the published artifact ({m.type})"))
    common = [p for p in pmap if p in rmap]
    changed: list[str] = []
    for path in common:
        a, b = pmap[path], rmap[path]
        for name, get in CONTENT_FIELDS:
            if get(a) != get(b):
                if name == "content":
                    changed.append(path)
                else:
                    x, y = _show(str(get(a))), _show(str(get(b)))
                    out.append(Finding("content", path, name, x, y,
                                       f"{_show(path)}: {name}: published {x}, rebuilt {y}"))
    out += _explain_content(changed, pmap, rmap, kept)
    for name, key, shown in METADATA_FIELDS:
        diffs = [(p, _show(str(shown(pmap[p]))), _show(str(shown(rmap[p])))) for p in common
                 if key(pmap[p]) != key(rmap[p])]
        out += _grouped(name, diffs, len(common))
    out += _header_encoding(common, pmap, rmap)
    out += _grouped("tar records", [(p, pmap[p].records, rmap[p].records)
                                    for p in _unexplained(common, pmap, rmap)], len(common))
    order_p = [m.path for m in pub.members if m.path in rmap]
    order_r = [m.path for m in reb.members if m.path in pmap]
    if order_p != order_r:
        first = next((i for i, (x, y) in enumerate(zip(order_p, order_r, strict=False))
                      if x != y), min(len(order_p), len(order_r)))
        at_p = _show(order_p[first]) if first < len(order_p) else "(nothing more)"
        at_r = _show(order_r[first]) if first < len(order_r) else "(nothing more)"
        out.append(Finding("metadata", "", "member order", at_p, at_r,
                           f"member order differs from position {first}: published has "
                           f"{at_p}, rebuilt has {at_r}"))
    return out


def _unexplained(common: list[str], pmap: dict[str, Member],
                 rmap: dict[str, Member]) -> list[str]:
    """Members whose non-data bytes differ (data padding, an extended header's own header
    block, bytes after a pax header's records) where no field above differs: named, so that
    no byte difference between the payloads goes without a finding."""
    getters = [*CONTENT_FIELDS, *((name, key) for name, key, _ in METADATA_FIELDS)]
    return [p for p in common if pmap[p].records != rmap[p].records
            and pmap[p].packed_header == rmap[p].packed_header
            and all(get(pmap[p]) == get(rmap[p]) for _, get in getters)]


class _Tree:
    """The symlinks extraction makes, by where they are in the extracted tree: paths are
    resolved through them as the kernel would, not normalised as text."""

    def __init__(self) -> None:
        self.links: dict[str, str] = {}

    def resolve(self, parts: list[str], follow_last: bool) -> list[str] | None:
        """The physical path below the root; None when it leads outside it."""
        out: list[str] = []
        todo = parts[::-1]
        hops = 0
        while todo:
            part = todo.pop()
            if part in ("", "."):
                continue
            if part == "..":
                if not out:
                    return None
                out.pop()
                continue
            out.append(part)
            target = self.links.get("/".join(out)) if self.links else None
            if target is not None and (todo or follow_last):
                hops += 1
                if hops > 40:  # a loop: extraction fails with ELOOP, nothing escapes
                    return out
                out.pop()
                if target.startswith("/"):
                    return None
                todo.extend(target.split("/")[::-1])
        return out

    def place(self, m: Member) -> str | None:
        """Where the member lands (None: outside); a symlink is recorded there."""
        if len(m.path) > PATH_MAX:
            return None
        parts = m.path.split("/")
        parent = self.resolve(parts[:-1], True)
        if parent is None:
            return None
        here = "/".join([*parent, parts[-1]] if parts[-1] not in ("", ".") else parent)
        if m.type == "symlink":
            self.links[here] = m.linkname
        else:
            self.links.pop(here, None)
        return here


def hazard(m: Member, tree: _Tree, final: _Tree, earlier: set[str]) -> str:
    """Why extracting this member could write outside its tree or create a device; ''.
    tree: the symlinks made before it; final: all of them, as a later reader of the tree
    follows them; earlier: where the members before it landed."""
    path, link = _show(m.path), _show(m.linkname)
    if max(len(m.path), len(m.linkname)) > PATH_MAX:
        # No extractor opens it as named, and resolving it would cost its length squared.
        return f"its path or link target is longer than {PATH_MAX} bytes"
    parts = m.path.split("/")
    if m.path.startswith("/") or ".." in parts:
        return f"its path {path!r} escapes the archive root"
    if tree.resolve(parts, follow_last=m.type != "symlink") is None:
        return f"its path {path!r} leads outside the tree through a symlink"
    if m.type in ("char-device", "block-device", "fifo"):
        return f"it is a {m.type} ({m.devmajor},{m.devminor})"
    if m.type == "symlink":
        parent = tree.resolve(parts[:-1], True) or []
        if m.linkname.startswith("/") or \
                final.resolve([*parent, *m.linkname.split("/")], True) is None:
            return f"it is a symlink to {link!r}, outside the tree"
    if m.type == "hardlink":
        target = tree.resolve(m.linkname.split("/"), False)
        if m.linkname.startswith("/") or ".." in m.linkname.split("/") or target is None:
            return f"it is a hard link to {link!r}, outside the tree"
        if "/".join(target) not in earlier:
            return f"it is a hard link to {link!r}, which no earlier member is"
    return ""


def _hazards(members: list[Member], rebuilt: dict[str, Member]) -> list[Finding]:
    """Published members that would be dangerous to extract, unless the tag makes the same."""
    final = _Tree()
    for m in members:
        final.place(m)
    out: list[Finding] = []
    tree = _Tree()
    earlier: set[str] = set()
    for m in members:
        why = hazard(m, tree, final, earlier)
        here = tree.place(m)
        if here is not None:
            earlier.add(here)
        same = rebuilt.get(m.path)
        if why and not (same and same.type == m.type and same.linkname == m.linkname):
            out.append(Finding("content", m.path, "hazard", m.type, "",
                               f"{_show(m.path)}: unsafe to extract, {why}"))
    return out


def _by_path(members: Iterable[Member], out: list[Finding], side: str) -> dict[str, Member]:
    seen: dict[str, Member] = {}
    lands: dict[str, str] = {}  # "a//b", "./a/b" and "a/b/" are one file once extracted
    for m in members:
        where = "/".join(p for p in m.path.split("/") if p not in ("", "."))
        first = lands.setdefault(where, m.path)
        if m.path in seen or first != m.path:
            also = "" if first == m.path else f" (as {_show(first)})"
            out.append(Finding("content", m.path, "duplicate", side, "",
                               f"{_show(m.path)}: appears more than once in the {side} "
                               f"artifact{also}"))
        seen[m.path] = m
    return seen


def _grouped(field: str, diffs: list[tuple[str, str, str]], total: int) -> list[Finding]:
    if len(diffs) <= GROUP_AFTER:
        return [Finding("metadata", p, field, a, b,
                        f"{_show(p)}: {field}: published {a}, rebuilt {b}") for p, a, b in diffs]
    (a, b), n = Counter((a, b) for _, a, b in diffs).most_common(1)[0]
    who = f"all {total} members" if len(diffs) == total else f"{len(diffs)} of {total} members"
    if n == len(diffs):
        text = f"{who}: {field}: published {a}, rebuilt {b}"
    else:
        p0, a0, b0 = diffs[0]
        text = f"{who}: {field} differs, e.g. {_show(p0)}: published {a0}, rebuilt {b0}"
    return [Finding("metadata", f"({len(diffs)} members)", field, a, b, text)]


def _header_encoding(common: list[str], pmap: dict[str, Member],
                     rmap: dict[str, Member]) -> list[Finding]:
    """Raw header bytes that differ where the parsed values agree (e.g. "0000000" vs "")."""
    getters = {**dict(CONTENT_FIELDS), **{name: key for name, key, _ in METADATA_FIELDS}}
    by_field: dict[str, list[tuple[str, str, str]]] = {}
    for path in common:
        if pmap[path].packed_header == rmap[path].packed_header:
            continue
        a, b = pmap[path], rmap[path]
        ha, hb = a.header, b.header
        differing = [f for f in HEADER_FIELDS if ha[f[1]:f[2]] != hb[f[1]:f[2]]]
        for fname, lo, hi in differing:
            # The checksum follows from the other fields: named alone only (signed or
            # unsigned sum, or its spacing).
            if fname == "chksum" and len(differing) > 1:
                continue
            parsed = _PARSED.get(fname)
            if parsed and getters[parsed](a) != getters[parsed](b):
                continue
            by_field.setdefault(fname, []).append(
                (path, repr(ha[lo:hi].rstrip(b"\x00")), repr(hb[lo:hi].rstrip(b"\x00"))))
    out = []
    for fname, diffs in by_field.items():
        out += _grouped(f"header {fname} encoding", diffs, len(common))
    return out


def _explain_content(paths: list[str], pmap: dict[str, Member], rmap: dict[str, Member],
                     kept: dict[str, tuple[bytes | None, bytes | None]]) -> list[Finding]:
    out = []
    for path in paths:
        a, b = pmap[path], rmap[path]
        pub, reb = kept.get(path, (None, None))
        text = _describe_change(_show(path), a.size, b.size, pub, reb)
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
