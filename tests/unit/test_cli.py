"""The command line as a newcomer meets it: a bare command shows how to use it, --help
speaks to users, and a usage error is one line with exit 2."""

from __future__ import annotations

import io
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from cpython_repro.cli import main


def test_bare_command_prints_usage(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: cpython-repro")
    assert "verify" in err and "exit codes:" in err


def test_help_is_for_users(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "compare it bit for bit with what was published" in out
    assert "thin" not in out and "main()" not in out  # no developer docstring


def test_usage_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cpython-repro: error:")


def test_an_error_raised_while_ctrl_c_unwinds_is_the_interruption(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A container stopped by Ctrl-C fails its step: that failure is not the run's cause."""
    from cpython_repro import cli
    from cpython_repro.errors import RebuildFailed

    def interrupted_rebuild(_args: object) -> int:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt:
            raise RebuildFailed("compressing x failed in the container (exit 137)") from None

    monkeypatch.setattr(cli, "cmd_doctor", interrupted_rebuild)
    assert main(["doctor"]) == 130
    assert capsys.readouterr().err.strip() == (
        "cpython-repro: error: interrupted; containers and partial files were cleaned up")


def test_compare_loads_no_other_stage(tmp_path: Path) -> None:
    """`compare` is called once per pair in scripts and benchmarks: starting it does not load
    the HTTP client, the signature stage (cryptography) or the SBOM stage."""
    a = tmp_path / "a.tar"
    with tarfile.open(a, "w") as tar:
        info = tarfile.TarInfo("x")
        tar.addfile(info, io.BytesIO(b""))
    probe = ("import sys; from cpython_repro.cli import main; code = main(['compare', sys.argv[1],"
             " sys.argv[1], '-q']); print(code, sorted(m for m in ('urllib3', 'cryptography',"
             " 'cpython_repro.signatures', 'cpython_repro.sbom', 'cpython_repro.download')"
             " if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe, str(a)], capture_output=True,
                          text=True, check=True)
    assert done.stdout.split() == ["0", "[]"], done.stdout + done.stderr
