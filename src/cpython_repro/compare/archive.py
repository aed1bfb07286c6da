"""Streaming readers: a compressed artifact -> its tar members, never touching the disk.

Decompression runs in a thread per archive (zlib, liblzma and libzstd release the GIL), so
two archives read in lockstep use both cores. Every decompressed byte passes through the
payload hash and a byte budget, so a decompression bomb stops at the limit. The tar reader
is our own: it keeps each member's raw header, which is where encodings that Python's
tarfile parses away (devmajor "0000000" against empty) show up.
"""

from __future__ import annotations

import dataclasses
import hashlib
import lzma
import queue
import threading
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyzstd

from cpython_repro.errors import ArchiveError

CHUNK = 1 << 20
BLOCK = 512
DEFAULT_PAYLOAD_LIMIT = 4 << 30  # a CPython payload is ~110 MB; 4 GiB is a bomb
META_LIMIT = 1 << 20  # pax and GNU long-name records: real ones are a few hundred bytes
MAX_MEMBERS = 1_000_000

GZIP_MAGIC = b"\x1f\x8b"
XZ_MAGIC = b"\xfd7zXZ\x00"
MAGIC = {
    GZIP_MAGIC: "gzip",
    XZ_MAGIC: "xz",
    b"\x28\xb5\x2f\xfd": "zstd",
}

TYPES = {
    b"0": "file", b"\x00": "file", b"7": "file", b"1": "hardlink", b"2": "symlink",
    b"3": "char-device", b"4": "block-device", b"5": "dir", b"6": "fifo",
}
DATA_TYPES = {b"0", b"\x00", b"7"}  # members whose size counts bytes that follow

# (name, start, end) of the ustar header fields, for naming which raw bytes differ.
HEADER_FIELDS = (
    ("name", 0, 100), ("mode", 100, 108), ("uid", 108, 116), ("gid", 116, 124),
    ("size", 124, 136), ("mtime", 136, 148), ("chksum", 148, 156), ("typeflag", 156, 157),
    ("linkname", 157, 257), ("magic", 257, 263), ("version", 263, 265),
    ("uname", 265, 297), ("gname", 297, 329), ("devmajor", 329, 337),
    ("devminor", 337, 345), ("prefix", 345, 500), ("padding", 500, 512),
)


@dataclass(frozen=True)
class Member:
    index: int  # position in the archive, counting members, not meta headers
    path: str
    type: str
    size: int
    sha256: str  # of the content; "" for non-files, and for files found byte for byte
    # equal to their counterpart in the other archive (no digest is needed to prove that)
    mode: int
    linkname: str
    mtime: float
    uid: int
    gid: int
    uname: str
    gname: str
    devmajor: int
    devminor: int
    format: str  # "ustar", "gnu", "pax" (ustar with a pax header) or "v7"
    pax: dict[str, str] = field(default_factory=dict)
    pax_name: str = ""  # the name field of the pax header block, e.g. "d/PaxHeaders/f"
    header: bytes = field(default=b"", repr=False)  # the member's own 512-byte header


@dataclass
class Listing:
    compression: str
    members: list[Member]
    payload_sha256: str
    payload_size: int
    tar_format: str
    trailing: int = 0  # non-zero bytes after the end-of-archive marker


def detect(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(6)
    for magic, name in MAGIC.items():
        if head.startswith(magic):
            return name
    return "tar"


class _Inflate:
    """Yields the decompressed payload in pieces of at most CHUNK bytes."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._new()

    def _new(self) -> None:
        if self.kind == "gzip":
            self._z = zlib.decompressobj(31)
        elif self.kind == "xz":
            self._x = lzma.LZMADecompressor(lzma.FORMAT_XZ)
        elif self.kind == "zstd":
            self._d = pyzstd.EndlessZstdDecompressor()

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.kind == "tar":
            yield data
        elif self.kind == "gzip":
            yield from self._gzip(data)
        elif self.kind == "xz":
            yield from self._xz(data)
        else:
            out = self._d.decompress(data, CHUNK)
            yield out
            while not self._d.needs_input:
                yield self._d.decompress(b"", CHUNK)

    def _gzip(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._z.eof:
                if not data.strip(b"\x00"):
                    return  # zero padding after the last member
                if not GZIP_MAGIC.startswith(data[:2]):
                    raise ArchiveError("data after the end of the gzip stream")
                self._new()  # another gzip member follows
            yield self._z.decompress(data, CHUNK)
            while self._z.unconsumed_tail and not self._z.eof:
                yield self._z.decompress(self._z.unconsumed_tail, CHUNK)
            data = self._z.unused_data if self._z.eof else b""

    def _xz(self, data: bytes) -> Iterator[bytes]:
        while data:
            if self._x.eof:
                data = data.lstrip(b"\x00")  # stream padding
                if not data:
                    return
                if not XZ_MAGIC.startswith(data[:6]):
                    raise ArchiveError("data after the end of the xz stream")
                self._new()  # another stream follows
            yield self._x.decompress(data, CHUNK)
            while not self._x.needs_input and not self._x.eof:
                yield self._x.decompress(b"", CHUNK)
            data = self._x.unused_data if self._x.eof else b""

    def finish(self) -> None:
        if self.kind == "gzip":
            complete = self._z.eof
        elif self.kind == "xz":
            complete = self._x.eof
        elif self.kind == "zstd":
            complete = bool(self._d.at_frame_edge)
        else:
            complete = True
        if not complete:
            raise ArchiveError(f"truncated {self.kind} stream")


class Payload:
    """The decompressed tar stream of one file, produced by a background thread."""

    def __init__(self, path: Path, limit: int = DEFAULT_PAYLOAD_LIMIT,
                 hash_file: bool = False) -> None:
        self.path = path
        self.kind = detect(path)
        self.hash = hashlib.sha256()  # of the decompressed payload
        self.file_hash = hashlib.sha256()  # of the file as stored, when hash_file
        self._hash_file = hash_file
        self.size = 0
        self._limit = limit
        self._q: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=8)
        self._stop = threading.Event()
        self._buf = b""
        self._pos = 0
        self._done = False
        self._thread = threading.Thread(target=self._produce, daemon=True,
                                        name=f"inflate {path.name}")
        self._thread.start()

    def _put(self, item: bytes | BaseException | None) -> None:
        while not self._stop.is_set():
            try:
                self._q.put(item, timeout=0.2)
                return
            except queue.Full:
                continue

    def _produce(self) -> None:
        try:
            inflate = _Inflate(self.kind)
            with self.path.open("rb") as f:
                while not self._stop.is_set() and (raw := f.read(CHUNK)):
                    if self._hash_file:
                        self.file_hash.update(raw)
                    for piece in inflate.feed(raw):
                        if not piece:
                            continue
                        self.size += len(piece)
                        if self.size > self._limit:
                            raise ArchiveError(
                                f"decompressed payload exceeds {self._limit} bytes: refusing "
                                "(a decompression bomb, or raise the limit)")
                        self.hash.update(piece)
                        self._put(piece)
                inflate.finish()
            self._put(None)
        except (ArchiveError, OSError, zlib.error, lzma.LZMAError, pyzstd.ZstdError,
                EOFError) as exc:
            self._put(exc)

    def read(self, n: int) -> bytes:
        """Exactly n bytes, fewer only at the end of the payload."""
        if self._pos + n <= len(self._buf):
            out = self._buf[self._pos:self._pos + n]
            self._pos += n
            return out
        parts = [self._buf[self._pos:]]
        have = len(parts[0])
        self._buf, self._pos = b"", 0
        while have < n and not self._done:
            item = self._q.get()
            if item is None:
                self._done = True
                break
            if isinstance(item, BaseException):
                self._done = True
                raise _wrap(self.path, self.kind, item)
            take = min(len(item), n - have)
            parts.append(item[:take] if take < len(item) else item)
            have += take
            if take < len(item):
                self._buf, self._pos = item, take
        return b"".join(parts)

    def drain(self) -> int:
        """Read to the end; returns how many of the remaining bytes were not zero."""
        nonzero = 0
        while data := self.read(CHUNK):
            nonzero += len(data) - data.count(0)
        return nonzero

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _wrap(path: Path, kind: str, exc: BaseException) -> ArchiveError:
    detail = exc.one_line() if isinstance(exc, ArchiveError) else str(exc) or type(exc).__name__
    return ArchiveError(f"{path.name}: unreadable {kind} archive: {detail}")


def _nts(b: bytes) -> str:
    return b.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


def _num(b: bytes, what: str, offset: int) -> int:
    if b and b[0] & 0x80:  # GNU base-256 for values that do not fit in octal
        value = int.from_bytes(b[1:], "big")
        return -value if b[0] & 0x40 else value
    text = b.replace(b"\x00", b" ").strip()
    try:
        return int(text, 8) if text else 0
    except ValueError:
        raise ArchiveError(f"malformed {what} field {b!r} in the tar header at byte "
                           f"{offset}") from None


def _pax(data: bytes, offset: int) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data) and data[pos] != 0:
        sp = data.find(b" ", pos, pos + 20)
        try:
            length = int(data[pos:sp]) if sp > pos else 0
        except ValueError:
            length = 0
        rec = data[sp + 1:pos + length]
        if length <= sp - pos or pos + length > len(data) or not rec.endswith(b"\n") \
                or b"=" not in rec:
            raise ArchiveError(f"malformed pax record at byte {offset + pos}")
        key, _, value = rec[:-1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


@dataclass
class Entry:
    """A member whose header has been read; its data is next in the stream."""

    member: Member  # sha256 empty until the data has been read
    data_size: int


class TarReader:
    """Reads members one after the other from a Payload; the caller reads each one's data."""

    def __init__(self, payload: Payload) -> None:
        self.p = payload
        self.offset = 0
        self.count = 0
        self.formats: set[str] = set()
        self.trailing = 0
        self._global: dict[str, str] = {}
        self._left = 0  # data bytes of the current entry not yet read
        self._pad = 0

    def _read(self, n: int) -> bytes:
        data = self.p.read(n)
        self.offset += len(data)
        return data

    def _block(self) -> bytes | None:
        block = self._read(BLOCK)
        if not block:
            return None
        if len(block) < BLOCK:
            raise ArchiveError(f"{self.p.path.name}: truncated tar header at byte "
                               f"{self.offset - len(block)}")
        return block

    def _meta(self, size: int, what: str) -> bytes:
        if size > META_LIMIT:
            raise ArchiveError(f"{self.p.path.name}: {what} of {size} bytes at byte "
                               f"{self.offset}: refusing")
        data = self._read(size)
        self._read(-size % BLOCK)
        if len(data) < size:
            raise ArchiveError(f"{self.p.path.name}: truncated {what} at byte {self.offset}")
        return data

    def data(self, n: int = CHUNK) -> bytes:
        """The next piece of the current member's data; b"" at its end."""
        take = min(n, self._left)
        if not take:
            if self._pad:
                self._read(self._pad)
                self._pad = 0
            return b""
        out = self._read(take)
        if len(out) < take:
            raise ArchiveError(f"{self.p.path.name}: archive ends inside a member, at byte "
                               f"{self.offset}")
        self._left -= take
        return out

    def next(self) -> Entry | None:
        while self.data():
            pass
        pax: dict[str, str] = {}
        pax_name = ""
        longname = longlink = None
        while True:
            start = self.offset
            block = self._block()
            if block is None:
                raise ArchiveError(f"{self.p.path.name}: tar archive ends without its "
                                   "end-of-archive marker (truncated?)")
            if block == bytes(BLOCK):
                self.trailing = self.p.drain()
                return None
            stored = _num(block[148:156], "checksum", start)
            if stored != sum(block[:148]) + 256 + sum(block[156:]):
                raise ArchiveError(f"{self.p.path.name}: bad tar header checksum at byte "
                                   f"{start} (not a tar archive, or corrupted)")
            flag = block[156:157]
            size = _num(block[124:136], "size", start)
            if size < 0:
                raise ArchiveError(f"{self.p.path.name}: negative size at byte {start}")
            if flag in (b"x", b"g"):
                records = _pax(self._meta(size, "pax header"), start)
                if flag == b"g":
                    self._global.update(records)
                else:
                    pax.update(records)
                    pax_name = _nts(block[:100])
                continue
            if flag == b"L":
                longname = _nts(self._meta(size, "GNU long name"))
                continue
            if flag == b"K":
                longlink = _nts(self._meta(size, "GNU long link"))
                continue
            break
        self.count += 1
        if self.count > MAX_MEMBERS:
            raise ArchiveError(f"{self.p.path.name}: more than {MAX_MEMBERS} members: refusing")
        magic = block[257:265]
        fmt = ("gnu" if magic == b"ustar  \x00" else
               "ustar" if magic[:6] == b"ustar\x00" else "v7")
        if pax and fmt == "ustar":
            fmt = "pax"
        self.formats.add(fmt)
        merged = {**self._global, **pax}
        name = _nts(block[:100])
        if fmt in ("ustar", "pax") and block[345] != 0:
            name = _nts(block[345:500]) + "/" + name
        name = merged.get("path", longname or name)
        try:
            if flag in DATA_TYPES:
                size = int(merged.get("size", size))
            mtime = float(merged.get("mtime", _num(block[136:148], "mtime", start)))
            uid = int(merged.get("uid", _num(block[108:116], "uid", start)))
            gid = int(merged.get("gid", _num(block[116:124], "gid", start)))
        except ValueError:
            raise ArchiveError(f"{self.p.path.name}: malformed pax value at byte {start}") \
                from None
        data_size = size if flag in DATA_TYPES or flag not in TYPES else 0
        member = Member(
            index=self.count - 1, path=name,
            type=TYPES.get(flag, f"type-{flag.decode('latin-1')!r}"),
            size=data_size if flag in DATA_TYPES else size, sha256="",
            mode=_num(block[100:108], "mode", start) & 0o7777,
            linkname=merged.get("linkpath", longlink or _nts(block[157:257])),
            mtime=mtime, uid=uid, gid=gid,
            uname=merged.get("uname", _nts(block[265:297])),
            gname=merged.get("gname", _nts(block[297:329])),
            devmajor=_num(block[329:337], "devmajor", start) if fmt != "v7" else 0,
            devminor=_num(block[337:345], "devminor", start) if fmt != "v7" else 0,
            format=fmt,
            pax={k: v for k, v in merged.items() if k not in ("path", "linkpath")},
            pax_name=pax_name, header=block,
        )
        self._left, self._pad = data_size, -data_size % BLOCK
        return Entry(member, data_size)


def with_digest(m: Member, digest: str) -> Member:
    return dataclasses.replace(m, sha256=digest) if digest != m.sha256 else m


def read_listing(path: Path, limit: int = DEFAULT_PAYLOAD_LIMIT) -> Listing:
    """All members with their content digests, in archive order; one streaming pass."""
    payload = Payload(path, limit)
    reader = TarReader(payload)
    members: list[Member] = []
    try:
        while (entry := reader.next()) is not None:
            h = hashlib.sha256()
            while piece := reader.data():
                h.update(piece)
            members.append(with_digest(entry.member, h.hexdigest()
                                       if entry.member.type == "file" else ""))
    finally:
        payload.close()
    return Listing(payload.kind, members, payload.hash.hexdigest(), payload.size,
                   "+".join(sorted(reader.formats)) or "empty", reader.trailing)
