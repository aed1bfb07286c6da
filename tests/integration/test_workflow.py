"""The example GitHub workflow, run locally: every `run:` step exactly as written (bash -e,
GITHUB_OUTPUT, the step's env), the `uses:` steps played by a small runner (artifacts copied
between jobs, Pages served from loopback), against the synthetic fixture and a loopback
python.org. Twice: the first run verifies the new release and publishes it; the second finds
nothing new and must still publish the page with it (the history carried over by the page).

The one thing not run as written: Sigstore signing (SIGN is emptied), which needs GitHub's
OIDC token and Fulcio, neither reachable here.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import require
from tests.fixtures import checkout
from tests.fixtures.server import Site
from tests.integration.conftest import VERSION, World, publish

pytestmark = pytest.mark.docker
WORKFLOW = checkout.ROOT / ".ci" / "examples" / "verify-releases.yml"

# The `if:` expressions the runner understands; another one in the workflow fails the test,
# so the workflow cannot drift away from what is run here.
CONDITIONS: dict[str, Callable[[dict[str, Any]], bool]] = {
    "${{ fromJSON(needs.plan.outputs.matrix).include[0] != null }}":
        lambda c: bool(json.loads(c["needs"]["plan"]["outputs"]["matrix"])["include"]),
    "${{ !cancelled() }}": lambda c: True,
    "${{ !cancelled() && needs.plan.result == 'success' }}":
        lambda c: c["needs"]["plan"]["result"] == "success",
}
EXPR = re.compile(r"\$\{\{\s*([A-Za-z0-9_.-]+)\s*\}\}")


def substitute(text: str, ctx: dict[str, Any]) -> str:
    def lookup(m: re.Match[str]) -> str:
        value: Any = ctx
        for part in m.group(1).split("."):
            value = value[part]
        return str(value)

    out = EXPR.sub(lookup, text)
    assert "${{" not in out, f"an expression the runner does not know: {text}"
    return out


@dataclass
class Runner:
    root: Path  # where each job gets its own fresh checkout
    env: dict[str, str]
    pages: Path  # what the loopback server serves as the Pages site
    pages_url: str
    artifacts: Path = field(init=False)
    log: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.artifacts = self.root / "artifacts"
        self.artifacts.mkdir(parents=True, exist_ok=True)

    def workflow(self, run: int) -> dict[str, Any]:
        spec = yaml.safe_load(WORKFLOW.read_text())
        needs: dict[str, Any] = {}
        for name, job in spec["jobs"].items():
            ctx = {"needs": needs}
            wanted = job.get("if")
            deps = job.get("needs", [])
            failed = any(needs[d]["result"] != "success"
                         for d in ([deps] if isinstance(deps, str) else deps))
            # As GitHub does: a job whose needs did not all succeed is skipped, unless its
            # condition asks about status itself.
            if (failed and "cancelled()" not in (wanted or "")) \
                    or (wanted is not None and not CONDITIONS[wanted](ctx)):
                needs[name] = {"result": "skipped", "outputs": {}}
                continue
            matrix = job.get("strategy", {}).get("matrix")
            entries: list[dict[str, Any]] = [{}]
            if matrix is not None:
                assert matrix == "${{ fromJSON(needs.plan.outputs.matrix) }}"
                entries = json.loads(needs["plan"]["outputs"]["matrix"])["include"]
            results = [self.job(f"{run}-{name}-{i}", job, {"needs": needs, "matrix": m})
                       for i, m in enumerate(entries)]
            ok = all(r["result"] == "success" for r in results)
            outputs = {k: substitute(v, results[0]["ctx"])
                       for k, v in job.get("outputs", {}).items()} if ok else {}
            needs[name] = {"result": "success" if ok else "failure", "outputs": outputs}
        return needs

    def job(self, name: str, job: dict[str, Any], ctx: dict[str, Any]) -> dict[str, Any]:
        work = checkout.make(self.root / name)
        ctx = {**ctx, "steps": {}}
        for step in job["steps"]:
            wanted = step.get("if")
            if wanted is not None and not CONDITIONS[wanted](ctx):
                continue
            outputs = (self.uses(step, work, ctx) if "uses" in step
                       else self.run(step, work, ctx))
            if outputs is None:
                return {"result": "failure", "ctx": ctx}
            if "id" in step:
                ctx["steps"][step["id"]] = {"outputs": outputs}
        return {"result": "success", "ctx": ctx}

    def run(self, step: dict[str, Any], work: Path, ctx: dict[str, Any]) -> dict[str, str] | None:
        out_file = work / ".github_output"
        out_file.write_text("")
        env = {**self.env, **{k: substitute(str(v), ctx) for k, v in step.get("env", {}).items()},
               "GITHUB_OUTPUT": str(out_file)}
        env["SIGN"] = ""  # Sigstore signing needs GitHub's OIDC and Fulcio: not here
        done = subprocess.run(["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c",
                               step["run"]], cwd=work, env=env, capture_output=True, text=True,
                              stdin=subprocess.DEVNULL, check=False)
        self.log.append(f"$ {step['run'].strip()}\n{done.stdout[-1500:]}{done.stderr[-1500:]}"
                        f"exit {done.returncode}")
        if done.returncode != 0:
            return None
        return dict(line.split("=", 1) for line in out_file.read_text().splitlines() if line)

    def uses(self, step: dict[str, Any], work: Path, ctx: dict[str, Any]) -> dict[str, str]:
        action, _, pin = step["uses"].partition("@")
        assert re.fullmatch(r"[0-9a-f]{40}", pin), f"{action} is not pinned to a commit"
        given = {k: substitute(str(v), ctx) for k, v in step.get("with", {}).items()}
        if action == "actions/checkout":
            assert given.get("persist-credentials") == "False"
        elif action == "actions/configure-pages":
            return {"base_url": self.pages_url}
        elif action == "actions/upload-artifact":
            dest = self.artifacts / given["name"]
            for pattern in given["path"].split():
                for found in work.glob(pattern.rstrip("/")):
                    target = dest / found.relative_to(work)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    if found.is_dir():
                        shutil.copytree(found, target, dirs_exist_ok=True)
                    else:
                        shutil.copyfile(found, target)
        elif action == "actions/download-artifact":
            prefix = given["pattern"].rstrip("*")
            for art in self.artifacts.iterdir():
                if art.name.startswith(prefix):
                    shutil.copytree(art, work / given["path"] / art.name)
        elif action == "actions/upload-pages-artifact":
            self.staged = work / given["path"]
        elif action == "actions/deploy-pages":
            shutil.rmtree(self.pages, ignore_errors=True)
            shutil.copytree(self.staged, self.pages)
            return {"page_url": self.pages_url + "/"}
        else:
            raise AssertionError(f"the runner does not know {action}")
        return {}


def test_the_workflow_runs_end_to_end_twice(world: World, site: Site, tmp_path: Path) -> None:
    require(checkout.ready(), "no .venv made by `make setup`")
    publish(site, world)
    (site.root / "ftp" / "python" / "index.html").write_text(f'<a href="{VERSION}/">x</a>\n')
    runner = Runner(tmp_path / "runner", {
        **os.environ, "CI": "true",
        "CPYTHON_REPRO_BASE_URL": site.base_url, "CPYTHON_REPRO_REMOTE": str(world.repo),
        "CPYTHON_REPRO_RECIPES": str(world.recipes)},
        site.root / "pages", site.base_url.replace("/ftp/python", "/pages"))

    first = runner.workflow(1)
    log = "\n".join(runner.log)
    assert [first[j]["result"] for j in ("plan", "verify", "publish")] == ["success"] * 3, log
    assert json.loads(first["plan"]["outputs"]["matrix"]) == {"include": [{"version": VERSION}]}
    index = (runner.pages / "index.html").read_text()
    assert f"href='{VERSION}/report.html'" in index and "identical" in index
    for name in ("report.html", "report.json", "statement.intoto.json", "evidence.tar.zst"):
        assert (runner.pages / VERSION / name).is_file(), name

    runner.log.clear()
    second = runner.workflow(2)  # nothing new: no verify job, the page keeps the release
    log = "\n".join(runner.log)
    assert json.loads(second["plan"]["outputs"]["matrix"]) == {"include": []}, log
    assert second["verify"]["result"] == "skipped"
    assert second["publish"]["result"] == "success", log
    index = (runner.pages / "index.html").read_text()
    assert f"href='{VERSION}/report.html'" in index, log
    assert (runner.pages / VERSION / "report.html").is_file()


def test_a_failing_plan_fails_its_job(world: World, site: Site, tmp_path: Path) -> None:
    """python.org's listing unreachable: the matrix command fails and so does the job (it
    used to be hidden inside `echo "matrix=$(...)"`); nothing is published."""
    require(checkout.ready(), "no .venv made by `make setup`")
    runner = Runner(tmp_path / "runner", {
        **os.environ, "CI": "true", "CPYTHON_REPRO_BASE_URL": "http://127.0.0.1:9/ftp/python",
        "CPYTHON_REPRO_REMOTE": str(world.repo), "CPYTHON_REPRO_RECIPES": str(world.recipes)},
        site.root / "pages", site.base_url.replace("/ftp/python", "/pages"))
    jobs = runner.workflow(1)
    assert jobs["plan"]["result"] == "failure", "\n".join(runner.log)
    assert jobs["publish"]["result"] == "skipped"
    assert not (runner.pages / "index.html").exists()
