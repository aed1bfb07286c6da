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
from cpython_repro.models import (
    SIGNATURE_SUFFIXES,
    NotChecked,
    Plan,
    Published,
    SignatureFiles,
    Source,
)

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


def is_local(remote: str) -> bool:
    return remote.startswith("file://") or ("://" not in remote and Path(remote).exists())


def fetch_tag(plan: Plan, cache: Cache, offline: bool = False) -> Source:
    tag = plan.version.tag
    if offline and not is_local(plan.remote):
        raise InputError(f"--offline: the tag can only come from a local repository, and "
                         f"{plan.remote} is not one", hint="give --remote /path/to/cpython")
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


ARCHIVE_SUFFIX = {"gzip": ".tgz", "xz": ".tar.xz"}


def _match_by_content(plan: Plan, path: Path) -> str:
    """A local file (e.g. Debian's python3.13_3.13.5.orig.tar.xz) -> the artifact it is:
    by its compression and the top directory of its first member, not by its name."""
    from cpython_repro.compare.archive import Payload, TarReader
    from cpython_repro.errors import ArchiveError
    from cpython_repro.files import regular_input

    # A directory or FIFO is named as such; the payload is read only up to the first member.
    payload = Payload(regular_input(path, "--published"))
    try:
        first = TarReader(payload).next()
    except ArchiveError as exc:
        raise InputError(f"--published {path}: not a readable archive ({exc.one_line()})") \
            from exc
    finally:
        payload.close()
    top = first.member.path.split("/")[0] if first else ""
    suffix = ARCHIVE_SUFFIX.get(payload.kind)
    names = {a.name for a in plan.artifacts}
    if top != plan.prefix or suffix is None or plan.prefix + suffix not in names:
        raise InputError(f"--published {path}: {_article(payload.kind)} archive of "
                         f"{top or 'nothing'}/, "
                         f"which is none of {', '.join(sorted(names))}")
    return plan.prefix + suffix


def _article(kind: str) -> str:
    return f"an {kind}" if kind[0] in "aeiox" else f"a {kind}"


PACKAGER = "not given: with --published, only the artifacts given are verified"


def fetch_published(plan: Plan,
                    fetcher: Fetcher) -> tuple[tuple[Published, ...], tuple[NotChecked, ...]]:
    """The artifacts to verify: those given with --published (packager mode: only those),
    else all of the release's, downloaded. And the ones not verified, with the reason."""
    local: dict[str, Path] = {}
    for given in plan.local_published:
        if given.name.endswith(SIGNATURE_SUFFIXES):
            continue  # signature files are matched to their artifact by fetch_signatures
        name = given.name if given.name in {a.name for a in plan.artifacts} \
            else _match_by_content(plan, given)
        if name in local:
            raise InputError(f"--published {given} and {local[name]} are both {name}")
        local[name] = given
    out = []
    skipped = []
    for art in plan.artifacts:
        path = local.pop(art.name, None)
        if path is not None:
            if not path.is_file():
                raise ArtifactNotFound(f"--published {path}: no such file")
            out.append(Published(art.name, path, sha256_file(path), path.stat().st_size,
                                 str(path)))
            continue
        if plan.packager:
            skipped.append(NotChecked(art.name, PACKAGER))
            continue
        scheme = urlsplit(art.url).scheme
        if scheme not in ("http", "https"):
            raise InputError(f"artifact URL must be http(s): {art.url}")
        got = fetcher.get(art.url)
        out.append(Published(art.name, got.path, got.sha256, got.size, art.url, got.note))
    return tuple(out), tuple(skipped)


def fetch_signatures(plan: Plan, fetcher: Fetcher,
                     published: tuple[Published, ...]) -> tuple[SignatureFiles, ...]:
    """Beside each artifact: .asc, .sigstore, or the older .sig + .crt, and the release SBOM
    (.spdx.json). A local artifact's are given files, or files next to it, or python.org's."""
    given = [p for p in plan.local_published if p.name.endswith(SIGNATURE_SUFFIXES)]
    urls = {a.name: a.url for a in plan.artifacts}
    out = []
    for pub in published:
        unavailable: dict[str, str] = {}

        def find(suffix: str, pub: Published = pub,
                 unavailable: dict[str, str] = unavailable) -> Path | None:
            names = {pub.name + suffix, pub.path.name + suffix}
            for p in given:
                if p.name in names and p.is_file():
                    return p
            if pub.origin == str(pub.path):  # a local artifact: look beside it first
                beside = pub.path.with_name(pub.path.name + suffix)
                if beside.is_file():
                    return beside
            found, why = _optional(fetcher, urls[pub.name] + suffix)
            if why:
                unavailable[suffix] = why
            return found

        bundle = find(".sigstore")
        # .sig/.crt are looked for only where python.org said no .sigstore was published.
        sig = find(".sig") if bundle is None and ".sigstore" not in unavailable else None
        out.append(SignatureFiles(pub.name, find(".asc"), bundle, sig,
                                  find(".crt") if sig is not None else None, unavailable,
                                  find(".spdx.json")))
    return tuple(out)


def _optional(fetcher: Fetcher, url: str) -> tuple[Path | None, str]:
    """A signature file that may not exist: 404 is an answer (absent), and so is a server
    that cannot be reached or --offline (unavailable, with the reason): neither stops the run.
    """
    if urlsplit(url).scheme not in ("http", "https"):
        return None, f"{url} is not an http(s) URL"
    try:
        return fetcher.get(url).path, ""
    except ArtifactNotFound:
        return None, ""
    except NetworkError as exc:
        return None, exc.one_line()
