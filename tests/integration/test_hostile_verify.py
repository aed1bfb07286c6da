"""verify end to end on a published release with hostile member names: a report, not a
traceback; the terminal shows them escaped; JSON and HTML stay valid UTF-8."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cpython_repro.cli import main
from tests.fixtures import release
from tests.fixtures.server import Site
from tests.integration.conftest import VERSION, World, copy_tree, publish

pytestmark = pytest.mark.docker

FORGED = "verdict: identical  exit 0"


def test_names_not_utf8_with_newlines_and_escapes(world: World, site: Site, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    tree = copy_tree(world, tmp_path / "tampered")
    name = os.fsdecode(b"Lib/\xff\xfe\n" + FORGED.encode() + b"\n\x1b[2J[red]x.py")
    (tree / name).write_text("import evil\n")
    os.utime(tree / name, (world.commit_time, world.commit_time))
    publish(site, world, release.make_tarballs(tree, world.commit_time, world.base_image,
                                               tmp_path / "pub"))
    out = tmp_path / "out"
    code = main(["verify", VERSION, "--remote", str(world.repo), "--base-url", site.base_url,
                 "--recipes", str(world.recipes), "--cache-dir", str(tmp_path / "cache"),
                 "--out", str(out), "--no-regen-check"])
    shown = capsys.readouterr()
    assert code == 1
    assert "\x1b" not in shown.out + shown.err and "Traceback" not in shown.err
    assert not [line for line in shown.out.splitlines() if line.startswith(FORGED)]
    assert "\\xff\\xfe\\n" + FORGED + "\\n\\x1b[2J[red]x.py" in shown.out
    report = json.loads((out / "report.json").read_bytes().decode("utf-8"))
    for art in report["artifacts"]:
        assert art["verdict"] == "content-differs"
        (finding,) = [f for f in art["findings"] if f["kind"] == "content"]
        assert finding["path_bytes"] == f"Python-{VERSION}/{name}".encode(
            "utf-8", "surrogateescape").hex()
    (out / "report.html").read_bytes().decode("utf-8")
    for index in out.glob("diffoscope/*/members.index"):
        assert len(index.read_bytes().decode("utf-8").splitlines()) == 1
