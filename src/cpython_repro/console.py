"""The terminal presenter: the only module that imports rich.

Every value shown comes from the report and may quote an archive (member names, link
targets, header fields, error messages): each one goes through _s, which makes it one line
without terminal controls and escapes rich markup; emoji codes are not interpreted.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

from rich.console import Console, RenderableType
from rich.markup import escape
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from cpython_repro.text import one_line

STYLE = {
    "identical": "bold green", "identical-after-adoption": "green", "same-content": "yellow",
    "content-differs": "bold red", "error": "bold red",
}
SHOWN_FINDINGS = 12


def console(quiet: bool = False) -> Console:
    return Console(stderr=False, quiet=quiet, highlight=False, soft_wrap=False, emoji=False)


def _s(value: object) -> str:
    return escape(one_line(str(value)))


def show_comparisons(out: Console, artifacts: list[dict[str, Any]]) -> None:
    """One block per artifact, not a table: at 80 columns (a CI log) a table cuts the
    names and verdicts that matter most."""
    for a in artifacts:
        _say(out, f"[bold]{_s(a['name'])}[/]: [{STYLE[a['verdict']]}]{_s(a['verdict'])}[/]")
        adoption = a.get("adoption") or {}
        _say(out, f"  published {_digest(a['published'])}")
        if a["verdict"] == "identical-after-adoption":
            # Identical: the adopted rebuild has the published bytes, hence its size.
            adopted = {**a["published"], "sha256": adoption["rebuilt_sha256"]}
            _say(out, f"  rebuilt   {_digest(adopted)} (with the adopted metadata)")
            _say(out, f"  strict    {_digest(a['rebuilt'])} (the recipe alone)")
        else:
            _say(out, f"  rebuilt   {_digest(a['rebuilt'])}")
        if a.get("error"):
            _say(out, f"  [bold red]error[/]: {_s(a['error'])}")
        _show_adoption(out, a)
        findings = a["findings"]
        if not findings:
            continue
        _say(out, f"  {a['findings_total']} finding(s) (published, then rebuilt):")
        for f in findings[:SHOWN_FINDINGS]:
            mark = "[red]✗[/]" if f["kind"] == "content" else "[yellow]~[/]"
            _say(out, f"  {mark} {_s(f['kind'])}: {_s(f['explanation'])}")
        if a["findings_total"] > SHOWN_FINDINGS:
            _say(out, f"  … {a['findings_total'] - SHOWN_FINDINGS} more in the JSON report")
        d = a.get("diffoscope")
        if d:
            where = f": {d['text']}, {d['html']}" if d["text"] else ""
            _say(out, f"  diffoscope on {len(d['members'])} member(s): {_s(d['status'])}"
                      f"{_s(where)}")


def _say(out: Console, text: str) -> None:
    """A line indented by its leading spaces, wrapped at the console's width with the same
    indent, so a long finding stays readable at 80 columns."""
    body = text.lstrip(" ")
    pad = Text(" " * (len(text) - len(body)))
    for line in Text.from_markup(body, emoji=False).wrap(out, max(out.width - len(pad), 20)):
        line.rstrip()  # a wrapped line is padded to the width: no trailing blanks in a log
        out.print(pad + line, soft_wrap=True)


def _digest(side: dict[str, Any]) -> str:
    return f"{_s(side['sha256'][:16])}…  {side['size']:,} bytes"


def _show_adoption(out: Console, a: dict[str, Any]) -> None:
    adoption = a.get("adoption")
    if not adoption:
        return
    if not adoption["fields"]:  # refused before any rebuild
        _say(out, f"  adoption was not attempted: {_s(adoption['detail'])}")
        return
    if adoption["identical"]:
        _say(out, "  the published bytes, once this metadata was taken from the published "
                  "artifact:")
    else:
        _say(out, f"  adoption did not give the published bytes: {_s(adoption['detail'])}")
    same = [f["field"] for f in adoption["fields"] if not f.get("differed", True)]
    for f in adoption["fields"]:
        if f.get("differed", True):
            _say(out, f"  [cyan]adopted[/] {_s(f['field'])}: {_s(f['value'])}")
    if same:
        _say(out, f"  (taken too, but already the same: {_s(', '.join(same))})")


def show_verify(out: Console, data: dict[str, Any], report_path: str,
                written: dict[str, str] | None = None) -> None:
    src = data["source"]
    _say(out, f"[bold]CPython {_s(data['version'])}[/]  tag {_s(src['tag'])} → commit "
              f"{_s(src['commit'][:12])} ({_s(src['commit_time'])})  recipe "
              f"{_s(data['recipe']['name'])}")
    tools = data["toolchain"]
    _say(out, "toolchain: " + ", ".join(f"{_s(k)} {_s(v)}" for k, v in tools.items()
                                        if k not in ("image", "image_id")))
    for m in data["toolchain_mismatches"]:
        _say(out, f"[yellow]toolchain:[/] {_s(m)}")
    show_comparisons(out, data["artifacts"])
    gen = data["generated_files"]
    gstyle = {"match": "green", "skipped": "yellow", "inconclusive": "yellow"}.get(
        gen["status"], "bold red")
    _say(out, f"generated files: [{gstyle}]{_s(gen['status'])}[/]"
              + (f" ({_s(' '.join(gen['command']))} in {_s(gen['image'])})" if gen["image"]
                 else "") + (f": {_s(gen['detail'])}" if gen["detail"] else ""))
    for m in gen["tool_mismatches"]:
        _say(out, f"  [yellow]~[/] {_s(m)}")
    for f in gen["files"]:
        if f["status"] != "same":
            _say(out, f"  [red]✗[/] {_s(f['explanation'])}")
    _show_sbom(out, data)
    sigs = data["signatures"]
    style = {"verified": "green", "failed": "bold red"}.get(sigs["status"], "yellow")
    _say(out, f"signatures: [{style}]{_s(sigs['status'])}[/]")
    for c in sigs["checks"]:
        mark = {"verified": "[green]✓[/]", "failed": "[red]✗[/]"}.get(c["status"], "[yellow]~[/]")
        signer = ", ".join(x for x in (f"signer: {_s(c['signer'])}" if c["signer"] else "",
                                       f"signed {_s(c['signed_at'])}" if c["signed_at"] else "")
                           if x)
        _say(out, f"  {mark} {_s(c['artifact'])} {_s(c['kind'])}: {_s(c['status'])}: "
                  f"{_s(c['detail'])}" + (f" ({signer})" if signer else ""))
    for n in data.get("not_checked", []):
        _say(out, f"[yellow]not checked:[/] {_s(n['artifact'])}: {_s(n['reason'])}")
    for a in data["artifacts"]:
        if a.get("origin_note"):
            _say(out, f"[yellow]note:[/] {_s(a['name'])}: {_s(a['origin_note'])}")
    show_outputs(out, written or {})
    style = STYLE[data["verdict"]]
    _say(out, f"report: {_s(report_path)}")
    _say(out, f"verdict: [{style}]{_s(data['verdict'])}[/]  exit {data['exit_code']}")
    # A non-zero exit explains itself: one line per reason, last on the screen.
    for reason in data.get("reasons", []):
        _say(out, f"[bold red]exit {data['exit_code']}:[/] {_s(reason)}")


def _show_sbom(out: Console, data: dict[str, Any]) -> None:
    bill = data.get("sbom")
    if not bill:
        return
    style = {"match": "green", "absent": "yellow"}.get(bill["status"], "bold red")
    if bill["status"] == "absent":
        said = bill["detail"] or "no SBOM in this release"
    else:
        said = (f"{bill['files_checked']} vendored file(s) and {len(bill['packages'])} "
                "package(s) checked against the tree")
        said += "".join(f"; {r['name']}: {r['status']}" for r in bill["releases"])
        if bill["detail"]:
            said += f"; {bill['detail']}"
    _say(out, f"sbom: [{style}]{_s(bill['status'])}[/]: {_s(said)}")
    for reason in bill["reasons"]:
        _say(out, f"  [red]✗[/] {_s(reason)}")
    for warning in data.get("warnings", []):
        _say(out, f"  [yellow]![/] {_s(warning)}")


def show_doctor(out: Console, checks: list[Any]) -> None:
    mark = {"ok": "[green]✓[/]", "missing": "[bold red]✗[/]", "optional": "[yellow]~[/]"}
    for c in checks:
        _say(out, f"{mark[c.status]} {_s(c.name)}: {_s(c.found)}"
                  + (f"  [dim]({_s(c.needed_for)})[/]" if c.needed_for else ""))
        if c.status != "ok" and c.fix:
            _say(out, f"    fix: {_s(c.fix)}")
    missing = [c.name for c in checks if c.status == "missing"]
    _say(out, "all set" if not missing else f"missing: {_s(', '.join(missing))}")


def show_outputs(out: Console, written: dict[str, str]) -> None:
    for kind, path in written.items():
        _say(out, f"{_s(kind)}: {_s(path)}")


class Presenter:
    """A run's progress on stderr, from steps that may run side by side. On a terminal: a
    line per running step with a spinner and its elapsed time (downloads with a byte bar),
    and a line with its duration when it ends. Elsewhere (a pipe, CI): plain lines stamped
    with the time since the start, one when a step starts and one when it ends, so a CI log
    is never silent for the length of a rebuild."""

    def __init__(self, live: bool) -> None:
        self.live = live
        self.err = Console(stderr=True, highlight=False, emoji=False, soft_wrap=not live)
        self.started = time.monotonic()
        self._lock = threading.Lock()
        self._progress: Progress | None = None
        if live:
            self._progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                      _ForDownloads(BarColumn(bar_width=20)),
                                      _ForDownloads(DownloadColumn()), TimeElapsedColumn(),
                                      console=self.err, transient=True)
            self._progress.start()

    def _line(self, text: str) -> None:
        if self._progress is not None:
            self._progress.console.print(text)
            return
        with self._lock:
            self.err.print(f"[{time.monotonic() - self.started:7.1f} s] {text}")

    @contextlib.contextmanager
    def step(self, text: str) -> Iterator[None]:
        shown, began = _s(text), time.monotonic()
        task = self._progress.add_task(shown, total=None) if self._progress else None
        if task is None:
            self._line(f"{shown} ...")
        try:
            yield
        except BaseException:
            self._line(f"[red]✗[/] {shown} (stopped after {time.monotonic() - began:.1f} s)")
            raise
        finally:
            if self._progress is not None and task is not None:
                self._progress.remove_task(task)
        self._line(f"[green]✓[/] {shown} ({time.monotonic() - began:.1f} s)")

    def note(self, text: str) -> None:
        """An interim result, e.g. the content verdict before the compressed bytes exist."""
        self._line(f"[bold]→[/] {_s(text)}")

    def download(self, name: str, total: int | None, initial: int) -> _Bar:
        return _Bar(self._progress, _s(name), total, initial)

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


class _ForDownloads(ProgressColumn):
    """A byte bar or count for a download's line; nothing on a step's."""

    def __init__(self, inner: ProgressColumn) -> None:
        super().__init__()
        self.inner = inner

    def render(self, task: Task) -> RenderableType:
        return self.inner.render(task) if task.fields.get("download") else Text("")


class _Bar:
    """A download's byte bar in the presenter (download.Progress); nothing off a terminal."""

    def __init__(self, progress: Progress | None, name: str, total: int | None,
                 initial: int) -> None:
        self._progress = progress
        self._task = progress.add_task(name, total=total, completed=initial, download=True) \
            if progress is not None else None

    def update(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def close(self) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.remove_task(self._task)
