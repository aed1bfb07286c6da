"""Adoption planning: which metadata is taken from a published artifact, and when it cannot."""

from __future__ import annotations

import gzip
import io
import lzma
import tarfile
from pathlib import Path

import pytest

from cpython_repro.adopt import CannotAdopt, compress_fields, plan, tar_fields
from cpython_repro.compare.archive import read_listing

RECIPE_TAR = ["--sort=name", "--mtime=2025-01-01 00:00:00Z", "--clamp-mtime", "--owner=0",
              "--group=0", "--numeric-owner", "--mode=go+u,go-w"]


def tar_of(names: list[str], *, owners: list[tuple[int, str]] | None = None,
           fmt: int = tarfile.GNU_FORMAT, pax: dict[str, str] | None = None) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for i, name in enumerate(names):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = 3, 1_600_000_000 + i, 0o644
            info.uid, info.uname = (owners or [(1000, "pablogsal")])[i % len(owners or [0])]
            info.gid, info.gname = 1000, "pablogsal"
            if pax:
                info.pax_headers = pax
            tar.addfile(info, io.BytesIO(b"abc"))
    return buf.getvalue()


def listing(tmp_path: Path, data: bytes, name: str = "p.tar") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_legacy_archive_adopts_order_times_owner_format(tmp_path: Path) -> None:
    names = ["P/z.py", "P/a.py", "P/m.py"]
    path = listing(tmp_path, gzip.compress(tar_of(names), compresslevel=9, mtime=1234), "p.tgz")
    a = plan("p.tgz", path, RECIPE_TAR)
    assert a.order == tuple(names)
    assert a.mtimes == tuple((1_600_000_000 + i) * 10**9 for i in range(3))
    assert "--sort=name" not in a.tar and "--clamp-mtime" not in a.tar
    assert "--mode=go+u,go-w" in a.tar  # modes are content: the recipe keeps them
    assert {"--owner=pablogsal:1000", "--group=pablogsal:1000", "--format=gnu"} <= set(a.tar)
    fields = {f.field: f.value for f in a.fields}
    assert fields["owner"] == "1000/pablogsal"
    assert fields["mtimes"].startswith("3 distinct mtimes")
    assert "mtime 1234" in fields["gzip header"]
    assert a.compress == ("gzip", "-n", "-9")
    assert a.gzip_header == path.read_bytes()[:10]


def test_numeric_owner_without_names(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        tar.addfile(tarfile.TarInfo("P/a"), io.BytesIO())  # uid 0, no user or group names
    opts, fields = tar_fields(read_listing(listing(tmp_path, buf.getvalue())), RECIPE_TAR)
    assert {"--owner=0", "--group=0", "--numeric-owner", "--format=ustar"} <= set(opts)
    assert {f.field: f.value for f in fields}["owner"] == "0/(no name)"


def test_owner_varying_between_members_cannot_be_adopted(tmp_path: Path) -> None:
    data = tar_of(["P/a", "P/b"], owners=[(1000, "rm"), (1001, "other")])
    with pytest.raises(CannotAdopt, match="owner varies"):
        tar_fields(read_listing(listing(tmp_path, data)), RECIPE_TAR)


def test_unsafe_paths_are_never_passed_to_tar(tmp_path: Path) -> None:
    with pytest.raises(CannotAdopt, match="unsafe member path"):
        tar_fields(read_listing(listing(tmp_path, tar_of(["P/../../etc/x"]))), RECIPE_TAR)


def test_ctime_records_cannot_be_reproduced(tmp_path: Path) -> None:
    data = tar_of(["P/a"], fmt=tarfile.PAX_FORMAT, pax={"ctime": "1600000000.5"})
    with pytest.raises(CannotAdopt, match="ctime"):
        tar_fields(read_listing(listing(tmp_path, data)), RECIPE_TAR)


def test_xz_single_threaded_layout(tmp_path: Path) -> None:
    path = listing(tmp_path, lzma.compress(tar_of(["P/a"]), preset=9), "p.tar.xz")
    cmd, fields, header = compress_fields(path, "xz")
    assert cmd == ["xz", "--check=crc64", "-9", "-T1"]
    assert "single-threaded" in fields[0].value and header == b""


def test_unknown_gzip_level_is_not_guessed(tmp_path: Path) -> None:
    path = listing(tmp_path, gzip.compress(b"x" * 100, compresslevel=5), "p.gz")
    with pytest.raises(CannotAdopt, match="compression level is unknown"):
        compress_fields(path, "gzip")
