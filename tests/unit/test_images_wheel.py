"""The pinned blurb wheel comes through PyPI's JSON API and the tool's own HTTP client, so
an install without pip (uv, pipx on uv) builds images too. A loopback server plays PyPI."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from cpython_repro import images
from cpython_repro.cache import Cache
from cpython_repro.download import Fetcher
from cpython_repro.errors import EnvironmentFailure, Offline
from cpython_repro.models import Dated
from tests.fixtures.server import Site, serve

WHEEL = b"PK\x03\x04 not really a wheel, but bytes with a pinned sha256"
NAME = "blurb-9.9.9-py3-none-any.whl"


@pytest.fixture
def pypi(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Site]:
    with serve(tmp_path / "www") as site:
        monkeypatch.setattr(images, "PYPI", site.base_url)
        url = site.put("files", NAME, WHEEL)
        index = {"releases": {"9.9.9": [
            {"filename": "blurb-9.9.9.tar.gz", "url": url + ".sdist",
             "digests": {"sha256": "0" * 64}},
            # Relative, as this machine's PyPI mirror answers: resolved against the index.
            {"filename": NAME, "url": f"../files/{NAME}",
             "digests": {"sha256": hashlib.sha256(WHEEL).hexdigest()}},
        ]}}
        site.put("blurb", "json", json.dumps(index).encode())
        yield site


def pin(*hashes: str) -> Dated:
    import datetime as dt

    return Dated(dt.date(2025, 1, 1), "9.9.9", hashes)


def no_subprocess(*_a: object, **_k: object) -> None:
    raise AssertionError("no process may be started to get a wheel (no pip)")


def test_wheel_found_by_pin_without_pip(pypi: Site, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    fetcher = Fetcher(Cache(tmp_path / "cache"))
    got = images._wheel(pin(hashlib.sha256(WHEEL).hexdigest()), fetcher)
    assert got.name == NAME and got.read_bytes() == WHEEL
    pypi.requests.clear()
    again = images._wheel(pin(hashlib.sha256(WHEEL).hexdigest()), fetcher)
    assert again == got and pypi.requests == []  # kept, found by its pinned hash


def test_a_listing_without_the_pinned_hash_is_refused(pypi: Site, tmp_path: Path) -> None:
    with pytest.raises(EnvironmentFailure, match=r"PyPI lists no blurb 9\.9\.9 wheel"):
        images._wheel(pin("f" * 64), Fetcher(Cache(tmp_path / "cache")))
    assert not (tmp_path / "cache" / "wheels").exists()


def test_offline_never_asks(pypi: Site, tmp_path: Path) -> None:
    with pytest.raises(Offline):
        images._wheel(pin(hashlib.sha256(WHEEL).hexdigest()),
                      Fetcher(Cache(tmp_path / "cache"), offline=True))
    assert pypi.requests == []
