"""The world the integration tests run in: a mini-CPython repo with a tag, the base image,
"published" artifacts made independently of the tool, and a loopback python.org."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from cpython_repro.cache import Cache
from cpython_repro.dockerio import Docker
from cpython_repro.images import ensure_autoconf, ensure_base
from cpython_repro.models import Replica
from cpython_repro.resolve import data_dir, load_recipe, plan
from tests.conftest import docker_or_skip
from tests.fixtures import minicpython, release, signing
from tests.fixtures.server import Site, serve

VERSION = "3.13.99"
FIXTURE_REPLICA = "autoconf-2.71-devcontainers-2024.10.16"
IMAGES_CACHE = Path("/var/tmp/cpython-repro-test-cache")


@dataclass(frozen=True)
class World:
    repo: Path
    tree: Path
    commit_time: int
    base_image: str
    published: dict[str, Path]
    cache_dir: Path
    key: signing.Key  # the release manager's OpenPGP key, pinned in recipes/
    recipes: Path

    @property
    def prefix(self) -> str:
        return f"Python-{VERSION}"


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    docker_or_skip()
    root = tmp_path_factory.mktemp("world")
    recipe = load_recipe(data_dir("recipes") / "release-tools-2023-10.toml")
    # Images live in a cache that outlives a test session: bootstrapping Debian takes a minute.
    IMAGES_CACHE.mkdir(parents=True, exist_ok=True)
    docker = Docker.connect()
    base = ensure_base(recipe.base, docker, Cache(IMAGES_CACHE))
    # The fixture's generated files come from the 3.13 series' replica, so they declare a
    # toolchain the check knows (test_generated also makes one it does not).
    autoconf = ensure_autoconf(replica(FIXTURE_REPLICA), docker, Cache(IMAGES_CACHE))[-1].ref
    repo = minicpython.make_repo(root, VERSION,
                                 generate=lambda tree: regenerate(tree, autoconf))
    commit_time = int(minicpython.git(repo, "log", "-1", "--format=%ct", f"v{VERSION}"))
    tree = release.export_tree(repo, VERSION, root / "release")
    published = release.make_tarballs(tree, commit_time, base.ref, root / "published")
    key = signing.make_key(root / "rm")
    recipes = signing.recipes_pinning(root, key, VERSION.rsplit(".", 1)[0])
    yield World(repo, tree, commit_time, base.ref, published, IMAGES_CACHE, key, recipes)
    key.stop()


def replica(name: str) -> Replica:
    spec = plan(VERSION).autoconf
    assert spec is not None
    return next(r for r in spec.replicas if r.name == name)


def regenerate(tree: Path, image: str) -> None:
    """What Tools/build/regen-configure.sh does: autoreconf -ivf -Werror in the image, here
    with a plain `docker run`, not the tool's code."""
    subprocess.run(["docker", "run", "--rm", "--network", "none", "-u", "0:0",
                    "-v", f"{tree}:/src", "-w", "/src", image, "autoreconf", "-ivf", "-Werror"],
                   check=True, capture_output=True)
    shutil.rmtree(tree / "autom4te.cache", ignore_errors=True)


@pytest.fixture
def site(tmp_path: Path) -> Iterator[Site]:
    with serve(tmp_path / "www") as s:
        yield s


def publish(site: Site, world: World, artifacts: dict[str, Path] | None = None,
            signed: bool = True) -> None:
    """Put the artifacts on the fake python.org, each with the release manager's .asc."""
    for suffix in (".tgz", ".tar.xz"):
        data = (artifacts or world.published)[suffix].read_bytes()
        site.put(VERSION, world.prefix + suffix, data)
        if signed:
            site.put(VERSION, world.prefix + suffix + ".asc", world.key.sign(data))


def copy_tree(world: World, dest: Path) -> Path:
    """A copy of the released tree to tamper with, keeping mtimes, modes and links."""
    target = dest / world.tree.name
    shutil.copytree(world.tree, target, symlinks=True)
    return target
