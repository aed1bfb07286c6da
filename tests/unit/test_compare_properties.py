"""Property tests: random archives, random mutations, and what the verdict must say.

Every content mutation is content-differs naming exactly the mutated member; no
metadata-only mutation (times, owners, order, tar format, compression) is ever reported as
a content change.
"""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import pyzstd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpython_repro.compare import compare


@dataclass(frozen=True)
class Entry:
    path: str
    kind: str  # "file", "dir" or "symlink"
    data: bytes = b""
    mode: int = 0o644
    target: str = ""
    mtime: int = 1_700_000_000
    uid: int = 0
    uname: str = ""


FORMATS = {"ustar": tarfile.USTAR_FORMAT, "gnu": tarfile.GNU_FORMAT, "pax": tarfile.PAX_FORMAT}


def build(entries: list[Entry], fmt: str) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=FORMATS[fmt]) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.path)
            info.mode, info.mtime, info.uid, info.uname = e.mode, e.mtime, e.uid, e.uname
            if e.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.target
            else:
                info.size = len(e.data)
            tar.addfile(info, io.BytesIO(e.data) if e.kind == "file" else None)
    return buf.getvalue()


def compress(payload: bytes, how: str) -> bytes:
    if how == "gzip":
        return gzip.compress(payload, mtime=0)
    if how == "xz":
        return lzma.compress(payload)
    if how == "zstd":
        return bytes(pyzstd.compress(payload))
    return payload


names = st.text("abcdefghijklmnopqrstuvwxyzé_.", min_size=1, max_size=12).filter(
    lambda s: s not in (".", ".."))


@st.composite
def archives(draw: st.DrawFn) -> list[Entry]:
    files = draw(st.lists(names, min_size=1, max_size=12, unique=True))
    entries = [Entry("P/", "dir", mode=0o755)]
    for n in files:
        kind = draw(st.sampled_from(["file", "file", "file", "symlink"]))
        if kind == "symlink":
            entries.append(Entry(f"P/{n}", "symlink", mode=0o777, target=draw(names)))
        else:
            entries.append(Entry(f"P/{n}", "file", draw(st.binary(max_size=3000)),
                                 mode=draw(st.sampled_from([0o644, 0o755]))))
    return entries


CONTENT = ["bytes", "append", "add", "remove", "mode", "type", "target"]
METADATA = ["mtime", "owner", "order", "format", "compression"]


def mutate_content(entries: list[Entry], how: str, i: int,
                   fresh: str) -> tuple[list[Entry], str]:
    out = list(entries)
    e = out[i]
    if how == "add":
        name = f"P/new-{fresh}"
        return [*out, Entry(name, "file", b"injected\n")], name
    if how == "remove":
        del out[i]
        return out, e.path
    if e.kind == "dir":  # a directory has no bytes or target: change its mode instead
        how = "mode"
    if how in ("bytes", "append") and e.kind == "file":
        data = e.data + b"\n# injected\n" if how == "append" or not e.data else \
            bytes([e.data[0] ^ 0x01]) + e.data[1:]
        out[i] = replace(e, data=data)
    elif how == "target" and e.kind == "symlink":
        out[i] = replace(e, target=e.target + "x")
    elif how == "type" or how in ("bytes", "append", "target"):
        out[i] = (replace(e, kind="file", data=b"was a link\n", target="")
                  if e.kind == "symlink" else replace(e, kind="symlink", target="elsewhere",
                                                      data=b""))
    else:
        out[i] = replace(e, mode=e.mode ^ 0o011)
    return out, e.path


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives(), st.sampled_from(CONTENT), st.integers(min_value=0), names,
       st.sampled_from(sorted(FORMATS)), st.sampled_from(["tar", "gzip", "xz", "zstd"]))
def test_every_content_mutation_is_named(entries: list[Entry], how: str, pick: int,
                                         fresh: str, fmt: str, comp: str) -> None:
    i = 1 + pick % (len(entries) - 1) if how != "add" else 0
    mutated, path = mutate_content(entries, how, i, fresh)
    with tempfile.TemporaryDirectory() as tmp:
        pub, reb = Path(tmp) / "pub", Path(tmp) / "reb"
        pub.write_bytes(compress(build(mutated, fmt), comp))
        reb.write_bytes(compress(build(entries, fmt), comp))
        c = compare("x", pub, reb)
    assert c.verdict == "content-differs", (how, c.findings)
    assert {f.path for f in c.findings if f.kind == "content"} == {path}, (how, c.findings)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(archives(), st.sampled_from(METADATA), st.integers(min_value=0), st.randoms(),
       st.sampled_from(sorted(FORMATS)), st.sampled_from(["tar", "gzip", "xz", "zstd"]))
def test_no_metadata_mutation_is_a_content_change(entries: list[Entry], how: str, pick: int,
                                                  rnd: object, fmt: str, comp: str) -> None:
    pub_entries, pub_fmt, pub_comp = list(entries), fmt, comp
    i = pick % len(entries)
    if how == "mtime":
        pub_entries[i] = replace(entries[i], mtime=entries[i].mtime - 1 - pick % 10**6)
    elif how == "owner":
        pub_entries = [replace(e, uid=1000, uname="pablogsal") for e in entries]
    elif how == "order":
        head, rest = pub_entries[:1], pub_entries[1:]
        rnd.shuffle(rest)  # type: ignore[attr-defined]
        pub_entries = head + rest
    elif how == "format":
        pub_fmt = {"ustar": "gnu", "gnu": "pax", "pax": "ustar"}[fmt]
    else:
        pub_comp = {"tar": "xz", "gzip": "zstd", "xz": "gzip", "zstd": "tar"}[comp]
    with tempfile.TemporaryDirectory() as tmp:
        pub, reb = Path(tmp) / "pub", Path(tmp) / "reb"
        pub.write_bytes(compress(build(pub_entries, pub_fmt), pub_comp))
        reb.write_bytes(compress(build(entries, fmt), comp))
        c = compare("x", pub, reb)
    assert c.verdict in ("identical", "same-content"), (how, c.findings)
    assert not [f for f in c.findings if f.kind == "content"], (how, c.findings)
