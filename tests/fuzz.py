"""`make fuzz`: atheris (libFuzzer) on the archive readers, coverage-guided, seeded with
small real archives. A crash is any exception other than ArchiveError. Prints the counts."""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import atheris

with atheris.instrument_imports():
    from cpython_repro.compare.archive import read_listing
    from cpython_repro.errors import ArchiveError

from tests.unit.test_fuzz_archive import SAMPLES

WORK = Path(tempfile.mkdtemp(prefix="cpython-repro-fuzz-"))
TARGET = WORK / "input"
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
    if COUNT["runs"] % 10000 == 0:  # libFuzzer exits from C: no finally runs at the end
        report()


def main() -> None:
    corpus = WORK / "corpus"
    corpus.mkdir()
    for kind, data in SAMPLES.items():
        (corpus / kind).write_bytes(data)
    atheris.Setup([sys.argv[0], *sys.argv[1:], str(corpus)], one)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
