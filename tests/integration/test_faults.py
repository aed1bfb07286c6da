"""Faults against the real components: a hung or killed container, Ctrl-C, the Docker daemon
going away mid-run, a full disk, and four verifies sharing one cache. In every case: the
right exit code, a one-line cause, no wrong verdict, nothing left behind."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest

from cpython_repro.cache import sha256_file
from cpython_repro.cli import main
from tests.conftest import require
from tests.fixtures.server import Site
from tests.integration.conftest import VERSION, World, publish
from tests.integration.test_errors import one_error_line

pytestmark = pytest.mark.docker
LABEL = {"label": "cpython-repro"}


def hanging_recipes(world: World, dest: Path) -> Path:
    """The test recipes with a compression step that never ends."""
    import shutil

    target = dest / "recipes"
    shutil.copytree(world.recipes, target)
    recipe = target / "release-tools-2023-10.toml"
    recipe.write_text(recipe.read_text().replace('compress = ["xz", "-T1"]',
                                                 'compress = ["sh", "-c", "sleep 600"]'))
    return target


def argv(world: World, site: Site, tmp_path: Path, recipes: Path, *extra: str) -> list[str]:
    return ["verify", VERSION, "--remote", str(world.repo), "--base-url", site.base_url,
            "--recipes", str(recipes), "--cache-dir", str(tmp_path / "cache"),
            "--out", str(tmp_path / "out"), "--no-regen-check", "-q", *extra]


def our_containers() -> list[object]:
    """Asked of the real daemon, whatever DOCKER_HOST a test has set."""
    client = docker.DockerClient(base_url=os.environ.get("CPYTHON_REPRO_REAL_DOCKER",
                                                         "unix:///var/run/docker.sock"))
    return client.containers.list(all=True, filters=LABEL)  # type: ignore[no-any-return]


def wait_for_container(timeout: float = 60) -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        running = [c for c in our_containers() if c.status == "running"]  # type: ignore[attr-defined]
        if running:
            return running[0]
        time.sleep(0.2)
    raise AssertionError("no rebuild container started")


@pytest.fixture(autouse=True)
def _no_leftover_containers() -> Iterator[None]:
    yield
    left = our_containers()
    for c in left:
        c.remove(force=True)  # type: ignore[attr-defined]
    assert not left, "a container was left behind"


def test_hung_rebuild_is_stopped_and_its_log_kept(world: World, site: Site, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    publish(site, world)
    recipes = hanging_recipes(world, tmp_path)
    started = time.monotonic()
    code = main(argv(world, site, tmp_path, recipes, "--timeout", "8"))
    assert code == 3
    assert time.monotonic() - started < 60
    line = one_error_line(capsys)
    assert f"compressing Python-{VERSION}.tar.xz took longer than 8s and was stopped" in line
    log = tmp_path / "out" / f"compress-Python-{VERSION}.tar.xz.log"
    assert f"log kept at {log}" in line
    assert "+ sh -c sleep 600 < payload.tar > Python-3.13.99.tar.xz" in log.read_text()
    assert not (tmp_path / "out" / "report.json").exists()  # no verdict without a rebuild


def test_killed_container_is_exit_3_with_its_log(world: World, site: Site, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    publish(site, world)
    recipes = hanging_recipes(world, tmp_path)
    killer = threading.Thread(target=lambda: wait_for_container().kill())  # type: ignore[attr-defined]
    killer.start()
    code = main(argv(world, site, tmp_path, recipes))
    killer.join()
    assert code == 3
    line = one_error_line(capsys)
    assert "failed in the container (exit 137)" in line
    assert "log kept at" in line


def test_ctrl_c_leaves_no_container_or_temporary_directory(world: World, site: Site,
                                                           tmp_path: Path) -> None:
    publish(site, world)
    recipes = hanging_recipes(world, tmp_path)
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {**os.environ, "TMPDIR": str(tmp), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    child = subprocess.Popen([sys.executable, "-m", "cpython_repro",
                              *argv(world, site, tmp_path, recipes)],
                             env=env, stderr=subprocess.PIPE, text=True)
    wait_for_container()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert err.strip().splitlines() == [
        "cpython-repro: error: interrupted; containers and partial files were cleaned up"]
    assert our_containers() == []
    assert list(tmp.iterdir()) == []  # gpg homes, diffoscope inputs: all gone
    cache = tmp_path / "cache"
    assert not [p for p in cache.rglob("*") if p.name.startswith((".tmp-", ".init-",
                                                                   "bootstrap-"))]


class DockerProxy:
    """A unix socket in front of the real daemon that can be cut, as if dockerd stopped."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(str(path))
        self.server.listen(16)
        self.conns: list[socket.socket] = []
        self.cut = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self.cut.is_set():
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect("/var/run/docker.sock")
            self.conns += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()

    def _pump(self, a: socket.socket, b: socket.socket) -> None:
        with contextlib.suppress(OSError, ValueError):
            while not self.cut.is_set():
                ready, _, _ = select.select([a, b], [], [], 0.2)
                for src in ready:
                    data = src.recv(65536)
                    if not data:  # one side hung up: so does the other, as with a socket
                        for s in (a, b):
                            with contextlib.suppress(OSError):
                                s.shutdown(socket.SHUT_RDWR)
                        return
                    (b if src is a else a).sendall(data)

    def stop(self) -> None:
        """As when dockerd exits: connections drop and new ones are refused."""
        self.cut.set()
        with contextlib.suppress(OSError):
            self.server.shutdown(socket.SHUT_RDWR)  # wakes the accept() blocked in _accept
        self.server.close()
        self.path.unlink(missing_ok=True)
        for c in self.conns:
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RDWR)
                c.close()


def test_docker_daemon_going_away_mid_run(world: World, site: Site, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    require(Path("/var/run/docker.sock").exists(), "the daemon is not on /var/run/docker.sock")
    publish(site, world)
    recipes = hanging_recipes(world, tmp_path)
    proxy = DockerProxy(Path("/tmp") / f"cpython-repro-proxy-{os.getpid()}.sock")
    monkeypatch.setenv("DOCKER_HOST", f"unix://{proxy.path}")
    def cut() -> None:
        wait_for_container()
        time.sleep(1)  # the client is now blocked in its wait for the container
        proxy.stop()

    cutter = threading.Thread(target=cut)
    cutter.start()
    started = time.monotonic()
    try:
        code = main(argv(world, site, tmp_path, recipes))
    finally:
        cutter.join()
        proxy.path.unlink(missing_ok=True)
    assert time.monotonic() - started < 120
    # The client could not remove its container through a daemon it cannot reach; here the
    # real daemon is still running it (a stopped dockerd would have taken it down).
    for c in our_containers():
        c.remove(force=True)  # type: ignore[attr-defined]
    assert code == 3
    line = one_error_line(capsys)
    assert "Docker" in line and "daemon" in line, line
    assert not (tmp_path / "out" / "report.json").exists()


def test_full_disk(world: World, site: Site, tmp_path: Path,
                   capsys: pytest.CaptureFixture[str]) -> None:
    require(os.getuid() == 0, "not root: cannot mount a small tmpfs")
    publish(site, world)
    out = tmp_path / "small"
    out.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=96k", "tmpfs", str(out)], check=True)
    try:
        code = main(["verify", VERSION, "--remote", str(world.repo), "--base-url",
                     site.base_url, "--recipes", str(world.recipes), "--cache-dir",
                     str(tmp_path / "cache"), "--out", str(out), "--no-regen-check", "-q"])
        line = one_error_line(capsys)
    finally:
        subprocess.run(["umount", str(out)], check=True)
    assert code == 3
    assert "No space left on device" in line or "no space" in line.lower(), line


def test_four_parallel_verifies_share_one_cache(world: World, site: Site,
                                                tmp_path: Path) -> None:
    publish(site, world)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    children = [
        subprocess.Popen([sys.executable, "-m", "cpython_repro", "verify", VERSION,
                          "--remote", str(world.repo), "--base-url", site.base_url,
                          "--recipes", str(world.recipes), "--cache-dir",
                          str(tmp_path / "cache"), "--out", str(tmp_path / f"out{i}"), "-q"],
                         env=env, stderr=subprocess.PIPE, text=True)
        for i in range(4)
    ]
    results = [(c.wait(timeout=600), c.stderr.read() if c.stderr else "") for c in children]
    assert [code for code, _ in results] == [0, 0, 0, 0], results
    blobs = [p for p in (tmp_path / "cache" / "blobs").rglob("*") if p.is_file()]
    assert len(blobs) == 4  # two artifacts and their two .asc, each stored once
    assert all(sha256_file(b) == b.name for b in blobs)
    assert len(list((tmp_path / "cache" / "git").iterdir())) == 1
    gets = [p for m, p, _ in site.requests if m == "GET" and p.endswith((".tgz", ".tar.xz"))]
    assert 2 <= len(gets) <= 8
