"""Stage: release.py's export() and tarball(), step by step, inside the builder container.

The recipe is data; this module turns it into one plain shell script that is kept with
the results, so a reader can see exactly what ran.
"""

from __future__ import annotations

import datetime as dt
import os
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from cpython_repro.cache import sha256_file
from cpython_repro.dockerio import Docker, Mount
from cpython_repro.errors import RebuildFailed
from cpython_repro.models import Image, Limits, Plan, RebuildResult, Rebuilt, Source

TOOLS_FILE = "tools.txt"


def clamp_time(commit_time: int) -> str:
    """The --mtime value as release.py formats it: tag.committed_at.strftime(...)."""
    return dt.datetime.fromtimestamp(commit_time, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def export_lines(plan: Plan, source: Source) -> list[str]:
    """release.py export(): the tree under /out/work/<prefix>, then cd /out/work."""
    r = plan.recipe
    q = shlex.quote
    prefix = plan.prefix
    return [
        "set -eu",
        "umask 022",
        "export LC_ALL=C.UTF-8 TZ=UTC HOME=/tmp GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null",
        "step() { printf '+ %s\\n' \"$*\"; }",
        "cd /out && rm -rf work && mkdir work && cd work",
        "{ tar --version | head -n1; gzip --version | head -n1; xz --version | head -n1;"
        " git --version;"
        " python3 -c 'import importlib.metadata as m; print(\"blurb\", m.version(\"blurb\"))'; }"
        f" > /out/{TOOLS_FILE}",
        "# export(): git archive of the tag, with a clean git config (no autocrlf, no filters)",
        f"step git archive {q(source.commit)}",
        "git -c safe.directory='*' -c core.autocrlf=false -C /repo archive --format=tar"
        f" --prefix={q(prefix + '/')} -o {q('/out/work/' + prefix + '.tar')} {q(source.commit)}",
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


def script(plan: Plan, source: Source) -> str:
    q = shlex.quote
    tar_opts = " ".join(q(o) for o in tar_options(plan, source))
    lines = [
        *export_lines(plan, source),
        "# tarball(): one payload, compressed once per artifact",
        f"step tar {tar_opts}",
        f"tar cf /out/payload.tar {tar_opts} {q(plan.prefix)}",
    ]
    for art in plan.artifacts:
        cmd = " ".join(q(c) for c in art.recipe.compress)
        lines += [f"step {cmd} '>' {q(art.name)}",
                  f"{cmd} < /out/payload.tar > {q('/out/' + art.name)}"]
    lines += ["cd /out && rm -rf work", "step done"]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class Rebuilder:
    docker: Docker
    limits: Limits = field(default_factory=Limits)

    def rebuild(self, plan: Plan, source: Source, image: Image, outdir: Path) -> RebuildResult:
        names = [a.name for a in plan.artifacts]
        seconds = self.run(script(plan, source), source, image, outdir,
                           ["payload.tar", *names])
        artifacts = []
        for name in names:
            path = outdir / name
            artifacts.append(Rebuilt(name, path, sha256_file(path), path.stat().st_size))
        payload = outdir / "payload.tar"
        tools = parse_tools((outdir / TOOLS_FILE).read_text())
        tools["image"] = image.ref
        tools["image_id"] = image.image_id
        return RebuildResult(payload, sha256_file(payload), tuple(artifacts), tools,
                             outdir / "rebuild.log", seconds)

    def run(self, text: str, source: Source, image: Image, outdir: Path,
            outputs: list[str], extra: tuple[Mount, ...] = (),
            doing: str = "the rebuild") -> float:
        """Run one job script in the container; its outputs must appear in outdir. `doing`
        names the job in errors."""
        outdir.mkdir(parents=True, exist_ok=True)
        job = outdir / "job"
        job.mkdir(exist_ok=True)
        (job / "rebuild.sh").write_text(text)
        if os.getuid() == 0:
            # The container's user must be able to write the results.
            outdir.chmod(0o777)
        for stale in outputs:
            (outdir / stale).unlink(missing_ok=True)
        started = time.monotonic()
        result = self.docker.run(
            image.ref, ["sh", "/job/rebuild.sh"],
            mounts=[Mount(source.repo, "/repo"), Mount(job, "/job"),
                    Mount(outdir, "/out", read_only=False), *extra],
            user=_container_user(), limits=self.limits,
        )
        seconds = time.monotonic() - started
        log = outdir / "rebuild.log"
        log.write_text(result.log)
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
