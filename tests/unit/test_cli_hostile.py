"""Hostile names and hostile paths through the command line: what reaches the terminal is
one line per line, without control characters or rich markup; what is written is created,
never followed through a symlink or renamed over a device; inputs that are not regular
files are named as what they are."""

from __future__ import annotations

import json
import os
import stat
import tarfile
from pathlib import Path

import pytest

from cpython_repro import cli, fetch, outputs
from cpython_repro.compare import diffoscope
from cpython_repro.errors import InputError, OutputError
from cpython_repro.models import Source
from cpython_repro.resolve import plan
from tests.conftest import require
from tests.crafted import TOP, archive, clean, member, pax

FORGED = "verdict: identical  exit 0"
CONTROL = [chr(c) for c in range(32) if c != 10] + ["\x7f", "\x9b", "\u202e"]


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    # Lines are wrapped at the console's width; these tests look for escaped names whole.
    monkeypatch.setenv("COLUMNS", "1000")


def compare_cli(tmp_path: Path, published: bytes, *extra: str,
                name: str = "pub.tar") -> int:
    pub, reb = tmp_path / name, tmp_path / "reb.tar"
    pub.write_bytes(published)
    reb.write_bytes(clean())
    return cli.main(["compare", str(pub), str(reb), *extra])


def assert_clean_terminal(text: str) -> None:
    for c in CONTROL:
        assert c not in text, repr(c)
    for line in text.splitlines():
        assert not line.lstrip().startswith(FORGED), line


# 5. Names that try to write on the terminal.

NASTY = f"{TOP}/x\n{FORGED}\n\x1b[2J\x1b]0;owned\x07\u202ecod.py"


def test_member_names_cannot_forge_lines_or_control_the_terminal(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert compare_cli(tmp_path, archive(member(NASTY, b"x"), member(f"{TOP}/README.rst",
                                                                       b"This is Python\n"))) == 1
    out = capsys.readouterr()
    assert_clean_terminal(out.out + out.err)
    assert "\\n" + FORGED + "\\n\\x1b[2J" in out.out  # shown, escaped


def test_error_messages_quoting_names_stay_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """verify --published names the first member's top directory when it matches no
    artifact: through cli.main's error line."""
    path = tmp_path / "debian.orig.tar.xz"
    import lzma

    path.write_bytes(lzma.compress(archive(member(NASTY + "/f", b"x"))))
    monkeypatch.setattr(fetch, "fetch_tag", lambda *_: Source(tmp_path, "v3.13.5", "0" * 40,
                                                              "0" * 40, 0))
    code = cli.main(["verify", "3.13.5", "--published", str(path), "--cache-dir",
                     str(tmp_path / "cache"), "--out", str(tmp_path / "out"), "-q",
                     "--history", str(tmp_path / "h.sqlite")])
    err = capsys.readouterr().err
    assert code == 2
    assert len(err.strip().splitlines()) == 1 and "which is none of" in err
    assert_clean_terminal(err)


# 6. Names that are not UTF-8.

def test_non_utf8_names_give_a_report_a_diff_dir_and_valid_json(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    raw = f"{TOP}/Lib/".encode() + b"\xff\xfe-caf\xe9.py"
    diffs, report = tmp_path / "diffs", tmp_path / "c.json"
    code = compare_cli(tmp_path, archive(member(raw, b"x = 1\n"), member(
        f"{TOP}/Lib/os.py", b"import sys, os\n")), "--diff-dir", str(diffs), "--json",
        str(report))
    assert code == 1
    text = report.read_bytes().decode("utf-8")  # strict: no lone surrogates
    data = json.loads(text)
    named = {f["path"]: f for f in data["findings"]}
    shown = f"{TOP}/Lib/\\xff\\xfe-caf\\xe9.py"
    assert named[shown]["path_bytes"] == raw.hex()
    assert "\\xff\\xfe" in capsys.readouterr().out
    if (diffs / "members.index").exists():
        assert shown in (diffs / "members.index").read_bytes().decode("utf-8")


# 7. rich markup in names and fields.

def test_markup_in_file_names_members_and_errors_is_shown_as_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = archive(member(f"{TOP}/x[/]y[red]z:cross_mark:", b"x", uname=b"[bold]u[/]"),
                   member(f"{TOP}/README.rst", b"This is Python\n"))
    assert compare_cli(tmp_path, data, name="a[red]b.tar") == 1
    out = capsys.readouterr().out
    assert "a[red]b.tar" in out and "x[/]y[red]z:cross_mark:" in out and "\u274c" not in out
    broken = archive(pax([("size", "[/]")]), member(f"{TOP}/Lib/os.py", b"x"))
    assert compare_cli(tmp_path, broken, name="c[bold]d.tar") == 1
    out = capsys.readouterr().out
    assert "malformed pax size value '[/]'" in out and "c[bold]d.tar" in out


# 10. Inputs that are not regular files.

@pytest.mark.parametrize("what", ["directory", "FIFO", "missing"])
def test_inputs_that_are_not_regular_files_are_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str) -> None:
    odd = tmp_path / "odd.tar.xz"
    if what == "directory":
        odd.mkdir()
    elif what == "FIFO":
        os.mkfifo(odd)
    (tmp_path / "reb.tar").write_bytes(clean())
    code = cli.main(["compare", str(odd), str(tmp_path / "reb.tar")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert {"directory": "is a directory", "FIFO": "is a FIFO",
            "missing": "no such file"}[what] in err and str(odd) in err
    code = cli.main(["verify", "3.13.5", "--published", str(odd), "--cache-dir",
                     str(tmp_path / "cache"), "-q", "--history", str(tmp_path / "h.sqlite")])
    err = capsys.readouterr().err
    assert code == 2 and f"--published {odd}" in err


def test_match_by_content_refuses_a_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="is a directory"):
        fetch._match_by_content(plan("3.13.5"), tmp_path)


# 11. --json onto what is already there.

@pytest.mark.parametrize("what", ["symlink", "dangling symlink", "FIFO", "device", "dir"])
def test_json_is_never_written_through_or_over_a_non_regular_file(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], what: str) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    target = tmp_path / "report.json"
    if what == "symlink":
        target.symlink_to(victim)
    elif what == "dangling symlink":
        target.symlink_to(tmp_path / "created-through-link")
    elif what == "FIFO":
        os.mkfifo(target)
    elif what == "device":
        require(os.geteuid() == 0, "root is needed to make a device node")
        os.mknod(target, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    else:
        target.mkdir()
    before = os.lstat(target)
    code = compare_cli(tmp_path, clean() + bytes(10240), "--json", str(target))
    out = capsys.readouterr()
    assert code == 3
    assert "same-content" in out.out  # the verdict is shown all the same
    err = out.err.strip()
    assert len(err.splitlines()) == 1 and f"cannot write {target}:" in err
    assert ".tmp-" not in err
    after = os.lstat(target)
    assert (after.st_mode, after.st_ino, after.st_rdev) == \
        (before.st_mode, before.st_ino, before.st_rdev)
    assert victim.read_text() == "precious\n"
    assert not (tmp_path / "created-through-link").exists()
    assert not list(tmp_path.glob(".report.json.tmp-*"))


def test_json_replaces_a_regular_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")
    assert compare_cli(tmp_path, clean() + bytes(10240), "--json", str(target), "-q") == 1
    assert json.loads(target.read_text())["verdict"] == "same-content"


# 15. Files planted in an output directory.

def test_diff_dir_files_are_not_followed(tmp_path: Path) -> None:
    require(diffoscope.find(), "diffoscope is not installed")
    diffs = tmp_path / "diffs"
    diffs.mkdir()
    victims = {}
    for name in ("members.txt", "members.html"):
        victims[name] = tmp_path / f"victim-{name}"
        victims[name].write_text("precious\n")
        (diffs / name).symlink_to(victims[name])
    code = compare_cli(tmp_path, archive(member(f"{TOP}/Lib/os.py", b"import evil\n"),
                                         member(f"{TOP}/README.rst", b"This is Python\n")),
                       "--diff-dir", str(diffs), "--json", str(tmp_path / "c.json"), "-q")
    assert code == 1
    assert all(v.read_text() == "precious\n" for v in victims.values())
    status = json.loads((tmp_path / "c.json").read_text())["diffoscope"]["status"]
    assert status.startswith("failed: cannot write") and "it is a symlink" in status
    assert (diffs / "members.index").is_file()
    assert not list(diffs.glob(".inputs-*"))


def test_index_planted_as_a_symlink_is_not_followed(tmp_path: Path) -> None:
    require(diffoscope.find(), "diffoscope is not installed")
    diffs = tmp_path / "diffs"
    diffs.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (diffs / "members.index").symlink_to(victim)
    run = diffoscope.run([("a", b"1", b"2")], diffs, tmp_path)
    assert run.status.startswith("failed: cannot write") and victim.read_text() == "precious\n"


def test_evidence_bundle_is_not_written_through_a_symlink(tmp_path: Path) -> None:
    report = tmp_path / "out"
    report.mkdir()
    (report / "report.json").write_text("{}")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (report / "evidence.tar.zst").symlink_to(victim)
    with pytest.raises(OutputError, match=r"evidence\.tar\.zst: it is a symlink"):
        outputs.evidence(report, report / "evidence.tar.zst")
    assert victim.read_text() == "precious\n"
    (report / "evidence.tar.zst").unlink()
    made = outputs.evidence(report, report / "evidence.tar.zst")
    import pyzstd

    with pyzstd.ZstdFile(made) as raw, tarfile.open(fileobj=raw) as tar:
        assert tar.getnames() == ["evidence/report.json"]


def test_a_bad_version_that_is_not_utf8_is_recorded_and_shown_on_one_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    version = b"3.13.\xff\n\x1b[2J".decode("utf-8", "surrogateescape")
    code = cli.main(["verify", version, "--history", str(tmp_path / "h.sqlite"), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert_clean_terminal(err)


def test_history_is_not_written_through_a_symlink(tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    (tmp_path / "h.sqlite").symlink_to(victim)
    code = cli.main(["verify", "3.13", "--history", str(tmp_path / "h.sqlite"), "-q"])
    assert code == 3 and "it is a symlink" in capsys.readouterr().err
    assert victim.read_text() == "precious\n"
