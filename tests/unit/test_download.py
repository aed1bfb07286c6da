"""Downloads against a real loopback HTTP server: resume, errors, limits, cache integrity."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cpython_repro.cache import Cache
from cpython_repro.download import Fetcher
from cpython_repro.errors import ArtifactNotFound, DownloadIncomplete, NetworkError
from tests.fixtures.server import Site, serve

DATA = bytes(range(256)) * 4000


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve(tmp_path / "www") as s:
        yield s


def fetcher(tmp_path: Path, **kw: object) -> Fetcher:
    return Fetcher(Cache(tmp_path / "cache"), backoff=0.01, **kw)  # type: ignore[arg-type]


def test_download_and_revalidated_hit(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    f = fetcher(tmp_path)
    first = f.get(url)
    assert first.path.read_bytes() == DATA and not first.from_cache
    second = f.get(url)
    assert second.from_cache and second.sha256 == first.sha256
    assert site.requests[-1][0] == "HEAD"


def test_404_is_input_error(site: Site, tmp_path: Path) -> None:
    with pytest.raises(ArtifactNotFound) as info:
        fetcher(tmp_path).get(site.base_url + "/3.13.5/nope.tgz")
    assert info.value.exit_code == 2


def test_500_is_retried_then_network_error(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    site.faults["/ftp/python/3.13.5/a.tgz"] = "500"
    with pytest.raises(NetworkError) as info:
        fetcher(tmp_path, attempts=3).get(url)
    assert info.value.exit_code == 3
    assert len([r for r in site.requests if r[0] == "GET"]) == 3


def test_truncation_resumes_with_range(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    site.faults["/ftp/python/3.13.5/a.tgz"] = "drop-once"
    got = fetcher(tmp_path).get(url)
    assert got.path.read_bytes() == DATA
    assert site.requests[-1][2] == f"bytes={len(DATA) // 2}-"


def test_persistent_truncation_leaves_no_cache_entry(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    site.faults["/ftp/python/3.13.5/a.tgz"] = "truncate"
    with pytest.raises(DownloadIncomplete):
        fetcher(tmp_path, attempts=2).get(url)
    assert not (tmp_path / "cache" / "blobs").exists()


def test_size_limit(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    with pytest.raises(NetworkError, match="limit"):
        fetcher(tmp_path, max_bytes=1000).get(url)


def test_corrupted_cache_entry_is_fetched_again(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    f = fetcher(tmp_path)
    blob = f.get(url).path
    blob.write_bytes(b"rotten")
    again = f.get(url)
    assert not again.from_cache and again.path.read_bytes() == DATA


def test_stalled_server_times_out_and_resumes(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    site.faults["/ftp/python/3.13.5/a.tgz"] = "stall-once"
    got = fetcher(tmp_path, timeout=0.5).get(url)
    assert got.path.read_bytes() == DATA
    ranges = [r for m, _, r in site.requests if m == "GET"]
    assert ranges[0] == "" and ranges[1].startswith("bytes=")
    resumed_at = int(ranges[1][6:-1])  # what was written before the stall, whole chunks
    assert 0 < resumed_at <= len(DATA) // 2


def test_server_that_always_stalls_is_a_clear_network_error(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    site.faults["/ftp/python/3.13.5/a.tgz"] = "stall"
    with pytest.raises(NetworkError) as info:
        fetcher(tmp_path, timeout=0.5, attempts=2).get(url)
    assert "connection lost after" in info.value.one_line()
    assert info.value.exit_code == 3
    assert not list((tmp_path / "cache" / "blobs").rglob("*.tgz"))
