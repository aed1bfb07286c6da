"""The one module that speaks HTTP: resumable, size-limited downloads into the cache.

What is stored is what the server sent, whole. A download is resumed (Range, If-Range)
only when the server states the whole file's sha256 (Repr-Digest, or Digest), and the
resumed file is stored only when it has that digest: the partial bytes on disk are not
trusted. Without a stated digest an interrupted download starts over.

urllib3 (installed with docker and sigstore) carries the requests: its Retry retries what
fails to connect and the answers worth asking again (429 and 5xx), with backoff, obeying
Retry-After up to a bound; a body cut off midway is resumed or restarted here.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import urllib3
from urllib3.util import Retry

from cpython_repro.cache import Cache, atomic_write, key, locked, sha256_file
from cpython_repro.errors import ArtifactNotFound, DownloadIncomplete, NetworkError, Offline
from cpython_repro.models import DEFAULT_MAX_DOWNLOAD

CHUNK = 1 << 16
AGAIN = frozenset({429, 500, 502, 503, 504})  # answers that may change if asked again
AGENT = {"User-Agent": "cpython-repro/0.1"}


class _Retry(Retry):
    """Retry-After is obeyed, but bounded: a server cannot park the run for a day."""

    MAX_AFTER = 60.0

    def get_retry_after(self, response: Any) -> float | None:
        after = super().get_retry_after(response)
        return None if after is None else min(after, self.MAX_AFTER)


@functools.cache
def _pool() -> urllib3.PoolManager:
    return urllib3.PoolManager()

ProgressFactory = Callable[[str, int | None, int], "Progress"]


class Progress:
    """No-op progress; the CLI hands in the console presenter's byte bar on a terminal."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def no_progress(name: str, total: int | None, initial: int) -> Progress:
    return Progress()


@dataclass(frozen=True)
class Downloaded:
    url: str
    path: Path
    sha256: str
    size: int
    from_cache: bool
    note: str = ""  # a cached copy used as it is, and why it was not revalidated


@dataclass(frozen=True)
class Fetcher:
    cache: Cache
    max_bytes: int = DEFAULT_MAX_DOWNLOAD
    attempts: int = 4
    timeout: float = 30.0
    backoff: float = 0.5
    progress: ProgressFactory = no_progress
    offline: bool = False  # never touch the network: cached copies as they are, or Offline

    def get(self, url: str) -> Downloaded:
        with locked(self.cache.lock("url-" + key(url))):
            hit = self.cache.lookup(url)
            if self.offline:
                if hit is None:
                    raise Offline(f"{url} is not in the cache, and --offline forbids "
                                  "downloading it")
                return self._cached(url, hit[0], "cached copy, not revalidated (--offline)")
            if hit is not None and hit[1]:
                state = self._revalidate(url, hit[1])
                if state == "same":
                    return self._cached(url, hit[0])
                if state != "changed":
                    # The copy is what this URL served before; without an answer now, it is
                    # the best evidence there is, and the report says so.
                    return self._cached(url, hit[0], f"cached copy, not revalidated: {state}")
            part = self.cache.partial(url)
            part.parent.mkdir(parents=True, exist_ok=True)
            last: Exception | None = None
            # Statuses and connections are retried by urllib3; here, a body cut off midway.
            for attempt in range(self.attempts):
                if attempt:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                try:
                    self._transfer(url, part)
                    break
                except (DownloadIncomplete, _Again) as exc:  # others are final
                    last = exc
            else:
                raise last or NetworkError(f"{url}: no attempt made")
            digest = sha256_file(part)
            size = part.stat().st_size
            validator = _read_meta(part).get("validator", "")
            _meta(part).unlink(missing_ok=True)
            blob = self.cache.store(url, part, digest, validator)
            return Downloaded(url, blob, digest, size, False)

    @staticmethod
    def _cached(url: str, blob: Path, note: str = "") -> Downloaded:
        return Downloaded(url, blob, blob.name, blob.stat().st_size, True, note)

    def _retry(self) -> Retry:
        return _Retry(total=self.attempts - 1, read=0, redirect=5,
                      backoff_factor=self.backoff, status_forcelist=AGAIN,
                      allowed_methods={"GET", "HEAD"}, respect_retry_after_header=True,
                      raise_on_status=False)

    def _request(self, method: str, url: str, headers: dict[str, str]) -> Any:
        """The response (its body not read yet), or NetworkError when no server answered."""
        try:
            # A pool's own headers apply only to requests that give none: ours always give some.
            return _pool().request(method, url, headers={**AGENT, **headers},
                                   retries=self._retry(),
                                   timeout=urllib3.Timeout(connect=self.timeout,
                                                           read=self.timeout),
                                   preload_content=False, decode_content=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise NetworkError(f"{url}: cannot connect ({reason})") from exc

    def _revalidate(self, url: str, validator: str) -> str:
        """"same", "changed" (a republished file at the same URL must be noticed), or why
        the server could not say."""
        header = "If-None-Match" if validator.startswith(('"', "W/")) else "If-Modified-Since"
        try:
            resp = self._request("HEAD", url, {header: validator})
        except NetworkError as exc:
            return exc.one_line().removeprefix(f"{url}: ")
        with resp:
            if resp.status >= 500 or resp.status == 429:
                return f"HTTP {resp.status} {resp.reason}"
            if resp.status == 304:
                return "same"
            now = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            return "same" if resp.status == 200 and now and now == validator else "changed"

    def _transfer(self, url: str, part: Path) -> None:
        have = part.stat().st_size if part.exists() else 0
        meta = _read_meta(part) if have else {}
        headers = {}
        if have and meta.get("validator") and meta.get("sha256"):
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = meta["validator"]
        else:
            have = 0  # no digest to check a resumed file against: start over
        resp = self._request("GET", url, headers)
        if resp.status >= 400:
            resp.release_conn()
            if resp.status in (404, 410):
                raise ArtifactNotFound(f"{url}: HTTP {resp.status}, no such artifact")
            if resp.status == 416:  # our partial is stale or complete-and-unknown: start over
                part.unlink(missing_ok=True)
                raise _Again(f"{url}: HTTP 416, restarting download")
            if resp.status in AGAIN:  # asked again already, with backoff and Retry-After
                raise NetworkError(f"{url}: HTTP {resp.status} {resp.reason}, "
                                   f"{self.attempts} attempt(s)")
            raise NetworkError(f"{url}: HTTP {resp.status} {resp.reason}")
        with resp:
            if resp.status == 200:
                have = 0  # the server ignored our range or the file changed: full body
            # A Repr-Digest is of the whole file, also in a 206; If-Range kept it the same.
            want = _stated_sha256(resp.headers) or (meta.get("sha256", "") if have else "")
            length = resp.headers.get("Content-Length")
            expected = have + int(length) if length is not None else None
            if expected is not None and expected > self.max_bytes:
                raise NetworkError(
                    f"{url}: {expected} bytes is over the {self.max_bytes}-byte limit",
                    hint="raise --max-download if this artifact is really that large",
                )
            validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
            if validator:
                atomic_write(_meta(part), json.dumps({"validator": validator,
                                                      "sha256": want}).encode())
            else:
                _meta(part).unlink(missing_ok=True)
            bar = self.progress(url.rsplit("/", 1)[-1], expected, have)
            got = have
            try:
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o666)
                with os.fdopen(fd, "wb") as out:
                    out.seek(have)
                    out.truncate()
                    while True:
                        try:
                            chunk = resp.read(CHUNK)
                        except (urllib3.exceptions.HTTPError, OSError) as exc:
                            raise DownloadIncomplete(
                                f"{url}: truncated: the connection was lost after {got} of "
                                f"{expected} bytes") from exc
                        if not chunk:
                            break
                        got += len(chunk)
                        if got > self.max_bytes:
                            raise NetworkError(f"{url}: more than {self.max_bytes} bytes, stopped")
                        out.write(chunk)
                        bar.update(len(chunk))
            finally:
                bar.close()
            if expected is not None and got != expected:
                raise DownloadIncomplete(f"{url}: truncated: got {got} of {expected} bytes")
        if want and sha256_file(part) != want:
            part.unlink(missing_ok=True)
            _meta(part).unlink(missing_ok=True)
            raise _Again(f"{url}: the {'resumed ' if have else ''}download does not have "
                         "the sha256 the server states; starting over")


class _Again(NetworkError):
    """Worth one more try from here: the partial file was thrown away."""


def _meta(part: Path) -> Path:
    return part.with_suffix(".json")


def _read_meta(part: Path) -> dict[str, str]:
    try:
        entry = json.loads(_meta(part).read_text())
        return {k: str(entry[k]) for k in ("validator", "sha256") if entry.get(k)}
    except (FileNotFoundError, ValueError, TypeError, AttributeError):
        return {}


_STATED = (("Repr-Digest", re.compile(r"(?:^|,)\s*sha-256=:([A-Za-z0-9+/]+=*):", re.I)),
           ("Digest", re.compile(r"(?:^|,)\s*sha-256=([A-Za-z0-9+/]+=*)", re.I)))


def _stated_sha256(headers: Any) -> str:
    """The whole file's sha256 as the server states it (RFC 9530 Repr-Digest, or RFC 3230
    Digest), hex; "" when it states none."""
    for name, pattern in _STATED:
        for value in headers.getlist(name):
            m = pattern.search(value)
            try:
                raw = base64.b64decode(m[1], validate=True) if m else b""
            except binascii.Error:
                continue
            if len(raw) == 32:
                return raw.hex()
    return ""
