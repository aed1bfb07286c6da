"""Command line: thin. Each subcommand builds its collaborators and calls one stage.

Errors are caught once, in main(), and mapped to exit codes (errors.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cpython_repro import __version__, resolve
from cpython_repro.cache import Cache, default_root
from cpython_repro.compare import compare
from cpython_repro.errors import EXIT_ENVIRONMENT, EXIT_INPUT, InputError, ReproError
from cpython_repro.files import regular_input
from cpython_repro.models import DEFAULT_MAX_DOWNLOAD, Limits, Version
from cpython_repro.text import one_line

# The other stages (HTTP, signatures, SBOM, report) are imported by the commands that use
# them: `compare` alone starts in half the time (~70 ms less on every call).
if TYPE_CHECKING:
    from cpython_repro.report import VerifyReport


def _interactive() -> bool:
    return sys.stderr.isatty() and os.environ.get("CI", "") not in ("true", "1")


def _abs(path: str | Path) -> Path:
    """Every path the user gives or defaults is made absolute before use: Docker refuses a
    relative bind-mount source, and a later chdir must not change what a path means."""
    return Path(path).absolute()


def _cache(args: argparse.Namespace) -> Cache:
    root = _abs(args.cache_dir) if args.cache_dir else _abs(default_root())
    root.mkdir(parents=True, exist_ok=True)
    return Cache(root)


@contextlib.contextmanager
def _presenter(quiet: bool) -> Iterator[Any]:
    """The run's progress: none with --quiet, else the console's presenter (live on a
    terminal, plain timed lines in a pipe or CI)."""
    if quiet:
        yield None
        return
    from cpython_repro import console

    shown = console.Presenter(_interactive())
    try:
        yield shown
    finally:
        shown.close()


def _history(args: argparse.Namespace) -> Path:
    from cpython_repro import history

    return _abs(args.history) if args.history else _abs(history.default_path())


def cmd_verify(args: argparse.Namespace) -> int:
    from cpython_repro import history

    try:
        return _verify(args)
    except ReproError as exc:
        # A run without a verdict is history too: `verify-many` retries it, `site` shows it.
        history.record_failure(_history(args), args.version, exc.exit_code, exc.one_line())
        raise


def _verify(args: argparse.Namespace) -> int:
    from cpython_repro import history, outputs
    from cpython_repro.download import Fetcher, no_progress
    from cpython_repro.report import to_json, write_json
    from cpython_repro.verify import Verifier

    if args.offline and (args.online_sigstore or args.rekor_url):
        raise InputError("--offline cannot be combined with --online-sigstore or --rekor-url")
    plan = resolve.plan(
        args.version, recipes_dir=_abs(args.recipes) if args.recipes else None,
        remote=args.remote, base_url=args.base_url,
        local_published=[regular_input(_abs(p), "--published") for p in args.published or ()],
    )
    cache = _cache(args)
    outdir = _abs(args.out or Path("out") / plan.version.text)
    known = _abs(args.known_digests) if args.known_digests else None
    if known is not None:
        regular_input(known, "--known-digests")
    with _presenter(args.quiet) as shown:
        fetcher = Fetcher(cache, max_bytes=args.max_download, offline=args.offline,
                          progress=shown.download if shown else no_progress)
        display: dict[str, Any] = {"step": shown.step, "note": shown.note} if shown else {}
        report = Verifier(cache, fetcher, limits=Limits(seconds=args.timeout), **display,
                          adoption=not args.no_adopt,
                          check_signatures=not args.no_signatures,
                          online_sigstore=args.online_sigstore, known_digests=known,
                          rekor_url=args.rekor_url
                          or (resolve.DEFAULT_REKOR if args.online_sigstore else ""),
                          regen_check=not args.no_regen_check).run(plan, outdir)
    _forget_failed(cache, report)
    data = to_json(report)
    json_path = _abs(args.json) if args.json else outdir / "report.json"
    # The verdict is shown whatever happens to the files; a failed write is raised after.
    failures: list[ReproError] = []
    written: dict[str, str] = {}
    report_path = f"{json_path} (not written)"
    try:
        write_json(data, json_path)
        report_path = str(json_path)
    except ReproError as exc:
        failures.append(exc)
    try:
        written = outputs.write_all(data, outdir, sign=args.sign)
    except ReproError as exc:
        failures.append(exc)
    history.record(_history(args), data, json_path, outdir)
    if not args.quiet:
        from cpython_repro import console  # rich costs a tenth of a second to import

        out = console.console()
        console.show_verify(out, data, report_path, written)
    if failures:
        raise failures[0]
    return report.exit_code


def _forget_failed(cache: Cache, report: VerifyReport) -> None:
    """A downloaded artifact that could not be read, differs in content or failed its
    signature check is dropped from the cache with its signature files: the next run
    downloads them again instead of reusing a damaged copy."""
    failed = {c.artifact for c in report.comparisons
              if c.verdict in ("error", "content-differs")}
    failed |= {c.artifact for c in report.signatures if c.status == "failed"}
    for p in report.published:
        if p.name in failed and p.origin.startswith(("http://", "https://")):
            for suffix in ("", ".asc", ".sigstore", ".sig", ".crt"):
                cache.forget(p.origin + suffix)


def cmd_site(args: argparse.Namespace) -> int:
    import tempfile

    from cpython_repro import history

    sources = [_abs(h) for h in args.history] if args.history else [history.default_path()]
    with tempfile.TemporaryDirectory() as tmp:
        merged = Path(tmp) / "merged.sqlite"
        history.merge(merged, [p for p in sources if p.is_file()])
        index = history.write_site(merged, _abs(args.outdir),
                                   [_abs(o) for o in args.outputs or ()])
    if not args.quiet:
        print(index)
    return 0


def cmd_merge_history(args: argparse.Namespace) -> int:
    from cpython_repro import history

    sources = [_abs(h) for h in args.history]
    missing = [str(p) for p in sources if not p.is_file()]
    if missing:
        raise InputError(f"no such history: {', '.join(missing)}")
    added = history.merge(_abs(args.dest), sources)
    if not args.quiet:
        print(f"{added} run(s) added to {args.dest}")
    return 0


def _listing(args: argparse.Namespace) -> list[Version]:
    from cpython_repro import schedule
    from cpython_repro.download import Fetcher

    return schedule.listed_versions(Fetcher(_cache(args)), args.base_url)


def cmd_latest(args: argparse.Namespace) -> int:
    from cpython_repro import schedule

    for v in schedule.newer_than_verified(_listing(args), _history(args)):
        print(v.text)
    return 0


def cmd_matrix(args: argparse.Namespace) -> int:
    import json

    from cpython_repro import history, schedule

    skip = set() if args.all else history.decided_versions(_history(args))
    print(json.dumps(schedule.matrix(_listing(args), args.since, skip)))
    return 0


def cmd_verify_many(args: argparse.Namespace) -> int:
    from cpython_repro import schedule

    passthrough = [*(["--remote", args.remote] if args.remote else []),
                   "--base-url", args.base_url,
                   *(["--recipes", str(_abs(args.recipes))] if args.recipes else []),
                   *(["--cache-dir", str(_abs(args.cache_dir))] if args.cache_dir else []),
                   *args.verify_option]

    def show(o: schedule.Outcome) -> None:
        if not args.quiet:
            state = "skipped (already verified)" if o.exit_code is None else f"exit {o.exit_code}"
            last = f": {one_line(o.detail.splitlines()[-1])}" if o.detail.strip() else ""
            print(f"{o.version}: {state}{last}", flush=True)

    outcomes = schedule.run_many(args.versions, args.jobs, _abs(args.out_root),
                                 _history(args), passthrough, show)
    codes = [o.exit_code for o in outcomes if o.exit_code is not None]
    return max(codes, default=0)


def cmd_compare(args: argparse.Namespace) -> int:
    from cpython_repro.report import comparison_json, write_json

    published, rebuilt = (regular_input(_abs(p)) for p in (args.published, args.rebuilt))
    diff_dir = _abs(args.diff_dir) if args.diff_dir else None
    result = compare(published.name, published, rebuilt, diff_dir=diff_dir,
                     report_dir=diff_dir)
    data = comparison_json(result)
    if not args.quiet:
        from cpython_repro import console

        console.show_comparisons(console.console(), [data])
    if args.json:
        write_json(data, _abs(args.json))  # after the verdict: a failed write is named
    return 0 if result.verdict == "identical" else 1


def cmd_images(args: argparse.Namespace) -> int:
    from cpython_repro import console, images
    from cpython_repro.dockerio import Docker
    from cpython_repro.download import Fetcher

    docker = Docker.connect()
    out = console.console(args.quiet)
    if args.action == "build":
        fetcher = Fetcher(_cache(args))
        for version in args.version or ["3.13.5"]:
            plan = resolve.plan(version,
                                recipes_dir=_abs(args.recipes) if args.recipes else None)
            # The builder for the series' newest blurb pin covers current releases; verify
            # builds the others when a tag's date needs them.
            builder = images.ensure_builder(plan.recipe, plan.recipe.blurb[-1], docker,
                                            fetcher)[-1]
            out.print(f"{version}: builder {builder.ref} ({builder.image_id[:19]}), "
                      f"recipe {plan.recipe.name}")
            for replica in plan.autoconf.replicas if plan.autoconf is not None else ():
                made = images.ensure_autoconf(replica, docker, fetcher)[-1]
                out.print(f"{version}: autoconf {made.ref} ({made.image_id[:19]}), "
                          f"{replica.name}")
    elif args.action == "list":
        for info in docker.images(images.REPO + "/"):
            out.print(f"{info.ref}  {info.image_id[:19]}  layers={len(info.layers)}  "
                      f"{info.created[:19]}")
    else:
        for info in docker.images(images.REPO + "/"):
            docker.remove(info.ref)
            out.print(f"removed {info.ref}")
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from cpython_repro import console, doctor

    found = doctor.checks(_abs(args.cache_dir) if args.cache_dir else _abs(default_root()))
    if not args.quiet:
        console.show_doctor(console.console(), found)
    return 0 if doctor.ok(found) else EXIT_ENVIRONMENT


def _interrupted() -> int:
    _error("interrupted; containers and partial files were cleaned up")
    return 130


def _during_interrupt(exc: BaseException) -> bool:
    """An error raised while Ctrl-C unwound the run (a stopped container, a cleanup that
    met a half-written file) is the interruption, not a failure of its own."""
    seen: BaseException | None = exc.__context__
    while seen is not None:
        if isinstance(seen, KeyboardInterrupt):
            return True
        seen = seen.__context__
    return False


def _error(message: str) -> None:
    # Messages quote member and file names: one line, no terminal controls.
    print(f"cpython-repro: error: {one_line(message)}", file=sys.stderr)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(message)


class _UsageError(ReproError):
    exit_code = EXIT_INPUT


DESCRIPTION = """\
Rebuild a CPython source release (Python-X.Y.Z.tgz and .tar.xz) from its git tag in pinned
containers, the way python.org's release tooling makes it, and compare it bit for bit with
what was published: every difference named (member, field, bytes), signatures checked,
configure regenerated, the SBOM checked."""
EPILOG = """\
examples:
  cpython-repro verify 3.13.5
  cpython-repro verify 3.13.5 --published python3.13_3.13.5.orig.tar.xz --offline
  cpython-repro compare Python-3.13.5.tar.xz rebuilt.tar.xz
  cpython-repro doctor

exit codes: 0 verified, 1 a divergence or a check that did not pass (the reasons are
printed last), 2 bad input, 3 the environment failed (Docker, network, disk)."""


def build_parser() -> argparse.ArgumentParser:
    # Defaults a scheduled job can set once for every command (a mirror, a local clone).
    remote = os.environ.get("CPYTHON_REPRO_REMOTE") or resolve.DEFAULT_REMOTE
    base_url = os.environ.get("CPYTHON_REPRO_BASE_URL") or resolve.DEFAULT_BASE_URL
    p = _Parser(prog="cpython-repro", description=DESCRIPTION, epilog=EPILOG,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"cpython-repro {__version__}")
    common = _Parser(add_help=False)
    common.add_argument("--cache-dir", help="default: $XDG_CACHE_HOME/cpython-repro")
    common.add_argument("--recipes", default=os.environ.get("CPYTHON_REPRO_RECIPES"),
                        help="recipes directory (default: $CPYTHON_REPRO_RECIPES, else the "
                             "shipped recipes/)")
    common.add_argument("-q", "--quiet", action="store_true", help="no terminal output")
    common.add_argument("-v", "--verbose", action="store_true", help="tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("verify", parents=[common], help="rebuild a release and compare it")
    v.add_argument("version", help="e.g. 3.13.5, 3.14.0rc2")
    v.add_argument("--remote", default=remote, help="git remote holding the tag (default: "
                                                    "$CPYTHON_REPRO_REMOTE, else GitHub's)")
    v.add_argument("--base-url", default=base_url,
                   help="where artifacts are published (python.org's /ftp/python layout)")
    v.add_argument("--published", action="append", metavar="PATH",
                   help="a local artifact (matched by content, e.g. Debian's .orig.tar.xz) or "
                        "signature file (.asc, .sigstore, .sig, .crt) instead of downloading; "
                        "repeatable")
    v.add_argument("--out", help="output directory (default: out/VERSION)")
    v.add_argument("--offline", action="store_true",
                   help="no network at all: the tag from a local --remote, artifacts and "
                        "signature files only as given or already cached; what could not be "
                        "had is named in the report")
    v.add_argument("--json", help="report path (default: OUT/report.json)")
    v.add_argument("--max-download", type=int, default=DEFAULT_MAX_DOWNLOAD, metavar="BYTES")
    v.add_argument("--timeout", type=float, default=Limits.seconds, metavar="SECONDS",
                   help="stop a container step that runs longer than this (default %(default)s)")
    v.add_argument("--known-digests", metavar="FILE",
                   help="a sha256sum-style list of published digests to check the artifacts "
                        "against (e.g. python.org's)")
    v.add_argument("--no-signatures", action="store_true",
                   help="do not check signatures (the report says they were skipped)")
    v.add_argument("--online-sigstore", action="store_true",
                   help="refresh Sigstore's trust root online instead of using the shipped "
                        "one, and look up in Rekor the inclusion proofs that old bundles lack")
    v.add_argument("--rekor-url", metavar="URL",
                   help=f"look up missing inclusion proofs here (with --online-sigstore: "
                        f"{resolve.DEFAULT_REKOR})")
    v.add_argument("--no-regen-check", action="store_true",
                   help="do not regenerate configure & co. in the autoconf image (the report "
                        "says the check was skipped)")
    v.add_argument("--no-adopt", action="store_true",
                   help="do not try a second rebuild with metadata taken from the published "
                        "artifact when only metadata differs")
    v.add_argument("--history", help="SQLite history (default: "
                                      "$XDG_DATA_HOME/cpython-repro/history.sqlite)")
    v.add_argument("--sign", action="store_true",
                   help="sign the in-toto statement with Sigstore (ambient OIDC credentials)")
    v.set_defaults(func=cmd_verify)

    site = sub.add_parser("site", parents=[common], help="write a static status page")
    site.add_argument("outdir")
    site.add_argument("--history", action="append",
                      help="SQLite history, repeatable: they are merged (default as for verify)")
    site.add_argument("--outputs", action="append", metavar="DIR",
                      help="where runs' output directories are (DIR/VERSION/), to publish "
                           "their evidence and diffs too; repeatable")
    site.set_defaults(func=cmd_site)

    for name, helptext in (("latest", "releases newer than the last verified one"),
                           ("matrix", "a GitHub Actions matrix of releases to verify")):
        m = sub.add_parser(name, parents=[common], help=helptext)
        m.add_argument("--base-url", default=base_url,
                       help="python.org's /ftp/python listing")
        m.add_argument("--history", help="SQLite history (default as for verify)")
        if name == "matrix":
            m.add_argument("--since", required=True, help="oldest series, e.g. 3.12")
            m.add_argument("--all", action="store_true",
                           help="include releases already verified")
        m.set_defaults(func=cmd_latest if name == "latest" else cmd_matrix)

    merge = sub.add_parser("merge-history", parents=[common],
                           help="copy the runs of other histories into one")
    merge.add_argument("dest")
    merge.add_argument("--history", action="append", default=[], metavar="SOURCE",
                       help="a history to copy from, repeatable (none: dest is just created)")
    merge.set_defaults(func=cmd_merge_history)

    many = sub.add_parser("verify-many", parents=[common],
                          help="verify several releases with a bounded worker pool; "
                               "run again to resume")
    many.add_argument("versions", nargs="+")
    many.add_argument("--jobs", type=int, default=2)
    many.add_argument("--out-root", default="out")
    many.add_argument("--history", help="SQLite history (default as for verify)")
    many.add_argument("--remote")
    many.add_argument("--base-url", default=base_url)
    many.add_argument("--verify-option", action="append", default=[], metavar="OPT",
                      help="passed to each verify, e.g. --verify-option=--no-regen-check")
    many.set_defaults(func=cmd_verify_many)

    c = sub.add_parser("compare", parents=[common], help="compare two archives")
    c.add_argument("published")
    c.add_argument("rebuilt")
    c.add_argument("--json", help="write the comparison as JSON here")
    c.add_argument("--diff-dir", help="run diffoscope on the differing members, output here")
    c.set_defaults(func=cmd_compare)

    d = sub.add_parser("doctor", parents=[common],
                       help="check this host: Docker, git, gpg, mmdebstrap, diffoscope, disk")
    d.set_defaults(func=cmd_doctor)

    i = sub.add_parser("images", parents=[common], help="build, list or prune our images")
    i.add_argument("action", choices=["build", "list", "prune"])
    i.add_argument("version", nargs="*",
                   help="build: the releases whose recipes name the images (default 3.13.5)")
    i.set_defaults(func=cmd_images)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    given = list(sys.argv[1:] if argv is None else argv)
    verbose = "-v" in given or "--verbose" in given
    if not given:  # no command: how to use it, not an error about a missing argument
        build_parser().print_help(sys.stderr)
        return EXIT_INPUT
    try:
        args = build_parser().parse_args(argv)
        return int(args.func(args))
    except KeyboardInterrupt:
        return _interrupted()
    except ReproError as exc:
        if _during_interrupt(exc):
            return _interrupted()
        if verbose:
            traceback.print_exc()
        _error(exc.one_line())
        return exc.exit_code
    except OSError as exc:
        if _during_interrupt(exc):
            return _interrupted()
        if verbose:
            traceback.print_exc()
        _error(f"{exc.strerror or exc} ({exc.filename or 'I/O'})")
        return EXIT_ENVIRONMENT
