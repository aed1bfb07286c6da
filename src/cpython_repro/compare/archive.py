"""Streaming readers: a compressed artifact -> its tar members, never touching the disk.

Decompression runs in a thread per archive (zlib, liblzma and libzstd release the GIL), so
two archives read in lockstep use both cores. Every decompressed byte passes through the
payload hash and a byte budget, so a decompression bomb stops at the limit; decoder memory
and the metadata kept per archive are bounded too. The tar reader is our own: it keeps
each member's raw header, which is where encodings that Python's tarfile parses away
(devmajor "0000000" against empty) show up.

Where tar implementations read the same bytes differently (GNU tar against tarfile), the
reader follows GNU tar, or refuses with an ArchiveError when even that is ambiguous: a
comparison must never pass two archives that GNU tar would extract differently.
"""

from __future__ import annotations

import dataclasses
import hashlib
import lzma
import queue
import re
import threading
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pyzstd

from cpython_repro.errors import ArchiveError

CHUNK = 1 << 20
BLOCK = 512
ZERO_BLOCK = bytes(BLOCK)
DEFAULT_PAYLOAD_LIMIT = 4 << 30  # a CPython payload is ~110 MB; 4 GiB is a bomb
META_LIMIT = 1 << 20  # one pax header or GNU long name: real ones are a few hundred bytes
# All metadata kept for one archive (pax records, long names, sparse maps), counted with
# a per-record overhead so that a megabyte of tiny records costs what it takes in memory.
META_BUDGET = 16 << 20
RECORD_COST = 160  # bytes a dict entry with two small strings takes
MAX_MEMBERS = 50_000  # a CPython release has ~5,000; a member costs ~700 bytes kept
MAX_SPARSE = 1 << 16  # map entries of one sparse member
XZ_MEMLIMIT = 80 << 20  # xz -9 needs 65 MiB; a larger dictionary is a memory bomb
ZSTD_WINDOW_LOG_MAX = 26  # 64 MiB; zstd --ultra -22 and --long use 128 MiB

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
# Pax records that name the member rather than describe it: compared as its path.
NAMING = ("path", "linkpath", "GNU.sparse.name")
TIME_MAX = 1 << 63  # GNU tar's time_t range; beyond it a pax time is malformed


@dataclass(frozen=True, slots=True)
class Member:
    index: int  # position in the archive, counting members, not meta headers
    path: str
    type: str
    size: int  # for a sparse member, its size once extracted
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
    pax: dict[str, str] = field(default_factory=dict)  # its own pax records, not global ones
    pax_name: str = ""  # the name field of the pax header block, e.g. "d/PaxHeaders/f"
    # The member's own 512-byte header without its trailing NULs (most of it: the prefix,
    # device and padding fields), kept for every member; cheaper than deflating it.
    packed_header: bytes = field(default=b"", repr=False)
    pax_global: str = ""  # the global pax records in force, as text; one string shared
    sparse: str = ""  # how a sparse member is stored: format, chunks, digest of the map
    records: str = ""  # digest of every non-data byte since the previous member's data

    @property
    def header(self) -> bytes:
        return self.packed_header.ljust(BLOCK, b"\x00") if self.packed_header else b""


@dataclass
class Listing:
    compression: str
    members: list[Member]
    payload_sha256: str
    payload_size: int
    tar_format: str
    trailing: int = 0  # non-zero bytes after the end-of-archive marker
    end_size: int = 0  # bytes after the last member's data: padding, marker, zeros
    end_digest: str = ""


def detect(path: Path) -> str:
    with path.open("rb") as f:
        head = f.read(6)
    for magic, name in MAGIC.items():
        if head.startswith(magic):
            return name
    if len(head) >= 4 and head[0] & 0xF0 == 0x50 and head[1:4] == b"\x2a\x4d\x18":
        return "zstd"  # a skippable frame (0x184D2A5?) before the first zstd frame
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
            self._x = lzma.LZMADecompressor(lzma.FORMAT_XZ, memlimit=XZ_MEMLIMIT)
        elif self.kind == "zstd":
            self._d = pyzstd.EndlessZstdDecompressor(
                option={pyzstd.DParameter.windowLogMax: ZSTD_WINDOW_LOG_MAX})

    def feed(self, data: bytes) -> Iterator[bytes]:
        if self.kind == "tar":
            yield data
        elif self.kind == "gzip":
            yield from self._gzip(data)
        elif self.kind == "xz":
            try:
                yield from self._xz(data)
            except lzma.LZMAError as exc:
                if "limit" in str(exc):
                    raise ArchiveError(
                        f"the xz stream needs more than {XZ_MEMLIMIT >> 20} MiB of memory to "
                        "decompress (a dictionary larger than any xz preset): refusing") \
                        from None
                raise
        else:
            try:
                out = self._d.decompress(data, CHUNK)
                yield out
                while not self._d.needs_input:
                    yield self._d.decompress(b"", CHUNK)
            except pyzstd.ZstdError as exc:
                if "memory" in str(exc):
                    raise ArchiveError(
                        f"the zstd frame needs a window over {1 << ZSTD_WINDOW_LOG_MAX >> 20} "
                        "MiB to decompress: refusing") from None
                raise

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
        self.limit = limit
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
                        if self._stop.is_set():
                            return  # a reader that has seen enough (e.g. the first member)
                        if not piece:
                            continue
                        self.size += len(piece)
                        if self.size > self.limit:
                            raise ArchiveError(
                                f"decompressed payload exceeds {self.limit} bytes: refusing "
                                "(a decompression bomb, or raise the limit)")
                        self.hash.update(piece)
                        self._put(piece)
                inflate.finish()
            self._put(None)
        except (ArchiveError, OSError, zlib.error, lzma.LZMAError, pyzstd.ZstdError,
                EOFError, MemoryError) as exc:
            self._put(exc)

    def read(self, n: int) -> bytes:
        """Exactly n bytes, fewer only at the end of the payload."""
        if n < 0:
            raise ValueError(f"read({n})")  # the tar reader checks every size it uses
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

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _wrap(path: Path, kind: str, exc: BaseException) -> ArchiveError:
    detail = exc.one_line() if isinstance(exc, ArchiveError) else str(exc) or type(exc).__name__
    return ArchiveError(f"{path.name}: unreadable {kind} archive: {detail}")


def _nts(b: bytes) -> str:
    return b.split(b"\x00", 1)[0].decode("utf-8", "surrogateescape")


_OCTAL = re.compile(rb" *([0-7]*)(?:[ \x00]|\Z)")


def _num(b: bytes, what: str, offset: int) -> int:
    """A numeric header field as GNU tar reads it: octal digits up to a space or NUL (what
    follows is ignored), or base-256 two's complement when the first byte has 0x80 set."""
    if b and b[0] & 0x80:
        value = (b[0] & 0x3F) - (0x40 if b[0] & 0x40 else 0)
        for c in b[1:]:
            value = value * 256 + c
        return value
    m = _OCTAL.match(b)
    if m is None:
        raise ArchiveError(f"malformed {what} field {b!r} in the tar header at byte {offset}")
    return int(m[1], 8) if m[1] else 0


_DECIMAL = re.compile(r"[0-9]{1,19}")
_TIME = re.compile(r"(-?[0-9]{1,19})(?:\.([0-9]+))?")


def _pax_int(value: str, key: str, offset: int, maximum: int = (1 << 63) - 1) -> int:
    """A pax number as GNU tar accepts it: decimal digits only, within range. A sign,
    spaces, underscores or an exponent make it malformed (GNU tar ignores the record,
    Python's int() takes them): never a size that moves the reader backwards."""
    if not _DECIMAL.fullmatch(value) or int(value) > maximum:
        raise ArchiveError(f"malformed pax {key} value {value[:40]!r} in the header at byte "
                           f"{offset}")
    return int(value)


def _pax_time(value: str, offset: int) -> float:
    m = _TIME.fullmatch(value)
    if m is None or abs(int(m[1])) >= TIME_MAX:
        raise ArchiveError(f"malformed pax mtime value {value[:40]!r} in the header at byte "
                           f"{offset} (GNU tar rejects it)")
    return float(value)


_RECORD = re.compile(rb"([0-9]{1,19}) ")


def _pax(data: bytes, offset: int) -> list[tuple[str, str]]:
    """The records in order; a key may repeat (GNU sparse 0.0 repeats its map keys)."""
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(data) and data[pos] != 0:
        m = _RECORD.match(data, pos)
        end = pos + int(m[1]) if m else 0
        if m is None or end <= m.end() or end > len(data) or data[end - 1] != 0x0A:
            raise ArchiveError(f"malformed pax record at byte {offset + pos}")
        key, eq, value = data[m.end():end - 1].partition(b"=")
        if not eq or not key:
            raise ArchiveError(f"malformed pax record at byte {offset + pos}")
        out.append((key.decode("utf-8", "surrogateescape"),
                    value.decode("utf-8", "surrogateescape")))
        pos = end
    return out


_HIGH = bytes(range(0x80, 0x100))


def _checksum_ok(block: bytes, stored: int) -> bool:
    """The unsigned sum, or the signed one that old tars wrote (GNU tar and tarfile take
    both)."""
    rest = block[:148] + b"        " + block[156:]
    unsigned = sum(rest)
    high = len(rest) - len(rest.translate(None, _HIGH))
    return stored in (unsigned, unsigned - 256 * high)


@dataclass
class Entry:
    """A member whose header has been read; its data is next in the stream."""

    member: Member  # sha256 empty until the data has been read
    data_size: int  # bytes data() yields: for a sparse member, its extracted size


class TarReader:
    """Reads members one after the other from a Payload; the caller reads each one's data."""

    def __init__(self, payload: Payload) -> None:
        self.p = payload
        self.offset = 0
        self.count = 0
        self.formats: set[str] = set()
        self.trailing = 0
        self.end_size = 0
        self.end_digest = ""
        self._global: dict[str, str] = {}
        self._global_text = ""
        self._spent = 0  # metadata budget used
        self._holes = 0  # zero bytes that sparse members add when extracted
        # Of the current member: [hole, data, padding] runs, in stream order.
        self._runs: deque[list[int]] = deque()
        self._aux = hashlib.sha256()  # every non-data byte since the last member's header
        self._aux_size = 0

    def _name(self) -> str:
        return self.p.path.name

    def _read(self, n: int, aux: bool = False) -> bytes:
        data = self.p.read(n)
        self.offset += len(data)
        if aux:
            self._aux.update(data)
            self._aux_size += len(data)
        return data

    def _block(self) -> bytes | None:
        block = self._read(BLOCK, aux=True)
        if not block:
            return None
        if len(block) < BLOCK:
            raise ArchiveError(f"{self._name()}: truncated tar header at byte "
                               f"{self.offset - len(block)}")
        return block

    def _charge(self, cost: int) -> None:
        self._spent += cost
        if self._spent > META_BUDGET:
            raise ArchiveError(f"{self._name()}: more than {META_BUDGET >> 20} MiB of tar "
                               "metadata (pax records, long names, sparse maps): refusing")

    def _meta(self, size: int, what: str) -> bytes:
        if size > META_LIMIT:
            raise ArchiveError(f"{self._name()}: {what} of {size} bytes at byte "
                               f"{self.offset}: refusing")
        self._charge(size)
        data = self._read(size, aux=True)
        self._read(-size % BLOCK, aux=True)
        if len(data) < size:
            raise ArchiveError(f"{self._name()}: truncated {what} at byte {self.offset}")
        return data

    def data(self, n: int = CHUNK) -> bytes:
        """The next piece of the current member's data, as extracted; b"" at its end."""
        runs = self._runs
        while runs:
            run = runs[0]
            if run[0]:  # a hole of a sparse member: zeros that are not in the stream
                take = min(n, run[0])
                run[0] -= take
                return bytes(take)
            if run[1]:
                take = min(n, run[1])
                out = self._read(take)
                if len(out) < take:
                    raise ArchiveError(f"{self._name()}: archive ends inside a member, at "
                                       f"byte {self.offset}")
                run[1] -= take
                return out
            if run[2] and len(self._read(run[2], aux=True)) < run[2]:
                raise ArchiveError(f"{self._name()}: archive ends inside a member's padding")
            runs.popleft()
        return b""

    def next(self) -> Entry | None:
        while self.data():
            pass
        own: dict[str, str] | None = None
        own_records: list[tuple[str, str]] = []
        pax_name = ""
        longname = longlink = None
        while True:
            start = self.offset
            block = self._block()
            if block is None:
                raise ArchiveError(f"{self._name()}: tar archive ends without its "
                                   "end-of-archive marker (truncated?)")
            if block == ZERO_BLOCK:
                self._end()
                return None
            if not _checksum_ok(block, _num(block[148:156], "checksum", start)):
                raise ArchiveError(f"{self._name()}: bad tar header checksum at byte "
                                   f"{start} (not a tar archive, or corrupted)")
            flag = block[156:157]
            size = _num(block[124:136], "size", start)
            if size < 0:
                raise ArchiveError(f"{self._name()}: negative size at byte {start}")
            if flag in (b"x", b"g"):
                data = self._meta(size, "pax header")
                records = _pax(data, start)
                self._charge(RECORD_COST * len(records))
                if flag == b"g":
                    self._set_global(records, start)
                    continue
                # tarfile applies the first of two extended headers last, GNU tar only
                # the second: which records hold is not knowable.
                self._once(own is None, "two pax extended headers", start)
                own, own_records, pax_name = dict(records), records, _nts(block[:100])
                continue
            if flag in (b"L", b"K"):
                text = _nts(self._meta(size, "GNU long name"))
                if flag == b"L":
                    self._once(longname is None, "two GNU long names", start)
                    longname = text
                else:
                    self._once(longlink is None, "two GNU long link names", start)
                    longlink = text
                continue
            break
        self.count += 1
        if self.count > MAX_MEMBERS:
            raise ArchiveError(f"{self._name()}: more than {MAX_MEMBERS} members: refusing")
        return self._entry(block, start, size, own or {}, own_records, pax_name,
                           longname, longlink)

    def _once(self, ok: bool, what: str, start: int) -> None:
        if not ok:
            raise ArchiveError(f"{self._name()}: {what} before one member at byte {start} "
                               "(tar implementations disagree on which one applies)")

    def _set_global(self, records: list[tuple[str, str]], start: int) -> None:
        if any(k.startswith("GNU.sparse.") for k, _ in records):
            raise ArchiveError(f"{self._name()}: GNU.sparse records in a global pax header at "
                               f"byte {start}")
        # A new dict, never an update: members read so far keep the one they saw, and no
        # member holds a copy of its own.
        self._global = {**self._global, **dict(records)}
        text = ",".join(f"{k}={v}" for k, v in sorted(self._global.items()))
        self._charge(len(text))
        if len(text) > 200:  # compared per member: a digest stands for the rest
            digest = hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()
            text = f"{text[:160]}…({len(text)} chars, sha256 {digest[:16]})"
        self._global_text = text

    def _entry(self, block: bytes, start: int, size: int, own: dict[str, str],
               own_records: list[tuple[str, str]], pax_name: str, longname: str | None,
               longlink: str | None) -> Entry:
        magic = block[257:265]
        fmt = ("gnu" if magic == b"ustar  \x00" else
               "ustar" if magic[:6] == b"ustar\x00" else "v7")
        if own and fmt == "ustar":
            fmt = "pax"
        self.formats.add(fmt)

        def rec(key: str) -> str | None:
            return own[key] if key in own else self._global.get(key)

        name = _nts(block[:100])
        if fmt in ("ustar", "pax") and block[345] != 0:
            name = _nts(block[345:500]) + "/" + name
        path, sparse_name = rec("path"), rec("GNU.sparse.name")
        for a, b, what in ((path, sparse_name, "pax path and GNU.sparse.name"),
                           (path or sparse_name, longname, "pax path and GNU long name"),
                           (rec("linkpath"), longlink, "pax linkpath and GNU long link")):
            if a is not None and b is not None and a != b:
                raise ArchiveError(f"{self._name()}: the {what} of the member at byte {start} "
                                   "differ (tar implementations disagree on which applies)")
        name = sparse_name or path or longname or name
        flag = block[156:157]
        if flag in DATA_TYPES and name.endswith("/") and not own.get("GNU.sparse.major"):
            # GNU tar extracts a regular file whose name ends in "/" as a directory (and
            # reads no data for it); tarfile does so only for type NUL.
            flag = b"5"
        text = rec("size")
        stored = size if text is None else _pax_int(text, "size", start)
        text = rec("mtime")
        mtime = _pax_time(text, start) if text is not None else \
            float(_num(block[136:148], "mtime", start))
        text = rec("uid")
        uid = _num(block[108:116], "uid", start) if text is None else \
            _pax_int(text, "uid", start, (1 << 32) - 1)
        text = rec("gid")
        gid = _num(block[116:124], "gid", start) if text is None else \
            _pax_int(text, "gid", start, (1 << 32) - 1)
        sparse_keys = [k for k in own if k.startswith("GNU.sparse.") and k != "GNU.sparse.name"]
        sparse = ""
        if flag == b"S" or sparse_keys:
            before = self.offset
            kind, chunks, real = self._sparse_map(block, flag, fmt, own, own_records, start)
            if flag != b"S":
                stored -= self.offset - before  # a 1.0 map is in the data, ahead of it
            runs, stored_blocks = _layout(chunks, real, f"{self._name()}: sparse member {name}")
            if stored < 0 or -(-stored // BLOCK) != stored_blocks:
                raise ArchiveError(f"{self._name()}: sparse member {name}: its map needs "
                                   f"{stored_blocks} blocks of data, the header says {stored} "
                                   "bytes")
            self._holes += real - sum(n for _, n in chunks)
            if self._holes + self.p.size > self.p.limit:
                raise ArchiveError(f"{self._name()}: sparse members expand beyond "
                                   f"{self.p.limit} bytes: refusing (a bomb, or raise the "
                                   "limit)")
            digest = hashlib.sha256(repr(chunks).encode()).hexdigest()[:12]
            sparse = f"{kind}, {len(chunks)} chunk(s), map {digest}"
            kind_name, data_size = "file", real
        elif flag in DATA_TYPES or flag not in TYPES:
            kind_name, data_size = TYPES.get(flag, f"type-{flag.decode('latin-1')!r}"), stored
            runs = [[0, stored, -stored % BLOCK]]
        else:
            kind_name, data_size, runs = TYPES[flag], 0, []
            if stored:
                # GNU tar skips such data when listing and reads it as the next header when
                # extracting; tarfile never skips it.
                raise ArchiveError(f"{self._name()}: the {kind_name} at byte {start} declares "
                                   f"{stored} bytes of data (tar implementations disagree on "
                                   "where the next header is)")
        uname, gname = rec("uname"), rec("gname")
        member = Member(
            index=self.count - 1, path=name, type=kind_name, size=data_size, sha256="",
            mode=_num(block[100:108], "mode", start) & 0o7777,
            linkname=rec("linkpath") or longlink or _nts(block[157:257]),
            mtime=mtime, uid=uid, gid=gid,
            uname=_nts(block[265:297]) if uname is None else uname,
            gname=_nts(block[297:329]) if gname is None else gname,
            devmajor=_num(block[329:337], "devmajor", start) if fmt != "v7" else 0,
            devminor=_num(block[337:345], "devminor", start) if fmt != "v7" else 0,
            format=fmt, pax={k: v for k, v in own.items() if k not in NAMING},
            pax_name=pax_name, packed_header=block.rstrip(b"\x00"),
            pax_global=self._global_text, sparse=sparse,
            records=self._aux.hexdigest()[:16],
        )
        self._aux, self._aux_size = hashlib.sha256(), 0
        self._runs = deque(runs)
        return Entry(member, data_size)

    def _sparse_map(self, block: bytes, flag: bytes, fmt: str, own: dict[str, str],
                    records: list[tuple[str, str]],
                    start: int) -> tuple[str, list[tuple[int, int]], int]:
        """(kind, chunks, extracted size) of a sparse member, read as GNU tar reads it: an
        old GNU 'S' header only in GNU format, GNU.sparse pax records only in pax format."""
        where = f"{self._name()}: sparse member at byte {start}"
        if flag == b"S":
            if fmt != "gnu" or any(k.startswith("GNU.sparse.") for k in own):
                raise ArchiveError(f"{where}: type S in a {fmt} header, or with GNU.sparse "
                                   "records (tar implementations disagree)")
            return "GNU sparse", self._old_gnu_map(block, where), \
                _num(block[483:495], "sparse realsize", start)
        if fmt != "pax" or flag not in DATA_TYPES:
            raise ArchiveError(f"{where}: GNU.sparse records on a {fmt} header of type "
                               f"{flag!r} (GNU tar ignores them, tarfile does not)")
        keys = {k for k, _ in records}

        def num(key: str) -> int:
            if key not in own:
                raise ArchiveError(f"{where}: no {key} record")
            return _pax_int(own[key], key, start)

        if keys & {"GNU.sparse.major", "GNU.sparse.minor"}:
            if (own.get("GNU.sparse.major"), own.get("GNU.sparse.minor")) != ("1", "0") or \
                    keys & {"GNU.sparse.map", "GNU.sparse.offset", "GNU.sparse.numbytes",
                            "GNU.sparse.numblocks", "GNU.sparse.size"}:
                raise ArchiveError(f"{where}: GNU.sparse records of no single format version")
            real = num("GNU.sparse.realsize")
            return "pax sparse 1.0", self._map_in_data(real, where), real
        if "GNU.sparse.realsize" in keys:
            raise ArchiveError(f"{where}: GNU.sparse records of no single format version")
        real, count = num("GNU.sparse.size"), num("GNU.sparse.numblocks")
        if "GNU.sparse.map" in keys:
            if keys & {"GNU.sparse.offset", "GNU.sparse.numbytes"}:
                raise ArchiveError(f"{where}: GNU.sparse records of no single format version")
            values = own["GNU.sparse.map"].split(",")
            kind = "pax sparse 0.1"
        else:
            pairs = [(k, v) for k, v in records
                     if k in ("GNU.sparse.offset", "GNU.sparse.numbytes")]
            if [k for k, _ in pairs] != ["GNU.sparse.offset", "GNU.sparse.numbytes"] * count:
                raise ArchiveError(f"{where}: GNU.sparse.offset and .numbytes records do not "
                                   f"alternate {count} times")
            values = [v for _, v in pairs]
            kind = "pax sparse 0.0"
        if len(values) != 2 * count or count > MAX_SPARSE:
            raise ArchiveError(f"{where}: {len(values) // 2} map entries, "
                               f"GNU.sparse.numblocks says {count}")
        nums = [_pax_int(v, "GNU.sparse map", start) for v in values]
        return kind, list(zip(nums[::2], nums[1::2], strict=True)), real

    def _old_gnu_map(self, block: bytes, where: str) -> list[tuple[int, int]]:
        chunks: list[tuple[int, int]] = []
        done = _old_gnu_entries(block[386:482], chunks, where)
        extended = block[482]
        while extended:
            if done:
                # GNU tar stops at the first empty entry and would not read this block.
                raise ArchiveError(f"{where}: an extension block after the end of its map")
            ext = self._block()
            if ext is None or len(chunks) > MAX_SPARSE:
                raise ArchiveError(f"{where}: truncated, or more than {MAX_SPARSE} map entries")
            self._charge(BLOCK)
            done = _old_gnu_entries(ext[:504], chunks, where)
            extended = ext[504]
        return chunks

    def _map_in_data(self, real: int, where: str) -> list[tuple[int, int]]:
        """GNU sparse 1.0: decimal numbers, one a line, at the start of the data, padded to
        whole blocks: the count, then offset and size of each chunk."""
        text = bytearray()
        pos = 0  # an index, not slices: a megabyte map is parsed in linear time
        numbers: list[int] = []
        want = 1
        while len(numbers) < want:
            end = text.find(b"\n", pos)
            if end < 0:
                if len(text) > META_LIMIT:
                    raise ArchiveError(f"{where}: sparse map over {META_LIMIT} bytes")
                block = self._block()
                if block is None:
                    raise ArchiveError(f"{where}: truncated sparse map")
                self._charge(BLOCK)
                text += block
                continue
            line, pos = bytes(text[pos:end]), end + 1
            if not line.isdigit() or len(line) > 19:
                raise ArchiveError(f"{where}: malformed sparse map number {line[:20]!r}")
            numbers.append(int(line))
            if len(numbers) == 1:
                if numbers[0] > MAX_SPARSE:
                    raise ArchiveError(f"{where}: more than {MAX_SPARSE} map entries")
                want = 1 + 2 * numbers[0]
        return list(zip(numbers[1::2], numbers[2::2], strict=True))

    def _end(self) -> None:
        """After the first zero block: the rest is padding, or data outside any member."""
        while data := self._read(CHUNK, aux=True):
            self.trailing += len(data) - data.count(0)
        self.end_size, self.end_digest = self._aux_size, self._aux.hexdigest()[:16]


def _old_gnu_entries(raw: bytes, chunks: list[tuple[int, int]], where: str) -> bool:
    """Appends the (offset, size) entries of an old GNU sparse map area; True when it ends
    there (an entry with an empty size field)."""
    for pos in range(0, len(raw) - 23, 24):
        entry = raw[pos:pos + 24]
        if entry[12] == 0:
            if raw[pos:].strip(b"\x00"):
                # GNU tar ignores entries after an empty one, tarfile reads them.
                raise ArchiveError(f"{where}: map entries after an empty one")
            return True
        chunks.append((_num(entry[:12], "sparse offset", 0),
                       _num(entry[12:], "sparse size", 0)))
    return False


def _layout(chunks: list[tuple[int, int]], real: int, where: str) -> tuple[list[list[int]], int]:
    """[hole, data, padding] runs of a sparse member, and the data blocks they take. GNU
    tar writes each chunk from the start of a block; a map it could not have written
    (overlapping, out of order, not ending at the file's size) is refused, as GNU tar
    and tarfile would extract it differently."""
    runs: list[list[int]] = []
    pos = blocks = 0
    for offset, size in chunks:
        if offset < pos or size < 0 or offset + size > real:
            raise ArchiveError(f"{where}: map entry ({offset}, {size}) overlaps, is out of "
                               f"order or lies beyond its size {real}")
        runs.append([offset - pos, size, -size % BLOCK])
        pos = offset + size
        blocks += -(-size // BLOCK)
    if pos != real:
        raise ArchiveError(f"{where}: its map ends at {pos}, its size is {real}")
    return runs, blocks


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
                   "+".join(sorted(reader.formats)) or "empty", reader.trailing,
                   reader.end_size, reader.end_digest)
