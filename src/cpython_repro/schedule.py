"""Scheduled verification: which releases are new (python.org's listing against the
history), a GitHub Actions matrix of them, and many verifies on one machine with a bounded
worker pool that resumes after an interruption (decided versions are skipped)."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable, Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from cpython_repro import history
from cpython_repro.download import Fetcher
from cpython_repro.errors import InputError
from cpython_repro.models import Version
from cpython_repro.resolve import parse_version

_DIR = re.compile(r'href="(3\.\d+\.\d+)/"')


def listed_versions(fetcher: Fetcher, base_url: str) -> list[Version]:
    """Release directories in python.org's /ftp/python/ listing, oldest first."""
    got = fetcher.get(base_url.rstrip("/") + "/")
    text = got.path.read_text("utf-8", "replace")
    return sorted({parse_version(v) for v in _DIR.findall(text)}, key=Version.sort_key)


def newer_than_verified(versions: list[Version], history_path: Path) -> list[Version]:
    decided = [parse_version(v) for v in history.decided_versions(history_path)]
    if not decided:
        return versions
    newest = max(decided, key=Version.sort_key)
    return [v for v in versions if v.sort_key() > newest.sort_key()]


def matrix(versions: list[Version], since: str,
           skip: Collection[str] = ()) -> dict[str, object]:
    """{"include": [{"version": ...}]} for series >= since, newest first, as GitHub wants."""
    try:
        major, minor = (int(x) for x in since.split("."))
    except ValueError:
        raise InputError(f"--since {since!r}: expected a series such as 3.12") from None
    chosen = [v for v in versions if (v.major, v.minor) >= (major, minor) and v.text not in skip]
    return {"include": [{"version": v.text}
                        for v in sorted(chosen, key=Version.sort_key, reverse=True)]}


@dataclass(frozen=True)
class Outcome:
    version: str
    exit_code: int | None  # None: skipped, already decided
    detail: str = ""


def run_many(versions: Sequence[str], jobs: int, out_root: Path, history_path: Path,
             verify_args: Sequence[str],
             on_done: Callable[[Outcome], None] = lambda _: None) -> list[Outcome]:
    """Each version's verify runs in its own process (its own containers, its own output
    directory); at most `jobs` at once. Versions with a verdict in the history are skipped,
    so running the same command again after an interruption resumes."""
    if jobs < 1:
        raise InputError("--jobs must be at least 1")
    for v in versions:
        parse_version(v)
    decided = history.decided_versions(history_path)

    def one(version: str) -> Outcome:
        if version in decided:
            outcome = Outcome(version, None, "already verified")
        else:
            argv = [sys.executable, "-m", "cpython_repro", "verify", version, "-q",
                    "--out", str(out_root / version), "--history", str(history_path),
                    *verify_args]
            done = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                  text=True, check=False)
            outcome = Outcome(version, done.returncode, done.stderr.strip()[-300:])
        on_done(outcome)
        return outcome

    with ThreadPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(one, versions))
