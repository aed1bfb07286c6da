"""Tar archives written byte by byte, for inputs no tar program would make: negative
sizes, out-of-range times, sparse maps, global headers, signed checksums. Shared by the
unit tests and the fuzzers."""

from __future__ import annotations

import binascii
import lzma
import struct

BLOCK = 512
TOP = "Python-3.13.99"


def _field(value: bytes | int, width: int) -> bytes:
    if isinstance(value, int):
        return f"{value:0{width - 1}o}\0".encode()
    return value.ljust(width, b"\0")[:width]


def header(name: str | bytes, size: int = 0, typeflag: bytes = b"0", *,
           mode: int = 0o644, mtime: bytes | int = 1_700_000_000, uid: bytes | int = 0,
           size_field: bytes | None = None, linkname: str | bytes = b"",
           magic: bytes = b"ustar\x0000", uname: bytes = b"", extra: bytes = b"",
           signed: bool = False, checksum: bool = True) -> bytes:
    """One 512-byte header. extra: bytes 345..500 (ustar prefix, or the old GNU area)."""
    raw = name.encode("utf-8", "surrogateescape") if isinstance(name, str) else name
    link = linkname.encode() if isinstance(linkname, str) else linkname
    h = bytearray(BLOCK)
    h[0:100] = _field(raw, 100)
    h[100:108] = _field(mode, 8)
    h[108:116] = _field(uid, 8)
    h[116:124] = _field(0, 8)
    h[124:136] = size_field if size_field is not None else _field(size, 12)
    h[136:148] = _field(mtime, 12)
    h[148:156] = b" " * 8
    h[156:157] = typeflag
    h[157:257] = _field(link, 100)
    h[257:265] = magic
    h[265:297] = _field(uname, 32)
    h[345:345 + len(extra)] = extra
    if checksum:
        total = sum(b - 256 if signed and b >= 128 else b for b in h)
        h[148:156] = f"{total & 0o7777777:06o}\0 ".encode()
    return bytes(h)


def pad(data: bytes) -> bytes:
    return data + bytes(-len(data) % BLOCK)


def records(pairs: list[tuple[str, str]] | list[tuple[bytes, bytes]]) -> bytes:
    out = b""
    for k, v in pairs:
        key = k.encode() if isinstance(k, str) else k
        value = v.encode("utf-8", "surrogateescape") if isinstance(v, str) else v
        body = b" " + key + b"=" + value + b"\n"
        n = len(body) + 1
        while len(str(n)) + len(body) != n:
            n += 1
        out += str(n).encode() + body
    return out


def pax(pairs: list[tuple[str, str]], typeflag: bytes = b"x", name: str = "PaxHeader") -> bytes:
    data = records(pairs)
    return header(name, len(data), typeflag) + pad(data)


def member(name: str | bytes, data: bytes = b"", typeflag: bytes = b"0", **kw: object) -> bytes:
    return header(name, len(data), typeflag, **kw) + pad(data)  # type: ignore[arg-type]


def archive(*parts: bytes, end: int = 2) -> bytes:
    return b"".join(parts) + bytes(BLOCK * end)


CLEAN = {f"{TOP}/Lib/os.py": b"import sys\n", f"{TOP}/README.rst": b"This is Python\n"}


def clean(**kw: object) -> bytes:
    return archive(*(member(n, d, **kw) for n, d in sorted(CLEAN.items())))  # type: ignore[arg-type]


def old_gnu_sparse(name: str, chunks: list[tuple[int, int]], realsize: int, data: bytes,
                   *, isextended_after_end: bool = False) -> bytes:
    """An old GNU 'S' member: 4 map entries in the header, 21 in each extension block;
    data: the chunks' bytes, each padded to a block as GNU tar stores them."""
    def entries(part: list[tuple[int, int]]) -> bytes:
        return b"".join(_field(o, 12) + _field(n, 12) for o, n in part)

    head, rest = chunks[:4], chunks[4:]
    area = bytearray(155)  # 345..500
    area[386 - 345:386 - 345 + 24 * len(head)] = entries(head)
    area[482 - 345] = 1 if rest or isextended_after_end else 0
    area[483 - 345:495 - 345] = _field(realsize, 12)
    out = header(name, sum(n for _, n in chunks), b"S", magic=b"ustar  \x00", extra=bytes(area))
    while rest:
        part, rest = rest[:21], rest[21:]
        ext = bytearray(BLOCK)
        ext[:24 * len(part)] = entries(part)
        ext[504] = 1 if rest else 0
        out += bytes(ext)
    return out + data


def sparse_data(content: bytes, chunks: list[tuple[int, int]]) -> bytes:
    """The stored bytes of a sparse member: each chunk from the start of a block."""
    return b"".join(pad(content[o:o + n]) for o, n in chunks)


def pax_sparse_10(name: str, chunks: list[tuple[int, int]], realsize: int, content: bytes,
                  sparse_name: str | None = None, data: bytes | None = None) -> bytes:
    """data: the chunks' stored bytes, when content cannot be held (a bomb's)."""
    lines = [str(len(chunks))] + [str(x) for c in chunks for x in c]
    stored = pad(("\n".join(lines) + "\n").encode()) + (
        sparse_data(content, chunks) if data is None else data)
    meta = pax([("GNU.sparse.major", "1"), ("GNU.sparse.minor", "0"),
                ("GNU.sparse.name", sparse_name or name),
                ("GNU.sparse.realsize", str(realsize))])
    return meta + header(f"GNUSparseFile.0/{name.rsplit('/', 1)[-1]}", len(stored)) + stored


def pax_sparse_0x(name: str, chunks: list[tuple[int, int]], realsize: int, content: bytes,
                  minor: int) -> bytes:
    pairs = [("GNU.sparse.size", str(realsize)), ("GNU.sparse.numblocks", str(len(chunks)))]
    if minor == 1:
        pairs.append(("GNU.sparse.map", ",".join(str(x) for c in chunks for x in c)))
    else:
        for o, n in chunks:
            pairs += [("GNU.sparse.offset", str(o)), ("GNU.sparse.numbytes", str(n))]
    stored = sparse_data(content, chunks)
    return pax(pairs) + header(name, sum(n for _, n in chunks)) + stored


def expand(chunks: list[tuple[int, int]], realsize: int, content: bytes) -> bytes:
    out = bytearray(realsize)
    for o, n in chunks:
        out[o:o + n] = content[o:o + n]
    return bytes(out)


def xz_with_dict(payload: bytes, dict_prop: int) -> bytes:
    """An xz stream whose LZMA2 filter declares another dictionary size (40: 4 GiB)."""
    raw = bytearray(lzma.compress(payload, format=lzma.FORMAT_XZ))
    size = (raw[12] + 1) * 4
    hdr = raw[12:12 + size]
    assert hdr[2] == 0x21 and hdr[3] == 1, "expected one LZMA2 filter"
    hdr[4] = dict_prop
    hdr[-4:] = struct.pack("<I", binascii.crc32(bytes(hdr[:-4])))
    raw[12:12 + size] = hdr
    return bytes(raw)


def zstd_skippable(frame: bytes, payload: bytes = b"not tar") -> bytes:
    return struct.pack("<II", 0x184D2A5E, len(payload)) + payload + frame
