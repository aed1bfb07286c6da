"""Stage: release.py's export() and tarball(), step by step, inside the builder container.

The recipe is data; this module turns it into plain shell scripts that are kept with the
results (out/VERSION/job/), so a reader can see exactly what ran. The export and the tar
payload are one job; each artifact's compression is a job of its own, so that the verifier
can run them side by side and compare the payload while they run.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import shlex
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from cpython_repro.cache import sha256_file
from cpython_repro.dockerio import Docker, Mount
from cpython_repro.errors import RebuildFailed
from cpython_repro.files import atomic_write
from cpython_repro.models import (
    ArtifactPlan,
    Image,
    Limits,
    Plan,
    Rebuilt,
    Source,
)

TOOLS_FILE = "tools.txt"
PAYLOAD = "payload.tar"


def clamp_time(commit_time: int) -> str:
    """The --mtime value as release.py formats it: tag.committed_at.strftime(...)."""
    return dt.datetime.fromtimestamp(commit_time, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


# Every job in the builder: strict shell, fixed locale and time zone, no user or system
# git config (no autocrlf, no filters) whoever runs the tool.
PRELUDE = (
    "set -eu",
    "umask 022",
    "export LC_ALL=C.UTF-8 TZ=UTC HOME=/tmp GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null",
)


def git_archive(commit: str, dest: str, prefix: str = "") -> str:
    """The shell line writing `git archive` of commit (from the repository at /repo) to dest.
    Trixie's git in the builder accepts a cache owned by someone else (safe.directory)."""
    q = shlex.quote
    pre = f" --prefix={q(prefix + '/')}" if prefix else ""
    return (f"git -c safe.directory='*' -c core.autocrlf=false -C /repo archive --format=tar"
            f"{pre} -o {q(dest)} {q(commit)}")


def export_lines(plan: Plan, source: Source) -> list[str]:
    """release.py export(): the tree under /out/work/<prefix>, then cd /out/work."""
    r = plan.recipe
    q = shlex.quote
    prefix = plan.prefix
    return [
        *PRELUDE,
        "step() { printf '+ %s\\n' \"$*\"; }",
        "cd /out && rm -rf work && mkdir work && cd work",
        "{ tar --version | head -n1; gzip --version | head -n1; xz --version | head -n1;"
        " git --version;"
        " python3 -c 'import importlib.metadata as m; print(\"blurb\", m.version(\"blurb\"))'; }"
        f" > /out/{TOOLS_FILE}",
        "# export(): git archive of the tag, with a clean git config (no autocrlf, no filters)",
        f"step git archive {q(source.commit)}",
        git_archive(source.commit, f"/out/work/{prefix}.tar", prefix),
        f"tar -xf {q(prefix + '.tar')} && rm {q(prefix + '.tar')}",
        f"cd {q(prefix)}",
        "step touch generated files",
        *(f"if [ -e {q(t)} ]; then touch {q(t)}; fi" for t in r.touch),
        "step blurb merge",
        "blurb merge",
        "step remove " + " ".join(r.remove_files),
        *(f"rm -f {q(f)}" for f in r.remove_files),
        "step blurb export",
        "blurb export",
        *(f"rm -rf {q(d)}" for d in r.remove_dirs_for(source.commit_date)),
        "step zap pycs",
        "find . -depth -name __pycache__ -exec rm -rf {} \\;",
        "find . -name '*.py[co]' -exec rm -f {} \\;",
        "cd ..",
    ]


def tar_options(plan: Plan, source: Source) -> list[str]:
    return [o.replace("{commit_time}", clamp_time(source.commit_time))
            for o in plan.recipe.tar_options]


def export_script(plan: Plan, source: Source) -> str:
    q = shlex.quote
    tar_opts = " ".join(q(o) for o in tar_options(plan, source))
    return "\n".join([
        *export_lines(plan, source),
        "# tarball(): one payload; each artifact compresses it in a job of its own",
        f"step tar {tar_opts}",
        f"tar cf /out/{PAYLOAD}.tmp {tar_opts} {q(plan.prefix)}",
        f"mv /out/{PAYLOAD}.tmp /out/{PAYLOAD}",
        "cd /out && rm -rf work",
        "step done",
    ]) + "\n"


def compress_script(art: ArtifactPlan) -> str:
    q = shlex.quote
    cmd = " ".join(q(c) for c in art.recipe.compress)
    return "\n".join([
        "set -eu",
        "step() { printf '+ %s\\n' \"$*\"; }",
        f"step {cmd} '<' {PAYLOAD} '>' {q(art.name)}",
        f"{cmd} < /out/{PAYLOAD} > {q('/out/' + art.name + '.tmp')}",
        f"mv {q('/out/' + art.name + '.tmp')} {q('/out/' + art.name)}",
    ]) + "\n"


@dataclass(frozen=True)
class Exported:
    payload: Path  # the uncompressed tar
    sha256: str
    tools: dict[str, str]
    log: Path
    seconds: float


@dataclass(frozen=True)
class Rebuilder:
    docker: Docker
    limits: Limits = field(default_factory=Limits)

    def export(self, plan: Plan, source: Source, image: Image, outdir: Path) -> Exported:
        seconds = self.run(export_script(plan, source), source, image, outdir,
                           [PAYLOAD, TOOLS_FILE], job="export",
                           doing="the export and tar payload")
        tools = parse_tools((outdir / TOOLS_FILE).read_text())
        tools["image"] = image.ref
        tools["image_id"] = image.image_id
        payload = outdir / PAYLOAD
        return Exported(payload, sha256_file(payload), tools, outdir / "export.log", seconds)

    def compress(self, art: ArtifactPlan, source: Source, image: Image,
                 outdir: Path) -> tuple[Rebuilt, float]:
        seconds = self.run(compress_script(art), source, image, outdir, [art.name],
                           job=f"compress-{art.name}", doing=f"compressing {art.name}")
        path = outdir / art.name
        return Rebuilt(art.name, path, sha256_file(path), path.stat().st_size), seconds

    def run(self, text: str, source: Source, image: Image, outdir: Path,
            outputs: list[str], extra: tuple[Mount, ...] = (),
            doing: str = "the rebuild", job: str = "rebuild",
            fresh: tuple[str, ...] = ()) -> float:
        """Run one job script in the container; its outputs must appear in outdir. `doing`
        names the job in errors; `job` names its script (job/JOB.sh) and log (JOB.log);
        `fresh`: directories the job makes anew, removed first (by the caller, who may be
        root and own them after settle(): the container's user could not)."""
        outdir.mkdir(parents=True, exist_ok=True)
        jobs = outdir / "job"
        jobs.mkdir(exist_ok=True)
        atomic_write(jobs / f"{job}.sh", text.encode())
        if os.getuid() == 0:
            # The container's user must be able to write the results.
            outdir.chmod(0o777)
        for stale in outputs:
            (outdir / stale).unlink(missing_ok=True)
        for stale in ("work", *fresh):
            shutil.rmtree(outdir / stale, ignore_errors=True)
        started = time.monotonic()
        result = self.docker.run(
            image.ref, ["sh", f"/job/{job}.sh"],
            mounts=[Mount(source.repo, "/repo"), Mount(jobs, "/job"),
                    Mount(outdir, "/out", read_only=False), *extra],
            user=_container_user(), limits=self.limits,
        )
        seconds = time.monotonic() - started
        log = outdir / f"{job}.log"
        atomic_write(log, result.log.encode("utf-8", "replace"))
        if result.timed_out:
            raise RebuildFailed(f"{doing} took longer than {self.limits.seconds:.0f}s "
                                f"and was stopped; log kept at {log}", log_path=str(log))
        if result.exit_code != 0:
            last = [ln for ln in result.log.splitlines() if ln.strip()][-1:] or ["(no output)"]
            raise RebuildFailed(
                f"{doing} failed in the container (exit {result.exit_code}): {last[0]}; "
                f"log kept at {log}", log_path=str(log))
        missing = [o for o in outputs if not (outdir / o).is_file()]
        if missing:
            raise RebuildFailed(f"{doing} did not write {', '.join(missing)}; log kept at "
                                f"{log}", log_path=str(log))
        return seconds


def settle(outdir: Path) -> None:
    """Run as root, the containers' user (1000) made the results and outdir was opened to it:
    give everything back to root and close outdir again (0755), so the outputs look like any
    other files the caller wrote."""
    if os.getuid() != 0 or not outdir.is_dir():
        return
    for path in [outdir, *outdir.rglob("*")]:
        # A file a stopped container left half-written may be gone by now: nothing to give.
        with contextlib.suppress(FileNotFoundError):
            if path.is_symlink():
                continue
            os.chown(path, 0, 0)
            if path.is_dir():
                path.chmod(0o755)


def _container_user() -> str:
    uid, gid = os.getuid(), os.getgid()
    return f"{uid}:{gid}" if uid != 0 else "1000:1000"


def parse_tools(text: str) -> dict[str, str]:
    """'tar (GNU tar) 1.35' -> {'tar': '1.35'}; the first line of each tool's --version."""
    out = {}
    for line in text.splitlines():
        words = line.split()
        if not words:
            continue
        name = words[0]
        out[name] = words[-1]
    return out
