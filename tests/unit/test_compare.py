"""The comparison on archives made here with tarfile, gzip, lzma and the host's xz."""

from __future__ import annotations

import gzip
import io
import lzma
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest
import pyzstd

from cpython_repro.compare import compare
from cpython_repro.compare.archive import read_listing
from cpython_repro.compare.layers import gzip_header, xz_layout
from tests.conftest import require

FILES = {f"Python-3.13.99/Lib/mod{i}.py": (f"x = {i}\n" * 50).encode() for i in range(12)}


def tar_bytes(files: dict[str, bytes], *, mtime: int = 1_700_000_000, uid: int = 0,
              uname: str = "", order: list[str] | None = None,
              fmt: int = tarfile.PAX_FORMAT) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for name in order or sorted(files):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(files[name]), mtime, 0o644
            info.uid, info.uname = uid, uname
            tar.addfile(info, io.BytesIO(files[name]))
    return buf.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_identical(tmp_path: Path) -> None:
    data = gzip.compress(tar_bytes(FILES), mtime=0)
    c = compare("a.tgz", write(tmp_path / "a", data), write(tmp_path / "b", data))
    assert c.verdict == "identical" and c.findings == ()


def test_changed_appended_added_removed_members_are_named(tmp_path: Path) -> None:
    changed = dict(FILES)
    changed["Python-3.13.99/Lib/mod1.py"] += b"import os\n"
    changed["Python-3.13.99/Lib/evil.py"] = b"pass\n"
    del changed["Python-3.13.99/Lib/mod2.py"]
    pub = write(tmp_path / "p.tar.xz", lzma.compress(tar_bytes(changed)))
    reb = write(tmp_path / "r.tar.xz", lzma.compress(tar_bytes(FILES)))
    c = compare("x.tar.xz", pub, reb)
    assert c.verdict == "content-differs"
    text = {f.path: f.explanation for f in c.findings if f.kind == "content"}
    assert set(text) == {"Python-3.13.99/Lib/mod1.py", "Python-3.13.99/Lib/evil.py",
                         "Python-3.13.99/Lib/mod2.py"}
    assert text["Python-3.13.99/Lib/mod1.py"].endswith("10 bytes appended")
    assert "only in the published" in text["Python-3.13.99/Lib/evil.py"]
    assert "missing from the published" in text["Python-3.13.99/Lib/mod2.py"]


def test_owner_everywhere_is_one_grouped_metadata_finding(tmp_path: Path) -> None:
    pub = write(tmp_path / "p.tar", tar_bytes(FILES, uid=1000, uname="pablogsal"))
    reb = write(tmp_path / "r.tar", tar_bytes(FILES))
    c = compare("x.tar", pub, reb)
    assert c.verdict == "same-content"
    owners = [f for f in c.findings if f.field == "owner"]
    assert len(owners) == 1
    assert owners[0].explanation == "all 12 members: owner: published 1000/pablogsal, rebuilt 0/-"


def test_member_order_and_format_are_metadata(tmp_path: Path) -> None:
    order = sorted(FILES, reverse=True)
    pub = write(tmp_path / "p.tar", tar_bytes(FILES, order=order, fmt=tarfile.GNU_FORMAT))
    reb = write(tmp_path / "r.tar", tar_bytes(FILES))
    c = compare("x.tar", pub, reb)
    assert c.verdict == "same-content"
    assert "member order" in {f.field for f in c.findings}


def test_zstd_against_gzip_same_payload(tmp_path: Path) -> None:
    payload = tar_bytes(FILES)
    pub = write(tmp_path / "p.tar.zst", pyzstd.compress(payload))
    reb = write(tmp_path / "r.tgz", gzip.compress(payload, mtime=0))
    c = compare("x", pub, reb)
    assert c.verdict == "same-content" and c.payload_identical


def test_gzip_header_fields(tmp_path: Path) -> None:
    path = write(tmp_path / "a.tgz", gzip.compress(b"hello", compresslevel=9, mtime=1234))
    h = gzip_header(path)
    assert h["mtime"] == "1234" and h["xfl"].startswith("2")


def test_xz_layout_tells_threaded_from_single(tmp_path: Path) -> None:
    require(shutil.which("xz"), "the host's xz is needed to make a threaded xz")
    raw = tmp_path / "p.tar"
    raw.write_bytes(tar_bytes({f"f{i}": bytes([i]) * 20000 for i in range(20)}))
    subprocess.run(["xz", "-k", "-T1", "-c", str(raw)], check=True,
                   stdout=(tmp_path / "one.xz").open("wb"))
    subprocess.run(["xz", "-k", "-T2", "--block-size=8192", "-c", str(raw)], check=True,
                   stdout=(tmp_path / "mt.xz").open("wb"))
    one, mt = xz_layout(tmp_path / "one.xz"), xz_layout(tmp_path / "mt.xz")
    assert one["blocks"] == "1" and one["encoder"] == "single-threaded"
    assert int(mt["blocks"]) > 1 and mt["encoder"] == "multi-threaded"
    assert one["check"] == "crc64"


def test_truncated_archive_is_an_error_verdict_never_a_pass(tmp_path: Path) -> None:
    data = lzma.compress(tar_bytes(FILES))
    pub = write(tmp_path / "p.tar.xz", data[: len(data) // 2])
    reb = write(tmp_path / "r.tar.xz", data)
    c = compare("x.tar.xz", pub, reb)
    assert c.verdict == "error"
    assert "p.tar.xz" in c.error


def test_decompression_bomb_stops_at_the_limit(tmp_path: Path) -> None:
    from cpython_repro.errors import ArchiveError

    bomb = write(tmp_path / "b.tar.xz", lzma.compress(tar_bytes({"z": bytes(5_000_000)})))
    with pytest.raises(ArchiveError, match="exceeds"):
        read_listing(bomb, limit=1_000_000)


def test_diffoscope_runs_only_on_differing_members(tmp_path: Path) -> None:
    changed = dict(FILES)
    changed["Python-3.13.99/Lib/mod3.py"] = b"x = 3\nimport evil\n"
    changed["Python-3.13.99/Lib/evil.py"] = b"print('hi')\n"
    pub = write(tmp_path / "p.tar", tar_bytes(changed))
    reb = write(tmp_path / "r.tar", tar_bytes(FILES))
    c = compare("x.tar", pub, reb, diff_dir=tmp_path / "d", report_dir=tmp_path)
    assert c.diffoscope is not None
    require(not c.diffoscope.status.startswith("not installed"), "diffoscope is not installed")
    assert c.diffoscope.status == "differences"
    assert set(c.diffoscope.members) == {"Python-3.13.99/Lib/mod3.py",
                                         "Python-3.13.99/Lib/evil.py"}
    text = (tmp_path / c.diffoscope.text).read_text()
    assert "+import evil" not in text and "-import evil" in text
    assert not list((tmp_path / "d").glob(".inputs-*"))  # the member bytes are gone


def test_without_diffoscope_the_verdict_stands(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    from cpython_repro.compare import diffoscope

    monkeypatch.setattr(diffoscope, "find", lambda: None)
    changed = {**FILES, "Python-3.13.99/Lib/mod3.py": b"changed\n"}
    c = compare("x.tar", write(tmp_path / "p.tar", tar_bytes(changed)),
                write(tmp_path / "r.tar", tar_bytes(FILES)), diff_dir=tmp_path / "d")
    assert c.verdict == "content-differs"
    assert c.diffoscope is not None and c.diffoscope.status.startswith("not installed")


def test_members_out_of_order_are_still_paired_and_explained(tmp_path: Path) -> None:
    changed = dict(FILES)
    changed["Python-3.13.99/Lib/mod3.py"] += b"# more\n"
    pub = write(tmp_path / "p.tar", tar_bytes(changed, order=sorted(changed, reverse=True)))
    reb = write(tmp_path / "r.tar", tar_bytes(FILES))
    c = compare("x.tar", pub, reb)
    content = [f for f in c.findings if f.kind == "content"]
    assert [f.path for f in content] == ["Python-3.13.99/Lib/mod3.py"]
    assert content[0].explanation.endswith("7 bytes appended")
