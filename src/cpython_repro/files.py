"""Files the tool is given and files it writes, whatever already sits at their paths.

An input must be a regular file: a directory or a FIFO is named as such, not "no such
file". An output is written to a private temporary file beside it and then created at its
path with link(), which neither follows nor replaces anything; only a regular file already
there is replaced (by rename). A symlink, device node, FIFO or directory at the path is
left alone and the write fails, naming the path the user gave.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from cpython_repro.errors import ArtifactNotFound, InputError, OutputError


def _umask() -> int:
    mask = os.umask(0o022)  # read by setting it: done once, at import, before any thread
    os.umask(mask)
    return mask


UMASK = _umask()
KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISLNK, "a symlink"),
         (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
         (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def kind(mode: int) -> str:
    return next((name for test, name in KINDS if test(mode)), "not a regular file")


def regular_input(path: Path, label: str = "") -> Path:
    """path, if it is a regular file (or a symlink to one); else a one-line InputError.
    label: how the user named it, e.g. "--published"."""
    named = f"{label} {path}" if label else str(path)
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ArtifactNotFound(f"{named}: no such file") from None
    except OSError as exc:
        raise InputError(f"{named}: {exc.strerror or exc}") from None
    if not stat.S_ISREG(mode):
        raise InputError(f"{named}: is {kind(mode)}, not a regular file")
    return path


def copy(src: Path, dest: Path) -> None:
    """src's bytes to dest, written the same safe way (src itself is read, not followed
    into: a symlink there is skipped by the callers that walk trees)."""
    with staged(dest) as out, src.open("rb") as f:
        shutil.copyfileobj(f, out, 1 << 20)


def copy_tree(src: Path, dest: Path) -> list[Path]:
    """Every regular file under src (no symlinks, no hidden files) into dest."""
    done = []
    for path in sorted(src.rglob("*")):
        rel = path.relative_to(src)
        if path.is_symlink() or not path.is_file() or any(p.startswith(".") for p in rel.parts):
            continue
        copy(path, dest / rel)
        done.append(dest / rel)
    return done


def atomic_write(path: Path, data: bytes) -> None:
    """data at path, whole or not at all (see the module docstring)."""
    with staged(path) as f:
        f.write(data)


@contextlib.contextmanager
def staged(path: Path) -> Iterator[BinaryIO]:
    """A private file to write; published at path when the block ends without error."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name[:32]}.tmp-")
        # mkstemp makes 0600; what the tool writes is read by others (a web server, the
        # container's user), so it gets the mode any file the caller creates would.
        os.fchmod(fd, 0o666 & ~UMASK)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        publish(Path(tmp), path)
    except OSError as exc:
        raise OutputError(f"cannot write {path}: {exc.strerror or exc}") from exc
    finally:
        Path(tmp).unlink(missing_ok=True)


def publish(tmp: Path, path: Path) -> None:
    """Makes the finished file tmp (in path's directory) appear at path; tmp may remain."""
    try:
        os.link(tmp, path)
        return
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK):
            raise
        # A file system without hard links: create exclusively, without following.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "wb") as out, tmp.open("rb") as src:
                shutil.copyfileobj(src, out)
            return
    mode = os.lstat(path).st_mode
    if not stat.S_ISREG(mode):
        raise OutputError(f"cannot write {path}: it is {kind(mode)}, not a regular file; "
                          "left as it is (remove it, or choose another path)")
    tmp.replace(path)
