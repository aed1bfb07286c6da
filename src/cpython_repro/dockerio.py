"""The one module that talks to the Docker daemon (through the Docker SDK).

A lost daemon anywhere in here becomes DockerUnavailable (exit 3), never a traceback.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
import requests.exceptions

from cpython_repro.errors import DockerRefused, DockerUnavailable, EnvironmentFailure
from cpython_repro.models import Limits

_DAEMON_ERRORS = (docker.errors.DockerException, requests.exceptions.RequestException, OSError)


@dataclass(frozen=True)
class Mount:
    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    log: str
    timed_out: bool = False


@dataclass(frozen=True)
class ImageInfo:
    ref: str
    image_id: str
    layers: tuple[str, ...]
    labels: dict[str, str] = field(default_factory=dict)
    created: str = ""


def _unavailable(exc: BaseException, doing: str = "answer") -> EnvironmentFailure:
    """What went wrong, told apart: the daemon answered with an error of its own (kept
    word for word), or it did not answer at all."""
    if isinstance(exc, docker.errors.APIError):
        said = exc.explanation or str(exc)
        said = said.decode("utf-8", "replace") if isinstance(said, bytes) else str(said)
        return DockerRefused(f"the Docker daemon refused to {doing}: "
                             f"{' '.join(said.split())[:400]}")
    where = os.environ.get("DOCKER_HOST", "the default socket")
    detail = " ".join(str(exc).split())[:200] or type(exc).__name__
    return DockerUnavailable(
        f"cannot talk to the Docker daemon at {where}: {type(exc).__name__}: {detail}",
        hint="start dockerd (or set DOCKER_HOST) and run again",
    )


def _image_info(ref: str, img: Any) -> ImageInfo:
    attrs = img.attrs
    return ImageInfo(
        ref=ref,
        image_id=img.id,
        layers=tuple(attrs.get("RootFS", {}).get("Layers", ())),
        labels=dict((attrs.get("Config") or {}).get("Labels") or {}),
        created=str(attrs.get("Created", "")),
    )


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def build_failure(build_log: Any, msg: str) -> str:
    """The failing step and what it printed. The daemon's own message repeats the whole RUN
    command, which would crowd out the step's output (e.g. sha256sum's "FAILED" line)."""
    step = ""
    printed: list[str] = []
    for chunk in build_log:
        # The daemon colours a step's stderr; the escapes are not part of what it said.
        for raw in _ANSI.sub("", str(chunk.get("stream", ""))).splitlines():
            line = " ".join(raw.split())
            if line.startswith("Step "):
                step, printed = line, []
            elif line and not line.startswith(("--->", "Removing intermediate")):
                printed.append(line)
    said = " | ".join(printed)[-400:]
    where = f"{step[:80]}{'…' if len(step) > 80 else ''}: " if step else ""
    return f"{where}{said or ' '.join(str(msg).split())[-400:]}"


class Docker:
    """Shared by the threads of one run: containers run side by side, and stop_all() ends
    every one of them at once (Ctrl-C, or a step that failed while others still run)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()
        self._running: dict[str, Any] = {}
        self._stopping = False

    def stop_all(self) -> None:
        """Kill every running container, and refuse to start any more: a thread that was
        about to start one when the run was stopped must not leave it running."""
        with self._lock:
            self._stopping = True
            running = list(self._running.values())
        for ctr in running:
            with contextlib.suppress(*_DAEMON_ERRORS):
                ctr.kill()

    @classmethod
    def connect(cls, timeout: int = 600) -> Docker:
        try:
            client = docker.from_env(timeout=timeout)
            client.ping()
        except _DAEMON_ERRORS as exc:
            raise _unavailable(exc) from exc
        return cls(client)

    def server_version(self) -> str:
        try:
            return str(self._client.version().get("Version", "unknown"))
        except _DAEMON_ERRORS as exc:
            raise _unavailable(exc, "say its version") from exc

    def _answers(self) -> bool:
        try:
            self._client.ping()
        except _DAEMON_ERRORS:
            return False
        return True

    def info(self, ref: str) -> ImageInfo | None:
        try:
            img = self._client.images.get(ref)
        except docker.errors.ImageNotFound:
            return None
        except _DAEMON_ERRORS as exc:
            raise _unavailable(exc, f"look up image {ref}") from exc
        return _image_info(ref, img)

    def import_rootfs(self, tarball: Path, repository: str, tag: str) -> ImageInfo:
        try:
            self._client.api.import_image_from_file(
                str(tarball), repository=repository, tag=tag,
            )
        except _DAEMON_ERRORS as exc:
            raise _unavailable(exc, f"import {tarball.name}") from exc
        found = self.info(f"{repository}:{tag}")
        if found is None:
            raise EnvironmentFailure(f"docker import of {tarball.name} produced no image")
        return found

    def build(self, context: Path, dockerfile: str, ref: str, buildargs: dict[str, str],
              labels: dict[str, str], network: str) -> ImageInfo:
        try:
            _, logs = self._client.images.build(
                path=str(context), dockerfile=dockerfile, tag=ref, buildargs=buildargs,
                labels=labels, network_mode=network, rm=True, forcerm=True, pull=False,
            )
            for _ in logs:
                pass
        except docker.errors.BuildError as exc:
            raise EnvironmentFailure(f"building image {ref} failed: "
                                     f"{build_failure(exc.build_log, exc.msg)}") from exc
        except _DAEMON_ERRORS as exc:
            raise _unavailable(exc, f"build image {ref}") from exc
        found = self.info(ref)
        if found is None:
            raise EnvironmentFailure(f"image {ref} missing right after its build")
        return found

    def images(self, prefix: str) -> list[ImageInfo]:
        try:
            listed = self._client.images.list()
        except _DAEMON_ERRORS as exc:
            raise _unavailable(exc, "list images") from exc
        out = []
        for img in listed:
            for tag in img.tags:
                if tag.startswith(prefix):
                    out.append(_image_info(tag, img))
        return out

    def remove(self, ref: str) -> None:
        try:
            self._client.images.remove(ref, force=False, noprune=False)
        except docker.errors.ImageNotFound:
            pass
        except _DAEMON_ERRORS as exc:
            raise _unavailable(exc, f"remove image {ref}") from exc

    def run(self, image: str, command: list[str], *, mounts: list[Mount], user: str,
            limits: Limits, env: dict[str, str] | None = None,
            workdir: str = "/") -> RunResult:
        """Run to completion with no network, no capabilities and a read-only root."""
        with self._container(image, command, mounts, user, limits, env or {}, workdir) as ctr:
            deadline = time.monotonic() + limits.seconds
            try:
                status = ctr.wait(timeout=limits.seconds)
                code = int(status.get("StatusCode", -1))
                timed_out = False
            except _DAEMON_ERRORS as exc:
                # docker-py reports its own read timeout as a ConnectionError: it is our time
                # limit only if the deadline has passed and the daemon still answers.
                if time.monotonic() < deadline - 1 or not self._answers():
                    raise _unavailable(exc, f"run a container of {image}") from exc
                with contextlib.suppress(*_DAEMON_ERRORS):
                    ctr.kill()
                code, timed_out = -1, True
            try:
                log = ctr.logs(stdout=True, stderr=True).decode("utf-8", "replace")
            except _DAEMON_ERRORS:
                log = "(log lost: the daemon did not answer)"
            return RunResult(code, log, timed_out)

    @contextlib.contextmanager
    def _container(self, image: str, command: list[str], mounts: list[Mount], user: str,
                   limits: Limits, env: dict[str, str], workdir: str) -> Iterator[Any]:
        volumes = {
            str(m.source): {"bind": m.target, "mode": "ro" if m.read_only else "rw"}
            for m in mounts
        }
        try:
            ctr = self._client.containers.create(
                image, command, user=user, environment=env, working_dir=workdir,
                volumes=volumes, network_mode="none", network_disabled=True,
                cap_drop=["ALL"], security_opt=["no-new-privileges"], read_only=True,
                tmpfs={"/tmp": "rw,nosuid,nodev,size=256m"},
                mem_limit=limits.memory, memswap_limit=limits.memory,
                pids_limit=limits.pids, nano_cpus=int(limits.cpus * 1e9),
                labels={"cpython-repro": "rebuild"}, detach=True,
            )
        except docker.errors.ImageNotFound as exc:
            raise EnvironmentFailure(f"image {image} is not present",
                                     hint="run `make images`") from exc
        except _DAEMON_ERRORS as exc:
            raise _unavailable(exc, f"create a container of {image}") from exc
        with self._lock:
            stopping = self._stopping
            if not stopping:
                self._running[ctr.id] = ctr
        if stopping:
            with contextlib.suppress(*_DAEMON_ERRORS):
                ctr.remove(force=True)
            raise EnvironmentFailure("the run is stopping: no container is started any more")
        try:
            ctr.start()
            yield ctr
        except _DAEMON_ERRORS as exc:
            raise _unavailable(exc, f"run a container of {image}") from exc
        finally:
            # Always removed, on error and on Ctrl-C alike; but a daemon that stopped
            # answering must not hold the run for the client's whole timeout (the client is
            # shared: its timeout is changed under the lock).
            with self._lock:
                self._running.pop(ctr.id, None)
                api = self._client.api
                saved, api.timeout = api.timeout, min(api.timeout, 30)
                try:
                    with contextlib.suppress(*_DAEMON_ERRORS):
                        ctr.remove(force=True)
                finally:
                    api.timeout = saved
