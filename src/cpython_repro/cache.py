"""The cache: content-addressed blobs, a URL index, bare git repositories, all shared safely.

Every final file appears whole (files.atomic_write, or a rename), so a reader sees a whole
file or none. Writers of the
same entry serialise on an flock; concurrent runs simply wait for each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cpython_repro.files import atomic_write as atomic_write  # cache entries are outputs too


def default_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "cpython-repro"


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def key(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


@dataclass(frozen=True)
class Cache:
    root: Path

    def blob(self, digest: str) -> Path:
        if not re.fullmatch("[0-9a-f]{64}", digest):  # it names a path: never a traversal
            raise ValueError(f"not a sha256 digest: {digest[:80]!r}")
        return self.root / "blobs" / "sha256" / digest[:2] / digest

    def partial(self, url: str) -> Path:
        """Unfinished downloads, kept only to resume; never read as a result."""
        return self.root / "partial" / key(url)

    def lock(self, name: str) -> Path:
        return self.root / "locks" / name

    def url_index(self, url: str) -> Path:
        return self.root / "urls" / key(url)

    def git_dir(self, remote: str) -> Path:
        return self.root / "git" / (key(remote)[:24] + ".git")

    def lookup(self, url: str) -> tuple[Path, str] | None:
        """The blob a URL was last downloaded to, if still whole, and its HTTP validator
        ("" when the blob may not be revalidated and reused)."""
        index = self.url_index(url)
        try:
            entry = json.loads(index.read_text())
            digest, validator = str(entry["sha256"]), str(entry.get("validator", ""))
            blob = self.blob(digest)
            if entry.get("whole") is not True:
                # Stored before downloads were checked whole (a resumed one could hold
                # damaged bytes): kept, but never revalidated as current.
                validator = ""
        except (FileNotFoundError, ValueError, KeyError, TypeError, AttributeError):
            index.unlink(missing_ok=True)
            return None
        if blob.is_file() and sha256_file(blob) == digest:
            return blob, validator
        # A corrupted or vanished entry is dropped, never used.
        blob.unlink(missing_ok=True)
        index.unlink(missing_ok=True)
        return None

    def forget(self, url: str) -> None:
        """Drops what a URL was downloaded to, after a use of it failed: never reused."""
        with locked(self.lock("url-" + key(url))):
            index = self.url_index(url)
            try:
                blob: Path | None = self.blob(str(json.loads(index.read_text())["sha256"]))
            except (FileNotFoundError, ValueError, KeyError, TypeError):
                blob = None
            index.unlink(missing_ok=True)
            if blob is not None:
                blob.unlink(missing_ok=True)

    def store(self, url: str, tmp: Path, digest: str, validator: str) -> Path:
        blob = self.blob(digest)
        blob.parent.mkdir(parents=True, exist_ok=True)
        tmp.replace(blob)
        entry = {"sha256": digest, "validator": validator, "whole": True}
        atomic_write(self.url_index(url), json.dumps(entry).encode())
        return blob
