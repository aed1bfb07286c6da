"""The one module that speaks HTTP: resumable, size-limited downloads into the cache.

What is stored is what the server sent, whole. A download is resumed (Range, If-Range)
only when the server states the whole file's sha256 (Repr-Digest, or Digest), and the
resumed file is stored only when it has that digest: the partial bytes on disk are not
trusted. Without a stated digest an interrupted download starts over.
"""

from __future__ import annotations

import base64
import binascii
import http.client
import json
import os
import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from cpython_repro.cache import Cache, atomic_write, key, locked, sha256_file
from cpython_repro.errors import ArtifactNotFound, DownloadIncomplete, NetworkError, Offline

CHUNK = 1 << 16
DEFAULT_MAX_BYTES = 512 << 20  # a CPython source tarball is ~30 MB; 512 MiB is absurd already

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
    max_bytes: int = DEFAULT_MAX_BYTES
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
            for attempt in range(self.attempts):
                if attempt:
                    time.sleep(self.backoff * 2 ** (attempt - 1))
                try:
                    self._transfer(url, part)
                    break
                except NetworkError as exc:  # DownloadIncomplete included
                    last = exc
                    if isinstance(exc, _Fatal):
                        raise
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

    def _revalidate(self, url: str, validator: str) -> str:
        """"same", "changed" (a republished file at the same URL must be noticed), or why
        the server could not say."""
        header = "If-None-Match" if validator.startswith(('"', "W/")) else "If-Modified-Since"
        req = urllib.request.Request(url, method="HEAD", headers={header: validator})  # noqa: S310
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                now = resp.headers.get("ETag") or resp.headers.get("Last-Modified")
                return "same" if now and now == validator else "changed"
        except urllib.error.HTTPError as exc:
            if exc.code >= 500:
                return f"HTTP {exc.code} {exc.reason}"
            return "same" if exc.code == 304 else "changed"
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            return f"cannot connect ({getattr(exc, 'reason', exc)})"

    def _transfer(self, url: str, part: Path) -> None:
        have = part.stat().st_size if part.exists() else 0
        meta = _read_meta(part) if have else {}
        headers = {"User-Agent": "cpython-repro/0.1"}
        if have and meta.get("validator") and meta.get("sha256"):
            headers["Range"] = f"bytes={have}-"
            headers["If-Range"] = meta["validator"]
        else:
            have = 0  # no digest to check a resumed file against: start over
        req = urllib.request.Request(url, headers=headers)  # noqa: S310 (http and https only, checked in fetch)
        try:
            resp = urllib.request.urlopen(req, timeout=self.timeout)  # noqa: S310
        except urllib.error.HTTPError as exc:
            if exc.code in (404, 410):
                raise _NotFound(f"{url}: HTTP {exc.code}, no such artifact") from exc
            if exc.code == 416:  # our partial is stale or complete-and-unknown: start over
                part.unlink(missing_ok=True)
                raise NetworkError(f"{url}: HTTP 416, restarting download") from exc
            if 400 <= exc.code < 500:
                raise _Fatal(f"{url}: HTTP {exc.code} {exc.reason}") from exc
            raise NetworkError(f"{url}: HTTP {exc.code} {exc.reason}") from exc
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            reason = getattr(exc, "reason", exc)
            raise NetworkError(f"{url}: cannot connect ({reason})") from exc
        with resp:
            if resp.status == 200:
                have = 0  # the server ignored our range or the file changed: full body
            # A Repr-Digest is of the whole file, also in a 206; If-Range kept it the same.
            want = _stated_sha256(resp.headers) or (meta.get("sha256", "") if have else "")
            length = resp.headers.get("Content-Length")
            expected = have + int(length) if length is not None else None
            if expected is not None and expected > self.max_bytes:
                raise _Fatal(
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
                fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as out:
                    out.seek(have)
                    out.truncate()
                    while True:
                        try:
                            chunk = resp.read(CHUNK)
                        except (http.client.IncompleteRead, OSError) as exc:
                            raise DownloadIncomplete(
                                f"{url}: connection lost after {got} of {expected} bytes"
                            ) from exc
                        if not chunk:
                            break
                        got += len(chunk)
                        if got > self.max_bytes:
                            raise _Fatal(f"{url}: more than {self.max_bytes} bytes, stopped")
                        out.write(chunk)
                        bar.update(len(chunk))
            finally:
                bar.close()
            if expected is not None and got != expected:
                raise DownloadIncomplete(f"{url}: truncated: got {got} of {expected} bytes")
        if want and sha256_file(part) != want:
            part.unlink(missing_ok=True)
            _meta(part).unlink(missing_ok=True)
            raise NetworkError(f"{url}: the {'resumed ' if have else ''}download does not "
                               "have the sha256 the server states; starting over")


class _Fatal(NetworkError):
    """Not worth retrying: the answer will not change."""


class _NotFound(ArtifactNotFound, _Fatal):
    exit_code = ArtifactNotFound.exit_code


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


def _stated_sha256(headers: http.client.HTTPMessage) -> str:
    """The whole file's sha256 as the server states it (RFC 9530 Repr-Digest, or RFC 3230
    Digest), hex; "" when it states none."""
    for name, pattern in _STATED:
        for value in headers.get_all(name) or ():
            m = pattern.search(value)
            try:
                raw = base64.b64decode(m[1], validate=True) if m else b""
            except binascii.Error:
                continue
            if len(raw) == 32:
                return raw.hex()
    return ""
