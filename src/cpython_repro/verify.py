"""The verify pipeline: resolve -> fetch -> images -> rebuild -> compare -> report."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from cpython_repro import adopt, compare, fetch, images, rebuild, regen, signatures
from cpython_repro.cache import Cache
from cpython_repro.dockerio import Docker
from cpython_repro.download import Fetcher
from cpython_repro.models import (
    Image,
    Limits,
    Plan,
    Published,
    RegenCheck,
    SignatureCheck,
    Source,
    Step,
)
from cpython_repro.report import VerifyReport


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
        step = self.step
        offline = self.fetcher.offline
        # Cheap failures first: a bad tag or a missing artifact is found before any build.
        with step(f"fetching tag {plan.version.tag}"):
            source = fetch.fetch_tag(plan, self.cache, offline)
        with step("downloading the published artifacts" if not plan.packager
                  else "reading the given artifacts"):
            published, not_checked = fetch.fetch_published(plan, self.fetcher)
        # Only what is verified is rebuilt: a packager's single .tgz needs no xz encode.
        plan = dataclasses.replace(plan, artifacts=tuple(
            a for a in plan.artifacts if a.name in {p.name for p in published}))
        checks: tuple[SignatureCheck, ...] = ()
        if self.check_signatures:
            with step("checking signatures"):
                checks = self._signatures(plan, source, published)
        docker = self.docker_factory.connect()
        blurb = plan.recipe.blurb_for(source.commit_date)
        used: list[Image] = []
        with step("building or reusing the pinned images"):
            used += images.ensure_builder(plan.recipe, blurb, docker, self.fetcher)
        builder = used[-1]
        rebuilder = rebuild.Rebuilder(docker, self.limits)
        generated = RegenCheck("skipped", detail="turned off (--no-regen-check)")
        if self.regen_check and plan.autoconf is None:
            generated = RegenCheck("error", detail="no recipes/autoconf.toml: nothing says "
                                                   "how to regenerate configure")
        elif self.regen_check and plan.autoconf is not None:
            with step("regenerating configure in the autoconf image"):
                generated, made = regen.Regenerator(rebuilder, self.fetcher).check(
                    plan.autoconf, source, builder, outdir / "regen")
                used += made
        with step("rebuilding and compressing in the builder container"):
            built = rebuilder.rebuild(plan, source, builder, outdir)
        rebuilt = {r.name: r for r in built.artifacts}
        comparisons = []
        for p in published:
            with step(f"comparing {p.name}"):
                comparisons.append(compare.compare(
                    p.name, p.path, rebuilt[p.name].path,
                    diff_dir=outdir / "diffoscope" / p.name, report_dir=outdir))
        result = tuple(comparisons)
        if self.adoption and any(c.verdict == "same-content" for c in result):
            with step("rebuilding again with metadata adopted from the published artifacts"):
                result = adopt.Adopter(rebuilder).adopt(
                    plan, source, builder, outdir, result, {p.name: p.path for p in published})
        status = signatures.overall(checks, [p.name for p in published]) \
            if self.check_signatures else "skipped"
        return VerifyReport(plan, source, published, tuple(used), built, result,
                            started, dt.datetime.now(dt.UTC), checks, status, generated,
                            not_checked, offline)

    def _signatures(self, plan: Plan, source: Source,
                    published: tuple[Published, ...]) -> tuple[SignatureCheck, ...]:
        files = {f.artifact: f for f in fetch.fetch_signatures(plan, self.fetcher, published)}
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
