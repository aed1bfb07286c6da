"""`make bench`: the tool's speed on the real 3.13.5, against the floors it cannot beat and a
peer (diffoscope), all measured in the same run. Figures are printed, not asserted.

- verify, warm (images built, tag cached): its wall time, its ratio to the one cost that
  cannot be avoided (`xz -T1` of the payload, timed inside the builder image), when the
  content verdict came (report.json's timings) and when the first line appeared;
- compare of the published Python-3.13.5.tar.xz (Debian's orig, python.org's bytes) against
  a copy with three members changed, and against a copy with only owners and mtimes
  changed: our time against `xz -dc` (the floor) and against diffoscope; peak RSS.
BENCH_COLD=1 also measures a first verify on a fresh machine: it removes this tool's images
and bootstraps them again (minutes).
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tarfile
import time
from pathlib import Path
from typing import Any

from cpython_repro.cache import Cache, sha256_file
from cpython_repro.download import Fetcher
from cpython_repro.resolve import data_dir, load_recipe
from tests.fixtures import realrelease
from tests.fixtures.origs import ORIGS
from tests.fixtures.release import REPRO_OPTIONS, tar_options

ORIG_URL = ORIGS["3.13.5"].url
ORIG_SHA256 = ORIGS["3.13.5"].sha256
WORK = Path("/var/tmp/cpython-repro-bench")
CHANGED = ["Lib/os.py", "Python/ceval.c", "configure"]
RUNS = 5
VERIFY_RUNS = 3


def builder_image() -> str:
    from cpython_repro.dockerio import Docker
    from cpython_repro.images import ensure_builder

    recipe = load_recipe(data_dir("recipes") / "release-tools-2023-10.toml")
    return ensure_builder(recipe, recipe.blurb[-1], Docker.connect(), Cache(WORK / "cache"))[-1].ref


def make_pairs(orig: Path, image: str) -> tuple[Path, Path, Path]:
    """The published tree repacked by the recipe (must be the published bytes), with three
    members changed, and with only owners and mtimes changed; made once, then kept."""
    repack, tampered, meta = (WORK / n for n in ("repacked.tar.xz", "tampered.tar.xz",
                                                 "metadata.tar.xz"))
    if repack.exists() and tampered.exists() and meta.exists():
        return repack, tampered, meta
    with tarfile.open(orig) as tar:
        first = tar.next()
        assert first is not None
        top, mtime = first.name.rstrip("/"), int(first.mtime)
    opts = tar_options(mtime)
    # The same tree, another owner and one other mtime for every member: metadata only.
    other = " ".join(f"'{o}'" for o in REPRO_OPTIONS if "mtime" not in o) \
        .replace("--owner=0", "--owner=1000").replace("--group=0", "--group=1000")
    edits = " && ".join(f"printf '\\n# injected\\n' >> {top}/{p}" for p in CHANGED)
    script = (
        f"set -e; mkdir -p /tmp/t && cd /tmp/t && xz -dc /i/{orig.name} | tar xf - && "
        f"tar cf - {opts} {top} | xz -T1 > /o/.repacked && "
        f"tar cf - {other} '--mtime=2026-01-01 00:00:00Z' {top} | xz -T1 > /o/.metadata && "
        f"{edits} && tar cf - {opts} {top} | xz -T1 > /o/.tampered"
    )
    print(f"making the pairs in {image} (three xz -T1 encodes of ~110 MB)...", flush=True)
    subprocess.run(["docker", "run", "--rm", "--network", "none", "--tmpfs", "/tmp:size=2g",
                    "-u", "0", "-v", f"{orig.parent}:/i:ro", "-v", f"{WORK}:/o", image,
                    "sh", "-c", script], check=True)
    for name, dest in (("repacked", repack), ("tampered", tampered), ("metadata", meta)):
        (WORK / f".{name}").replace(dest)
    return repack, tampered, meta


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall time and the peak RSS (KiB) of that one child, from wait4's rusage."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss


def xz_floor(orig: Path, image: str) -> tuple[float, float]:
    """`xz -T1` of the 3.13.5 payload in the builder image: (encode alone, timed inside;
    the whole docker run, timed outside)."""
    payload = WORK / "payload.tar"
    if not payload.exists():
        subprocess.run(["sh", "-c", f"xz -dc {orig} > {payload}.tmp && mv {payload}.tmp "
                                    f"{payload}"], check=True)
    script = ("s=$(date +%s.%N); xz -T1 < /i/payload.tar > /dev/null; e=$(date +%s.%N); "
              "echo \"$s $e\"")
    started = time.perf_counter()
    done = subprocess.run(["docker", "run", "--rm", "--network", "none", "-v",
                           f"{WORK}:/i:ro", image, "sh", "-c", script],
                          check=True, capture_output=True, text=True)
    outside = time.perf_counter() - started
    s, e = (float(x) for x in done.stdout.split())
    return e - s, outside


def verify_once(release: realrelease.RealRelease, n: int,
                env: dict[str, str]) -> tuple[float, float, int, dict[str, Any]]:
    """One warm verify as a user runs it (plain output through a pipe): (wall seconds, time
    to the first line, peak RSS KiB, report)."""
    out = WORK / f"verify-{n}"
    shutil.rmtree(out, ignore_errors=True)
    argv = [sys.executable, "-m", "cpython_repro", "verify", "3.13.5", "--remote",
            str(release.repo), "--published", str(release.published), "--offline",
            "--out", str(out), "--cache-dir", str(WORK / "verify-cache"),
            "--history", str(WORK / "history.sqlite")]
    started = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             env=env)
    assert child.stderr is not None
    child.stderr.readline()
    first = time.perf_counter() - started
    child.stderr.read()
    _, _, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    report = json.loads((out / "report.json").read_text())
    return wall, first, usage.ru_maxrss, report


def bench_verify(orig: Path, image: str) -> None:
    release = realrelease.make("3.13.5")
    env = {**os.environ, "CI": "true"}
    print("verify 3.13.5 (packager mode, --offline), warming the cache once...", flush=True)
    verify_once(release, 0, env)
    walls, firsts, contents, rss, floors = [], [], [], [], []
    for n in range(1, VERIFY_RUNS + 1):
        floors.append(xz_floor(orig, image))
        wall, first, peak, report = verify_once(release, n, env)
        assert report["artifacts"][0]["verdict"] == "identical", report["reasons"]
        walls.append(wall)
        firsts.append(first)
        contents.append(report["timings"]["content verdict at"])
        rss.append(peak)
    wall, floor = statistics.median(walls), statistics.median(f for f, _ in floors)
    print(f"xz -T1 floor (builder)   {floor:7.1f} s  encode alone, median of {VERIFY_RUNS}: "
          f"{', '.join(f'{f:.1f}' for f, _ in floors)}; whole docker run "
          f"{statistics.median(o for _, o in floors):.1f} s")
    print(f"verify, warm             {wall:7.1f} s  median of {VERIFY_RUNS}: "
          f"{', '.join(f'{w:.1f}' for w in walls)}  -> {wall / floor:.2f}x the xz -T1 floor")
    print(f"  content verdict at     {statistics.median(contents):7.1f} s  "
          f"({', '.join(f'{c:.1f}' for c in contents)})")
    print(f"  first line at          {statistics.median(firsts):7.2f} s")
    print(f"  peak RSS (host)        {max(rss) / 1024:7.0f} MiB")
    print(f"  steps of the last run: {json.dumps(report['timings'])}")


def bench_cold(image_count: int) -> None:
    """A first verify on a fresh machine: no images, no cache."""
    print(f"cold: removing {image_count} cpython-repro image(s) and the verify cache...",
          flush=True)
    subprocess.run([sys.executable, "-m", "cpython_repro", "images", "prune", "-q"], check=True)
    shutil.rmtree(WORK / "verify-cache", ignore_errors=True)
    release = realrelease.make("3.13.5")
    out = WORK / "verify-cold"
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "cpython_repro", "verify", "3.13.5", "--remote",
                    str(release.repo), "--published", str(release.published), "--out",
                    str(out), "--cache-dir", str(WORK / "verify-cache"), "-q"],
                   env={**os.environ, "CI": "true"})
    print(f"verify, cold             {time.perf_counter() - started:7.1f} s  (bootstraps and "
          "image builds included)")


def diffoscope_paths(node: dict[str, Any], top: str, out: set[str]) -> None:
    for key in ("source1", "source2"):
        name = str(node.get(key, ""))
        if name.startswith(top + "/") and not name.endswith("/"):
            out.add(name)
    for child in node.get("details", []) or []:
        diffoscope_paths(child, top, out)


def bench_compare(orig: Path, other: Path, label: str) -> None:
    floors, ours = [], []
    for _ in range(RUNS):  # alternating, so a burst of load hits both alike
        floors.append(timed(["sh", "-c", f"xz -dc {orig} > /dev/null"])[0])
        ours.append(timed([sys.executable, "-m", "cpython_repro", "compare", str(orig),
                           str(other), "--json", str(WORK / "ours.json"), "-q"]))
    floor = statistics.median(floors)
    ours_s = statistics.median(t for t, _ in ours)
    found = json.loads((WORK / "ours.json").read_text())
    ours_paths = sorted({f["path"] for f in found["findings"] if f["kind"] == "content"})
    print(f"compare, {label}: {found['verdict']}")
    print(f"  xz -dc floor           {floor:7.2f} s  (median of {RUNS})")
    print(f"  cpython-repro compare  {ours_s:7.2f} s  (median of {RUNS}: "
          f"{', '.join(f'{t:.2f}' for t, _ in ours)}) -> {ours_s / floor:.2f}x the floor, "
          f"peak RSS {max(r for _, r in ours) / 1024:.0f} MiB")
    beside = Path(sys.executable).parent / "diffoscope"
    diffoscope = shutil.which("diffoscope") or (str(beside) if beside.exists() else None)
    if diffoscope is None:
        print("  diffoscope: not installed, no ratio")
        return
    report = WORK / "diffoscope.json"
    report.unlink(missing_ok=True)
    dif_s, _ = timed([diffoscope, "--json", str(report), str(orig), str(other)])
    if not report.exists():
        print(f"  diffoscope ({diffoscope}) wrote no report after {dif_s:.2f} s")
        return
    paths: set[str] = set()
    diffoscope_paths(json.loads(report.read_text()), "Python-3.13.5", paths)
    print(f"  diffoscope             {dif_s:7.2f} s  -> ours is {dif_s / ours_s:.1f}x faster; "
          f"same content paths: {sorted(paths) == ours_paths} {ours_paths}")


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    orig = Fetcher(Cache(WORK / "cache")).get(ORIG_URL).path
    if sha256_file(orig) != ORIG_SHA256:
        print("the downloaded orig tarball does not have the pinned sha256", file=sys.stderr)
        return 1
    image = builder_image()
    repack, tampered, meta = make_pairs(orig, image)
    print(f"published  {orig.stat().st_size:>11,} B  sha256 {ORIG_SHA256[:16]}; repacked by "
          f"the recipe is identical: {sha256_file(repack) == ORIG_SHA256}")
    bench_compare(orig, tampered, "three members changed")
    bench_compare(orig, meta, "owners and mtimes changed only")
    bench_verify(orig, image)
    if os.environ.get("BENCH_COLD") == "1":
        listed = subprocess.run(["docker", "images", "-q", "cpython-repro/*"],
                                capture_output=True, text=True, check=False).stdout.split()
        bench_cold(len(listed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
