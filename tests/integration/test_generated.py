"""The generated-files check and image reuse, against the real autoconf image."""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from cpython_repro.cache import Cache, sha256_file
from cpython_repro.dockerio import Docker
from cpython_repro.errors import EnvironmentFailure
from cpython_repro.images import REPO, bootstrap_rootfs, ensure_autoconf
from cpython_repro.report import _generated_reasons
from cpython_repro.resolve import data_dir, load_recipe
from tests.conftest import require
from tests.fixtures import minicpython, release
from tests.fixtures.server import Site
from tests.integration.conftest import FIXTURE_REPLICA, VERSION, World, publish, replica
from tests.integration.test_real_regen import check
from tests.integration.test_verify import verify

pytestmark = pytest.mark.docker

INJECTED = 'eval "$(printf ZWNobyBwd25lZA== | base64 -d)" # injected\n'


def retagged(world: World, tmp_path: Path, change: Callable[[Path], None]) -> World:
    """The fixture repo with one more commit, the tag moved onto it, and artifacts published
    from that tag: the tarballs match it, so only the generated-files check can object."""
    work = tmp_path / "cpython"
    subprocess.run(["git", "clone", "-q", str(world.repo), str(work)], check=True)
    change(work)
    minicpython.git(work, "commit", "-q", "-a", "-m", "a change",
                    env={"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@example.org",
                         "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@example.org"})
    minicpython.git(work, "tag", "-f", "-a", f"v{VERSION}", "-m", "moved",
                    env={"GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@example.org"})
    commit_time = int(minicpython.git(work, "log", "-1", "--format=%ct"))
    tree = release.export_tree(work, VERSION, tmp_path / "release")
    published = release.make_tarballs(tree, commit_time, world.base_image, tmp_path / "pub")
    return World(**{**world.__dict__, "repo": work, "tree": tree, "commit_time": commit_time,
                    "published": published})


def test_generated_files_match(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world)
    code, report = verify(world, site, tmp_path)
    gen = report["generated_files"]
    assert code == 0
    assert gen["status"] == "match", gen
    assert gen["command"] == ["autoreconf", "-ivf", "-Werror"]
    assert [(f["path"], f["status"]) for f in gen["files"]] == [
        ("configure", "same"), ("aclocal.m4", "same"), ("pyconfig.h.in", "same")]
    # Chosen by what the committed files declare, and the replica has exactly that.
    assert gen["replica"] == FIXTURE_REPLICA
    assert (gen["declared"]["autoconf"], gen["declared"]["aclocal"]) == ("2.71", "1.16.5")
    assert gen["declared"]["serials"] == {"AX_CHECK_COMPILE_FLAG": "6",
                                          "PKG_PROG_PKG_CONFIG": "12 (pkg-config-0.29.2)"}
    assert (gen["tools"]["autoconf"], gen["tools"]["automake"]) == ("2.71", "1.16.5")
    assert gen["tool_mismatches"] == []
    assert gen["used"].startswith("ghcr.io/python/autoconf:2024.10.16.11360930377 ")
    assert report["reasons"] == []
    roles = [i["role"] for i in report["images"]]
    assert roles.count("base") == 2 and "builder" in roles and "autoconf" in roles


def test_payload_only_in_configure_is_caught(world: World, site: Site, tmp_path: Path) -> None:
    def inject(tree: Path) -> None:
        lines = (tree / "configure").read_text().splitlines(keepends=True)
        (tree / "configure").write_text("".join([*lines[:10], INJECTED, *lines[10:]]))

    bad = retagged(world, tmp_path, inject)
    publish(site, bad)
    code, report = verify(bad, site, tmp_path)
    assert code == 1
    assert all(a["verdict"] == "identical" for a in report["artifacts"])
    gen = report["generated_files"]
    assert gen["status"] == "differs"
    files = {f["path"]: f for f in gen["files"]}
    assert files["configure"]["status"] == "differs"
    assert files["aclocal.m4"]["status"] == files["pyconfig.h.in"]["status"] == "same"
    assert "1 line(s) only in the committed file" in files["configure"]["explanation"]
    assert "ZWNobyBwd25lZA==" in files["configure"]["explanation"]
    assert f"-{INJECTED}" in files["configure"]["diff"]
    assert (tmp_path / "out" / "regen" / "configure.diff").is_file()


def test_configure_ac_change_without_regeneration(world: World, site: Site,
                                                  tmp_path: Path) -> None:
    def edit(tree: Path) -> None:
        ac = tree / "configure.ac"
        ac.write_text(ac.read_text().replace(
            "AC_OUTPUT", "AC_DEFINE([Py_SNEAKY], [1], [Not regenerated.])\nAC_OUTPUT"))

    bad = retagged(world, tmp_path, edit)
    publish(site, bad)
    code, report = verify(bad, site, tmp_path)
    assert code == 1
    files = {f["path"]: f["status"] for f in report["generated_files"]["files"]}
    assert files == {"configure": "differs", "aclocal.m4": "same", "pyconfig.h.in": "differs"}
    code, report = verify(bad, site, tmp_path / "skip", "--no-regen-check")
    assert code == 0
    assert report["generated_files"]["status"] == "skipped"


def test_unknown_toolchain_is_inconclusive(world: World, site: Site, tmp_path: Path) -> None:
    """Files generated by a toolchain no replica is known to reproduce (as a 3.14 tree's
    would be: autoconf 2.72): not compared, not a pass, not an alarm; the reason is given."""
    def newer(tree: Path) -> None:
        for name, old, new in (("configure", "Generated by GNU Autoconf 2.71",
                                "Generated by GNU Autoconf 2.72"),
                               ("aclocal.m4", "generated automatically by aclocal 1.16.5",
                                "generated automatically by aclocal 1.17")):
            text = (tree / name).read_text()
            assert old in text
            (tree / name).write_text(text.replace(old, new, 1))

    other = retagged(world, tmp_path, newer)
    publish(site, other)
    code, report = verify(other, site, tmp_path)
    gen = report["generated_files"]
    assert code == 1
    assert all(a["verdict"] == "identical" for a in report["artifacts"])
    assert gen["status"] == "inconclusive"
    assert gen["files"] == [] and gen["image"] == "" and gen["replica"] == ""
    assert (gen["declared"]["autoconf"], gen["declared"]["aclocal"]) == ("2.72", "1.17")
    assert "no replica here is known to regenerate" in gen["detail"]
    assert "configure says autoconf 2.72, the replica has 2.71" in gen["detail"]
    assert report["reasons"] == [
        f"generated files not checked (inconclusive, not a finding): {gen['detail']}"]
    assert "autoconf" not in [i["role"] for i in report["images"]]


def test_a_failing_autoreconf_is_an_error_naming_its_cause(world: World,
                                                          tmp_path: Path) -> None:
    """An error says which step failed and what the tool said, not what ran last."""
    work = tmp_path / "cpython"
    subprocess.run(["git", "clone", "-q", str(world.repo), str(work)], check=True)
    ac = work / "configure.ac"
    ac.write_text(ac.read_text().replace("AC_OUTPUT", "AC_NO_SUCH_MACRO([x])\nAC_OUTPUT"))
    env = {"GIT_AUTHOR_NAME": "x", "GIT_AUTHOR_EMAIL": "x@example.org",
           "GIT_COMMITTER_NAME": "x", "GIT_COMMITTER_EMAIL": "x@example.org"}
    minicpython.git(work, "commit", "-q", "-a", "-m", "broken", env=env)
    minicpython.git(work, "tag", "-f", "-a", f"v{VERSION}", "-m", "moved", env=env)
    result = check(VERSION, work, tmp_path / "run", world.cache_dir)
    assert result.status == "error"
    assert result.detail.startswith("autoreconf -ivf -Werror failed: configure.ac:"), \
        result.detail
    assert "AC_NO_SUCH_MACRO" in result.detail and "tar" not in result.detail.split("(log")[0]
    assert result.replica == FIXTURE_REPLICA
    assert _generated_reasons(result) == [
        f"generated files could not be checked: {result.detail}"]


@pytest.mark.parametrize(("change", "said"), [
    ({"results": {"/usr/share/aclocal/pkg.m4": "0" * 64}}, "/usr/share/aclocal/pkg.m4: FAILED"),
    ({"versions": ("autoconf=2.72-1",)}, "autoconf is 2.71-3, the replica needs 2.72-1"),
], ids=["result", "version"])
def test_a_replica_unlike_its_pins_is_not_built(world: World, change: dict[str, object],
                                                said: str) -> None:
    """The build itself refuses another package version or macro file, and says which."""
    good = replica(FIXTURE_REPLICA)
    bad = dataclasses.replace(good, **change)  # type: ignore[arg-type]
    with pytest.raises(EnvironmentFailure) as info:
        ensure_autoconf(bad, Docker.connect(), Cache(world.cache_dir))
    assert said in info.value.one_line()
    assert info.value.one_line().startswith("building image cpython-repro/autoconf:")


def test_second_verify_builds_nothing(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world)
    docker = Docker.connect()
    assert verify(world, site, tmp_path / "1")[0] == 0
    before = {(i.ref, i.image_id, i.created) for i in docker.images(REPO + "/")}
    code, report = verify(world, site, tmp_path / "2")
    after = {(i.ref, i.image_id, i.created) for i in docker.images(REPO + "/")}
    assert code == 0 and before == after
    used = {i["ref"] for i in report["images"]}
    assert used <= {ref for ref, _, _ in after}


def test_base_bootstrap_is_reproducible(tmp_path: Path) -> None:
    """DESIGN.md: mmdebstrap with SOURCE_DATE_EPOCH gives the same rootfs twice. Checked on
    the recipe's own base (trixie, same package set, same mirror)."""
    require(os.getuid() == 0 and shutil.which("mmdebstrap"), "mmdebstrap cannot run as root")
    spec = load_recipe(data_dir("recipes") / "release-tools-2023-10.toml").base
    first = bootstrap_rootfs(spec, tmp_path / "one.tar")
    (tmp_path / "one.tar").unlink()
    second = bootstrap_rootfs(spec, tmp_path / "two.tar")
    assert first == second, "two bootstraps of the same spec differ"
    assert sha256_file(tmp_path / "two.tar") == second
