"""`make bench`: our compare against diffoscope on a real published CPython tarball.

The published artifact is Debian's python3.13_3.13.5.orig.tar.xz, byte-identical to
python.org's Python-3.13.5.tar.xz (DESIGN.md). In the base image (GNU tar 1.35, xz 5.8.1) it
is repacked twice with release.py's options and xz -T1: once untouched (this should give the
published bytes) and once with three members changed. Figures are printed, not asserted.
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
from tests.fixtures.origs import ORIGS
from tests.fixtures.release import tar_options

ORIG_URL = ORIGS["3.13.5"].url
ORIG_SHA256 = ORIGS["3.13.5"].sha256
WORK = Path("/var/tmp/cpython-repro-bench")
CHANGED = ["Lib/os.py", "Python/ceval.c", "configure"]
RUNS = 5


def base_image() -> str:
    from cpython_repro.dockerio import Docker
    from cpython_repro.images import ensure_base

    recipe = load_recipe(data_dir("recipes") / "release-tools-2023-10.toml")
    return ensure_base(recipe.base, Docker.connect(), Cache(WORK / "cache")).ref


def make_pair(orig: Path, image: str) -> tuple[Path, Path]:
    repack, tampered = WORK / "repacked.tar.xz", WORK / "tampered.tar.xz"
    if repack.exists() and tampered.exists():
        return repack, tampered
    with tarfile.open(orig) as tar:
        first = tar.next()
        assert first is not None
        top, mtime = first.name.rstrip("/"), int(first.mtime)
    opts = tar_options(mtime)
    edits = " && ".join(f"printf '\\n# injected\\n' >> {top}/{p}" for p in CHANGED)
    script = (
        f"set -e; mkdir -p /tmp/t && cd /tmp/t && xz -dc /i/{orig.name} | tar xf - && "
        f"tar cf - {opts} {top} | xz -T1 > /o/.repacked && "
        f"{edits} && tar cf - {opts} {top} | xz -T1 > /o/.tampered"
    )
    print(f"making the pair in {image} (two xz -T1 encodes of ~110 MB)...", flush=True)
    subprocess.run(["docker", "run", "--rm", "--network", "none", "--tmpfs", "/tmp:size=2g",
                    "-v", f"{orig.parent}:/i:ro", "-v", f"{WORK}:/o", image, "sh", "-c", script],
                   check=True)
    (WORK / ".repacked").replace(repack)
    (WORK / ".tampered").replace(tampered)
    return repack, tampered


def timed(argv: list[str]) -> tuple[float, int]:
    """Wall time and the peak RSS (KiB) of that one child, from wait4's rusage."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    return time.perf_counter() - start, usage.ru_maxrss


def diffoscope_paths(node: dict[str, Any], top: str, out: set[str]) -> None:
    for key in ("source1", "source2"):
        name = str(node.get(key, ""))
        if name.startswith(top + "/") and not name.endswith("/"):
            out.add(name)
    for child in node.get("details", []) or []:
        diffoscope_paths(child, top, out)


def main() -> int:
    WORK.mkdir(parents=True, exist_ok=True)
    orig = Fetcher(Cache(WORK / "cache")).get(ORIG_URL).path
    if sha256_file(orig) != ORIG_SHA256:
        print("the downloaded orig tarball does not have the pinned sha256", file=sys.stderr)
        return 1
    repack, tampered = make_pair(orig, base_image())
    print(f"published  {orig.stat().st_size:>11,} B  sha256 {ORIG_SHA256[:16]}")
    print(f"repacked   {repack.stat().st_size:>11,} B  sha256 {sha256_file(repack)[:16]}  "
          f"identical to published: {sha256_file(repack) == ORIG_SHA256}")

    # Medians of RUNS, each side alternating, so a burst of load hits both alike.
    floors, ours = [], []
    for _ in range(RUNS):
        floors.append(timed(["sh", "-c", f"xz -dc {orig} > /dev/null"])[0])
        ours.append(timed([sys.executable, "-m", "cpython_repro", "compare", str(orig),
                           str(tampered), "--json", str(WORK / "ours.json"), "-q"]))
    floor = statistics.median(floors)
    ours_s = statistics.median(t for t, _ in ours)
    ours_rss = max(r for _, r in ours)
    found = json.loads((WORK / "ours.json").read_text())
    ours_paths = sorted({f["path"] for f in found["findings"] if f["kind"] == "content"})
    print(f"xz -dc floor          {floor:7.2f} s  (median of {RUNS}: "
          f"{', '.join(f'{t:.2f}' for t in floors)})")
    print(f"cpython-repro compare {ours_s:7.2f} s  (median of {RUNS}: "
          f"{', '.join(f'{t:.2f}' for t, _ in ours)})")
    print(f"                      peak RSS {ours_rss / 1024:6.0f} MiB  "
          f"verdict {found['verdict']}  ({ours_s / floor:.2f}x the floor)")
    print(f"  differing members: {ours_paths}")
    # Debian's diffoscope on PATH brings its external tools; the venv's is the fallback.
    beside = Path(sys.executable).parent / "diffoscope"
    diffoscope = shutil.which("diffoscope") or (str(beside) if beside.exists() else None)
    if diffoscope is None:
        print("diffoscope: not installed, no ratio")
        return 0
    (WORK / "diffoscope.json").unlink(missing_ok=True)
    dif_s, _ = timed([diffoscope, "--json", str(WORK / "diffoscope.json"),
                      str(orig), str(tampered)])
    top = ours_paths[0].split("/")[0] if ours_paths else "Python-3.13.5"
    paths: set[str] = set()
    report = WORK / "diffoscope.json"
    if not report.exists():
        print(f"diffoscope ({diffoscope}) wrote no report after {dif_s:.2f} s")
        return 1
    diffoscope_paths(json.loads(report.read_text()), top, paths)
    print(f"diffoscope            {dif_s:7.2f} s  ratio diffoscope/ours {dif_s / ours_s:.1f}x")
    print(f"  differing members: {sorted(paths)}")
    print(f"  same set of paths: {sorted(paths) == ours_paths}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
