"""verify end to end: real git tag, real Docker rebuild, real HTTP downloads on loopback."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cpython_repro.cli import main
from tests.fixtures import release
from tests.fixtures.server import Site
from tests.integration.conftest import VERSION, World, copy_tree, publish

pytestmark = pytest.mark.docker


def verify(world: World, site: Site, tmp_path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    out = tmp_path / "out"
    code = main(["verify", VERSION, "--remote", str(world.repo), "--base-url", site.base_url,
                 "--recipes", str(world.recipes), "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(out), "-q", *extra])
    report = out / "report.json"
    return code, (json.loads(report.read_text()) if report.exists() else {})


def by_name(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {a["name"]: a for a in report["artifacts"]}


def content_findings(artifact: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in artifact["findings"] if f["kind"] == "content"]


def tampered(world: World, tmp_path: Path, change: Any) -> dict[str, Path]:
    tree = copy_tree(world, tmp_path / "tampered")
    change(tree)
    return release.make_tarballs(tree, world.commit_time, world.base_image, tmp_path / "pub")


def test_untouched_artifacts_are_identical(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world)
    code, report = verify(world, site, tmp_path)
    assert code == 0, report
    assert report["schema"] == "cpython-repro/report/v1"
    assert report["verdict"] == "identical"
    arts = by_name(report)
    assert set(arts) == {f"Python-{VERSION}.tgz", f"Python-{VERSION}.tar.xz"}
    for art in arts.values():
        assert art["verdict"] == "identical"
        assert art["published"]["sha256"] == art["rebuilt"]["sha256"]
        assert art["findings"] == []
    assert report["toolchain"]["tar"].startswith("1.35")
    assert report["toolchain"]["blurb"] == "2.0.0"
    assert report["toolchain_mismatches"] == []
    assert report["source"]["tag"] == f"v{VERSION}"
    assert report["source"]["commit"] == subprocess.run(
        ["git", "-C", str(world.repo), "rev-parse", f"v{VERSION}^{{commit}}"],
        capture_output=True, text=True, check=True).stdout.strip()
    # The script that ran is kept beside the report.
    assert "blurb merge" in (tmp_path / "out" / "job" / "export.sh").read_text()
    assert "xz -T1" in (tmp_path / "out" / "job" / f"compress-Python-{VERSION}.tar.xz.sh"
                        ).read_text()
    # Content first: the payload is compared while the artifacts are compressed.
    timings = report["timings"]
    assert timings["content verdict at"] < timings["total"]
    assert {f"compress Python-{VERSION}{s}" for s in (".tgz", ".tar.xz")} <= set(timings)


def test_warm_run_reuses_cache_and_revalidates(world: World, site: Site, tmp_path: Path) -> None:
    publish(site, world)
    assert verify(world, site, tmp_path)[0] == 0
    site.requests.clear()
    assert verify(world, site, tmp_path)[0] == 0
    # Revalidated, not downloaded again; only files that were absent (404) are asked again.
    gets = [path for method, path, _ in site.requests if method == "GET"]
    assert all(p.endswith((".sigstore", ".sig", ".spdx.json")) for p in gets), site.requests
    heads = {path.rsplit("/", 1)[1] for method, path, _ in site.requests if method == "HEAD"}
    assert heads == {f"Python-{VERSION}{s}" for s in (".tgz", ".tar.xz", ".tgz.asc",
                                                      ".tar.xz.asc")}
    # Republished different bytes at the same URL are noticed, not served from the cache.
    xz = tampered(world, tmp_path, lambda t: (t / "Lib/os.py").write_text("changed\n"))
    publish(site, world, xz)
    code, report = verify(world, site, tmp_path)
    assert code == 1
    assert report["verdict"] == "content-differs"


def test_one_changed_byte_is_content_differs(world: World, site: Site, tmp_path: Path) -> None:
    def flip(tree: Path) -> None:
        path = tree / "Lib/os.py"
        data = bytearray(path.read_bytes())
        data[10] ^= 0x20
        stat = path.stat()
        path.write_bytes(bytes(data))
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))

    publish(site, world, tampered(world, tmp_path, flip))
    code, report = verify(world, site, tmp_path)
    assert code == 1
    for art in by_name(report).values():
        assert art["verdict"] == "content-differs"
        content = content_findings(art)
        assert [f["path"] for f in content] == [f"Python-{VERSION}/Lib/os.py"]
        assert "1 byte(s) changed, first at offset 10" in content[0]["explanation"]
        # diffoscope ran on that member only, and its view is kept beside the report.
        d = art["diffoscope"]
        assert d["status"] == "differences" and d["members"] == [f"Python-{VERSION}/Lib/os.py"]
        text = (tmp_path / "out" / d["text"]).read_text()
        assert '-"""OS routInes."""' in text and '+"""OS routines."""' in text
        assert (tmp_path / "out" / d["html"]).read_text().startswith("<!DOCTYPE html>")


def test_extra_member_is_named(world: World, site: Site, tmp_path: Path) -> None:
    def add(tree: Path) -> None:
        (tree / "Lib/backdoor.py").write_text("import os\n")
        os.utime(tree / "Lib/backdoor.py", (world.commit_time, world.commit_time))

    publish(site, world, tampered(world, tmp_path, add))
    code, report = verify(world, site, tmp_path)
    assert code == 1
    for art in by_name(report).values():
        assert art["verdict"] == "content-differs"
        content = content_findings(art)
        assert [(f["path"], f["field"]) for f in content] == [
            (f"Python-{VERSION}/Lib/backdoor.py", "presence")]
        assert "only in the published artifact" in content[0]["explanation"]


def test_changed_mtime_is_same_content(world: World, site: Site, tmp_path: Path) -> None:
    def older(tree: Path) -> None:
        os.utime(tree / "Lib/os.py", (world.commit_time - 86400, world.commit_time - 86400))

    publish(site, world, tampered(world, tmp_path, older))
    code, report = verify(world, site, tmp_path, "--no-adopt")
    assert code == 1
    for art in by_name(report).values():
        assert art["verdict"] == "same-content"
        assert art["payload_identical"] is False
        assert art["adoption"] is None
        fields = [(f["kind"], f["path"], f["field"]) for f in art["findings"]]
        assert ("metadata", f"Python-{VERSION}/Lib/os.py", "mtime") in fields
        assert not content_findings(art)
    # Adopting the published mtimes gives the published bytes, and says so.
    code, report = verify(world, site, tmp_path)
    assert code == 0, report
    for art in by_name(report).values():
        assert art["verdict"] == "identical-after-adoption"
        assert art["adoption"]["identical"] is True
        assert art["adoption"]["rebuilt_sha256"] == art["published"]["sha256"]
        adopted = {f["field"]: f["value"] for f in art["adoption"]["fields"]}
        assert adopted["mtimes"].startswith("2 distinct mtimes")


def test_multithreaded_xz_is_same_content(world: World, site: Site, tmp_path: Path) -> None:
    mt = release.recompress(world.published[".tar"], world.base_image,
                            "xz -T2 --block-size=4096", tmp_path / "mt" / "x.tar.xz")
    publish(site, world, {".tgz": world.published[".tgz"], ".tar.xz": mt})
    code, report = verify(world, site, tmp_path, "--no-adopt")
    assert code == 1
    arts = by_name(report)
    assert arts[f"Python-{VERSION}.tgz"]["verdict"] == "identical"
    xz = arts[f"Python-{VERSION}.tar.xz"]
    assert xz["verdict"] == "same-content"
    assert xz["payload_identical"] is True
    assert xz["compression"]["published"]["encoder"] == "multi-threaded"
    assert xz["compression"]["rebuilt"]["encoder"] == "single-threaded"
    assert int(xz["compression"]["published"]["blocks"]) > 1
    assert {f["kind"] for f in xz["findings"]} == {"compression"}

    code, report = verify(world, site, tmp_path)
    assert code == 0, report
    xz = by_name(report)[f"Python-{VERSION}.tar.xz"]
    assert xz["verdict"] == "identical-after-adoption"
    adopted = {f["field"]: f["value"] for f in xz["adoption"]["fields"]}
    assert adopted["xz layout"].startswith("multi-threaded encoder")
    assert "of 4096 bytes" in adopted["xz layout"]


def test_legacy_release_is_identical_after_adoption(world: World, site: Site,
                                                    tmp_path: Path) -> None:
    """A release made the pre-2023-10 way: nothing normalised. Strictly it only has the same
    content; adopting its metadata reproduces it byte for byte, every field listed."""
    legacy = release.make_legacy_tarballs(world.tree, world.commit_time + 3600,
                                          world.base_image, tmp_path / "legacy")
    publish(site, world, legacy)
    code, report = verify(world, site, tmp_path)
    assert code == 0, json.dumps(report, indent=1)[:3000]
    arts = by_name(report)
    for art in arts.values():
        assert art["verdict"] == "identical-after-adoption"
        assert not content_findings(art)
        metadata = {f["field"] for f in art["findings"] if f["kind"] == "metadata"}
        assert {"member order", "owner", "group", "header format"} <= metadata
        adopted = {f["field"]: f["value"] for f in art["adoption"]["fields"]}
        assert adopted["owner"] == "1000/pablogsal"
        assert adopted["tar format"] == "gnu"
        assert "member order" in adopted and "mtimes" in adopted
    tgz = {f["field"]: f["value"] for f in arts[f"Python-{VERSION}.tgz"]["adoption"]["fields"]}
    assert f"mtime {world.commit_time + 3600}" in tgz["gzip header"]
    xz = {f["field"]: f["value"] for f in arts[f"Python-{VERSION}.tar.xz"]["adoption"]["fields"]}
    assert xz["xz layout"].startswith("multi-threaded encoder")
