"""The verify pipeline: resolve -> fetch -> images -> rebuild -> compare -> report.

The one cost that cannot be avoided is compressing the payload (xz -T1 of ~110 MB, about
50 s); everything that does not depend on it runs beside it. The export job writes the tar
payload; then each artifact's compression runs in a container of its own while the
published artifacts' content is compared with the payload (the content verdict, shown at
once), the SBOM is checked, and, from the start, the signatures and the generated files.
Each compressed artifact is then checked byte for byte: no verdict on an artifact is given
before its bytes exist.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from cpython_repro import adopt, compare, fetch, images, rebuild, regen, sbom, signatures
from cpython_repro.cache import Cache
from cpython_repro.dockerio import Docker
from cpython_repro.download import Fetcher
from cpython_repro.models import (
    ArtifactPlan,
    Comparison,
    Image,
    Limits,
    Plan,
    Published,
    RebuildResult,
    Rebuilt,
    RegenCheck,
    SignatureCheck,
    SignatureFiles,
    Source,
    Step,
)
from cpython_repro.report import VerifyReport

FoundAndChecked = tuple[tuple[SignatureFiles, ...], tuple[SignatureCheck, ...]]


@dataclass(frozen=True)
class Verifier:
    cache: Cache
    fetcher: Fetcher
    docker_factory: type[Docker] = Docker
    limits: Limits = field(default_factory=Limits)
    adoption: bool = True
    check_signatures: bool = True
    online_sigstore: bool = False
    rekor_url: str = ""  # where to look up inclusion proofs that bundles lack ("": nowhere)
    known_digests: Path | None = None
    regen_check: bool = True
    step: Step = field(default=lambda _text: contextlib.nullcontext())
    note: Callable[[str], None] = field(default=lambda _text: None)

    def run(self, plan: Plan, outdir: Path) -> VerifyReport:
        started = dt.datetime.now(dt.UTC)
        clock = _Clock(self.step)
        step = clock.step
        offline = self.fetcher.offline
        # Cheap failures first: a bad tag or a missing artifact is found before any build.
        with step("tag", f"fetching tag {plan.version.tag}"):
            source = fetch.fetch_tag(plan, self.cache, offline)
        with step("published", "downloading the published artifacts" if not plan.packager
                  else "reading the given artifacts"):
            published, not_checked = fetch.fetch_published(plan, self.fetcher)
        # Only what is verified is rebuilt: a packager's single .tgz needs no xz encode.
        plan = dataclasses.replace(plan, artifacts=tuple(
            a for a in plan.artifacts if a.name in {p.name for p in published}))
        docker = self.docker_factory.connect()
        used: list[Image] = []
        with step("images", "building or reusing the pinned images"):
            used += images.ensure_builder(plan.recipe, plan.recipe.blurb_for(source.commit_date),
                                          docker, self.fetcher)
        builder = used[-1]
        rebuilder = rebuild.Rebuilder(docker, self.limits)
        try:
            result, built, generated, checks, bill = self._rebuild_and_compare(
                plan, source, published, builder, outdir, rebuilder, used, clock)
        except BaseException:
            with contextlib.suppress(OSError):  # never in place of what is being raised
                rebuild.settle(outdir)  # as root: the results given back, also now
            raise
        rebuild.settle(outdir)
        status = signatures.overall(checks, [p.name for p in published]) \
            if self.check_signatures else "skipped"
        return VerifyReport(plan, source, published, tuple(used), built, result,
                            started, dt.datetime.now(dt.UTC), checks, status, generated,
                            not_checked, offline, bill, clock.timings())

    def _rebuild_and_compare(self, plan: Plan, source: Source,
                             published: tuple[Published, ...], builder: Image, outdir: Path,
                             rebuilder: rebuild.Rebuilder, used: list[Image], clock: _Clock,
                             ) -> tuple[tuple[Comparison, ...], RebuildResult, RegenCheck,
                                        tuple[SignatureCheck, ...], sbom.SbomCheck]:
        step = clock.step
        with ThreadPoolExecutor(max_workers=2 + len(plan.artifacts),
                                thread_name_prefix="verify") as pool:
            try:
                side = pool.submit(self._signature_files, plan, source, published, step)
                regen_job = pool.submit(self._regen, plan, source, builder, outdir, rebuilder,
                                        step)
                with step("export", "exporting the tag and writing the tar payload"):
                    exported = rebuilder.export(plan, source, builder, outdir)
                compressing = {a.name: pool.submit(self._compress, a, source, builder, outdir,
                                                   rebuilder, step) for a in plan.artifacts}
                content = self._content(published, exported.payload, step)
                clock.mark("content verdict")
                files, checks = side.result()
                with step("sbom", "checking the SBOM against the rebuilt tree"):
                    bill = sbom.check(exported.payload, [_sbom_input(p, f) for p, f in
                                                         zip(published, files, strict=True)])
                made = {name: job.result() for name, job in compressing.items()}
                result = tuple(self._strict(p, made[p.name][0], content[p.name], outdir, step)
                               for p in published)
                generated, autoconf_images = regen_job.result()
            except BaseException:
                # Ctrl-C, or a step that failed while others still run: stop every container
                # of this run now, rather than wait for an xz encode nobody needs.
                rebuilder.docker.stop_all()
                pool.shutdown(wait=False, cancel_futures=True)
                raise
        used.extend(autoconf_images)
        built = RebuildResult(exported.payload, exported.sha256,
                              tuple(r for r, _ in made.values()), exported.tools, exported.log,
                              exported.seconds + max((s for _, s in made.values()), default=0))
        if self.adoption and any(c.verdict == "same-content" for c in result):
            with step("adoption", "rebuilding again with metadata adopted from the published "
                                  "artifacts"):
                result = adopt.Adopter(rebuilder).adopt(
                    plan, source, builder, outdir, result, {p.name: p.path for p in published})
        return result, built, generated, checks, bill

    def _content(self, published: tuple[Published, ...], payload: Path,
                 step: _Step) -> dict[str, Comparison]:
        """Each published artifact's members against the rebuilt payload, while the payload
        is being compressed: the content verdict, said as soon as it is known."""
        out = {}
        for p in published:
            with step(f"content {p.name}", f"comparing {p.name}'s content with the payload"):
                out[p.name] = c = compare.compare(p.name, p.path, payload)
            self.note(_content_note(c))
        return out

    def _strict(self, p: Published, r: Rebuilt, content: Comparison, outdir: Path,
                step: _Step) -> Comparison:
        """The artifact's own bytes: identical by sha256, else compared again, compressed."""
        if r.sha256 == p.sha256:
            return Comparison(p.name, "identical", p.sha256, r.sha256, p.size, r.size, True,
                              content.members_published, content.members_rebuilt)
        with step(f"compare {p.name}", f"comparing {p.name} with its rebuild"):
            return compare.compare(p.name, p.path, r.path,
                                   diff_dir=outdir / "diffoscope" / p.name, report_dir=outdir)

    def _compress(self, art: ArtifactPlan, source: Source, builder: Image, outdir: Path,
                  rebuilder: rebuild.Rebuilder, step: _Step) -> tuple[Rebuilt, float]:
        with step(f"compress {art.name}", f"compressing {art.name} "
                                          f"({' '.join(art.recipe.compress)})"):
            return rebuilder.compress(art, source, builder, outdir)

    def _regen(self, plan: Plan, source: Source, builder: Image, outdir: Path,
               rebuilder: rebuild.Rebuilder,
               step: _Step) -> tuple[RegenCheck, tuple[Image, ...]]:
        if not self.regen_check:
            return RegenCheck("skipped", detail="turned off (--no-regen-check)"), ()
        if plan.autoconf is None:
            return RegenCheck("error", detail="no recipes/autoconf.toml: nothing says how to "
                                              "regenerate configure"), ()
        with step("regen", "regenerating configure in the autoconf image"):
            return regen.Regenerator(rebuilder, self.fetcher).check(
                plan.autoconf, source, builder, outdir / "regen")

    def _signature_files(self, plan: Plan, source: Source, published: tuple[Published, ...],
                         step: _Step) -> FoundAndChecked:
        with step("signatures", "fetching and checking signatures" if self.check_signatures
                  else "fetching the release SBOMs"):
            files = fetch.fetch_signatures(plan, self.fetcher, published)
            if not self.check_signatures:
                return files, ()
            return files, self._signatures(plan, source, published, files)

    def _signatures(self, plan: Plan, source: Source, published: tuple[Published, ...],
                    found: tuple[SignatureFiles, ...]) -> tuple[SignatureCheck, ...]:
        files = {f.artifact: f for f in found}
        known = signatures.load_digest_list(self.known_digests) if self.known_digests else None
        checks: list[SignatureCheck] = []
        for p in published:
            f = files[p.name]
            checks.append(signatures.check_openpgp(p.name, p.path, f.asc, plan.signers,
                                                   f.unavailable.get(".asc", "")))
            checks.append(signatures.check_sigstore(
                p.name, p.sha256, f, plan.signers, offline=not self.online_sigstore,
                rekor=self.rekor_url, lookup=lambda url: self.fetcher.get(url).path.read_bytes()))
            if known is not None and self.known_digests is not None:
                checks.append(signatures.check_digest(p.name, p.sha256, known,
                                                      self.known_digests.name))
        checks += signatures.check_tag(source, plan.signers)
        return tuple(checks)


_Step = Callable[[str, str], contextlib.AbstractContextManager[object]]


class _Clock:
    """How long each step took, and when (since the start) marked moments came: kept in the
    report, whatever shows the steps on a terminal."""

    def __init__(self, show: Step) -> None:
        self._show = show
        self._start = time.monotonic()
        self._lock = threading.Lock()
        self._took: dict[str, float] = {}

    @contextlib.contextmanager
    def step(self, name: str, text: str) -> Iterator[None]:
        began = time.monotonic()
        with self._show(text):
            yield
        with self._lock:
            self._took[name] = round(time.monotonic() - began, 2)

    def mark(self, name: str) -> None:
        with self._lock:
            self._took[f"{name} at"] = round(time.monotonic() - self._start, 2)

    def timings(self) -> dict[str, float]:
        with self._lock:
            return {**self._took, "total": round(time.monotonic() - self._start, 2)}


def _content_note(c: Comparison) -> str:
    content = [f for f in c.findings if f.kind == "content"]
    if c.verdict == "error":
        return f"{c.artifact}: could not be read: {c.error}"
    if content:
        return (f"{c.artifact}: CONTENT DIFFERS from the tag's rebuild, {c.findings_total} "
                f"finding(s), first: {content[0].explanation}")
    if c.payload_identical:
        return (f"{c.artifact}: content identical: its tar payload is the rebuilt one, byte "
                "for byte; its compressed bytes are checked when they are made")
    first = next((f.explanation for f in c.findings if f.kind == "metadata"), "")
    return f"{c.artifact}: every member's content agrees; metadata differs: {first}"


def _sbom_input(p: Published, files: SignatureFiles) -> sbom.Artifact:
    if files.sbom is not None:
        return sbom.Artifact(p.name, p.sha256, files.sbom)
    why = files.unavailable.get(".spdx.json", "")
    return sbom.Artifact(p.name, p.sha256, None, "unavailable" if why else "absent", why)
