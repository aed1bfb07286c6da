"""Fuzzing the archive readers with hypothesis: random bytes and mutated real archives must
end in a listing or an ArchiveError (a clear one-line error), never in anything else, and a
mutated archive is never called identical to the original. `make fuzz` runs atheris too."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
import tempfile
from pathlib import Path

import pyzstd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cpython_repro.compare import compare
from cpython_repro.compare.archive import read_listing
from cpython_repro.errors import ArchiveError


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
SAMPLES = {"tar": TAR, "gzip": gzip.compress(TAR, mtime=0), "xz": lzma.compress(TAR),
           "zstd": bytes(pyzstd.compress(TAR))}


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
