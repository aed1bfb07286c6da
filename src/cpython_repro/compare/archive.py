"""Streaming readers: a compressed artifact -> its tar members, never touching the disk.

Every byte read passes through a hash, so the payload digest comes for free, and through a
byte budget, so a decompression bomb stops at the limit instead of filling memory or disk.
"""

from __future__ import annotations

import gzip
import hashlib
import lzma
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pyzstd

from cpython_repro.errors import ArchiveError

CHUNK = 1 << 20
DEFAULT_PAYLOAD_LIMIT = 4 << 30  # a CPython payload is ~110 MB; 4 GiB is a bomb

MAGIC = {
    b"\x1f\x8b": "gzip",
    b"\xfd7zXZ\x00": "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}

TYPES = {
    tarfile.REGTYPE: "file", tarfile.AREGTYPE: "file", tarfile.DIRTYPE: "dir",
    tarfile.SYMTYPE: "symlink", tarfile.LNKTYPE: "hardlink", tarfile.CHRTYPE: "char-device",
    tarfile.BLKTYPE: "block-device", tarfile.FIFOTYPE: "fifo", tarfile.CONTTYPE: "file",
}
FORMATS = {tarfile.USTAR_FORMAT: "ustar", tarfile.GNU_FORMAT: "gnu", tarfile.PAX_FORMAT: "pax"}


@dataclass(frozen=True)
class Member:
    index: int
    path: str
    type: str
    size: int
    sha256: str
    mode: int
    linkname: str
    mtime: float
    uid: int
    gid: int
    uname: str
    gname: str
    devmajor: int
    devminor: int
    pax: dict[str, str] = field(default_factory=dict)


@dataclass
class Listing:
    compression: str
    members: list[Member]
    payload_sha256: str
    payload_size: int
    tar_format: str


def detect(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(6)
    for magic, name in MAGIC.items():
        if head.startswith(magic):
            return name
    return "tar"


class _Hashing:
    """A read-only stream that hashes and counts what passes, and refuses past a budget."""

    def __init__(self, raw: IO[bytes], limit: int) -> None:
        self._raw = raw
        self.hash = hashlib.sha256()
        self.size = 0
        self._limit = limit

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n if n is not None and n >= 0 else CHUNK)
        self.size += len(data)
        if self.size > self._limit:
            raise ArchiveError(f"decompressed payload exceeds {self._limit} bytes: refusing "
                               "(a decompression bomb, or raise the limit)")
        self.hash.update(data)
        return data

    def drain(self) -> None:
        while self.read(CHUNK):
            pass


def open_payload(path: Path) -> tuple[str, IO[bytes]]:
    kind = detect(path)
    stream: IO[bytes]
    if kind == "gzip":
        stream = gzip.open(path, "rb")  # type: ignore[assignment]  # noqa: SIM115
    elif kind == "xz":
        stream = lzma.open(path, "rb")  # noqa: SIM115 (closed by the caller)
    elif kind == "zstd":
        stream = pyzstd.ZstdFile(path, "rb")  # type: ignore[assignment]
    else:
        stream = path.open("rb")
    return kind, stream


def read_listing(path: Path, limit: int = DEFAULT_PAYLOAD_LIMIT) -> Listing:
    """All members with their content digests, in archive order; one streaming pass."""
    kind, raw = open_payload(path)
    members: list[Member] = []
    formats: set[str] = set()
    stream = _Hashing(raw, limit)
    try:
        with raw, tarfile.open(fileobj=stream, mode="r|") as tar:  # type: ignore[call-overload]
            for i, info in enumerate(tar):
                members.append(_member(i, info, tar))
                formats.add(_format_of(info))
            stream.drain()
    except (tarfile.TarError, EOFError, OSError, lzma.LZMAError, ValueError,
            pyzstd.ZstdError) as exc:
        raise ArchiveError(f"{path.name}: unreadable {kind} archive: {exc}") from exc
    return Listing(kind, members, stream.hash.hexdigest(), stream.size,
                   "+".join(sorted(formats)) or "empty")


def _format_of(info: tarfile.TarInfo) -> str:
    if info.pax_headers:
        return "pax"
    return "gnu" if info.type in (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK) else "ustar"


def _member(index: int, info: tarfile.TarInfo, tar: Any) -> Member:
    digest = ""
    if info.isreg():
        h = hashlib.sha256()
        f = tar.extractfile(info)
        if f is not None:
            while chunk := f.read(CHUNK):
                h.update(chunk)
        digest = h.hexdigest()
    pax = {k: v for k, v in info.pax_headers.items() if k not in ("path", "linkpath")}
    return Member(
        index=index, path=info.name, type=TYPES.get(info.type, f"type-{info.type!r}"),
        size=info.size, sha256=digest, mode=info.mode, linkname=info.linkname,
        mtime=float(info.mtime), uid=info.uid, gid=info.gid, uname=info.uname,
        gname=info.gname, devmajor=info.devmajor, devminor=info.devminor, pax=pax,
    )


def iter_member_bytes(path: Path, wanted: set[str], max_bytes: int) -> Iterator[tuple[str, bytes]]:
    """Second pass for the few members that differ: their bytes, up to max_bytes each."""
    _, raw = open_payload(path)
    with raw, tarfile.open(fileobj=raw, mode="r|") as tar:
        for info in tar:
            if info.name in wanted and info.isreg():
                f = tar.extractfile(info)
                yield info.name, f.read(max_bytes) if f else b""
