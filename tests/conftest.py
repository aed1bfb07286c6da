"""Shared fixtures. A test whose prerequisite is missing (Docker, root, a tool) skips on a
laptop but fails under CI=true, where .ci/run must have installed everything."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

IN_CI = os.environ.get("CI", "") in ("true", "1")


def require(ok: object, missing: str) -> None:
    """Skip without the prerequisite, except under CI=true: there it is a failure."""
    if ok:
        return
    if IN_CI:
        pytest.fail(f"CI=true but {missing}")
    pytest.skip(missing)


def docker_or_skip() -> None:
    from cpython_repro.dockerio import Docker
    from cpython_repro.errors import DockerUnavailable

    try:
        Docker.connect(timeout=10)
    except DockerUnavailable as exc:
        require(False, f"Docker is not usable: {exc.one_line()}")


@pytest.fixture(autouse=True)
def _no_user_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    # Tests never touch the user's cache unless they pass one explicitly.
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg-cache"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))  # the run history
    yield
