"""How people really call verify, on the synthetic fixture: default (relative) paths, the
packager's local file, --offline, an unreachable python.org, and what the daemon says when it
refuses something. The real releases are in test_real_releases.py."""

from __future__ import annotations

import json
import shutil
import socket
from pathlib import Path
from typing import Any

import pytest

from cpython_repro.cli import main
from cpython_repro.dockerio import Docker, Mount
from cpython_repro.errors import DockerRefused
from cpython_repro.models import Limits
from tests.fixtures.server import Site
from tests.integration.conftest import VERSION, World, publish
from tests.integration.test_verify import by_name

pytestmark = pytest.mark.docker


def run(world: World, *argv: str) -> int:
    return main(["verify", VERSION, "--recipes", str(world.recipes), "-q", *argv])


def report_at(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())  # type: ignore[no-any-return]


def local_orig(world: World, tmp_path: Path) -> Path:
    """A distro's renamed .orig.tar.xz with the release manager's .asc beside it."""
    local = tmp_path / "debian" / f"python3.13_{VERSION}.orig.tar.xz"
    local.parent.mkdir()
    shutil.copy(world.published[".tar.xz"], local)
    local.with_name(local.name + ".asc").write_bytes(world.key.sign(local.read_bytes()))
    return local


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once it is closed


def test_default_relative_paths(world: World, site: Site, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The README's default: out/VERSION relative to where the user stands, and relative
    --cache-dir and --remote; Docker refuses relative bind mounts, so they must not reach it."""
    publish(site, world)
    monkeypatch.chdir(tmp_path)
    shutil.copytree(world.repo, tmp_path / "cpython")
    code = run(world, "--remote", "cpython", "--base-url", site.base_url,
                  "--cache-dir", "relcache")
    report = report_at(tmp_path / "out" / VERSION / "report.json")
    assert code == 0, report["reasons"]
    assert report["reasons"] == [] and report["verdict"] == "identical"
    assert (tmp_path / "relcache" / "git").is_dir()


def test_packager_offline_uses_nothing_but_what_it_is_given(world: World, site: Site,
                                                            tmp_path: Path) -> None:
    publish(site, world)
    local = local_orig(world, tmp_path)
    code = run(world, "--remote", str(world.repo), "--base-url", site.base_url,
                  "--published", str(local), "--offline", "--out", str(tmp_path / "out"))
    report = report_at(tmp_path / "out" / "report.json")
    assert site.requests == []  # not one request: --offline means no network at all
    assert code == 0, report["reasons"]
    assert report["offline"] is True
    assert list(by_name(report)) == [f"Python-{VERSION}.tar.xz"]
    assert [n["artifact"] for n in report["not_checked"]] == [f"Python-{VERSION}.tgz"]
    sig = {c["kind"]: c for c in report["signatures"]["checks"]
           if c["artifact"] == f"Python-{VERSION}.tar.xz"}
    assert sig["openpgp"]["status"] == "verified"
    assert sig["sigstore"]["status"] == "unavailable"
    assert "--offline forbids downloading it" in sig["sigstore"]["detail"]


def test_offline_warm_cache_is_used_as_it_is(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world)
    common = ["--remote", str(world.repo), "--base-url", site.base_url,
              "--cache-dir", str(tmp_path / "cache"), "--out", str(tmp_path / "out")]
    assert run(world, *common) == 0
    site.requests.clear()
    code = run(world, *common, "--offline")
    report = report_at(tmp_path / "out" / "report.json")
    assert code == 0, report["reasons"]
    assert site.requests == []
    for art in report["artifacts"]:
        assert art["origin_note"] == "cached copy, not revalidated (--offline)"


def test_offline_needs_a_local_remote_and_cached_artifacts(
        world: World, site: Site, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = run(world, "--remote", "https://github.com/python/cpython.git", "--offline",
                  "--out", str(tmp_path / "out"))
    assert code == 2
    assert "--offline: the tag can only come from a local repository" in \
        capsys.readouterr().err
    code = run(world, "--remote", str(world.repo), "--base-url", site.base_url,
                  "--offline", "--out", str(tmp_path / "out"))
    assert code == 3
    err = capsys.readouterr().err.strip()
    assert err.endswith("is not in the cache, and --offline forbids downloading it")
    assert site.requests == []


def test_unreachable_python_org_is_stated_not_fatal(world: World, tmp_path: Path) -> None:
    """A packager's chroot without python.org: the signature files that would come from
    there are 'unavailable', the run still decides (the .asc beside the file verifies)."""
    local = local_orig(world, tmp_path)
    base = f"http://127.0.0.1:{closed_port()}/ftp/python"
    code = run(world, "--remote", str(world.repo), "--base-url", base,
                  "--published", str(local), "--out", str(tmp_path / "out"))
    report = report_at(tmp_path / "out" / "report.json")
    assert code == 0, report["reasons"]
    sigstore = [c for c in report["signatures"]["checks"] if c["kind"] == "sigstore"]
    assert [c["status"] for c in sigstore] == ["unavailable"]
    assert "cannot connect" in sigstore[0]["detail"]


def test_reasons_end_the_terminal_summary(world: World, site: Site, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    publish(site, world, signed=False)
    code = main(["verify", VERSION, "--recipes", str(world.recipes), "--remote",
                 str(world.repo), "--base-url", site.base_url, "--out", str(tmp_path / "out")])
    lines = capsys.readouterr().out.strip().splitlines()
    report = report_at(tmp_path / "out" / "report.json")
    assert code == 1 and report["verdict"] == "identical"
    reasons = [f"Python-{VERSION}{s}: no signature verified (openpgp absent; sigstore absent)"
               for s in (".tgz", ".tar.xz")]
    assert report["reasons"] == reasons
    verdict = next(i for i, ln in enumerate(lines) if ln.startswith("verdict:"))
    # Last on the screen, wrapped at 80 columns as in a CI log: the reasons, in order.
    tail = " ".join(" ".join(lines[verdict + 1:]).split())
    assert tail == " ".join(f"exit 1: {r}" for r in reasons)


def test_a_refusal_is_reported_in_the_daemons_words(world: World, tmp_path: Path) -> None:
    """The daemon answers, with an error of its own: not 'cannot talk to the daemon'."""
    with pytest.raises(DockerRefused) as info:
        Docker.connect().run(world.base_image, ["true"], mounts=[Mount(tmp_path, "/x")],
                             user="1000:1000", limits=Limits(memory="1k"))
    assert "the Docker daemon refused to create a container" in info.value.message
    assert "memory" in info.value.message.lower()
