"""Hostile archives: each gets a clear finding or a clear error, nothing is written outside
the work directory, and memory stays bounded. The comparison never extracts anything."""

from __future__ import annotations

import gzip
import io
import lzma
import resource
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from cpython_repro.compare import compare
from cpython_repro.compare.archive import read_listing
from cpython_repro.errors import ArchiveError

TOP = "Python-3.13.99"
CLEAN = {f"{TOP}/Lib/os.py": b"import sys\n", f"{TOP}/README.rst": b"This is Python\n"}


def tar_with(extra: Callable[[tarfile.TarFile], None] | None = None,
             fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name, data in sorted(CLEAN.items()):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        if extra:
            extra(tar)
    return buf.getvalue()


def member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "",
           data: bytes = b"") -> Callable[[tarfile.TarFile], None]:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.size = kind, link, len(data)
        tar.addfile(info, io.BytesIO(data) if data else None)
    return add


def run(tmp_path: Path, published: bytes) -> tuple[str, dict[str, str], str]:
    """compare() of a hostile published archive against a clean rebuild, in a directory
    that must hold nothing else afterwards (diffoscope's output aside)."""
    work = tmp_path / "work"
    work.mkdir()
    pub, reb = work / "pub.tar", work / "reb.tar"
    pub.write_bytes(published)
    reb.write_bytes(tar_with())
    c = compare("x.tar", pub, reb, diff_dir=work / "diffs", report_dir=work)
    written = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    allowed = {"pub.tar", "reb.tar", "diffs", "diffs/members.txt", "diffs/members.html",
               "diffs/members.index"}
    assert set(written) <= allowed, written
    assert not list(tmp_path.parent.glob("etc*")) and not Path("/tmp/evil").exists()
    hazards = {f.path: f.explanation for f in c.findings if f.field == "hazard"}
    return c.verdict, hazards, c.error


@pytest.mark.parametrize(("extra", "path", "why"), [
    (member("/tmp/evil", data=b"x"), "/tmp/evil", "escapes the archive root"),
    (member(f"{TOP}/../../etc/cron.d/x", data=b"x"), f"{TOP}/../../etc/cron.d/x",
     "escapes the archive root"),
    (member(f"{TOP}/link", tarfile.SYMTYPE, "/etc/passwd"), f"{TOP}/link",
     "symlink to '/etc/passwd', outside the tree"),
    (member(f"{TOP}/Lib/up", tarfile.SYMTYPE, "../../../root"), f"{TOP}/Lib/up",
     "outside the tree"),
    (member(f"{TOP}/hard", tarfile.LNKTYPE, "/etc/shadow"), f"{TOP}/hard",
     "hard link to '/etc/shadow'"),
    (member(f"{TOP}/hard2", tarfile.LNKTYPE, f"{TOP}/not-there"), f"{TOP}/hard2",
     "which no earlier member is"),
    (member(f"{TOP}/dev", tarfile.CHRTYPE), f"{TOP}/dev", "char-device"),
    (member(f"{TOP}/pipe", tarfile.FIFOTYPE), f"{TOP}/pipe", "fifo"),
])
def test_dangerous_members_are_named(tmp_path: Path, extra: Callable[[tarfile.TarFile], None],
                                     path: str, why: str) -> None:
    verdict, hazards, _ = run(tmp_path, tar_with(extra))
    assert verdict == "content-differs"
    assert why in hazards[path]


def test_safe_symlinks_inside_the_tree_are_not_hazards(tmp_path: Path) -> None:
    verdict, hazards, _ = run(tmp_path, tar_with(member(f"{TOP}/Lib/l", tarfile.SYMTYPE,
                                                        "os.py")))
    assert verdict == "content-differs" and hazards == {}


def test_duplicate_members(tmp_path: Path) -> None:
    data = tar_with(member(f"{TOP}/Lib/os.py", data=b"import evil\n"))
    pub, reb = tmp_path / "p.tar", tmp_path / "r.tar"
    pub.write_bytes(data)
    reb.write_bytes(tar_with())
    c = compare("x", pub, reb)
    assert c.verdict == "content-differs"
    assert any(f.field == "duplicate" and f.path == f"{TOP}/Lib/os.py" for f in c.findings)


def raw_header(name: bytes, size: int, typeflag: bytes = b"0", fix_checksum: bool = True,
               size_field: bytes | None = None) -> bytes:
    h = bytearray(512)
    h[0:len(name)] = name
    h[100:108] = b"0000644\0"
    h[108:116] = h[116:124] = b"0000000\0"
    h[124:136] = size_field if size_field is not None else f"{size:011o}\0".encode()
    h[136:148] = b"14000000000\0"
    h[156:157] = typeflag
    h[257:265] = b"ustar\x0000"
    h[148:156] = b" " * 8
    if fix_checksum:
        h[148:156] = f"{sum(h):06o}\0 ".encode()
    return bytes(h)


@pytest.mark.parametrize(("data", "message"), [
    (raw_header(b"a", 10, fix_checksum=False) + bytes(1024), "bad tar header checksum"),
    (raw_header(b"a", 0)[:300], "truncated tar header"),
    (raw_header(b"a", 8 << 30) + b"x" * 4096, "archive ends inside a member"),
    (raw_header(b"a", 0, size_field=b"12x45678901\0"), "malformed size field"),
    (raw_header(b"L", 64 << 20, typeflag=b"L") + bytes(1024), "GNU long name of 67108864"),
    (raw_header(b"x", 5 << 20, typeflag=b"x") + bytes(1024), "pax header of 5242880"),
    (raw_header(b"x", 10, typeflag=b"x") + b"99 path=a\n".ljust(512, b"\0") + bytes(1024),
     "malformed pax record"),
    (raw_header(b"a", 0), "ends without its end-of-archive marker"),
    (b"\x1f\x8b\x08\x00" + b"\x00" * 20, "unreadable gzip archive"),
    (lzma.compress(tar_with())[:-30], "unreadable xz archive"),
    (gzip.compress(tar_with()) + b"garbage", "data after the end of the gzip stream"),
])
def test_malformed_and_truncated_are_errors_never_a_pass(tmp_path: Path, data: bytes,
                                                         message: str) -> None:
    verdict, _, error = run(tmp_path, data)
    assert verdict == "error"
    assert message in error
    assert "\n" not in error


def test_bomb_stops_at_the_budget_with_bounded_memory(tmp_path: Path) -> None:
    """256 MiB of zeros in a 40 kB xz: refused at a 16 MiB budget, without holding it."""
    bomb = tmp_path / "bomb.tar.xz"
    comp = lzma.LZMACompressor()
    parts = [comp.compress(raw_header(b"zeros", 256 << 20))]
    chunk = bytes(1 << 20)
    parts += [comp.compress(chunk) for _ in range(256)]
    parts.append(comp.flush())
    bomb.write_bytes(b"".join(parts))
    assert bomb.stat().st_size < 1 << 20
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ArchiveError, match="exceeds 16777216 bytes"):
        read_listing(bomb, limit=16 << 20)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 100 * 1024, f"peak RSS grew by {grown} KiB"
