"""Stage 2: the tag into a cached bare repository, the published artifacts into the cache."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit

from cpython_repro import proc
from cpython_repro.cache import Cache, key, locked, sha256_file
from cpython_repro.download import Fetcher
from cpython_repro.errors import ArtifactNotFound, InputError, NetworkError, TagNotFound, ToolFailed
from cpython_repro.models import Plan, Published, Source

GIT_ENV = {
    "GIT_TERMINAL_PROMPT": "0",
    "GIT_CONFIG_NOSYSTEM": "1",
    "LC_ALL": "C",
}


def _git(repo: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    return proc.run(["git", "-C", str(repo), *args], env=env).stdout.decode().strip()


def _remote_url(remote: str) -> str:
    # A plain path makes git ignore --depth; file:// keeps the fetch shallow.
    if "://" not in remote and Path(remote).exists():
        return Path(remote).resolve().as_uri()
    return remote


def fetch_tag(plan: Plan, cache: Cache) -> Source:
    tag = plan.version.tag
    repo = cache.git_dir(plan.remote)
    with locked(cache.lock("git-" + key(plan.remote))):
        if not (repo / "HEAD").exists():
            # Created aside and renamed, so a killed run never leaves half a repository.
            repo.parent.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=repo.parent, prefix=".init-"))
            try:
                tmp.chmod(0o755)  # the container's unprivileged user reads it
                proc.run(["git", "init", "--bare", "--quiet", str(tmp)])
                tmp.replace(repo)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
        refspec = f"+refs/tags/{tag}:refs/tags/{tag}"
        try:
            _git(repo, "fetch", "--quiet", "--depth=1", "--no-tags",
                 _remote_url(plan.remote), refspec)
        except ToolFailed as exc:
            if "couldn't find remote ref" in exc.message:
                raise TagNotFound(
                    f"tag {tag} does not exist in {plan.remote}",
                    hint="check the version, or --remote",
                ) from exc
            raise NetworkError(f"cannot fetch {tag} from {plan.remote}: {exc.message}") from exc
        tag_object = _git(repo, "rev-parse", f"refs/tags/{tag}")
        commit = _git(repo, "rev-parse", f"refs/tags/{tag}^{{commit}}")
        commit_time = int(_git(repo, "log", "-1", "--format=%ct", commit))
    return Source(repo, tag, tag_object, commit, commit_time)


def fetch_published(plan: Plan, fetcher: Fetcher) -> tuple[Published, ...]:
    local = {p.name: p for p in plan.local_published}
    out = []
    for art in plan.artifacts:
        path = local.pop(art.name, None)
        if path is not None:
            if not path.is_file():
                raise ArtifactNotFound(f"--published {path}: no such file")
            out.append(Published(art.name, path, sha256_file(path), path.stat().st_size,
                                 str(path)))
            continue
        scheme = urlsplit(art.url).scheme
        if scheme not in ("http", "https"):
            raise InputError(f"artifact URL must be http(s): {art.url}")
        got = fetcher.get(art.url)
        out.append(Published(art.name, got.path, got.sha256, got.size, art.url))
    if local:
        names = ", ".join(sorted(local))
        wanted = ", ".join(a.name for a in plan.artifacts)
        raise InputError(f"--published file(s) {names} match no artifact (expected {wanted})")
    return tuple(out)
