"""Stage: pinned images, named by the digest of what defines them and reused when present."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from cpython_repro import proc
from cpython_repro.cache import Cache, atomic_write, locked, sha256_file
from cpython_repro.dockerio import Docker
from cpython_repro.errors import EnvironmentFailure
from cpython_repro.models import AutoconfSpec, BaseSpec, Dated, Image, Recipe
from cpython_repro.resolve import data_dir

REPO = "cpython-repro"


def _digest(obj: object) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


def base_spec_digest(spec: BaseSpec) -> str:
    return _digest({
        "suite": spec.suite, "mirror": spec.mirror, "variant": spec.variant,
        "packages": sorted(spec.packages), "source_date_epoch": spec.source_date_epoch,
        "snapshot": spec.snapshot,
    })


def bootstrap_rootfs(spec: BaseSpec, out: Path) -> str:
    """mmdebstrap a rootfs tarball; returns its sha256. Needs root (or unshare) and the archive."""
    mirror = (f"http://snapshot.debian.org/archive/debian/{spec.snapshot}"
              if spec.snapshot else spec.mirror)
    env = {**os.environ, "SOURCE_DATE_EPOCH": str(spec.source_date_epoch)}
    proc.run(
        ["mmdebstrap", "--quiet", f"--variant={spec.variant}",
         f"--include={','.join(spec.packages)}", spec.suite, str(out), mirror],
        env=env, timeout=1800,
    )
    return sha256_file(out)


def ensure_base(spec: BaseSpec, docker: Docker, cache: Cache) -> Image:
    digest = base_spec_digest(spec)
    ref = f"{REPO}/base:{spec.suite}-{digest[:16]}"
    with locked(cache.lock("image-" + digest)):
        found = docker.info(ref)
        if found is None:
            work = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=cache.root))
            try:
                tarball = work / "rootfs.tar"
                rootfs_sha = bootstrap_rootfs(spec, tarball)
                found = docker.import_rootfs(tarball, f"{REPO}/base", ref.split(":", 1)[1])
                atomic_write(cache.root / "images" / f"base-{digest[:16]}.json", json.dumps({
                    "ref": ref, "rootfs_sha256": rootfs_sha, "layers": found.layers,
                }).encode())
            finally:
                shutil.rmtree(work, ignore_errors=True)
        layer = found.layers[0] if found.layers else ""
        return Image("base", ref, found.image_id, digest, layer)


def _wheel(pin: Dated, cache: Cache) -> Path:
    """The pinned blurb wheel, downloaded once with pip and checked against the recipe's hashes."""
    wheels = cache.root / "wheels"
    for candidate in wheels.glob(f"blurb-{pin.value}-*.whl"):
        if sha256_file(candidate) in pin.sha256:
            return candidate
    with tempfile.TemporaryDirectory(dir=cache.root) as tmp:
        req = Path(tmp) / "req.txt"
        hashes = " ".join(f"--hash=sha256:{h}" for h in pin.sha256)
        req.write_text(f"blurb=={pin.value} {hashes}\n")
        proc.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
                  "--only-binary=:all:", "--require-hashes", "-r", str(req), "-d", tmp],
                 timeout=600)
        got = [p for p in Path(tmp).glob("*.whl") if sha256_file(p) in pin.sha256]
        if not got:
            raise EnvironmentFailure(f"no blurb {pin.value} wheel matching the recipe's hashes")
        wheels.mkdir(parents=True, exist_ok=True)
        final = wheels / got[0].name
        shutil.move(str(got[0]), final)
        return final


def _ensure_on_base(role: str, base_spec: BaseSpec, upstream: str, docker: Docker,
                    cache: Cache, inputs: dict[str, str], labels: dict[str, str],
                    fill: Callable[[Path], None]) -> tuple[Image, ...]:
    """An image built from containers/<role>/Containerfile on a bootstrapped base (or a
    digest-pinned upstream one), named by the digest of everything that defines it and
    reused when present. Returns the base too, when it was bootstrapped here."""
    containerfile = data_dir("containers") / role / "Containerfile"
    made: list[Image] = []
    if upstream:
        base_ref, base_id, network = upstream, upstream, "default"
    else:
        base = ensure_base(base_spec, docker, cache)
        made.append(base)
        base_ref, base_id, network = base.ref, base.layer_digest, "none"
    packages = " ".join(base_spec.packages)
    # Named by the pins, not by a downloaded file, so a present image needs no network.
    digest = _digest({
        "containerfile": hashlib.sha256(containerfile.read_bytes()).hexdigest(),
        "base": base_id,
        "args": {"PACKAGES": packages},
        **inputs,
    })
    ref = f"{REPO}/{role}:{digest[:16]}"
    with locked(cache.lock("image-" + digest)):
        found = docker.info(ref)
        if found is None:
            with tempfile.TemporaryDirectory(dir=cache.root) as ctx:
                shutil.copy(containerfile, Path(ctx) / "Containerfile")
                fill(Path(ctx))
                found = docker.build(
                    Path(ctx), "Containerfile", ref,
                    buildargs={"BASE": base_ref, "PACKAGES": packages},
                    labels={"org.cpython-repro.digest": digest,
                            "org.cpython-repro.base": base_id, **labels},
                    network=network,
                )
    return (*made, Image(role, ref, found.image_id, digest))


def ensure_builder(recipe: Recipe, blurb: Dated, docker: Docker,
                   cache: Cache) -> tuple[Image, ...]:
    """The rebuild image with blurb from its hash-pinned wheel (and its base, as above)."""
    hashes = " ".join(f"--hash=sha256:{h}" for h in sorted(blurb.sha256))
    requirements = f"blurb=={blurb.value} {hashes}\n"

    def wheels(context: Path) -> None:
        wheel = _wheel(blurb, cache)
        (context / "wheels").mkdir()
        shutil.copy(wheel, context / "wheels" / wheel.name)
        (context / "wheels" / "requirements.txt").write_text(requirements)

    return _ensure_on_base("builder", recipe.base, recipe.base.upstream, docker, cache,
                           {"requirements": requirements},
                           {"org.cpython-repro.blurb": blurb.value}, wheels)


def ensure_autoconf(spec: AutoconfSpec, docker: Docker, cache: Cache) -> tuple[Image, ...]:
    """The autoconf image (and its base, as above)."""
    return _ensure_on_base("autoconf", spec.base, spec.upstream, docker, cache, {}, {},
                           lambda _context: None)
