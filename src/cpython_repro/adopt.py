"""Stage: adoption. When every member's content agrees but the bytes do not, rebuild once
more taking named metadata from the published artifact, and check bit identity again.

What can be adopted: member order, per-member mtimes, owner and group (names and ids), tar
format and pax header naming, the gzip header, the xz check, preset and block layout. The
content still comes from the tag: adoption never takes a byte of any member. Each adopted
field is reported with its value, so an adoption is an explained divergence.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from cpython_repro.cache import atomic_write, sha256_file
from cpython_repro.compare import compare, utc_time
from cpython_repro.compare.archive import Listing, Member, read_listing
from cpython_repro.compare.layers import describe
from cpython_repro.dockerio import Mount
from cpython_repro.errors import ArchiveError
from cpython_repro.models import AdoptedField, Adoption, Comparison, Image, Plan, Source
from cpython_repro.rebuild import Rebuilder, export_lines, tar_options
from cpython_repro.resolve import data_dir

HELPER = "adopt-mtimes.py"
# The recipe's tar options that an adopted field replaces.
REPLACED = ("--sort", "--mtime", "--clamp-mtime", "--owner", "--group", "--numeric-owner",
            "--format", "--pax-option", "-H")
TAR_FORMAT = {"gnu": "gnu", "ustar": "ustar", "pax": "pax", "pax+ustar": "pax", "v7": "v7"}
# xz's presets by LZMA2 dictionary size (4 and 8 MiB are each two presets; the lower-numbered
# one differs only in match finder depth, so the default of each pair is tried).
XZ_PRESET = {256 << 10: "-0", 1 << 20: "-1", 2 << 20: "-2", 4 << 20: "-4", 8 << 20: "-6",
             16 << 20: "-7", 32 << 20: "-8", 64 << 20: "-9"}
GZIP_LEVEL = {"2": "-9", "4": "-1"}  # XFL: 2 is gzip -9, 4 is -1; 0 is anything else
PAX_KEYS = {"path", "linkpath", "size", "mtime", "uid", "gid", "uname", "gname"}


class CannotAdopt(Exception):
    """The published artifact has metadata we cannot reproduce; the reason is reported."""


@dataclass(frozen=True)
class ArtifactAdoption:
    artifact: str
    fields: tuple[AdoptedField, ...]
    order: tuple[str, ...]
    mtimes: tuple[int, ...]  # nanoseconds, same order
    tar: tuple[str, ...]
    compress: tuple[str, ...]
    gzip_header: bytes = b""  # published header bytes to put before our deflate stream


def _unsafe(path: str) -> bool:
    parts = path.split("/")
    return path.startswith("/") or ".." in parts or "\n" in path or "\x00" in path


def _single(values: set[tuple[int, str]], what: str) -> tuple[int, str]:
    if len(values) != 1:
        shown = ", ".join(f"{i}/{n or '-'}" for i, n in sorted(values)[:4])
        raise CannotAdopt(f"{what} varies between members ({shown}...)")
    return next(iter(values))


def _pax_naming(members: list[Member]) -> str:
    for m in members:
        if not m.pax_name:
            continue
        d, _, f = m.path.rstrip("/").rpartition("/")
        d = d or "."  # GNU tar's dir_name() of a top-level member
        # GNU tar fills the whole 100-byte name field, with no terminating NUL.
        if m.pax_name == f"{d}/PaxHeaders/{f}"[:100]:
            return "%d/PaxHeaders/%f"
        found = re.fullmatch(re.escape(d) + r"/PaxHeaders\.(\d+)/" + re.escape(f), m.pax_name)
        if found:
            return f"%d/PaxHeaders.{found.group(1)}/%f"
        raise CannotAdopt(f"pax header name {m.pax_name!r} follows no pattern tar can write")
    return "%d/PaxHeaders/%f"


def tar_fields(listing: Listing, recipe_tar: list[str]) -> tuple[list[str], list[AdoptedField]]:
    members = listing.members
    bad = [m.path for m in members if _unsafe(m.path)]
    if bad:
        raise CannotAdopt(f"unsafe member path {bad[0]!r}")
    if len({m.path for m in members}) != len(members):
        raise CannotAdopt("duplicate member paths")
    extra = sorted({k for m in members for k in m.pax} - PAX_KEYS)
    if extra:
        raise CannotAdopt(f"pax records {', '.join(extra)} (times of the release machine) "
                          "cannot be reproduced")
    uid, uname = _single({(m.uid, m.uname) for m in members}, "owner")
    gid, gname = _single({(m.gid, m.gname) for m in members}, "group")
    fmt = TAR_FORMAT.get(listing.tar_format)
    if fmt is None:
        raise CannotAdopt(f"mixed tar header formats ({listing.tar_format})")
    opts = [o for o in recipe_tar if o.split("=")[0] not in REPLACED]
    if uname or gname:
        opts += [f"--owner={uname}:{uid}", f"--group={gname}:{gid}"]
    else:
        opts += [f"--owner={uid}", f"--group={gid}", "--numeric-owner"]
    opts.append(f"--format={fmt}")
    fields = [
        AdoptedField("member order", f"the published order of {len(members)} members"),
        AdoptedField("mtimes", _mtime_summary(members)),
        AdoptedField("owner", f"{uid}/{uname or '(no name)'}"),
        AdoptedField("group", f"{gid}/{gname or '(no name)'}"),
        AdoptedField("tar format", fmt),
    ]
    if fmt == "pax":
        naming = _pax_naming(members)
        opts.append(f"--pax-option=exthdr.name={naming},delete=atime,delete=ctime")
        fields.append(AdoptedField("pax header names", naming))
    return opts, fields


def _mtime_summary(members: list[Member]) -> str:
    times = sorted({m.mtime for m in members})
    if len(times) == 1:
        return f"one mtime for all members, {utc_time(times[0])}"
    return f"{len(times)} distinct mtimes from {utc_time(times[0])} to {utc_time(times[-1])}"


def compress_fields(path: Path, kind: str) -> tuple[list[str], list[AdoptedField], bytes]:
    layer = describe(path, kind)
    if kind == "gzip":
        level = GZIP_LEVEL.get(layer["xfl"].split()[0])
        if level is None:
            raise CannotAdopt(f"gzip XFL {layer['xfl']}: the compression level is unknown")
        with path.open("rb") as f:
            header = f.read(int(layer["header_bytes"]))
        value = (f"mtime {layer['mtime']}, OS {layer['os']}, XFL {layer['xfl']}, "
                 f"name {layer['name']!r}")
        return (["gzip", "-n", level], [AdoptedField("gzip header", value),
                                        AdoptedField("gzip level", level)], header)
    if kind == "xz":
        if layer["streams"] != "1":
            raise CannotAdopt(f"{layer['streams']} xz streams")
        dict_size = _parse_dict(layer["lzma2_dict"])
        preset = XZ_PRESET.get(dict_size)
        if preset is None:
            raise CannotAdopt(f"LZMA2 dictionary {layer['lzma2_dict']} matches no xz preset")
        cmd = ["xz", f"--check={layer['check']}", preset]
        if layer["encoder"] == "multi-threaded":
            cmd.append("-T2")
            # xz's default block is three dictionaries; an explicit --block-size smaller than
            # the dictionary also shrinks the dictionary, so name it only when needed.
            if layer["blocks"] != "1" or int(layer["block_size"]) > 3 * dict_size:
                cmd.append(f"--block-size={layer['block_size']}")
            layout = (f"multi-threaded encoder, {layer['blocks']} block(s) of "
                      f"{layer['block_size']} bytes")
        else:
            cmd += ["-T1"]
            layout = "single-threaded encoder, one block"
        return cmd, [AdoptedField("xz layout", f"{layout}, check {layer['check']}, "
                                  f"preset {preset} (dictionary {layer['lzma2_dict']})")], b""
    return ["cat"], [], b""


def _parse_dict(text: str) -> int:
    return int(text.split()[0]) << 20 if text.endswith("MiB") else int(text)


def plan(artifact: str, published: Path, recipe_tar: list[str]) -> ArtifactAdoption:
    try:
        listing = read_listing(published)
    except ArchiveError as exc:
        raise CannotAdopt(exc.one_line()) from exc
    tar, tfields = tar_fields(listing, recipe_tar)
    compress, cfields, header = compress_fields(published, listing.compression)
    return ArtifactAdoption(
        artifact, tuple(tfields + cfields), tuple(m.path for m in listing.members),
        tuple(round(m.mtime * 1e9) for m in listing.members), tuple(tar), tuple(compress),
        header)


def script(plan_: Plan, source: Source, adoptions: list[ArtifactAdoption]) -> str:
    q = shlex.quote
    lines = [*export_lines(plan_, source), "mkdir -p /out/adopted"]
    for a in adoptions:
        tar = " ".join(q(o) for o in a.tar)
        listing = f"/adopt/{q(a.artifact)}.list"
        lines += [
            f"step adopt mtimes for {q(a.artifact)}",
            f"python3 /job/{HELPER} /adopt/{q(a.artifact)}.mtimes",
            f"step tar {tar} --no-recursion --null -T {listing}",
            f"tar cf /out/adopted/{q(a.artifact)}.tar {tar} --no-recursion --null -T {listing}",
            f"step {' '.join(q(c) for c in a.compress)}",
            f"{' '.join(q(c) for c in a.compress)} < /out/adopted/{q(a.artifact)}.tar"
            f" > /out/adopted/{q(a.artifact)}",
            f"rm /out/adopted/{q(a.artifact)}.tar",
        ]
    lines += ["cd /out && rm -rf work", "step done"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Adopter:
    rebuilder: Rebuilder

    def adopt(self, plan_: Plan, source: Source, image: Image, outdir: Path,
              comparisons: tuple[Comparison, ...],
              published: dict[str, Path]) -> tuple[Comparison, ...]:
        """Comparisons with same-content get an adoption attempt; the others are unchanged."""
        wanted = [c for c in comparisons if c.verdict == "same-content"]
        if not wanted:
            return comparisons
        recipe_tar = tar_options(plan_, source)
        plans: list[ArtifactAdoption] = []
        outcome: dict[str, Adoption] = {}
        for c in wanted:
            try:
                plans.append(plan(c.artifact, published[c.artifact], recipe_tar))
            except CannotAdopt as exc:
                outcome[c.artifact] = Adoption((), False, detail=f"not attempted: {exc}")
        if plans:
            outcome.update(self._run(plan_, source, image, outdir, plans, published))
        return tuple(_with_adoption(c, outcome.get(c.artifact)) for c in comparisons)

    def _run(self, plan_: Plan, source: Source, image: Image, outdir: Path,
             plans: list[ArtifactAdoption], published: dict[str, Path]) -> dict[str, Adoption]:
        workdir = outdir / "adoption"
        inputs = workdir / "inputs"
        inputs.mkdir(parents=True, exist_ok=True)
        for a in plans:
            atomic_write(inputs / f"{a.artifact}.list",
                         b"".join(p.encode("utf-8", "surrogateescape") + b"\0" for p in a.order))
            atomic_write(inputs / f"{a.artifact}.mtimes",
                         json.dumps(list(zip(a.order, a.mtimes, strict=True))).encode())
        for made in inputs.iterdir():
            made.chmod(0o644)  # atomic_write makes private files; the container's user reads
        job = workdir / "job"
        job.mkdir(exist_ok=True)
        shutil.copy(data_dir("containers") / "builder" / HELPER, job / HELPER)
        self.rebuilder.run(script(plan_, source, plans), source, image, workdir,
                           [f"adopted/{a.artifact}" for a in plans],
                           extra=(Mount(inputs, "/adopt"),), fresh=("adopted",))
        out = {}
        for a in plans:
            path = workdir / "adopted" / a.artifact
            if a.gzip_header:
                splice_gzip_header(path, a.gzip_header)
            digest = sha256_file(path)
            pub = published[a.artifact]
            if digest == sha256_file(pub):
                out[a.artifact] = Adoption(a.fields, True, digest)
                continue
            again = compare(a.artifact, pub, path)
            first = again.findings[0].explanation if again.findings else again.verdict
            out[a.artifact] = Adoption(a.fields, False, digest,
                                       detail=f"the adopted rebuild still differs: {first}")
        return out


def splice_gzip_header(path: Path, header: bytes) -> None:
    """Our deflate stream and trailer behind the published header (name, mtime, OS, XFL)."""
    data = path.read_bytes()
    ours = int(describe(path, "gzip")["header_bytes"])
    atomic_write(path, header + data[ours:])


# Which findings of the strict comparison each adopted field answers.
ANSWERS = {
    "member order": ("member order",), "mtimes": ("mtime",), "owner": ("owner",),
    "group": ("group",), "tar format": ("tar format", "header format", "header "),
    "pax header names": ("pax header name",), "gzip header": ("gzip ",),
    "gzip level": ("gzip xfl",), "xz layout": ("xz ",),
}


def _with_adoption(c: Comparison, adoption: Adoption | None) -> Comparison:
    if adoption is None:
        return c
    found = {f.field for f in c.findings}
    adoption = dataclasses.replace(adoption, fields=tuple(
        dataclasses.replace(a, differed=any(f.startswith(ANSWERS.get(a.field, (a.field,)))
                                            for f in found))
        for a in adoption.fields))
    verdict = "identical-after-adoption" if adoption.identical else c.verdict
    return dataclasses.replace(c, verdict=verdict, adoption=adoption)
