"""`make fuzz`: atheris (libFuzzer) on the archive readers and the comparison, coverage-
guided, seeded with small real and crafted archives. A crash is any exception other than
ArchiveError from the reader, or any exception from compare(). Prints the counts."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from cpython_repro.compare import compare
    from cpython_repro.compare.archive import read_listing
    from cpython_repro.errors import ArchiveError

from tests.crafted import (
    TOP,
    archive,
    clean,
    header,
    member,
    old_gnu_sparse,
    pax,
    pax_sparse_0x,
    pax_sparse_10,
    sparse_data,
    zstd_skippable,
)
from tests.unit.test_fuzz_archive import SAMPLES


def crafted_seeds() -> dict[str, bytes]:
    """Seeds of the kinds the hostile rounds found: sparse maps, global headers, negative
    sizes, odd times, signed checksums, link chains, a skippable zstd frame."""
    content = bytes(range(256)) * 12
    chunks = [(0, 512), (1024, 512), (2048, 100)]
    many = [(i * 1024, 512) for i in range(6)]
    seeds = {
        "old-gnu": old_gnu_sparse(f"{TOP}/s", chunks, 2148, sparse_data(content, chunks)),
        "old-gnu-ext": old_gnu_sparse(f"{TOP}/s", many, 5632, sparse_data(content * 2, many)),
        "pax00": pax_sparse_0x(f"{TOP}/s", chunks, 2148, content, 0),
        "pax01": pax_sparse_0x(f"{TOP}/s", chunks, 2148, content, 1),
        "pax10": pax_sparse_10(f"{TOP}/s", chunks, 2148, content),
        "global": pax([("comment", "x" * 40), ("uname", "u")], typeflag=b"g"),
        "negative": pax([("size", "-512")]) + member(f"{TOP}/n", b"n"),
        "mtime": pax([("mtime", "-1000000000000000000.5")]) + member(f"{TOP}/t", b"t"),
        "base256": header(f"{TOP}/b", 1, mtime=b"\x80" + (1 << 80).to_bytes(11, "big"))
        + bytes(512),
        "signed": member(f"{TOP}/caf\u00e9", b"c", signed=True),
        "links": member(f"{TOP}/s", typeflag=b"2", linkname=".")
        + member(f"{TOP}/up", typeflag=b"2", linkname="s/../.."),
    }
    out = {k: archive(v, member(f"{TOP}/after", b"after")) for k, v in seeds.items()}
    out["zstd-skip"] = zstd_skippable(SAMPLES["zstd"])
    out["clean"] = clean()
    return out


WORK = Path(tempfile.mkdtemp(prefix="cpython-repro-fuzz-"))
TARGET = WORK / "input"
REFERENCE = WORK / "reference.tar"
COUNT = {"runs": 0, "listings": 0, "archive_errors": 0}


STARTED = time.monotonic()


def report() -> None:
    print(f"fuzz: {COUNT['runs']} inputs in {time.monotonic() - STARTED:.0f}s: "
          f"{COUNT['listings']} read as archives, {COUNT['archive_errors']} clear "
          "ArchiveErrors, no other exception", flush=True)


def one(data: bytes) -> None:
    COUNT["runs"] += 1
    TARGET.write_bytes(data)
    try:
        read_listing(TARGET, limit=8 << 20)
        COUNT["listings"] += 1
    except ArchiveError:
        COUNT["archive_errors"] += 1
    # The findings on whatever was read: a verdict, whatever the input (never an exception).
    compare("x", TARGET, REFERENCE, limit=8 << 20)
    if COUNT["runs"] % 10000 == 0:  # libFuzzer exits from C: no finally runs at the end
        report()


def main() -> None:
    corpus = WORK / "corpus"
    corpus.mkdir()
    REFERENCE.write_bytes(clean())
    for kind, data in {**SAMPLES, **crafted_seeds()}.items():
        (corpus / kind).write_bytes(data)
    atheris.Setup([sys.argv[0], *sys.argv[1:], str(corpus)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
