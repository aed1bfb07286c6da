"""Peak memory on crafted bombs: kilobytes of input must not take gigabytes. Each input is
compared in a fresh process, which reports its own peak RSS: VmHWM, the high-water mark of
its own address space (ru_maxrss would count the test process's RSS at the fork)."""

from __future__ import annotations

import lzma
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import pyzstd

from tests.crafted import (
    TOP,
    archive,
    clean,
    header,
    member,
    pad,
    pax,
    pax_sparse_10,
    xz_with_dict,
)

LIMIT_MB = 300
PEAK = """
def peak():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) // 1024
"""
HARNESS = PEAK + """
import sys
from cpython_repro.cli import main
code = main(sys.argv[1:])
print(f"RSS {peak()} EXIT {code}", file=sys.stderr)
"""
IDENTIFY = PEAK + """
import sys
from pathlib import Path
from cpython_repro.errors import ReproError
from cpython_repro.fetch import _match_by_content
from cpython_repro.resolve import plan
try:
    _match_by_content(plan("3.13.5"), Path(sys.argv[1]))
except ReproError as exc:
    print(exc.one_line(), file=sys.stderr)
print(f"RSS {peak()} EXIT 0", file=sys.stderr)
"""


def peak(script: str, *args: str) -> tuple[int, str]:
    """(peak RSS in MiB, stderr) of a fresh interpreter running script with args."""
    done = subprocess.run([sys.executable, "-c", script, *args], capture_output=True,
                          text=True, timeout=600, check=False)
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("RSS "), done.stderr[-2000:]
    return int(last.split()[1]), done.stderr


def xz_dict_bomb() -> bytes:
    """64 MiB of zeros, declaring a 4 GiB dictionary: without a memory limit the decoder
    touches as much of it as it writes."""
    comp = lzma.LZMACompressor(format=lzma.FORMAT_XZ)
    parts = [comp.compress(header(f"{TOP}/zeros", 64 << 20))]
    parts += [comp.compress(bytes(1 << 20)) for _ in range(64)]
    parts += [comp.compress(bytes(1024)), comp.flush()]
    plain = lzma.decompress(b"".join(parts))
    return xz_with_dict(plain, 40)


def negative_loop() -> bytes:
    """A pax size of -512 before each member: it once sent the reader back a block."""
    return archive(*(pax([("size", "-512")]) + member(f"{TOP}/f{i}", b"x") for i in range(5)))


def global_headers() -> bytes:
    """One 512 KiB global header of tiny records over 5214 members."""
    records = [(f"k{i}", "v") for i in range(60_000)]
    members = [member(f"{TOP}/Lib/m{i:05d}.py", b"x\n") for i in range(5214)]
    return lzma.compress(archive(pax(records, typeflag=b"g"), *members), preset=1)


def global_headers_stacked() -> bytes:
    records = [(f"key{i:07d}", "v") for i in range(60_000)]  # 960 KiB each
    return lzma.compress(archive(pax(records, typeflag=b"g") * 16, member(f"{TOP}/x", b"x")),
                         preset=1)


def many_members(tag: str) -> Callable[[], bytes]:
    def make() -> bytes:
        return archive(*(header(f"{TOP}/{'d' * 60}/{tag}{i:06d}.py", 0)
                         for i in range(50_000)))
    return make


def member_records() -> bytes:
    """A 1 MiB extended header of tiny records before each of 16 members."""
    one = pax([(f"SCHILY.xattr.k{i:06d}", "v") for i in range(38_000)])
    return lzma.compress(archive(*(one + member(f"{TOP}/f{i}", b"x") for i in range(16))),
                         preset=1)


def long_paths(tag: str) -> Callable[[], bytes]:
    def make() -> bytes:
        return lzma.compress(archive(*(pax([("path", f"{TOP}/{i}/" + "p" * (900_000))])
                                       + member("x", tag.encode() * 1000)
                                       for i in range(12))), preset=1)
    return make


def sparse_holes() -> bytes:
    """A sparse member of 1 GiB of holes and one block of data."""
    size = 1 << 30
    return lzma.compress(archive(pax_sparse_10(f"{TOP}/holes", [(size - 512, 512)], size, b"",
                                               data=pad(b"end"))))


def zstd_window() -> bytes:
    """A frame that declares a 128 MiB window (streamed: no content size to shrink it)."""
    comp = pyzstd.ZstdCompressor({pyzstd.CParameter.windowLog: 27,
                                  pyzstd.CParameter.compressionLevel: 1})
    return bytes(comp.compress(archive(member(f"{TOP}/z", bytes(1 << 20))))) + \
        bytes(comp.flush(pyzstd.ZstdCompressor.FLUSH_FRAME))


BOMBS: dict[str, tuple[Callable[[], bytes], Callable[[], bytes] | None, str]] = {
    # name: (published, rebuilt (None: the clean archive), what must be said)
    "xz 4 GiB dictionary": (xz_dict_bomb, None, "needs more than 80 MiB of memory"),
    "negative pax size": (negative_loop, None, "malformed pax size value '-512'"),
    "512 KiB global header over 5214 members": (global_headers, None, ""),
    "sixteen 1 MiB global headers": (global_headers_stacked, None, "MiB of tar metadata"),
    "50,000 members on both sides": (many_members("a"), many_members("b"), ""),
    "1 MiB extended headers": (member_records, None, "MiB of tar metadata"),
    "megabyte paths on both sides": (long_paths("a"), long_paths("b"), ""),
    "1 GiB of sparse holes": (sparse_holes, None, ""),
    "zstd 128 MiB window": (zstd_window, None, "needs a window over 64 MiB"),
}


@pytest.mark.parametrize("name", sorted(BOMBS))
def test_bombs_stay_under_300_mb(tmp_path: Path, name: str) -> None:
    make_pub, make_reb, said = BOMBS[name]
    pub, reb = tmp_path / "pub", tmp_path / "reb"
    pub.write_bytes(make_pub())
    reb.write_bytes(make_reb() if make_reb else clean())
    rss, err = peak(HARNESS, "compare", str(pub), str(reb), "--json", str(tmp_path / "c.json"),
                    "-q")
    assert "EXIT 1" in err and "Traceback" not in err, err[-2000:]
    assert said in (tmp_path / "c.json").read_text()
    print(f"{name}: {pub.stat().st_size} bytes, peak RSS {rss} MiB")
    assert rss < LIMIT_MB, f"{name}: peak RSS {rss} MiB"


def test_published_file_is_identified_without_decompressing_it_whole(tmp_path: Path) -> None:
    bomb = tmp_path / "python3.13_3.13.5.orig.tar.xz"
    bomb.write_bytes(xz_dict_bomb())
    rss, err = peak(IDENTIFY, str(bomb))
    assert "not a readable archive" in err and "needs more than 80 MiB" in err
    assert rss < 100, rss
    big = tmp_path / "big.tar.xz"  # readable: 64 MiB of data after the first member
    big.write_bytes(lzma.compress(archive(member("Python-3.13.5/a", b"x"),
                                          member("Python-3.13.5/zeros", bytes(64 << 20)))))
    rss, err = peak(IDENTIFY, str(big))
    assert "EXIT 0" in err and rss < 100, (rss, err)
