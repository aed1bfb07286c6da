"""`cpython-repro doctor`: what this host has and lacks, for installs made without the
checkout's `make setup` (pip, pipx, uv). Each check says what was found or what to install."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from cpython_repro import proc
from cpython_repro.errors import ReproError

MIN_FREE = 4 << 30  # a rebuild holds the payload, both artifacts and an adoption's copies


@dataclass(frozen=True)
class Check:
    name: str
    status: Literal["ok", "missing", "optional"]  # optional: missing, but verify works
    found: str  # version or path, or what is wrong
    fix: str = ""
    needed_for: str = ""


def _tool(name: str, needed_for: str, fix: str, required: bool = True,
          version: tuple[str, ...] = ("--version",)) -> Check:
    path = shutil.which(name)
    if path is None:
        return Check(name, "missing" if required else "optional", "not found", fix, needed_for)
    try:
        out = proc.run([path, *version], timeout=30).stdout.decode("utf-8", "replace")
        first = (out.strip().splitlines() or [path])[0]
    except ReproError as exc:
        return Check(name, "missing", f"{path} does not run: {exc.one_line()}", fix, needed_for)
    return Check(name, "ok", first[:100], needed_for=needed_for)


def _docker() -> Check:
    from cpython_repro.dockerio import Docker

    fix = ("install docker.io (Debian) or Docker Engine, start dockerd, and make its socket "
           "usable by this user (or set DOCKER_HOST)")
    try:
        version = Docker.connect(timeout=10).server_version()
    except ReproError as exc:
        return Check("Docker daemon", "missing", exc.message, fix, "every rebuild")
    return Check("Docker daemon", "ok", f"server {version}", needed_for="every rebuild")


def _space(cache: Path) -> Check:
    where = cache if cache.exists() else next((p for p in cache.parents if p.exists()), cache)
    free = shutil.disk_usage(where).free
    status: Literal["ok", "missing"] = "ok" if free >= MIN_FREE else "missing"
    return Check("free disk", status, f"{free >> 30} GiB free at {where}",
                 f"free at least {MIN_FREE >> 30} GiB, or use --cache-dir elsewhere",
                 "the cache and a rebuild's outputs")


def checks(cache: Path) -> list[Check]:
    return [
        _docker(),
        _tool("git", "fetching the tag", "apt-get install git"),
        _tool("gpg", "OpenPGP signatures (or --no-signatures)", "apt-get install gpg"),
        _tool("mmdebstrap", "bootstrapping the base images once (`cpython-repro images build`), "
              "unless they are built already",
              "apt-get install mmdebstrap mount arch-test debian-archive-keyring",
              required=False),
        _tool("diffoscope", "member diffs in the report (the verdict does not need it)",
              "apt-get install diffoscope-minimal", required=False),
        _space(cache),
    ]


def ok(found: list[Check]) -> bool:
    return all(c.status != "missing" for c in found)
