"""diffoscope on the members that differ, and only those: bounded in count, size and time.

The differing members' bytes (already in memory from the pass) are written under names we
make, never their archive paths, into a private directory that is removed afterwards; one
diffoscope process compares the two directories and writes text and HTML there, which are
then put beside the report without following or replacing anything but a regular file.
"""

from __future__ import annotations

import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from cpython_repro import proc
from cpython_repro.errors import OutputError, ToolFailed
from cpython_repro.files import atomic_write, publish
from cpython_repro.models import DiffoscopeRun
from cpython_repro.text import one_line

MAX_MEMBERS = 50
TIMEOUT = 300.0
REPORT_LIMIT = 4 << 20


def find() -> str | None:
    """Debian's diffoscope brings its external tools; the venv's is the fallback."""
    beside = Path(sys.executable).parent / "diffoscope"
    return shutil.which("diffoscope") or (str(beside) if beside.exists() else None)


def _safe(index: int, path: str) -> str:
    base = re.sub(r"[^A-Za-z0-9._-]", "_", path.rstrip("/").rsplit("/", 1)[-1])[:80]
    return f"{index:03d}-{base or 'member'}"


def run(members: list[tuple[str, bytes | None, bytes | None]], outdir: Path,
        root: Path) -> DiffoscopeRun:
    """members: (archive path, published bytes, rebuilt bytes), None where absent. Paths in
    the result are relative to root, the report directory."""
    exe = find()
    if exe is None:
        return DiffoscopeRun("not installed: the verdict stands; install diffoscope "
                             f"({proc.PROVIDERS['diffoscope']}) for member diffs")
    chosen = members[:MAX_MEMBERS]
    names = tuple(p for p, _, _ in chosen)
    text, html = outdir / "members.txt", outdir / "members.html"
    started = time.monotonic()
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        # A line per member: archive paths may hold newlines or bytes that are not UTF-8.
        atomic_write(outdir / "members.index", "".join(
            f"{_safe(i, p)}\t{one_line(p)}\n" for i, p in enumerate(names)).encode())
        with tempfile.TemporaryDirectory(dir=outdir, prefix=".inputs-") as tmp:
            pub, reb = Path(tmp) / "published", Path(tmp) / "rebuilt"
            pub.mkdir()
            reb.mkdir()
            for i, (path, a, b) in enumerate(chosen):
                for where, data in ((pub, a), (reb, b)):
                    if data is not None:
                        (where / _safe(i, path)).write_bytes(data)
            # diffoscope writes into our private directory, never through what is in outdir.
            result = proc.run(
                [exe, "--new-file", "--exclude-directory-metadata", "yes",
                 "--max-report-size", str(REPORT_LIMIT), "--timeout", str(int(TIMEOUT)),
                 "--text", "members.txt", "--html", "members.html", "published", "rebuilt"],
                cwd=Path(tmp), timeout=TIMEOUT + 60, ok=(0, 1))
            for made, dest in ((Path(tmp) / "members.txt", text),
                               (Path(tmp) / "members.html", html)):
                if made.exists():
                    publish(made, dest)
    except (ToolFailed, OutputError) as exc:
        return DiffoscopeRun(f"failed: {exc.one_line()}", names,
                             seconds=time.monotonic() - started)
    except OSError as exc:
        return DiffoscopeRun(f"failed: {outdir}: {exc.strerror or exc}", names,
                             seconds=time.monotonic() - started)
    status = "differences" if result.returncode == 1 else "no differences"
    if len(members) > MAX_MEMBERS:
        status += f" (first {MAX_MEMBERS} of {len(members)} differing members)"
    return DiffoscopeRun(status, names,
                         str(text.relative_to(root)) if text.exists() else "",
                         str(html.relative_to(root)) if html.exists() else "",
                         time.monotonic() - started)
