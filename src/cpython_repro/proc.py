"""The one place that starts host processes. Errors keep the tail of stderr."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path

from cpython_repro.errors import ToolFailed, ToolMissing

# Where a missing tool comes from, for the error message (diffoscope's @tool_required habit).
PROVIDERS = {
    "git": "Debian package git",
    "mmdebstrap": "Debian package mmdebstrap",
    "diffoscope": "PyPI package diffoscope (plus Debian package diffoscope-minimal for its tools)",
    "xz": "Debian package xz-utils",
}


def require_tool(name: str) -> str:
    found = shutil.which(name)
    if not found:
        where = PROVIDERS.get(name, f"a package providing {name}")
        raise ToolMissing(f"{name} is not installed", hint=f"install {where}")
    return found


def run(
    argv: Sequence[str],
    *,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float | None = None,
    stdout: int | None = subprocess.PIPE,
    ok: tuple[int, ...] = (0,),
) -> subprocess.CompletedProcess[bytes]:
    """Run argv (never through a shell). Raises ToolFailed on an exit code not in ok."""
    exe = argv[0] if "/" in argv[0] else require_tool(argv[0])
    try:
        result = subprocess.run(
            [exe, *argv[1:]],
            cwd=cwd,
            env=dict(env) if env is not None else None,
            stdout=stdout,
            stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ToolFailed(f"{argv[0]} took longer than {timeout:.0f}s") from exc
    if result.returncode not in ok:
        raise ToolFailed(
            f"{argv[0]} failed (exit {result.returncode}): {tail(result.stderr)}",
        )
    return result


def tail(data: bytes | None, limit: int = 300) -> str:
    text = (data or b"").decode("utf-8", "replace").strip()
    lines = [ln for ln in text.splitlines() if ln.strip()]
    last = " | ".join(lines[-3:])
    return last[-limit:] if last else "(no output)"
