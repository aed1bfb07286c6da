"""Stage: pinned images, named by the digest of what defines them and reused when present."""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urljoin

from cpython_repro import proc
from cpython_repro.cache import Cache, atomic_write, locked, sha256_file
from cpython_repro.dockerio import Docker
from cpython_repro.download import Fetcher
from cpython_repro.errors import EnvironmentFailure, Offline
from cpython_repro.models import BaseSpec, Dated, Image, PinnedInput, Recipe, Replica
from cpython_repro.resolve import data_dir

REPO = "cpython-repro"
PYPI = "https://pypi.org/pypi"
OFFLINE_HINT = "run `cpython-repro images build VERSION` once with network, then --offline"


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


def ensure_base(spec: BaseSpec, docker: Docker, cache: Cache, offline: bool = False) -> Image:
    digest = base_spec_digest(spec)
    ref = f"{REPO}/base:{spec.suite}-{digest[:16]}"
    with locked(cache.lock("image-" + digest)):
        found = docker.info(ref)
        if found is None and offline:
            raise Offline(f"base image {ref} is not built, and --offline cannot bootstrap it "
                          f"from {spec.mirror}", hint=OFFLINE_HINT)
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


_WHEEL_NAME = re.compile(r"blurb-[0-9][0-9A-Za-z.]*(-[A-Za-z0-9._]+)+\.whl")


def _wheel(pin: Dated, fetcher: Fetcher) -> Path:
    """The pinned blurb wheel, found through PyPI's JSON API and downloaded with our own
    client (an installer without pip, such as uv, must work too), kept only if its sha256 is
    one the recipe pins."""
    wheels = fetcher.cache.root / "wheels"
    for candidate in wheels.glob(f"blurb-{pin.value}-*.whl"):
        if sha256_file(candidate) in pin.sha256:
            return candidate
    if fetcher.offline:
        raise Offline(f"the blurb {pin.value} wheel is not in the cache, and --offline cannot "
                      "download it", hint=OFFLINE_HINT)
    index = fetcher.get(f"{PYPI}/blurb/json")
    try:
        files = json.loads(index.path.read_bytes())["releases"][pin.value]
        chosen = next(f for f in files if f["digests"]["sha256"] in pin.sha256
                      and _WHEEL_NAME.fullmatch(f["filename"]))
        # A mirror may answer with URLs relative to the index.
        url, name = urljoin(index.url, str(chosen["url"])), str(chosen["filename"])
    except (ValueError, KeyError, TypeError, StopIteration) as exc:
        raise EnvironmentFailure(f"PyPI lists no blurb {pin.value} wheel with the sha256 the "
                                 f"recipe pins ({', '.join(h[:16] for h in pin.sha256)})") \
            from exc
    if not url.startswith(("https://", "http://")):
        raise EnvironmentFailure(f"PyPI lists blurb {pin.value} at {url!r}, not an http(s) URL")
    got = fetcher.get(url)
    if got.sha256 not in pin.sha256:
        raise EnvironmentFailure(f"{url}: sha256 {got.sha256} is not the recipe's pin")
    wheels.mkdir(parents=True, exist_ok=True)
    atomic_write(wheels / name, got.path.read_bytes())
    return wheels / name


def _ensure_on_base(role: str, base_spec: BaseSpec, upstream: str, docker: Docker,
                    fetcher: Fetcher, inputs: dict[str, object], labels: dict[str, str],
                    fill: Callable[[Path], None], directory: str = "",
                    buildargs: dict[str, str] | None = None) -> tuple[Image, ...]:
    """An image built from containers/<directory or role>/Containerfile on a bootstrapped
    base (or a digest-pinned upstream one), named by the digest of everything that defines
    it and reused when present. Returns the base too, when it was bootstrapped here."""
    containerfile = data_dir("containers") / (directory or role) / "Containerfile"
    cache = fetcher.cache
    made: list[Image] = []
    if upstream:
        base_ref, base_id, network = upstream, upstream, "default"
    else:
        base = ensure_base(base_spec, docker, cache, fetcher.offline)
        made.append(base)
        base_ref, base_id, network = base.ref, base.layer_digest, "none"
    packages = " ".join(base_spec.packages)
    args = {"PACKAGES": packages, **(buildargs or {})}
    # Named by the pins, not by a downloaded file, so a present image needs no network.
    digest = _digest({
        "containerfile": hashlib.sha256(containerfile.read_bytes()).hexdigest(),
        "base": base_id,
        "args": args,
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
                    buildargs={"BASE": base_ref, **args},
                    labels={"org.cpython-repro.digest": digest,
                            "org.cpython-repro.base": base_id, **labels},
                    network=network,
                )
    return (*made, Image(role, ref, found.image_id, digest))


def ensure_builder(recipe: Recipe, blurb: Dated, docker: Docker,
                   cache: Cache | Fetcher) -> tuple[Image, ...]:
    """The rebuild image with blurb from its hash-pinned wheel (and its base, as above)."""
    fetcher = cache if isinstance(cache, Fetcher) else Fetcher(cache)
    hashes = " ".join(f"--hash=sha256:{h}" for h in sorted(blurb.sha256))
    requirements = f"blurb=={blurb.value} {hashes}\n"

    def wheels(context: Path) -> None:
        wheel = _wheel(blurb, fetcher)
        (context / "wheels").mkdir()
        shutil.copy(wheel, context / "wheels" / wheel.name)
        (context / "wheels" / "requirements.txt").write_text(requirements)

    return _ensure_on_base("builder", recipe.base, recipe.base.upstream, docker, fetcher,
                           {"requirements": requirements},
                           {"org.cpython-repro.blurb": blurb.value}, wheels)


def ensure_autoconf(replica: Replica, docker: Docker,
                    cache: Cache | Fetcher) -> tuple[Image, ...]:
    """A replica's image (and its base, as above): containers/<era>/ with the files in it,
    the replica's pinned inputs under inputs/, its package versions and resulting files
    checked by the build itself."""
    fetcher = cache if isinstance(cache, Fetcher) else Fetcher(cache)
    era = data_dir("containers") / replica.directory
    extra = sorted(p for p in era.iterdir() if p.is_file() and p.name != "Containerfile")

    def context(ctx: Path) -> None:
        for path in extra:
            shutil.copy(path, ctx / path.name)
        (ctx / "inputs").mkdir()
        for pin in replica.inputs:
            (ctx / "inputs" / pin.name).write_bytes(pinned_input(pin, fetcher))

    return _ensure_on_base(
        "autoconf", replica.base, replica.upstream, docker, fetcher,
        {"context": {p.name: sha256_file(p) for p in extra},
         "inputs": [[i.name, i.sha256, i.member, i.member_sha256] for i in replica.inputs]},
        {"org.cpython-repro.replica": replica.name}, context, directory=replica.directory,
        buildargs={"VERSIONS": " ".join(replica.versions),
                   "RESULTS": " ".join(f"{sha}:{path}"
                                       for path, sha in sorted(replica.results.items()))})


def pinned_input(pin: PinnedInput, fetcher: Fetcher) -> bytes:
    """The pinned file, through our own HTTP client and cache: what the URL serves must have
    the pinned sha256, and so must the member taken from it."""
    got = fetcher.get(pin.url)
    if got.sha256 != pin.sha256:
        raise EnvironmentFailure(f"{pin.url}: sha256 {got.sha256} is not the pinned "
                                 f"{pin.sha256} (recipes/autoconf.toml)")
    data = got.path.read_bytes()
    if pin.member:
        data = deb_member(data, pin.member, pin.url)
        sha = hashlib.sha256(data).hexdigest()
        if sha != pin.member_sha256:
            raise EnvironmentFailure(f"{pin.member} in {pin.url}: sha256 {sha} is not the "
                                     f"pinned {pin.member_sha256}")
    return data


_AR_MAGIC = b"!<arch>\n"
_AR_HEADER = 60


def deb_member(deb: bytes, member: str, name: str = "the .deb") -> bytes:
    """One regular file of a .deb: an ar archive whose data.tar.* holds the package's files.
    Read in memory, never extracted: only the named member's bytes come out."""
    if not deb.startswith(_AR_MAGIC):
        raise EnvironmentFailure(f"{name} is not a Debian package (no ar header)")
    pos = len(_AR_MAGIC)
    wanted = member.lstrip("/")
    while pos + _AR_HEADER <= len(deb):
        header = deb[pos:pos + _AR_HEADER]
        entry = header[:16].decode("ascii", "replace").strip().rstrip("/")
        try:
            size = int(header[48:58].decode("ascii").strip())
        except ValueError as exc:
            raise EnvironmentFailure(f"{name}: malformed ar header for {entry!r}") from exc
        body = deb[pos + _AR_HEADER:pos + _AR_HEADER + size]
        pos += _AR_HEADER + size + size % 2
        if not entry.startswith("data.tar"):
            continue
        try:
            with tarfile.open(fileobj=io.BytesIO(body), mode="r:*") as tar:
                for info in tar:
                    if info.name.removeprefix("./") == wanted and info.isfile():
                        extracted = tar.extractfile(info)
                        if extracted is not None:
                            return extracted.read()
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise EnvironmentFailure(f"{name}: cannot read {entry}: {exc}") from exc
        raise EnvironmentFailure(f"{name}: {entry} has no file {wanted}")
    raise EnvironmentFailure(f"{name}: no data.tar member")
