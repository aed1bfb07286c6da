"""Bad input and a broken environment: the right exit code, one line, nothing half-written."""

from __future__ import annotations

from pathlib import Path

import pytest

from cpython_repro.cli import main
from tests.fixtures.server import Site
from tests.integration.conftest import VERSION, World, publish

pytestmark = pytest.mark.docker


def run(world: World, site: Site, tmp_path: Path, version: str = VERSION) -> int:
    return main(["verify", version, "--remote", str(world.repo), "--base-url", site.base_url,
                 "--recipes", str(world.recipes), "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(tmp_path / "out"), "-q"])


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    return err[0]


def cached_blobs(tmp_path: Path) -> list[Path]:
    return [p for p in (tmp_path / "cache" / "blobs").rglob("*") if p.is_file()]


def test_malformed_version(world: World, site: Site, tmp_path: Path,
                           capsys: pytest.CaptureFixture[str]) -> None:
    assert run(world, site, tmp_path, "3.13") == 2
    assert "not a CPython 3 release version: '3.13'" in one_error_line(capsys)


def test_missing_tag(world: World, site: Site, tmp_path: Path,
                     capsys: pytest.CaptureFixture[str]) -> None:
    publish(site, world)
    assert run(world, site, tmp_path, "3.13.98") == 2
    assert "tag v3.13.98 does not exist" in one_error_line(capsys)


def test_404(world: World, site: Site, tmp_path: Path,
             capsys: pytest.CaptureFixture[str]) -> None:
    assert run(world, site, tmp_path) == 2
    assert "HTTP 404" in one_error_line(capsys)
    assert cached_blobs(tmp_path) == []


def test_truncated_download(world: World, site: Site, tmp_path: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    publish(site, world)
    site.faults[f"/ftp/python/{VERSION}/Python-{VERSION}.tgz"] = "truncate"
    assert run(world, site, tmp_path) == 3
    assert "truncated" in one_error_line(capsys)
    assert cached_blobs(tmp_path) == []
    assert not (tmp_path / "cache" / "urls").exists()


def test_dropped_connection_resumes(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world)
    path = f"/ftp/python/{VERSION}/Python-{VERSION}.tar.xz"
    site.faults[path] = "drop-once"
    code = run(world, site, tmp_path)
    report = tmp_path / "out" / "report.json"
    assert code == 0, report.read_text()[-3000:] if report.exists() else "no report"
    ranges = [r for m, p, r in site.requests if p == path and m == "GET"]
    assert ranges[0] == "" and ranges[1].startswith("bytes=")  # resumed, not restarted


def test_docker_unreachable(world: World, site: Site, tmp_path: Path,
                            monkeypatch: pytest.MonkeyPatch,
                            capsys: pytest.CaptureFixture[str]) -> None:
    publish(site, world)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/no-such-docker.sock")
    assert run(world, site, tmp_path) == 3
    line = one_error_line(capsys)
    assert "cannot talk to the Docker daemon" in line
    assert not (tmp_path / "out" / "report.json").exists()
