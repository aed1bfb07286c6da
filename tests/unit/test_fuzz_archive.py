"""Fuzzing the archive readers with hypothesis: random bytes and mutated real archives must
end in a listing or an ArchiveError (a clear one-line error), never in anything else, and a
mutated archive is never called identical to the original. `make fuzz` runs atheris too."""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from cpython_repro.compare import compare
from cpython_repro.compare.archive import read_listing
from cpython_repro.errors import ArchiveError
from tests.crafted import (
    TOP,
    archive,
    header,
    member,
    old_gnu_sparse,
    pad,
    pax,
    pax_sparse_0x,
    pax_sparse_10,
    sparse_data,
    zstd_skippable,
)
from tests.unit.test_compare_properties import compress


def sample_tar() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for i, name in enumerate(["P/", "P/a.py", "P/d\u00e9j\u00e0.txt", "P/" + "x" * 120]):
            info = tarfile.TarInfo(name)
            data = b"" if name.endswith("/") else (f"line {i}\n" * (i * 40)).encode()
            info.type = tarfile.DIRTYPE if name.endswith("/") else tarfile.REGTYPE
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)
        link = tarfile.TarInfo("P/l")
        link.type, link.linkname = tarfile.SYMTYPE, "a.py"
        tar.addfile(link)
    return buf.getvalue()


TAR = sample_tar()
SAMPLES = {how: compress(TAR, how) for how in ("tar", "gzip", "xz", "zstd")}


def listing_or_clear_error(data: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "a"
        path.write_bytes(data)
        try:
            read_listing(path, limit=8 << 20)
        except ArchiveError as exc:
            assert "\n" not in exc.one_line()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([b"", b"\x1f\x8b", b"\xfd7zXZ\x00", b"\x28\xb5\x2f\xfd"]),
       st.binary(max_size=3000))
def test_random_bytes(magic: bytes, body: bytes) -> None:
    listing_or_clear_error(magic + body)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(SAMPLES)), st.data())
def test_mutated_archives(kind: str, data: st.DataObject) -> None:
    original = SAMPLES[kind]
    mutated = bytearray(original)
    how = data.draw(st.sampled_from(["flip", "truncate", "insert", "zero"]))
    at = data.draw(st.integers(0, len(original) - 1))
    if how == "flip":
        mutated[at] ^= data.draw(st.integers(1, 255))
    elif how == "truncate":
        del mutated[at:]
    elif how == "insert":
        mutated[at:at] = data.draw(st.binary(min_size=1, max_size=64))
    else:
        mutated[at:at + 512] = bytes(len(mutated[at:at + 512]))
    listing_or_clear_error(bytes(mutated))
    with tempfile.TemporaryDirectory() as tmp:
        pub, reb = Path(tmp) / "p", Path(tmp) / "r"
        pub.write_bytes(bytes(mutated))
        reb.write_bytes(original)
        c = compare("x", pub, reb)
    assert c.verdict in ("identical", "same-content", "content-differs", "error")
    if c.verdict == "identical":
        assert bytes(mutated) == original


# Crafted structure, not just flipped bytes: the kinds of the second hostile round.

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "200"))
SIZES = st.sampled_from(["-512", "-1536", "+1", "1_0", "0", "7", "512", "99999999", "", "x"])
TIMES = st.sampled_from(["1e300", "inf", "nan", "-1e18"] + ["0", "1700000000.5", "-1",
                                                           "-1000000000000000000"] * 3)


@st.composite
def sparse_maps(draw: st.DrawFn) -> tuple[list[tuple[int, int]], int]:
    """Mostly maps GNU tar could write; one in five not (overlapping, out of order, ending
    before or after the file's size)."""
    chunks: list[tuple[int, int]] = []
    pos = 0
    for _ in range(draw(st.integers(0, 30))):
        pos += draw(st.integers(0, 3)) * 512
        size = draw(st.sampled_from([512, 1024, 512, 100 if chunks else 512]))
        chunks.append((pos, size))
        pos += size
        if size % 512:
            break  # GNU tar stores only the last chunk short of a block
    real = pos
    if draw(st.booleans()):
        real = pos + draw(st.integers(1, 3)) * 512  # a hole at the end: a (size, 0) entry
        chunks.append((real, 0))
    if draw(st.integers(0, 4)) == 0:
        how = draw(st.sampled_from(["swap", "short", "long", "overlap"]))
        if how == "swap" and len(chunks) > 1:
            chunks[0], chunks[1] = chunks[1], chunks[0]
        elif how == "short":
            real += 1
        elif how == "long" and real:
            real -= 1
        elif chunks:
            chunks.append((max(chunks[-1][0] - 1, 0), 1))
    return chunks, real


@st.composite
def crafted_parts(draw: st.DrawFn) -> bytes:
    content = bytes(range(256)) * 40
    # Kinds that read, several times over; then the ones that are refused.
    kind = draw(st.sampled_from(["file", "pax-mtime", "global", "old-gnu", "pax0.0", "pax0.1",
                                 "pax1.0", "symlink", "longname", "signed"] * 4
                                + ["pax-size", "neg-base256", "hardlink", "dup-pax",
                                   "dir-data"]))
    name = f"{TOP}/" + draw(st.text("ab./\n\x1b[]\xe9", min_size=1, max_size=12))
    if kind == "file":
        return member(name, draw(st.binary(max_size=1200)))
    if kind == "pax-size":
        return pax([("size", draw(SIZES))]) + member(name, b"x" * draw(st.integers(0, 700)))
    if kind == "pax-mtime":
        return pax([("mtime", draw(TIMES))]) + member(name, b"x")
    if kind == "neg-base256":
        field = draw(st.sampled_from([b"\xff" * 11 + b"\x00", b"\x80" + bytes(10) + b"\x02",
                                      b"\x81" + bytes(11)]))
        return header(name, size_field=field) + pad(b"x")
    if kind == "global":
        key = draw(st.sampled_from(["comment", "comment", "uname", "path", "GNU.sparse.map"]))
        return pax([(key, draw(st.text("ab\n[/]\xe9", max_size=20)))], typeflag=b"g")
    if kind in ("old-gnu", "pax0.0", "pax0.1", "pax1.0"):
        chunks, real = draw(sparse_maps())
        content = bytes((i * 7) % 251 for i in range(real + 1))
        if kind == "old-gnu":
            return old_gnu_sparse(name, chunks, real, sparse_data(content, chunks))
        if kind == "pax1.0":
            return pax_sparse_10(name, chunks, real, content)
        return pax_sparse_0x(name, chunks, real, content, 0 if kind == "pax0.0" else 1)
    if kind == "symlink":
        return member(name, typeflag=b"2", linkname=draw(st.sampled_from(
            [".", "..", "s/../..", "/etc", "a", "s/x", "../" + TOP])))
    if kind == "hardlink":
        return member(name, typeflag=b"1", linkname=draw(st.sampled_from(
            [f"{TOP}/s/../../x", f"{TOP}/a", "/etc/passwd", f"{TOP}/s/f"])))
    if kind == "longname":
        long = (name + "/" + "L" * 150).encode()
        return header(b"././@LongLink", len(long) + 1, b"L") + pad(long + b"\0") + \
            member(name, b"y")
    if kind == "signed":
        return member(name.encode() + b"\xe9\xff", b"z", signed=True)
    if kind == "dup-pax":
        return pax([("path", "a")]) + pax([("path", "b")]) + member(name, b"d")
    return header(name + "/", 512, b"5") + bytes(512)


@st.composite
def crafted_archives(draw: st.DrawFn) -> bytes:
    payload = archive(*draw(st.lists(crafted_parts(), min_size=1, max_size=6)),
                      end=draw(st.sampled_from([1, 2, 2, 20])))
    how = draw(st.sampled_from(["tar", "gzip", "xz", "zstd", "zstd-skip"]))
    if how == "zstd-skip":
        return zstd_skippable(compress(payload, "zstd"))
    return compress(payload, how)
    return payload


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(crafted_archives(), crafted_archives())
def test_crafted_archives(a: bytes, b: bytes) -> None:
    """A listing or a one-line ArchiveError; a verdict (never a traceback); identical only
    for the same bytes, same-content never for archives whose members differ in bytes."""
    listing_or_clear_error(a)
    with tempfile.TemporaryDirectory() as tmp:
        pub, reb = Path(tmp) / "p", Path(tmp) / "r"
        pub.write_bytes(a)
        reb.write_bytes(b)
        c = compare("x", pub, reb)
        event(c.verdict)
        if c.verdict == "same-content":  # both were read whole: they list the same bytes
            assert {m.path: m.sha256 for m in read_listing(pub).members if m.type == "file"} \
                == {m.path: m.sha256 for m in read_listing(reb).members if m.type == "file"}
    assert "\n" not in c.error
    if c.verdict == "identical":
        assert a == b


@settings(max_examples=max(EXAMPLES // 4, 25), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(crafted_parts(), min_size=1, max_size=5))
def test_gnu_tar_extracts_what_we_read(parts: list[bytes]) -> None:
    """Differential: an archive we read, GNU tar reads in the same steps (no header it
    must skip), and every regular file it extracts has the content digest we give it."""
    tar = shutil.which("tar")
    if not tar or "GNU tar" not in subprocess.run([tar, "--version"], capture_output=True,
                                                  text=True).stdout:
        return
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "a.tar", Path(tmp) / "out"
        src.write_bytes(archive(*parts))
        out.mkdir()
        try:
            members = read_listing(src).members
        except ArchiveError:
            event("refused by us")
            return
        done = subprocess.run([tar, "xf", str(src), "-C", str(out)], capture_output=True,
                              text=True, errors="replace", check=False)
        for sign in ("Skipping to next header", "Unexpected EOF", "lone zero block"):
            assert sign not in done.stderr, done.stderr
        event("read by both" if done.returncode == 0 else "read by both, GNU tar warned")
        ours: dict[str, list[str]] = {}
        for m in members:  # keyed by where the member lands: "a//b" is "a/b"
            where = "/".join(p for p in m.path.split("/") if p not in ("", "."))
            ours.setdefault(where, []).append(m.sha256)
        for p in out.rglob("*"):
            name = str(p.relative_to(out))
            if p.is_file() and not p.is_symlink() and len(ours.get(name, [])) == 1:
                assert ours[name][0] == hashlib.sha256(p.read_bytes()).hexdigest(), name
