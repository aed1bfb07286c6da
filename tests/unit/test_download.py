"""Downloads against a real loopback HTTP server: resume, errors, limits, cache integrity."""

from __future__ import annotations

import hashlib
import json
import time
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
    assert site.agents == ["cpython-repro/0.1"] * 2  # the GET and the HEAD both say who asks


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


def test_429_waits_as_retry_after_says(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    site.faults["/ftp/python/3.13.5/a.tgz"] = "429:1"
    started = time.monotonic()
    got = fetcher(tmp_path).get(url)
    assert got.path.read_bytes() == DATA
    assert time.monotonic() - started >= 1.0  # waited as asked, not the 0.01 s backoff
    assert [m for m, _, _ in site.requests] == ["GET", "GET"]


def test_retry_after_is_bounded(site: Site, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    """A server asking for a day's pause gets at most a minute (shortened here)."""
    from cpython_repro import download

    monkeypatch.setattr(download._Retry, "MAX_AFTER", 0.2)
    url = site.put("3.13.5", "a.tgz", DATA)
    site.faults["/ftp/python/3.13.5/a.tgz"] = "429:86400"
    started = time.monotonic()
    assert fetcher(tmp_path).get(url).path.read_bytes() == DATA
    assert time.monotonic() - started < 5


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
    assert "the connection was lost after" in info.value.one_line()
    assert info.value.exit_code == 3
    assert not list((tmp_path / "cache" / "blobs").rglob("*.tgz"))


# A damaged partial download is never stored as what the server published.

def _etag(data: bytes) -> str:
    return '"' + hashlib.sha256(data).hexdigest()[:32] + '"'


def _plant_partial(f: Fetcher, url: str, data: bytes, meta: dict[str, str]) -> None:
    part = f.cache.partial(url)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data)
    part.with_suffix(".json").write_text(json.dumps(meta))


def test_damaged_partial_is_resumed_then_rejected_and_fetched_whole(site: Site,
                                                                    tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    f = fetcher(tmp_path)
    half = len(DATA) // 2
    damaged = bytearray(DATA[:half])
    damaged[1000] ^= 0xFF  # one flipped byte in what was kept from an earlier attempt
    _plant_partial(f, url, bytes(damaged), {"validator": _etag(DATA),
                                            "sha256": hashlib.sha256(DATA).hexdigest()})
    got = f.get(url)
    assert got.path.read_bytes() == DATA
    assert got.sha256 == hashlib.sha256(DATA).hexdigest()
    ranges = [r for m, _, r in site.requests if m == "GET"]
    assert ranges == [f"bytes={half}-", ""]  # resumed, found wrong, fetched from zero


def test_without_a_stated_digest_a_download_starts_over(site: Site, tmp_path: Path) -> None:
    site.digests = False
    url = site.put("3.13.5", "a.tgz", DATA)
    site.faults["/ftp/python/3.13.5/a.tgz"] = "drop-once"
    got = fetcher(tmp_path).get(url)
    assert got.path.read_bytes() == DATA
    assert [r for m, _, r in site.requests if m == "GET"] == ["", ""]


def test_a_partial_without_a_digest_is_never_resumed(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    f = fetcher(tmp_path)
    _plant_partial(f, url, b"\x00" * 5000, {"validator": _etag(DATA)})  # an older tool's
    assert f.get(url).path.read_bytes() == DATA
    assert [r for m, _, r in site.requests if m == "GET"] == [""]


def test_a_wrong_stated_digest_is_never_stored(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    site.wrong_digest["/ftp/python/3.13.5/a.tgz"] = hashlib.sha256(b"other").digest()
    with pytest.raises(NetworkError, match="does not have the sha256 the server states"):
        fetcher(tmp_path, attempts=2).get(url)
    assert not list((tmp_path / "cache").glob("blobs/**/*.tgz"))
    assert not (tmp_path / "cache" / "urls").exists()


def test_an_entry_stored_before_whole_checks_is_not_reused(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    f = fetcher(tmp_path)
    damaged = DATA[:-1] + b"!"
    tmp = tmp_path / "old"
    tmp.write_bytes(damaged)
    f.cache.store(url, tmp, hashlib.sha256(damaged).hexdigest(), _etag(DATA))
    index = f.cache.url_index(url)
    entry = json.loads(index.read_text())
    del entry["whole"]  # as an earlier version wrote it
    index.write_text(json.dumps(entry))
    got = f.get(url)
    assert not got.from_cache and got.path.read_bytes() == DATA


def test_a_forgotten_blob_is_downloaded_again(site: Site, tmp_path: Path) -> None:
    url = site.put("3.13.5", "a.tgz", DATA)
    f = fetcher(tmp_path)
    first = f.get(url)
    f.cache.forget(url)
    assert not first.path.exists()
    again = f.get(url)
    assert not again.from_cache and again.path.read_bytes() == DATA


@pytest.mark.parametrize(("verdict", "signature", "dropped"), [
    ("error", "verified", True), ("content-differs", "verified", True),
    ("identical", "failed", True), ("same-content", "verified", False),
    ("identical", "verified", False)])
def test_verify_drops_an_artifact_whose_use_failed(site: Site, tmp_path: Path, verdict: str,
                                                   signature: str, dropped: bool) -> None:
    from types import SimpleNamespace

    from cpython_repro.cli import _forget_failed
    from cpython_repro.models import Comparison, Published, SignatureCheck

    url = site.put("3.13.5", "a.tgz", DATA)
    site.put("3.13.5", "a.tgz.asc", b"signature")
    f = fetcher(tmp_path)
    blob, asc = f.get(url).path, f.get(url + ".asc").path
    local = tmp_path / "local.tgz"
    local.write_bytes(DATA)
    report = SimpleNamespace(
        comparisons=(Comparison("a.tgz", verdict, "", "", 0, 0, None, 0, 0),  # type: ignore[arg-type]
                     Comparison("b.tgz", "error", "", "", 0, 0, None, 0, 0)),
        signatures=(SignatureCheck("a.tgz", "openpgp", signature),),  # type: ignore[arg-type]
        published=(Published("a.tgz", blob, "", 0, url),
                   Published("b.tgz", local, "", 0, str(local))))
    _forget_failed(f.cache, report)  # type: ignore[arg-type]
    assert blob.exists() is not dropped and asc.exists() is not dropped
    assert local.read_bytes() == DATA  # a file the user gave is never touched
