"""Crafted tar inputs, one kind at a time (the second round of hostile inputs): each gives
the right verdict with a finding that names it, or a one-line error naming the cause.
GNU tar, where installed, is the oracle for what extraction gives."""

from __future__ import annotations

import gzip
import hashlib
import lzma
import shutil
import subprocess
from pathlib import Path

import pytest
import pyzstd

from cpython_repro.compare import compare, utc_time
from cpython_repro.compare.archive import read_listing
from cpython_repro.errors import ArchiveError
from cpython_repro.models import Comparison
from tests.conftest import require
from tests.crafted import (
    TOP,
    archive,
    clean,
    expand,
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

OS_PY = f"{TOP}/Lib/os.py"
README = f"{TOP}/README.rst"


def run(tmp_path: Path, published: bytes, rebuilt: bytes | None = None) -> Comparison:
    pub, reb = tmp_path / "pub.tar", tmp_path / "reb.tar"
    pub.write_bytes(published)
    reb.write_bytes(clean() if rebuilt is None else rebuilt)
    return compare("x.tar", pub, reb)


def fields(c: Comparison) -> dict[str, str]:
    return {f.field: f.explanation for f in c.findings}


def error_of(tmp_path: Path, published: bytes) -> str:
    c = run(tmp_path, published)
    assert c.verdict == "error", c.findings
    assert "\n" not in c.error
    return c.error


# 1. Negative sizes never move the reader backwards.

@pytest.mark.parametrize("value", ["-512", "-1536", "+512", "5_12", " 512", "0x200", "1e3", ""])
def test_pax_size_must_be_plain_digits(tmp_path: Path, value: str) -> None:
    data = archive(pax([("size", value)]), member(OS_PY, b"import sys\n"),
                   member(README, b"This is Python\n"))
    assert f"malformed pax size value {value!r}" in error_of(tmp_path, data)


def test_negative_base256_size(tmp_path: Path) -> None:
    size = b"\xff" * 11 + b"\x00"  # -256 in GNU's two's complement base-256
    data = archive(header(OS_PY, size_field=size), member(README, b"This is Python\n"))
    assert "negative size" in error_of(tmp_path, data)


def test_negative_size_behind_a_long_name_in_xz_is_a_quick_error(tmp_path: Path) -> None:
    name = (f"{TOP}/" + "d" * 200).encode()
    body = archive(header(b"././@LongLink", len(name) + 1, b"L") + pad(name + b"\0"),
                   pax([("size", "-1536")]), member(OS_PY, b"x" * 600))
    small = lzma.compress(body)
    assert len(small) < 1000
    assert "malformed pax size value '-1536'" in error_of(tmp_path, small)


# 2. Times out of any range.

@pytest.mark.parametrize("value", ["1e300", "inf", "nan", "-1e18", "9" * 30, "1.5e3", "--1"])
def test_malformed_pax_mtime_is_an_error(tmp_path: Path, value: str) -> None:
    data = archive(pax([("mtime", value)]), member(OS_PY, b"import sys\n"),
                   member(README, b"This is Python\n"))
    assert "malformed pax mtime value" in error_of(tmp_path, data)


@pytest.mark.parametrize(("mtime", "shown"), [
    (b"\x80" + (1 << 80).to_bytes(11, "big"), "1208925819614629174706176 s since 1970"),
    (b"\xff" * 4 + (-(10**18) % (1 << 64)).to_bytes(8, "big"), "-1000000000000000000 s"),
])
def test_mtime_beyond_the_calendar_is_shown_not_a_traceback(tmp_path: Path, mtime: bytes,
                                                           shown: str) -> None:
    data = archive(member(OS_PY, b"import sys\n", mtime=mtime),
                   member(README, b"This is Python\n"))
    c = run(tmp_path, data)
    assert c.verdict == "same-content"
    assert shown in fields(c)["mtime"] and "outside the calendar" in fields(c)["mtime"]


def test_pax_mtime_far_in_the_past_is_metadata(tmp_path: Path) -> None:
    data = archive(pax([("mtime", "-1000000000000000000.5")]),
                   member(OS_PY, b"import sys\n"), member(README, b"This is Python\n"))
    c = run(tmp_path, data)
    assert c.verdict == "same-content" and "outside the calendar" in fields(c)["mtime"]


def test_utc_time_is_total() -> None:
    assert utc_time(0) == "1970-01-01 00:00:00Z"
    for t in (1e300, -1e300, 2.0**80, -62135596801.0):
        assert "outside the calendar" in utc_time(t)


# 3. Sparse members: compared by what GNU tar extracts.

CONTENT = bytes(range(256)) * 40
CHUNKS = [(0, 512), (2048, 512), (4096, 512), (6144, 512), (8192, 512), (9000, 100)]
REAL = 9100


def sparse_variants(name: str = OS_PY, chunks: list[tuple[int, int]] = CHUNKS,
                    content: bytes = CONTENT) -> dict[str, bytes]:
    real = max((o + n for o, n in chunks), default=0)
    return {
        "old GNU": old_gnu_sparse(name, chunks, real, sparse_data(content, chunks)),
        "pax 0.0": pax_sparse_0x(name, chunks, real, content, 0),
        "pax 0.1": pax_sparse_0x(name, chunks, real, content, 1),
        "pax 1.0": pax_sparse_10(name, chunks, real, content),
    }


@pytest.mark.parametrize("kind", ["old GNU", "pax 0.0", "pax 0.1", "pax 1.0"])
def test_sparse_member_is_compared_as_extracted(tmp_path: Path, kind: str) -> None:
    extracted = expand(CHUNKS, REAL, CONTENT)
    sparse = archive(sparse_variants()[kind], member(README, b"This is Python\n"))
    plain = archive(member(OS_PY, extracted), member(README, b"This is Python\n"))
    listing = read_listing(_write(tmp_path / "s.tar", sparse))
    got = {m.path: m for m in listing.members}
    assert got[OS_PY].sha256 == hashlib.sha256(extracted).hexdigest()
    assert got[OS_PY].size == REAL and got[OS_PY].type == "file"
    assert got[README].sha256 == hashlib.sha256(b"This is Python\n").hexdigest()  # in step
    c = run(tmp_path, sparse, plain)
    assert c.verdict == "same-content"
    assert "sparse storage" in fields(c)


@pytest.mark.parametrize("kind", ["old GNU", "pax 0.0", "pax 0.1", "pax 1.0"])
def test_same_stored_bytes_other_map_is_content_differs(tmp_path: Path, kind: str) -> None:
    """The stored data is the same; only the map moves the second chunk: GNU tar extracts
    other bytes, so this is never same-content."""
    stay, moved = [(0, 512), (2048, 512)], [(0, 512), (1536, 512), (2560, 0)]
    moved_content = bytearray(2560)
    moved_content[:512], moved_content[1536:2048] = CONTENT[:512], CONTENT[2048:2560]
    a, b = (sparse_variants(OS_PY, chunks, content)[kind] for chunks, content in
            ((stay, CONTENT), (moved, bytes(moved_content))))
    assert sparse_data(CONTENT, stay) == sparse_data(bytes(moved_content), moved)
    tail = member(README, b"This is Python\n")
    c = run(tmp_path, archive(b, tail), archive(a, tail))
    assert c.verdict == "content-differs"
    assert [f.path for f in c.findings if f.kind == "content"] == [OS_PY]
    if _gnu_tar():
        assert _gnu_extract(tmp_path / "ga", archive(a, tail))[OS_PY] != \
            _gnu_extract(tmp_path / "gb", archive(b, tail))[OS_PY]


def test_sparse_name_is_checked_for_hazards(tmp_path: Path) -> None:
    evil = pax_sparse_10(OS_PY, CHUNKS, REAL, CONTENT, sparse_name="../../etc/cron.d/x")
    c = run(tmp_path, archive(evil, member(README, b"This is Python\n")))
    hazards = {f.path: f.explanation for f in c.findings if f.field == "hazard"}
    assert "escapes the archive root" in hazards["../../etc/cron.d/x"]


def test_sparse_realsize_bomb_is_refused(tmp_path: Path) -> None:
    huge = 1 << 45
    bomb = pax_sparse_10(OS_PY, [(huge - 512, 512)], huge, b"", data=bytes(512))
    with pytest.raises(ArchiveError, match="sparse members expand beyond"):
        read_listing(_write(tmp_path / "b.tar", archive(bomb)), limit=1 << 30)


@pytest.mark.parametrize(("chunks", "real", "why"), [
    ([(1024, 512), (0, 512)], 2048, "out of order"),
    ([(0, 1024), (512, 512)], 2048, "overlaps"),
    ([(0, 512)], 5000, "its map ends at 512, its size is 5000"),
    ([(0, 512), (4096, 512)], 4096, "beyond its size"),
])
def test_sparse_maps_gnu_tar_could_not_have_written_are_errors(tmp_path: Path, chunks: list[
        tuple[int, int]], real: int, why: str) -> None:
    data = archive(old_gnu_sparse(OS_PY, chunks, real, sparse_data(CONTENT, chunks)))
    assert why in error_of(tmp_path, data)


def test_extension_block_after_the_end_of_the_map_is_an_error(tmp_path: Path) -> None:
    chunks = [(0, 512)]
    data = archive(old_gnu_sparse(OS_PY, chunks, 512, sparse_data(CONTENT, chunks),
                                  isextended_after_end=True) + bytes(512))
    assert "extension block after the end of its map" in error_of(tmp_path, data)


def test_sparse_records_on_a_gnu_header_are_refused(tmp_path: Path) -> None:
    data = archive(pax([("GNU.sparse.map", "0,4"), ("GNU.sparse.size", "4"),
                        ("GNU.sparse.numblocks", "1")]),
                   member(OS_PY, b"abcd", magic=b"ustar  \x00"))
    assert "GNU.sparse records on a gnu header" in error_of(tmp_path, data)


@pytest.mark.parametrize("kind", ["old GNU", "pax 0.0", "pax 0.1", "pax 1.0"])
def test_gnu_tar_agrees_with_our_reading_of_crafted_sparse_members(tmp_path: Path,
                                                                   kind: str) -> None:
    require(_gnu_tar(), "GNU tar is needed as the oracle")
    data = archive(sparse_variants()[kind], member(README, b"This is Python\n"))
    extracted = _gnu_extract(tmp_path / "x", data)
    listing = read_listing(_write(tmp_path / "a.tar", data))
    assert {m.path: m.sha256 for m in listing.members} == {
        p: hashlib.sha256(d).hexdigest() for p, d in extracted.items()}


@pytest.mark.parametrize("fmt", ["gnu", "pax:0.0", "pax:0.1", "pax:1.0"])
def test_sparse_files_made_by_gnu_tar(tmp_path: Path, fmt: str) -> None:
    require(_gnu_tar(), "GNU tar is needed to make sparse archives")
    src = tmp_path / "P"
    src.mkdir()
    with (src / "s").open("wb") as f:
        for i in range(40):  # over 25 chunks: old GNU needs two extension blocks
            f.seek(i * 16384)
            f.write(bytes([65 + i % 26]) * (700 + i))
        f.truncate(800_000)
    (src / "after").write_bytes(b"after\n")
    fmt_name, _, version = fmt.partition(":")
    cmd = ["tar", f"--format={fmt_name}", "-S", "-cf", str(tmp_path / "a.tar"), "-C",
           str(tmp_path), "P"]
    if version:
        cmd.insert(3, f"--sparse-version={version}")
    subprocess.run(cmd, check=True)
    got = {m.path: m for m in read_listing(tmp_path / "a.tar").members}
    assert got["P/s"].sparse
    assert got["P/s"].sha256 == hashlib.sha256((src / "s").read_bytes()).hexdigest()
    assert got["P/after"].sha256 == hashlib.sha256(b"after\n").hexdigest()


def _gnu_tar() -> bool:
    tar = shutil.which("tar")
    return bool(tar) and "GNU tar" in subprocess.run(
        [str(tar), "--version"], capture_output=True, text=True).stdout


def _gnu_extract(where: Path, data: bytes) -> dict[str, bytes]:
    where.mkdir()
    (where / "in.tar").write_bytes(data)
    (where / "out").mkdir()
    subprocess.run(["tar", "xf", str(where / "in.tar"), "-C", str(where / "out")], check=True)
    return {str(p.relative_to(where / "out")): p.read_bytes()
            for p in (where / "out").rglob("*") if p.is_file()}


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


# 4. Hazards resolved through the symlinks an extractor makes.

@pytest.mark.parametrize("order", ["link first", "link last"])
def test_symlink_through_a_symlink_to_the_parent_of_the_root(tmp_path: Path,
                                                              order: str) -> None:
    s = member(f"{TOP}/s", typeflag=b"2", linkname=".")
    up = member(f"{TOP}/up", typeflag=b"2", linkname="s/../..")
    parts = (s, up) if order == "link first" else (up, s)
    c = run(tmp_path, archive(*parts, member(OS_PY, b"import sys\n"),
                              member(README, b"This is Python\n")))
    hazards = {f.path: f.explanation for f in c.findings if f.field == "hazard"}
    assert "symlink to 's/../..', outside the tree" in hazards[f"{TOP}/up"]
    assert f"{TOP}/s" not in hazards


def test_member_written_through_an_escaping_symlink(tmp_path: Path) -> None:
    c = run(tmp_path, archive(member(f"{TOP}/s", typeflag=b"2", linkname="."),
                              member(f"{TOP}/d", typeflag=b"2", linkname="s/.."),
                              member(f"{TOP}/d/x", b"planted"),
                              member(f"{TOP}/e", typeflag=b"2", linkname="d/.."),
                              member(f"{TOP}/e/y", b"planted")))
    hazards = {f.path: f.explanation for f in c.findings if f.field == "hazard"}
    assert f"{TOP}/d/x" not in hazards  # d is the root itself: inside
    assert "leads outside the tree through a symlink" in hazards[f"{TOP}/e/y"]


def test_hard_link_through_a_symlink(tmp_path: Path) -> None:
    c = run(tmp_path, archive(member(f"{TOP}/s", typeflag=b"2", linkname="."),
                              member(f"{TOP}/u", typeflag=b"2", linkname="s/../.."),
                              member(f"{TOP}/h", typeflag=b"1", linkname=f"{TOP}/u/etc/passwd")))
    hazards = {f.path: f.explanation for f in c.findings if f.field == "hazard"}
    assert "hard link to" in hazards[f"{TOP}/h"] and "outside the tree" in hazards[f"{TOP}/h"]


def test_symlink_loops_are_not_escapes(tmp_path: Path) -> None:
    c = run(tmp_path, archive(member(f"{TOP}/a", typeflag=b"2", linkname="b"),
                              member(f"{TOP}/b", typeflag=b"2", linkname="a"),
                              member(OS_PY, b"import sys\n"), member(README, b"This is Python\n")))
    assert not [f for f in c.findings if f.field == "hazard"]


# 8. zstd with a skippable frame first.

def test_zstd_starting_with_a_skippable_frame(tmp_path: Path) -> None:
    payload = clean()
    pub = _write(tmp_path / "p.tar.zst", zstd_skippable(bytes(pyzstd.compress(payload))))
    reb = _write(tmp_path / "r.tgz", gzip.compress(payload, mtime=0))
    c = compare("x", pub, reb)
    assert c.verdict == "same-content" and c.payload_identical
    assert read_listing(pub).compression == "zstd"


# 9. Bytes outside members are named.

def test_extra_zero_records_after_the_end_marker_are_named(tmp_path: Path) -> None:
    c = run(tmp_path, clean() + bytes(512 * 18))
    assert c.verdict == "same-content"
    padding = 512 - len(b"This is Python\n")  # of the last member, README.rst
    assert f"end of archive: bytes after the last member's data: published {padding + 10240}, " \
        f"rebuilt {padding + 1024}" in fields(c)["end of archive"]


def test_nonzero_padding_inside_the_archive_is_named(tmp_path: Path) -> None:
    data = bytearray(clean())
    data[512 + 11] = ord("!")  # after os.py's 11 bytes, in its block's padding
    c = run(tmp_path, bytes(data))
    assert c.verdict == "same-content"
    assert fields(c)["tar records"].startswith(f"{README}: tar records")


def test_nonzero_trailing_data_is_content(tmp_path: Path) -> None:
    c = run(tmp_path, clean() + b"\x01" * 512)
    assert c.verdict == "content-differs" and "trailing data" in fields(c)


# 13. Global pax headers: kept once, bounded.

def test_global_headers_are_compared_once_per_change(tmp_path: Path) -> None:
    data = archive(pax([("comment", "a" * 5000)], typeflag=b"g"),
                   *(member(n, d) for n, d in sorted({OS_PY: b"import sys\n",
                                                      README: b"This is Python\n"}.items())))
    c = run(tmp_path, data)
    assert c.verdict == "same-content"
    shown = fields(c)["global pax headers"]
    assert "(5008 chars, sha256 " in shown and len(shown) < 600


def test_too_much_global_metadata_is_refused(tmp_path: Path) -> None:
    big = [(f"k{i}", "v" * 40) for i in range(20000)]
    data = archive(*(pax(big, typeflag=b"g") for _ in range(16)), member(OS_PY, b"x"))
    assert "MiB of tar metadata" in error_of(tmp_path, data)


def test_a_second_pax_header_for_one_member_is_refused(tmp_path: Path) -> None:
    data = archive(pax([("path", "good")]), pax([("mtime", "1")]), member("evil", b"x"))
    assert "two pax extended headers before one member" in error_of(tmp_path, data)


def test_pax_path_and_long_name_that_disagree_are_refused(tmp_path: Path) -> None:
    name = b"long/name"
    data = archive(header(b"././@LongLink", len(name) + 1, b"L") + pad(name + b"\0"),
                   pax([("path", "other/name")]), member("x", b"x"))
    assert "pax path and GNU long name" in error_of(tmp_path, data)


def test_symlink_with_data_is_refused(tmp_path: Path) -> None:
    data = archive(header(f"{TOP}/l", 512, b"2", linkname="x") + member(OS_PY, b"import sys\n"))
    assert "declares 512 bytes of data" in error_of(tmp_path, data)


# 14. Signed header checksums.

def test_signed_checksums_are_read_and_named(tmp_path: Path) -> None:
    name = f"{TOP}/Lib/caf\u00e9.py"
    signed = archive(member(name, b"x", signed=True, uname=b"\xe9"))
    unsigned = archive(member(name, b"x", uname=b"\xe9"))
    assert signed != unsigned
    c = run(tmp_path, signed, unsigned)
    assert c.verdict == "same-content"
    assert "header chksum encoding" in fields(c)


def test_regular_file_named_like_a_directory_with_data_is_refused(tmp_path: Path) -> None:
    """GNU tar extracts it as a directory and reads its data as the next header."""
    data = archive(member(f"{TOP}/d/", b"7 bytes"), member(OS_PY, b"import sys\n"))
    assert "the dir at byte 0 declares 7 bytes of data" in error_of(tmp_path, data)
    empty = archive(member(f"{TOP}/d/"), member(OS_PY, b"import sys\n"))
    assert {m.path: m.type for m in read_listing(_write(tmp_path / "e.tar", empty)).members} \
        == {f"{TOP}/d/": "dir", OS_PY: "file"}


def test_paths_longer_than_path_max_are_named_and_cheap(tmp_path: Path) -> None:
    import time

    deep = f"{TOP}/" + "/".join(["d"] * 200_000)
    started = time.monotonic()
    c = run(tmp_path, archive(member(f"{TOP}/s", typeflag=b"2", linkname="."),
                              pax([("path", deep)]) + member("x", b"x"),
                              member(OS_PY, b"import sys\n"), member(README, b"This is Python\n")))
    assert time.monotonic() - started < 10
    hazards = {f.path: f.explanation for f in c.findings if f.field == "hazard"}
    assert "longer than 4096 bytes" in hazards[deep]


def test_paths_that_land_on_one_file_are_duplicates(tmp_path: Path) -> None:
    c = run(tmp_path, archive(member(OS_PY, b"import sys\n"),
                              member(f"{TOP}//Lib/./os.py", b"import evil\n"),
                              member(README, b"This is Python\n")))
    dup = {f.path: f.explanation for f in c.findings if f.field == "duplicate"}
    assert f"(as {OS_PY})" in dup[f"{TOP}//Lib/./os.py"]
    assert c.verdict == "content-differs"
