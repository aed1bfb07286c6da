"""What the compression layer itself says: gzip header fields, xz stream and block layout."""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from cpython_repro.errors import ArchiveError

GZIP_OS = {0: "FAT", 3: "Unix", 7: "Macintosh", 11: "NTFS", 255: "unknown"}
FIELD_LIMIT = 64 << 10  # a gzip header's file name or comment
INDEX_LIMIT = 16 << 20  # an xz index: a few bytes per block; read whole, so bounded
XZ_CHECKS = {0: "none", 1: "crc32", 4: "crc64", 10: "sha256"}


def gzip_header(path: Path) -> dict[str, str]:
    with path.open("rb") as f:
        head = f.read(10)
        if len(head) < 10 or head[:2] != b"\x1f\x8b":
            raise ArchiveError(f"{path.name}: not a gzip stream")
        flags, mtime, xfl, os_ = head[3], *struct.unpack("<I", head[4:8]), head[8], head[9]
        name = ""
        if flags & 0x04:  # FEXTRA
            (xlen,) = struct.unpack("<H", f.read(2))
            f.read(xlen)
        if flags & 0x08:  # FNAME
            name = _zero_terminated(f, path, "name").decode("latin-1")
        if flags & 0x10:  # FCOMMENT
            _zero_terminated(f, path, "comment")
        if flags & 0x02:  # FHCRC
            f.read(2)
        header_bytes = f.tell()
    return {
        "mtime": str(mtime),
        "flags": f"0x{flags:02x}",
        "xfl": {2: "2 (-9, slowest)", 4: "4 (fastest)"}.get(xfl, str(xfl)),
        "os": GZIP_OS.get(os_, str(os_)),
        "name": name,
        "header_bytes": str(header_bytes),
    }


def _zero_terminated(f: BinaryIO, path: Path, what: str) -> bytes:
    """A NUL-terminated gzip header field, up to FIELD_LIMIT bytes: a longer one would
    make header_bytes (which adoption splices) wrong, so it is refused."""
    field = f.read(FIELD_LIMIT + 1).split(b"\x00", 1)
    if len(field) == 1:
        raise ArchiveError(f"{path.name}: gzip header {what} longer than {FIELD_LIMIT} bytes "
                           "or unterminated: refusing")
    f.seek(f.tell() - len(field[1]))
    return field[0]


def _varint(buf: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(buf) or shift > 63:
            raise ArchiveError("malformed xz variable-length integer")
        b = buf[pos]
        value |= (b & 0x7F) << shift
        pos += 1
        shift += 7
        if not b & 0x80:
            return value, pos


def xz_layout(path: Path) -> dict[str, str]:
    """Streams, blocks, check and filters, read from the index and first block header."""
    size = path.stat().st_size
    streams = blocks = 0
    check = ""
    sizes_in_headers = False
    dict_size = first_block = 0
    with path.open("rb") as f:
        end = size
        while end > 0:
            # Stream padding: zero bytes in multiples of four between streams.
            f.seek(end - 4)
            if f.read(4) == b"\x00\x00\x00\x00":
                end -= 4
                continue
            f.seek(end - 12)
            footer = f.read(12)
            if len(footer) != 12 or footer[10:12] != b"YZ":
                raise ArchiveError(f"{path.name}: no xz stream footer (truncated?)")
            backward = (struct.unpack("<I", footer[4:8])[0] + 1) * 4
            check = XZ_CHECKS.get(footer[9] & 0x0F, str(footer[9] & 0x0F))
            index_start = end - 12 - backward
            if index_start < 12 or backward > INDEX_LIMIT:
                raise ArchiveError(f"{path.name}: xz index out of range (or over "
                                   f"{INDEX_LIMIT >> 20} MiB)")
            f.seek(index_start)
            index = f.read(backward)
            if not index or index[0] != 0:
                raise ArchiveError(f"{path.name}: malformed xz index")
            count, pos = _varint(index, 1)
            unpadded_total = 0
            for i in range(count):
                unpadded, pos = _varint(index, pos)
                uncompressed, pos = _varint(index, pos)
                unpadded_total += (unpadded + 3) & ~3
                if i == 0:
                    first_block = uncompressed
            blocks += count
            streams += 1
            start = index_start - unpadded_total - 12
            if start < 0:
                raise ArchiveError(f"{path.name}: xz blocks out of range")
            if count:
                f.seek(start + 12)
                hdr_len = (f.read(1)[0] + 1) * 4
                f.seek(start + 12)
                hdr = f.read(hdr_len)
                flags = hdr[1]
                sizes_in_headers = bool(flags & 0xC0)
                pos = 2
                for present in (flags & 0x40, flags & 0x80):
                    if present:
                        _, pos = _varint(hdr, pos)
                for _ in range((flags & 0x03) + 1):
                    fid, pos = _varint(hdr, pos)
                    plen, pos = _varint(hdr, pos)
                    if fid == 0x21 and plen == 1:
                        b = hdr[pos]
                        dict_size = (2 | (b & 1)) << (b // 2 + 11)
                    pos += plen
            end = start
    return {
        "streams": str(streams),
        "blocks": str(blocks),
        "check": check,
        "lzma2_dict": f"{dict_size >> 20} MiB" if dict_size >= 1 << 20 else str(dict_size),
        "block_size": str(first_block),  # uncompressed bytes in the first block
        # Single-threaded xz leaves sizes out of block headers; the threaded encoder puts them in.
        "encoder": "multi-threaded" if sizes_in_headers else "single-threaded",
    }


def describe(path: Path, kind: str) -> dict[str, str]:
    if kind == "gzip":
        return gzip_header(path)
    if kind == "xz":
        return xz_layout(path)
    return {}
